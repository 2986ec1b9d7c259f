"""Runs survive crashes: atomic checkpoints, exact resume, Ctrl-C/SIGTERM, SIGKILL, NaN, a full disk.

The end-to-end tests run train.py as a user would (a subprocess) on a tiny model with dropout (so
the RNG state matters) and compare against one uninterrupted run: a run that was stopped, killed
and resumed must give bit-identical losses and weights. Faults at exact moments (half-way through
a checkpoint write, during an evaluation, inside a step, a full disk) are injected by a launcher
that patches torch or data in the training process before running train.py, so the production
code has no test hooks.
"""

import ast
import errno
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, main_error_line, running
from gptkit.checkpoint import load_checkpoint, save_checkpoint
from gptkit.errors import UserError
import gptkit.rundir
from gptkit.rundir import OutDirLock, check_free_space, claim_out_dir
from gptkit.runlog import LogFile, read_log
from gptkit.system import StopRequest
from model import GPT, GPTConfig
from train import TrainConfig

MAX_ITERS = 100
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--dropout=0.1",
        f"--max_iters={MAX_ITERS}", "--eval_interval=10", "--eval_iters=2", "--log_interval=5",
        "--warmup_iters=5", "--device=cpu", "--threads=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LOG_KEYS = ("iter", "train_loss", "val_loss", "lr", "tokens")

# Runs train.py after patching the process to die (SIGKILL) at the n-th occurrence of a moment,
# or to fail every checkpoint write as a full disk would:  python3 -c LAUNCHER repo phase n args...
LAUNCHER = r"""
import io, os, runpy, signal, sys
repo, phase, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.argv = [os.path.join(repo, "train.py"), *sys.argv[4:]]
sys.path.insert(0, repo)
from gptkit import data
import torch
calls = 0

def nth():
    global calls
    calls += 1
    return calls == n

def die():
    os.kill(os.getpid(), signal.SIGKILL)

save = torch.save
if phase == "write":  # the n-th checkpoint write: half its bytes reach the temporary file, then death
    def patched_save(obj, f, *args, **kwargs):
        if not nth():
            return save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        die()
    torch.save = patched_save
elif phase in ("eval", "term-eval"):  # the n-th evaluation batch (evaluate draws from its own generator)
    get_batch = data.TokenData.get_batch
    def patched_get_batch(self, split, batch_size, generator, starts=None):
        if generator is not None and nth():
            die() if phase == "eval" else os.kill(os.getpid(), signal.SIGTERM)  # kill, or ask to stop
        return get_batch(self, split, batch_size, generator, starts)
    data.TokenData.get_batch = patched_get_batch
elif phase == "step":  # the n-th backward pass: in the middle of an optimizer step
    backward = torch.Tensor.backward
    def patched_backward(self, *args, **kwargs):
        if nth():
            die()
        return backward(self, *args, **kwargs)
    torch.Tensor.backward = patched_backward
elif phase == "nospace":  # every checkpoint write fails part-way, as on a full disk
    def patched_save(obj, f, *args, **kwargs):
        f.write(b"the first bytes of a checkpoint")
        raise OSError(28, "No space left on device")
    torch.save = patched_save
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def train_command(out_dir, data_dir, *extra, phase=None, n=0):
    resume = ["--init_from=resume"] if (Path(out_dir) / "ckpt.pt").exists() else []
    args = [*TINY, f"--data_dir={data_dir}", "--dataset=tiny", f"--out_dir={out_dir}", *resume, *extra]
    if phase is None:
        return [sys.executable, str(REPO_ROOT / "train.py"), *args]
    return [sys.executable, "-c", LAUNCHER, str(REPO_ROOT), phase, str(n), *args]


def start(processes, command, stderr_path):
    """The command running (conftest's `processes`: ended with the test), its stderr in stderr_path."""
    with open(stderr_path, "w") as stderr:
        return processes(command, stdout=subprocess.DEVNULL, stderr=stderr, env=ENV)


def run_train(out_dir, data_dir, *extra, phase=None, n=0):
    return subprocess.run(train_command(out_dir, data_dir, *extra, phase=phase, n=n), env=ENV,
                          capture_output=True, text=True, timeout=300)


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, "train.py ended before the moment to interrupt it"
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def log_records(out_dir):
    return [tuple(record[k] for k in LOG_KEYS) for record in read_log(out_dir)]


def file_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(Path(out_dir).iterdir()) if p.suffix == ".pt"}


def assert_same_weights(path_a, path_b):
    a, b = (torch.load(p, weights_only=True) for p in (path_a, path_b))
    assert a["iter_num"] == b["iter_num"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def assert_exactly_the_reference(out_dir, reference):
    assert log_records(out_dir) == log_records(reference), "losses differ from the uninterrupted run"
    assert_same_weights(out_dir / "ckpt.pt", reference / "ckpt.pt")
    assert_same_weights(out_dir / "best.pt", reference / "best.pt")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, shakespeare_text_session):
    import prepare

    root = tmp_path_factory.mktemp("data")
    prepare.prepare_text(shakespeare_text_session[:100_000], root / "tiny", "char", "test")
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """The uninterrupted run every interrupted one must reproduce exactly."""
    out_dir = tmp_path_factory.mktemp("reference") / "out"
    result = run_train(out_dir, data_dir)
    assert result.returncode == 0, result.stderr
    assert log_records(out_dir)[-1][0] == MAX_ITERS
    return out_dir


# ----------------------------------------------------------------------------------------------
# end to end: signals, SIGKILL, NaN, a full disk


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_the_current_iteration_and_resume_is_exact(signum, code, reference, data_dir, tmp_path,
                                                               processes):
    out_dir = tmp_path / "out"
    proc = start(processes, train_command(out_dir, data_dir), tmp_path / "stderr")
    wait_for(lambda: (out_dir / "log.jsonl").exists() and (out_dir / "log.jsonl").stat().st_size, proc)
    os.kill(proc.pid, signum)  # during the first checkpoint write or the first steps: mid-interval
    assert proc.wait(timeout=120) == code
    last_line = (tmp_path / "stderr").read_text().rstrip("\n").splitlines()[-1]
    saved_at = load_checkpoint(out_dir / "ckpt.pt")["iter_num"]
    assert last_line == f"interrupted at iter {saved_at}: saved {out_dir / 'ckpt.pt'}; continue with --init_from=resume"
    assert 0 <= saved_at < MAX_ITERS

    result = run_train(out_dir, data_dir)
    assert result.returncode == 0, result.stderr
    assert_exactly_the_reference(out_dir, reference)


def test_a_signal_during_an_evaluation_stops_it_and_resume_evaluates_it_first(reference, data_dir, tmp_path):
    """SIGTERM at the 10th evaluation batch: the third evaluation (iter 20; 4 batches each) stops after that
    batch instead of finishing, ckpt.pt is saved at iter 20 marked not evaluated, and the resumed run evaluates
    iter 20 first and ends exactly as the uninterrupted one."""
    out_dir = tmp_path / "out"
    result = run_train(out_dir, data_dir, phase="term-eval", n=10)
    assert result.returncode == 143, result.stderr
    assert "SIGTERM: the evaluation at iter 20 stopped" in result.stdout  # where the evaluations report
    assert result.stderr.rstrip("\n").splitlines()[-1] == \
        f"interrupted at iter 20: saved {out_dir / 'ckpt.pt'}; continue with --init_from=resume"
    ckpt = load_checkpoint(out_dir / "ckpt.pt")
    assert ckpt["iter_num"] == 20 and ckpt["evaluated"] is False
    assert [r["iter"] for r in read_log(out_dir)] == [0, 10]

    result = run_train(out_dir, data_dir)
    assert result.returncode == 0, result.stderr
    assert_exactly_the_reference(out_dir, reference)


def test_a_run_stopped_before_it_saved_anything_leaves_out_dir_as_it_found_it(data_dir, tmp_path):
    """Stopped during its first evaluation, before any checkpoint: no folder, no empty log.jsonl left."""
    out_dir = tmp_path / "new" / "out"
    result = run_train(out_dir, data_dir, phase="term-eval", n=1)
    assert result.returncode == 143, result.stderr
    assert result.stderr.rstrip("\n").splitlines()[-1] == \
        f"interrupted at iter 0: nothing was saved, {out_dir} is as it was"
    assert not (tmp_path / "new").exists()


def test_sigkill_at_any_moment_then_resume_finishes_exactly_as_uninterrupted(reference, data_dir, tmp_path,
                                                                            processes):
    """Kill half-way through a checkpoint write, during an evaluation, inside a step, and at random
    moments; resume after each. No checkpoint is ever unreadable and the run ends bit-identical."""
    out_dir = tmp_path / "out"
    rng = random.Random(1234)
    faults = [("write", 3), ("eval", 5), ("step", 7), *[("random", 0)] * 3]
    partial_writes = 0
    for phase, n in faults:
        stderr_path = tmp_path / f"stderr-{phase}"
        proc = start(processes, train_command(out_dir, data_dir, phase=None if phase == "random" else phase, n=n),
                     stderr_path)
        if phase == "random":  # once training has started, so the kill lands in the loop
            wait_for(lambda: "parameters" in stderr_path.read_text(), proc)
            time.sleep(rng.uniform(0, 1.0))
            proc.kill()
        code = proc.wait(timeout=120)
        assert code in (-signal.SIGKILL, 0), stderr_path.read_text()
        partial_writes += len(list(out_dir.glob(".*.tmp")))
        for name in ("ckpt.pt", "best.pt"):
            if (out_dir / name).exists():
                ckpt = torch.load(out_dir / name, weights_only=True)  # never unreadable
                assert 0 <= ckpt["iter_num"] <= MAX_ITERS
    assert partial_writes >= 1, "no kill landed inside a checkpoint write"

    result = run_train(out_dir, data_dir)  # the last resume, left to finish
    assert result.returncode == 0, result.stderr
    assert_exactly_the_reference(out_dir, reference)
    assert not list(out_dir.glob(".*.tmp")), "the killed writes' temporary files were not cleaned up"


@pytest.mark.parametrize("log_interval", [1, 1000], ids=["caught-at-a-step", "caught-at-an-evaluation"])
def test_nan_loss_stops_with_one_error_line_and_keeps_the_last_good_checkpoint(log_interval, reference, data_dir, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, content in file_bytes(reference).items():
        (out_dir / name).write_bytes(content)
    before = file_bytes(out_dir)
    # resume with a learning rate so large that the weights overflow to inf within a few steps
    result = run_train(out_dir, data_dir, f"--max_iters={MAX_ITERS + 20}", "--learning_rate=1e30", "--grad_clip=0",
                       f"--log_interval={log_interval}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last_line = result.stderr.rstrip("\n").splitlines()[-1]
    assert last_line.startswith("error: loss is nan at iter ") and "last good checkpoint" in last_line
    assert file_bytes(out_dir) == before


def test_full_disk_keeps_the_old_checkpoint_with_one_error_line(reference, data_dir, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, content in file_bytes(reference).items():
        (out_dir / name).write_bytes(content)
    before = file_bytes(out_dir)
    result = run_train(out_dir, data_dir, f"--max_iters={MAX_ITERS + 10}", phase="nospace")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last_line = result.stderr.rstrip("\n").splitlines()[-1]
    assert last_line.startswith("error: could not write checkpoint ")
    assert "No space left on device" in last_line and "the previous checkpoint is kept" in last_line
    assert file_bytes(out_dir) == before
    assert not list(out_dir.glob(".*.tmp"))


def test_one_writer_per_out_dir_readers_welcome_and_a_killed_run_leaves_no_stale_lock(data_dir, tmp_path, capsys,
                                                                                      processes):
    """While train.py runs in out_dir, a second train.py there exits 2 naming the live run's process:
    before its first checkpoint, and after it with --overwrite=True, --init_from=resume or
    --eval_only=True. sample.py, visualize.py, bench.py and export.py read the live folder. A run
    killed by SIGKILL leaves no stale lock. (The second runs and the readers run in this process:
    the lock is the live run's, another process, and a fresh interpreter would only add seconds.)
    The live run is stopped (SIGSTOP) while the others run: it holds the folder without needing the CPU,
    so nothing here depends on how the scheduler shares a loaded machine."""
    import bench
    import export
    import sample
    import train
    import visualize

    out_dir = tmp_path / "out"
    args = [*TINY, f"--data_dir={data_dir}", "--dataset=tiny", f"--out_dir={out_dir}"]

    def live_run(eval_interval, stderr_path, until):
        """A run that never ends, stopped once `until()` holds; `processes` kills it if the test fails."""
        command = [sys.executable, str(REPO_ROOT / "train.py"), *args, "--max_iters=1000000", "--eval_first=False",
                   f"--eval_interval={eval_interval}"]
        proc = start(processes, command, stderr_path)
        wait_for(until, proc, timeout=600)  # a bound for a broken run, not a speed: a loaded machine is slow
        os.kill(proc.pid, signal.SIGSTOP)
        return proc

    def assert_refused(live, *extra):
        line = main_error_line(capsys, train, [*args, *extra])
        assert f"{out_dir} is in use by a live training run (pid {live.pid}: " in line and "train.py" in line

    first = tmp_path / "first.stderr"
    live = live_run(10**6, first, until=lambda: "parameters" in first.read_text())  # holds the folder from here
    assert_refused(live)
    live.kill()  # never wrote a checkpoint
    live.wait(timeout=60)
    assert not (out_dir / "ckpt.pt").exists()

    live = live_run(20, tmp_path / "second.stderr", until=lambda: (out_dir / "ckpt.pt").exists())  # takes the folder
    for extra in ("--overwrite=True", "--init_from=resume", "--eval_only=True"):
        assert_refused(live, extra)
    sample.main([f"--out_dir={out_dir}", "--ckpt=latest", "--max_new_tokens=5", "--num_samples=1", "--device=cpu"])
    visualize.main(["loss", str(out_dir), f"--out={tmp_path / 'loss.png'}"])
    bench.main(["time_to_loss", str(out_dir), "--target=9"])
    if importlib.util.find_spec("transformers"):
        export.main([f"--out_dir={out_dir}", "--ckpt=latest", "--to=hf", str(tmp_path / "hf")])
    os.kill(live.pid, signal.SIGCONT)
    assert live.poll() is None and str(live.pid) in (out_dir / "train.lock").read_text(), \
        "the live run did not survive its readers"
    live.kill()
    live.wait(timeout=60)
    resumed_at = load_checkpoint(out_dir / "ckpt.pt")["iter_num"]
    train.main([*args, "--init_from=resume", f"--max_iters={resumed_at + 2}"])
    assert not (out_dir / "train.lock").exists(), "a run that ended left its lock file behind"


def test_a_process_a_test_starts_is_ended_whatever_the_outcome():
    """conftest's `running` ends the process (and its children) when an assertion fires inside the block, and
    every test file starts its processes through it: none outlives a failed test, as a training run once did."""
    sleeper = [sys.executable, "-c", "import subprocess, sys, time; "
               "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']).pid, flush=True); "
               "time.sleep(600)"]
    with pytest.raises(AssertionError), running(sleeper, stdout=subprocess.PIPE, text=True) as proc:
        child = int(proc.stdout.readline())
        raise AssertionError("a failed check")
    assert proc.returncode == -signal.SIGKILL
    stat = Path(f"/proc/{child}/stat")  # the child too: gone, or dead and not yet reaped by its new parent

    def child_alive():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False

    deadline = time.time() + 30  # SIGKILL is delivered at once but a loaded machine takes a moment to act on it
    while child_alive():
        assert time.time() < deadline, "the child outlived its killed process group"
        time.sleep(0.05)
    bare = [f"{p.name}:{node.lineno}" for p in sorted((REPO_ROOT / "tests").glob("*.py")) if p.name != "conftest.py"
            for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "Popen"]
    assert bare == [], f"start these through conftest's running or processes: {bare}"


# ----------------------------------------------------------------------------------------------
# in process: the atomic write, the checks before training, the log, the signal handler


@pytest.fixture
def saved(tmp_path):
    """A checkpoint on disk, its bytes, and the model and optimizer to write another one."""
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    optimizer = torch.optim.AdamW(model.parameters())
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, optimizer, iter_num=1)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)  # the next checkpoint would differ
    return path, path.read_bytes(), model, optimizer


def half_written_then(error):
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 the first bytes of a checkpoint")
        raise error
    return failing_save


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EIO, "I/O error")],
                         ids=["ENOSPC", "EIO"])
def test_a_failed_write_keeps_the_old_checkpoint_and_no_temporary_file(saved, monkeypatch, error):
    path, before, model, optimizer = saved
    monkeypatch.setattr(torch, "save", half_written_then(error))
    with pytest.raises(UserError, match=f"could not write checkpoint .*{error.strerror}.*the previous checkpoint is kept"):
        save_checkpoint(path, model, optimizer, iter_num=2)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_a_failed_rename_keeps_the_old_checkpoint_and_no_temporary_file(saved, monkeypatch):
    path, before, model, optimizer = saved

    def failing_replace(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(UserError, match="the previous checkpoint is kept"):
        save_checkpoint(path, model, optimizer, iter_num=2)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_a_second_ctrl_c_during_a_write_keeps_the_old_checkpoint(saved, monkeypatch):
    path, before, model, optimizer = saved
    monkeypatch.setattr(torch, "save", half_written_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, optimizer, iter_num=2)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_a_checkpoint_write_is_complete_and_loads_as_plain_data(saved):
    path, _, model, optimizer = saved
    save_checkpoint(path, model, optimizer, iter_num=2)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["iter_num"] == 2 and torch.equal(ckpt["model"]["lm_head.weight"], model.lm_head.weight)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_out_dir_lock_is_exclusive_names_its_holder_and_leaves_no_file(tmp_path):
    (tmp_path / "train.lock").write_text("4242: train.py (a run killed long ago)\n")  # a file, but no lock
    with OutDirLock(tmp_path):
        assert (tmp_path / "train.lock").read_text().startswith(f"{os.getpid()}: ")
        with pytest.raises(UserError, match=f"in use by a live training run .pid {os.getpid()}: "):
            with OutDirLock(tmp_path):  # another open file description: refused, even in the same process
                pass
    assert list(tmp_path.iterdir()) == []
    with OutDirLock(tmp_path):  # free again
        pass


def test_a_failed_run_removes_the_out_dir_it_created_and_keeps_one_it_did_not(tmp_path):
    out_dir = tmp_path / "new" / "deeper"
    with pytest.raises(UserError, match="stopped"):
        with claim_out_dir(out_dir, protect_checkpoints=True):
            assert out_dir.is_dir()
            raise UserError("stopped")
    assert list(tmp_path.iterdir()) == []
    out_dir.mkdir(parents=True)
    with pytest.raises(UserError, match="stopped"):
        with claim_out_dir(out_dir, protect_checkpoints=True):
            raise UserError("stopped")
    assert out_dir.is_dir() and list(out_dir.iterdir()) == []
    with claim_out_dir(tmp_path / "made", protect_checkpoints=True):  # a run that ends well keeps its folder
        pass
    assert (tmp_path / "made").is_dir()


def test_out_dir_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot create out_dir"):
        claim_out_dir(tmp_path / "a_file" / "out", protect_checkpoints=True)


def test_unwritable_out_dir_is_refused_before_training(tmp_path, monkeypatch):
    # tests may run as root, whom permission bits do not stop: fail the write itself instead
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(gptkit.rundir.tempfile, "TemporaryFile", read_only)
    with pytest.raises(UserError, match="not writable .Read-only file system"):
        claim_out_dir(tmp_path / "out", protect_checkpoints=True)


def test_too_little_disk_space_is_refused_before_training(tmp_path, monkeypatch):
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    size = 3 * sum(p.numel() * 4 for p in model.parameters())  # weights and AdamW's two moments
    usage = type("usage", (), {"free": 2 * size - 1})
    monkeypatch.setattr(gptkit.rundir.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(UserError, match="MiB free but checkpoints need about"):
        check_free_space(tmp_path, model)  # best.pt and ckpt.pt both to come: 2x
    for name in ("best.pt", "ckpt.pt"):
        (tmp_path / name).write_bytes(b"")
    check_free_space(tmp_path, model)  # only a new file beside an old one at a time: 1x


def test_log_on_resume_keeps_lines_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps({"iter": i, "val_loss": 1.0}) for i in (0, 10, 20)]
    torn = "\n".join(lines) + '\n{"iter": 30, "val_lo'  # killed while writing iter 30
    for resume_iter, kept in ((None, []), (0, lines[:1]), (10, lines[:2]), (20, lines)):
        path.write_text(torn)
        log = LogFile(tmp_path, resume_iter)
        assert path.read_text() == torn  # untouched until the run logs: a run stopped before that changes nothing
        log.write({"iter": 99, "val_loss": 0.5})
        assert path.read_text().splitlines() == [*kept, json.dumps({"iter": 99, "val_loss": 0.5})]
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_every_reader_of_a_live_runs_log_skips_its_half_written_last_line(tmp_path, capsys):
    """One reader (runlog.read_log) for train.py, visualize.py, bench.py and experiment.py."""
    import bench
    import visualize

    lines = [json.dumps({"iter": i, "train_loss": 3.0 - i / 10, "val_loss": 3.1 - i / 10, "elapsed_s": i})
             for i in (0, 10)]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + '\n{"iter": 20, "val_lo')  # being written right now
    assert [r["iter"] for r in read_log(tmp_path)] == [0, 10]
    bench.time_to_loss([str(tmp_path)], target=2.5)
    assert "| 10 " in capsys.readouterr().out  # reached 2.5 at iter 10 (val 2.1)
    pytest.importorskip("matplotlib")
    visualize.main(["loss", str(tmp_path), f"--out={tmp_path / 'loss.png'}"])
    assert (tmp_path / "loss.png").stat().st_size > 0


@pytest.mark.parametrize("signum, again", [(signal.SIGINT, "(Ctrl-C again: quit now without saving)"),
                                           (signal.SIGTERM, "(another SIGTERM: quit now without saving)")])
def test_the_stop_message_says_what_a_second_signal_of_that_kind_does(signum, again, capfd):
    """A SIGTERM comes from a scheduler or `kill`, not a keyboard: its message does not talk of Ctrl-C."""
    with StopRequest() as stop:
        os.kill(os.getpid(), signum)
        for _ in range(100):
            if stop.signum is not None:
                break
            time.sleep(0.01)
    err = capfd.readouterr().err
    assert f"{signal.Signals(signum).name}: stopping after this step to save a checkpoint {again}" in err
    assert ("Ctrl-C" in err) == (signum == signal.SIGINT)


def test_stop_request_records_the_signal_and_hands_a_second_one_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest() as stop:
        assert stop.signum is None and signal.getsignal(signal.SIGTERM) == stop._handle
        os.kill(os.getpid(), signal.SIGTERM)  # handled here: the training loop saves and exits
        for _ in range(100):
            if stop.signum is not None:
                break
            time.sleep(0.01)
        assert stop.signum == signal.SIGTERM
        assert {s: signal.getsignal(s) for s in before} == before  # a second signal acts at once
    assert {s: signal.getsignal(s) for s in before} == before


def test_train_config_refuses_settings_the_optimizer_would_fail_on():
    for bad in (dict(beta1=1.0), dict(beta2=-0.1), dict(weight_decay=-1.0), dict(grad_clip=-1.0),
                dict(learning_rate=float("inf")), dict(eval_iters=0)):
        with pytest.raises(UserError):
            TrainConfig(**bad).validate()
    TrainConfig(grad_clip=0.0, weight_decay=0.0, beta1=0.0).validate()
