"""DDP under torchrun, on the CPU with gloo: two processes compute what one process computes.

Every process draws the same global batch and trains on its share of the micro-batches, so two
processes with gradient_accumulation_steps=2 take the same optimizer steps as one process with 2
micro-batches, up to float rounding. Runs:
  A. one process, iterations 0 -> 6
  B. torchrun, two processes, 0 -> 4
  C. torchrun, two processes, resumed from B's checkpoint, 4 -> 6
B's losses equal A's, and C ends with A's weights and losses (the data order resumes exactly).
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT
from gptkit.checkpoint import load_checkpoint

ARGS = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--dropout=0.0",
        "--gradient_accumulation_steps=2", "--eval_interval=2", "--eval_iters=2", "--learning_rate=3e-3",
        "--warmup_iters=2", "--lr_decay_iters=6", "--device=cpu", "--threads=1", "--dataset=chars"]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no torch.distributed gloo backend")


def run(launcher, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)  # in case the tests themselves run under torchrun
    cmd = [sys.executable, *launcher, str(REPO_ROOT / "train.py"), *map(str, args)]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


SINGLE = []
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]  # = torchrun; a free port


def log_of(out_dir):
    return {r["iter"]: r for r in map(json.loads, (out_dir / "log.jsonl").read_text().splitlines())}


def test_two_processes_train_like_one_and_resume(word_data_dir, tmp_path):
    common = [*ARGS, f"--data_dir={word_data_dir}"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run(SINGLE, *common, "--max_iters=6", f"--out_dir={single}")
    run(TORCHRUN, *common, "--max_iters=4", f"--out_dir={ddp}")

    a, b = log_of(single), log_of(ddp)
    assert sorted(b) == [0, 2, 4]
    for it in b:
        for key in ("train_loss", "val_loss"):
            assert b[it][key] == pytest.approx(a[it][key], abs=1e-5), (it, key)
    assert b[4]["train_loss"] < b[0]["train_loss"]  # it did train

    result = run(TORCHRUN, *common, "--max_iters=6", f"--out_dir={ddp}", "--init_from=resume")
    assert "x 2" in result.stderr  # "device cpu x 2": two processes
    c = log_of(ddp)
    assert sorted(c) == [0, 2, 4, 6]  # rank 0 alone wrote the log, once per evaluation
    assert c[6]["val_loss"] == pytest.approx(a[6]["val_loss"], abs=1e-5)
    mine, theirs = load_checkpoint(ddp / "ckpt.pt"), load_checkpoint(single / "ckpt.pt")
    assert mine["iter_num"] == theirs["iter_num"] == 6
    for name, tensor in theirs["model"].items():
        torch.testing.assert_close(mine["model"][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
