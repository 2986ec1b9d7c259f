"""bench.py gpu and bench.py cpu_bf16 end to end at toy sizes on the CPU (--scale=tiny), nanoGPT played by
a stand-in with its interface (tests/fixtures/nanogpt_standin): every task runs as its own process, as it
does on a GPU, so the suite cannot rot while no GPU is at hand. And the suite's plumbing: budgets end
children (and what they started), a watched line ends a child, a spent budget starts nothing more."""

import json
import os
import re
import shutil
import sys
import time

import pytest

import bench
from conftest import REPO_ROOT, main_error_line
from gptkit import suite

@pytest.fixture
def nanogpt_dir(tmp_path):
    """A folder laid out as a nanoGPT clone: the stand-in's three files and nanoGPT's own char config."""
    folder = tmp_path / "nanoGPT"
    shutil.copytree(REPO_ROOT / "tests" / "fixtures" / "nanogpt_standin", folder)
    (folder / "config").mkdir()
    shutil.copy(REPO_ROOT / "tests" / "fixtures" / "nanogpt_config" / "train_shakespeare_char.py", folder / "config")
    return folder


def table_rows(table, heading):
    """The cells of the markdown table under `## heading...`."""
    section = table.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")][1:]


@pytest.fixture
def children_on_one_thread(monkeypatch):
    """The suite's children are as many processes; toy models run fastest on one thread each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_gpu_suite_runs_every_row_end_to_end(tmp_path, nanogpt_dir, char_data_dir, children_on_one_thread, capsys):
    out = tmp_path / "out"
    bench.main(["gpu", f"--nanogpt_dir={nanogpt_dir}", "--scale=tiny", f"--out_dir={out}",
                f"--data_dir={char_data_dir}"])  # the suite itself in-process: its tasks are processes
    stdout = capsys.readouterr().out
    tasks = json.loads((out / "figures.json").read_text())["tasks"]
    assert list(tasks) == suite.GPU_TASKS
    for key, task in tasks.items():
        assert task["status"] in ("ok", "reached the target"), (key, (out / "logs" / f"{key}.log").read_text()[-2000:])
    nanogpt_log = (out / "logs" / "nanogpt_time_to_loss.log").read_text()
    assert "Overriding config with config/train_shakespeare_char.py" in nanogpt_log

    table = (out / "table.md").read_text()
    assert table.strip() in stdout and stdout.rstrip().splitlines()[-1].startswith("done: 8 tasks")
    throughput = table_rows(table, "GPT-2 124M training throughput")
    assert [row[1] for row in throughput] == [
        "compile", "compile (as train.py --compile=True)", "eager", "AdamW foreach, not fused",
        "Muon for the block matrices", "dataset in host memory, batches copied", "batch_size 3", "batch_size 4",
        "compile mode max-autotune"]
    for row in throughput:  # tokens/iter, ms/iter, tokens/s, vs nanoGPT: every one measured
        assert int(row[2].replace(",", "")) == 32 * int(row[1].split()[-1] if row[1].startswith("batch_size") else 2)
        assert float(row[3]) > 0 and float(row[4].replace(",", "")) > 0 and row[5].endswith("x")

    # the first evaluation after training (iter 10) is below the tiny target for each: time from process start
    time_to_loss = table_rows(table, "Time from process start")
    assert [row[1] for row in time_to_loss] == ["config/train_shakespeare_char.py", "config/shakespeare_char.py",
                                                "config/shakespeare_char_fast.py"]
    for row in time_to_loss:
        seconds, at_iter, val = float(row[2].strip("*")), int(row[3]), float(row[4])
        assert 0 < seconds < tasks[suite.GPU_TASKS[2]]["budget_s"] and at_iter == 10 and val <= suite.TINY_TARGET

    sampling = table_rows(table, "Sampling")
    assert [row[:2] for row in sampling] == [[b, loop] for b in ("1", "8")
                                             for loop in ("nanoGPT's own generate", "kv cache")]
    assert all(float(row[2].replace(",", "")) > 0 for row in sampling)
    assert "static cache, compiled" not in table  # --scale=tiny compiles nothing


def test_cpu_bf16_compares_float32_and_bfloat16_side_by_side(tmp_path, char_data_dir, children_on_one_thread):
    out = tmp_path / "out"
    bench.main(["cpu_bf16", "config/shakespeare_char_cpu_fast.py", "--scale=tiny", f"--out_dir={out}",
                f"--data_dir={char_data_dir}"])
    tasks = json.loads((out / "figures.json").read_text())["tasks"]
    assert list(tasks) == ["shakespeare_char_cpu_fast_float32", "shakespeare_char_cpu_fast_bfloat16",
                           "sampling_float32", "sampling_bfloat16"]
    assert "dtype bfloat16" in (out / "logs" / "shakespeare_char_cpu_fast_bfloat16.log").read_text()
    assert "random weights), bfloat16, cpu" in (out / "logs" / "sampling_bfloat16.log").read_text()
    table = (out / "table.md").read_text()
    (row,) = table_rows(table, "Time from process start")
    assert row[0] == "shakespeare_char_cpu_fast" and float(row[1]) == suite.TINY_TARGET
    assert re.fullmatch(r"[0-9.]+ \(10\)", row[2]) and re.fullmatch(r"[0-9.]+ \(10\)", row[3]), row
    assert row[4].endswith("x")
    sampling = table_rows(table, "Sampling")
    assert [r[0] for r in sampling] == ["1", "8"] and all(r[3].endswith("x") for r in sampling)


# ---------------------------------------------------------------------------------------------
# the plumbing


SLEEPER = ("import subprocess, sys, time\n"
           "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
           "print(child.pid, flush=True)\n"
           "print('step 5: train loss 2.0, val loss 1.40', flush=True)\n"
           "time.sleep(60)\n")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie, not yet reaped by its (dead) parent, counts as ended
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see the grandchild end")
@pytest.mark.parametrize("target, budget, ended", [(1.5, 30.0, "watched"), (None, 2.0, "over budget")])
def test_a_child_ends_at_its_line_or_its_budget_with_what_it_started(tmp_path, target, budget, ended):
    lines = []

    def watch(line, seconds):
        lines.append(line)
        found = suite.EVAL_LINE.search(line)
        return bool(found and target and float(found.group(2)) <= target)

    t0 = time.perf_counter()
    code, seconds, how = suite.run_child([sys.executable, "-c", SLEEPER], tmp_path, tmp_path / "log", budget, watch)
    assert how == ended and code is None and time.perf_counter() - t0 < budget + 5
    grandchild = int(lines[0])
    deadline = time.time() + 5
    while alive(grandchild) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)
    assert (tmp_path / "log").read_text().splitlines()[1] == "step 5: train loss 2.0, val loss 1.40"


def test_a_spent_budget_starts_no_more_tasks(tmp_path):
    quick = suite.Task("quick", [sys.executable, "-c", "print('iter 1: train loss 3.0, val loss 2.9')"], tmp_path, 30)
    slow = suite.Task("slow", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, 30)
    never = suite.Task("never", [sys.executable, "-c", "print('hi')"], tmp_path, 30)
    runner = suite.Suite(tmp_path / "out", 5.0, "# test", lambda results: suite.tasks_table(results))
    runner.run([quick, slow, never])
    results = json.loads((tmp_path / "out" / "figures.json").read_text())["tasks"]
    assert results["quick"]["status"] == "ok" and results["quick"]["evals"][0]["val_loss"] == 2.9
    assert results["slow"]["status"].startswith("cut at") and "the suite's budget" in results["slow"]["status"]
    assert results["never"]["status"] == "not run: the suite's budget was spent"


def test_suite_mistakes_are_one_line(capsys, tmp_path, char_data_dir, monkeypatch):
    assert "--nanogpt_dir=PATH/TO/nanoGPT" in main_error_line(capsys, bench, ["gpu"])
    error = main_error_line(capsys, bench, ["gpu", f"--nanogpt_dir={tmp_path}", "--scale=tiny",
                                            f"--data_dir={char_data_dir}", f"--out_dir={tmp_path / 'out'}"])
    assert "lacks nanoGPT's train.py, model.py, configurator.py, config/train_shakespeare_char.py" in error
    assert "python3 prepare.py shakespeare_char" in main_error_line(
        capsys, bench, ["gpu", f"--nanogpt_dir={tmp_path}", "--scale=tiny", f"--data_dir={tmp_path}"])
    monkeypatch.setattr(suite.torch.cuda, "is_available", lambda: False)
    assert "--scale=tiny" in main_error_line(capsys, bench, ["gpu", f"--nanogpt_dir={tmp_path}"])
    assert "no config file config/nope.py" in main_error_line(capsys, bench, ["cpu_bf16", "config/nope.py"])
    assert "did you mean 'sampling'" in main_error_line(capsys, bench, ["gpu", "--nanogpt_dir=x",
                                                                        "--tasks=sampling,samplin"])
