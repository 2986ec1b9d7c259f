"""TensorBoard and W&B (offline) get what log.jsonl gets, and after a resume no iteration twice; without
their packages training goes on after one warning line; W&B that cannot start is a one-line error."""

import json
from pathlib import Path

import pytest

from conftest import one_error_line
from gptkit.runlog import METRICS, read_log

BOTH = ("--tensorboard=True", "--wandb_log=True", "--wandb_project=tests", "--wandb_run_name=tiny")


def wandb_env(tmp_path, mode="offline"):
    """W&B kept inside tmp_path: its run files, config and caches."""
    root = tmp_path / "wandb_home"
    return {"WANDB_MODE": mode, "WANDB_DIR": str(root), "WANDB_CONFIG_DIR": str(root / "config"),
            "WANDB_CACHE_DIR": str(root / "cache"), "WANDB_DATA_DIR": str(root / "data"), "HOME": str(root),
            "WANDB_API_KEY": ""}


def tensorboard_scalars(out_dir):
    """{tag: [(step, value), ...]} as written to the event files in out_dir, repeats included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # purge_orphaned_data=False: show what the files hold, not what TensorBoard would hide
    events = EventAccumulator(str(out_dir), purge_orphaned_data=False)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_records(run_file):
    """The protobuf records of an offline W&B run file: a LevelDB-style log (7-byte header, then
    32 KiB blocks of chunks: crc32c, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, payload = Path(run_file).read_bytes(), 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        payload += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            yield record


def wandb_history(wandb_dir, run_id):
    """(the run record of each offline segment of run_id, [{step, metrics...}, ...] across all segments)."""
    runs, rows = [], []
    for run_file in sorted(Path(wandb_dir).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                runs.append(record.run)
            elif kind == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return runs, rows


def test_tensorboard_and_wandb_log_what_log_jsonl_logs_and_a_resume_repeats_no_iteration(tmp_path, tiny_train_args,
                                                                                          cli):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    env, out = wandb_env(tmp_path), tmp_path / "out"
    # one learning-rate schedule whatever max_iters is, so a resumed iteration repeats exactly
    args = [*(a for a in tiny_train_args if not a.startswith("--max_iters=")), "--lr_decay_iters=40",
            f"--out_dir={out}", *BOTH]
    first = cli("train.py", *args, "--max_iters=20", env=env)
    assert first.returncode == 0, first.stderr
    checkpoint_at_20 = (out / "ckpt.pt").read_bytes()
    second = cli("train.py", *args, "--max_iters=30", "--init_from=resume", env=env)
    assert second.returncode == 0, second.stderr
    # as if killed after logging iter 30 and before saving it: the resume starts again from 20
    (out / "ckpt.pt").write_bytes(checkpoint_at_20)
    third = cli("train.py", *args, "--max_iters=40", "--init_from=resume", env=env)
    assert third.returncode == 0, third.stderr

    log = read_log(out)
    assert [r["iter"] for r in log] == [0, 10, 20, 30, 40]
    assert log[0]["tokens_per_s"] is None and all(r["tokens_per_s"] > 0 for r in log[1:])

    scalars = tensorboard_scalars(out)
    assert set(scalars) == set(METRICS.values())
    for key, name in METRICS.items():
        logged = [(r["iter"], r[key]) for r in log if r[key] is not None]
        assert [step for step, _ in scalars[name]] == [step for step, _ in logged], name  # each once, in order
        assert [value for _, value in scalars[name]] == pytest.approx([value for _, value in logged], rel=1e-6)

    run_id = (out / "wandb_run_id").read_text()
    runs, rows = wandb_history(env["WANDB_DIR"], run_id)
    assert len(runs) == 3  # the first run and its two resumptions: one W&B run
    assert all(run.project == "tests" and run.display_name == "tiny" for run in runs)
    config = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config["n_layer"] == 2 and config["wandb_run_name"] == "tiny"
    assert [row["_step"] for row in rows] == [r["iter"] for r in log]  # 30 only once
    for row, record in zip(rows, log):
        # iter 30 is the second run's; the exact resume recomputed the same losses
        for key in ("train_loss", "val_loss", "lr", "tokens"):
            assert row[METRICS[key]] == pytest.approx(record[key], rel=1e-6), (row, record)


def test_without_the_packages_one_warning_each_and_training_goes_on(tmp_path, tiny_train_args, cli):
    blocker = tmp_path / "blocker"  # shadows the installed packages: importing them fails as if absent
    for package in ("wandb", "tensorboard"):
        (blocker / package).mkdir(parents=True)
        (blocker / package / "__init__.py").write_text(f"raise ModuleNotFoundError({package!r})\n")
    out = tmp_path / "out"
    result = cli("train.py", *tiny_train_args, f"--out_dir={out}", *BOTH, env={"PYTHONPATH": str(blocker)})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert "wandb_log=True" in warnings[1] and "pip install wandb" in warnings[1]
    assert "tensorboard=True" in warnings[0] and "pip install tensorboard" in warnings[0]
    assert [r["iter"] for r in read_log(out)] == [0, 10, 20, 30]
    assert not list(out.glob("events.out.tfevents.*")) and not (out / "wandb").exists()


def test_wandb_that_cannot_start_is_one_line_before_training(tmp_path, tiny_train_args, cli):
    pytest.importorskip("wandb")
    out = tmp_path / "out"
    result = cli("train.py", *tiny_train_args, f"--out_dir={out}", "--wandb_log=True",
                 env=wandb_env(tmp_path, "online"))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "W&B did not start" in line and "API key" in line and "WANDB_MODE=offline" in line
    assert not (out / "ckpt.pt").exists()
