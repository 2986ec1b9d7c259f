"""FSDP2 under torchrun, on the CPU with gloo: sharded training computes what one process computes,
and its sharded checkpoints survive SIGKILL and resume on another number of processes. Runs:
  A. one process, iterations 0 -> 4, then resumed 4 -> 8 (DDP's path, no torchrun): the reference
  B. two processes, parallel=fsdp, 0 -> 8, killed with SIGKILL (torchrun and both workers) once it
     has logged iteration 2
  C. B resumed by two processes -> 8: A's losses and weights; the ckpt.pt made from its shards
     is what sample.py reads
  D. B (copied before C) resumed by one fsdp process -> 6, with activation checkpointing
  E. D's one-process sharded checkpoint resumed by two -> 8
  F. A's ckpt.pt at iteration 4 (one process, a whole file) resumed by two fsdp processes -> 8, their
     gradients reduce-scattered at every micro-step (sync_every_micro_step)
Every one logs A's losses (to within float reordering: both are bit-identical here today).
Then the memory planner's figures against what torch allocates, and the refusals.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

import export
import train
from conftest import REPO_ROOT, main_error_line, running
from gptkit.checkpoint import load_checkpoint, load_trained
from gptkit.errors import UserError
from gptkit.rundir import claim_out_dir
from gptkit.sharded import read_state
from gptkit.memory import estimated_params, plan_memory
from gptkit.optim import make_optimizer
from model import GPT, GPTConfig
from test_distributed import ARGS, SINGLE, TORCHRUN, log_of, run

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no torch.distributed gloo backend")

# 2 micro-steps per process of 2, so that gradients accumulate unsynced; clip hard (the gradient norm
# starts near 3), so the clipping of sharded gradients is in every step
COMMON = [*(a for a in ARGS if not a.startswith(("--lr_decay_iters", "--gradient_accumulation_steps"))),
          "--lr_decay_iters=8", "--gradient_accumulation_steps=4", "--grad_clip=0.5"]
FSDP = ["--parallel=fsdp"]
ONE_PROCESS = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]


def assert_losses_match(log, reference):
    for it, record in log.items():
        for key in ("train_loss", "val_loss"):
            assert record[key] == pytest.approx(reference[it][key], abs=1e-5), (it, key)


def kill_after_logging(command, out_dir, iteration):
    """Start command (torchrun) in its own process group; SIGKILL the whole group once log.jsonl holds
    `iteration`: torchrun and its workers die at once, mid-step or mid-save."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    with running(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        deadline = time.time() + 120
        while not ((out_dir / "log.jsonl").is_file() and iteration in log_of(out_dir)):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "timed out"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    while time.time() < deadline:  # the workers too: none may still be writing when the folder is read
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError("the workers outlived SIGKILL")


def test_fsdp_trains_like_one_process_and_resumes_after_sigkill_on_any_number_of_processes(word_data_dir, tmp_path,
                                                                                          cli):
    common = [*COMMON, f"--data_dir={word_data_dir}"]
    single, killed = tmp_path / "single", tmp_path / "killed"
    run(SINGLE, *common, "--max_iters=4", f"--out_dir={single}")
    shutil.copytree(single, tmp_path / "single_at_4")
    run(SINGLE, *common, "--max_iters=8", f"--out_dir={single}", "--init_from=resume")
    a = log_of(single)
    assert sorted(a) == [0, 2, 4, 6, 8] and a[8]["train_loss"] < a[0]["train_loss"]

    kill_after_logging([sys.executable, *TORCHRUN, str(REPO_ROOT / "train.py"), *common, *FSDP, "--max_iters=8",
                        f"--out_dir={killed}"], killed, 2)
    assert not (killed / "ckpt.pt").exists()  # only the end of a run writes it: what is there is sharded
    shutil.copytree(killed, tmp_path / "killed_copy")
    assert_losses_match(log_of(killed), a)  # two processes, before the kill: one process's losses
    with pytest.raises(UserError, match="--to=pt"):  # what sample.py, export.py and visualize.py say
        load_trained(killed)

    # C: the killed run resumed by two processes ends as the uninterrupted one
    result = run(TORCHRUN, *common, *FSDP, "--max_iters=8", f"--out_dir={killed}", "--init_from=resume")
    assert "device cpu x 2" in result.stderr and "wrote" in result.stderr
    c = log_of(killed)
    assert sorted(c) == [0, 2, 4, 6, 8]
    assert_losses_match(c, a)
    mine, theirs = load_checkpoint(killed / "ckpt.pt"), load_checkpoint(single / "ckpt.pt")
    assert mine["iter_num"] == theirs["iter_num"] == 8 and mine["best_val_loss"] == pytest.approx(a[8]["val_loss"])
    for name, tensor in theirs["model"].items():
        torch.testing.assert_close(mine["model"][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    assert load_checkpoint(killed / "best.pt")["iter_num"] == 8
    assert not list(killed.glob(".*.tmp")) and not list(killed.glob(".*.old"))  # the killed save cleaned up
    sampled = cli("sample.py", f"--out_dir={killed}", "--num_samples=1", "--max_new_tokens=20", "--device=cpu",
                  "--start=now is", "--seed=1")
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("now is") and len(sampled.stdout.strip()) >= 20

    # the killed run's shards made into ckpt.pt and best.pt by one plain process
    one = tmp_path / "killed_copy"
    export.main([f"--out_dir={one}", "--to=pt"])
    assert load_checkpoint(one / "ckpt.pt")["iter_num"] == read_state(one / "ckpt.dcp")["iter_num"] in (0, 2)
    assert load_trained(one).iter_num in (0, 2)

    # D: two processes' shards resumed by one process, recomputing activations in backward
    run(ONE_PROCESS, *common, *FSDP, "--max_iters=6", f"--out_dir={one}", "--init_from=resume",
        "--activation_checkpointing=True")
    assert_losses_match(log_of(one), a)
    assert load_checkpoint(one / "ckpt.pt")["model_args"]["activation_checkpointing"] is True
    # E: that one process's shards resumed by two
    run(TORCHRUN, *common, *FSDP, "--max_iters=8", f"--out_dir={one}", "--init_from=resume")
    e = log_of(one)
    assert sorted(e) == [0, 2, 4, 6, 8]
    assert_losses_match(e, a)

    # F: a whole ckpt.pt from one process, sharded by two as they load it; gradients synced at each micro-step
    whole = tmp_path / "single_at_4"
    run(TORCHRUN, *common, *FSDP, "--max_iters=8", f"--out_dir={whole}", "--init_from=resume",
        "--sync_every_micro_step=True")
    assert_losses_match(log_of(whole), a)
    assert sorted(log_of(whole)) == [0, 2, 4, 6, 8]


def test_activation_checkpointing_gives_the_same_loss_and_gradients(one_thread):
    """Recomputing each Block in backward, dropout included (its random state is replayed)."""
    config = GPTConfig(n_layer=3, n_head=2, n_embd=32, block_size=16, vocab_size=50, dropout=0.1)
    x, y = torch.randint(0, 50, (2, 4, 16), generator=torch.Generator().manual_seed(0))
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = GPT(replace(config, activation_checkpointing=checkpointing))
        _, loss = model(x, y)
        loss.backward()
        results.append((loss, {n: p.grad for n, p in model.named_parameters()}))
    (plain_loss, plain_grads), (loss, grads) = results
    assert loss == plain_loss
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, msg=name)


def test_a_crash_between_the_two_moves_of_a_sharded_save_leaves_the_old_checkpoint(tmp_path):
    """replace_folder moves the old folder aside, then the new one in: claiming out_dir after a crash puts
    the old one back if the new one never arrived, and removes what is left over otherwise."""
    out = tmp_path / "out"
    for name in (".ckpt.dcp.old/state.pt", ".best.dcp.old/state.pt", "best.dcp/state.pt", ".ckpt.dcp.tmp/__0_0.distcp"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(name)
    with claim_out_dir(out, protect_checkpoints=False):
        pass
    assert (out / "ckpt.dcp" / "state.pt").read_text() == ".ckpt.dcp.old/state.pt"  # put back
    assert (out / "best.dcp" / "state.pt").read_text() == "best.dcp/state.pt"  # the new one kept
    assert sorted(p.name for p in out.iterdir()) == ["best.dcp", "ckpt.dcp"]
    with pytest.raises(UserError, match="already holds a checkpoint"):  # a new run does not replace it
        claim_out_dir(out, protect_checkpoints=True)


# ----------------------------------------------------------------------------------------------
# the memory planner against what torch allocates

SIZES = [dict(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=65),
         dict(n_layer=6, n_head=6, n_embd=192, block_size=128, vocab_size=4096, tie_weights=False)]
# Llama's MLP and grouped-query attention: c_attn narrower, a third matrix in the MLP, no biases
PLANNED = [*SIZES, dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, block_size=64, vocab_size=65, mlp="swiglu",
                        mlp_hidden=160, bias=False, tie_weights=False)]
PLANNED_IDS = ["2x64", "6x192-untied", "2x64-gqa-swiglu"]


def tensor_bytes(tensors):
    """Bytes of tensors, each process's slices of the DTensors."""
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in local)


def optimizer_bytes(optimizer):
    return tensor_bytes([v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)])


def training_config(**changes):
    return replace(train.TrainConfig(dtype="float32", batch_size=2), **changes)


@pytest.mark.parametrize("size", PLANNED, ids=PLANNED_IDS)
def test_planner_counts_what_one_process_allocates(size, one_thread):
    config, cfg = GPTConfig(**size), training_config()
    model = GPT(config)
    optimizer = make_optimizer(model, cfg, "cpu")
    x, y = torch.randint(0, config.vocab_size, (2, 2, config.block_size), generator=torch.Generator().manual_seed(0))
    model(x, y)[1].backward()
    optimizer.step()
    plan = plan_memory(config, cfg)
    assert estimated_params(config) == model.num_params(non_embedding=False)
    assert plan.weights == tensor_bytes(model.parameters())
    assert plan.gradients == tensor_bytes([p.grad for p in model.parameters()])
    assert plan.optimizer == pytest.approx(optimizer_bytes(optimizer), rel=0.01)  # + AdamW's step counts


def forward_memory(model, x, y, ctx):
    """Net bytes the CPU allocator holds after a forward pass: what it keeps for backward, and the logits."""
    from torch.profiler import ProfilerActivity, profile

    with ctx, profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        logits, loss = model(x, y)
    return sum(e.cpu_memory_usage for e in prof.events() if e.cpu_parent is None), logits


# the gqa-swiglu model in float32: in bfloat16 autocast on a CPU its SwiGLU keeps about 5% more than counted
ACTIVATION_CASES = [(size, dtype, checkpointing) for size in SIZES
                    for dtype, checkpointing in [("float32", False), ("float32", True), ("bfloat16", False)]]
ACTIVATION_CASES += [(PLANNED[-1], "float32", False), (PLANNED[-1], "float32", True)]


@pytest.mark.parametrize("size, dtype, checkpointing", ACTIVATION_CASES,
                         ids=[f"{PLANNED_IDS[PLANNED.index(s)]}-{d}-{c}" for s, d, c in ACTIVATION_CASES])
def test_planner_counts_the_activations_a_forward_pass_keeps(size, dtype, checkpointing, one_thread):
    """The saved activations (Korthikanti et al.'s count), measured with the profiler's CPU allocations.
    On a GPU the kernels (and the peaks of backward) differ: this checks the count, not a GPU."""
    config = GPTConfig(**size, activation_checkpointing=checkpointing)
    cfg = training_config(dtype=dtype)
    model = GPT(config)
    x, y = torch.randint(0, config.vocab_size, (2, 4, config.block_size), generator=torch.Generator().manual_seed(0))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()
    measured, logits = forward_memory(model, x, y, ctx)
    plan = replace(cfg, batch_size=4)
    expected = plan_memory(config, plan).activations + tensor_bytes([logits])
    if dtype == "bfloat16":  # autocast keeps its bfloat16 copies of the matrices through the step
        expected += plan_memory(config, plan).weight_copies
    assert measured == pytest.approx(expected, rel=0.03)


FSDP_MEASURE = r"""
import json, sys, torch
from pathlib import Path
from gptkit.distributed import setup_distributed, shard_model
from gptkit.optim import make_optimizer
from model import GPT, GPTConfig
from test_fsdp import SIZES, optimizer_bytes, tensor_bytes, training_config
dist, device = setup_distributed("cpu")
figures = []
for size in SIZES:
    config, cfg = GPTConfig(**size), training_config(parallel="fsdp", gradient_accumulation_steps=2)
    model = GPT(config)
    shard_model(model, cfg, dist, device)
    optimizer = make_optimizer(model, cfg, device)
    x, y = torch.randint(0, config.vocab_size, (2, 2, config.block_size), generator=torch.Generator().manual_seed(0))
    model(x, y)[1].backward()
    optimizer.step()
    figures.append(dict(weights=tensor_bytes(model.parameters()), optimizer=optimizer_bytes(optimizer),
                        gradients=tensor_bytes([p.grad for p in model.parameters()])))
(Path(sys.argv[1]) / f"rank{dist.rank}.json").write_text(json.dumps(figures))
torch.distributed.destroy_process_group()
"""


def test_planner_counts_what_each_fsdp_process_allocates(tmp_path):
    script = tmp_path / "measure.py"
    script.write_text(FSDP_MEASURE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'tests'}"}
    env.pop("RANK", None)
    result = subprocess.run([sys.executable, *TORCHRUN, str(script), str(tmp_path)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for i, size in enumerate(SIZES):
        cfg = training_config(parallel="fsdp", gradient_accumulation_steps=2)
        plan = plan_memory(GPTConfig(**size), cfg, 2, "fsdp")
        for key in ("weights", "gradients", "optimizer"):
            for report in reports:  # each process holds about half (dim 0 split, the first slices longer)
                assert report[i][key] == pytest.approx(getattr(plan, key), rel=0.03), (size, key)
            assert sum(report[i][key] for report in reports) == pytest.approx(2 * getattr(plan, key), rel=0.01)


def test_bench_memory_prints_the_plan_for_ddp_and_fsdp(cli):
    result = cli("bench.py", "memory", "config/train_gpt2.py", "--gpus=8", "--gpu_memory=24GB")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ddp") or line.startswith("| fsdp")]
    assert len(rows) == 4  # DDP and FSDP, each with and without activation checkpointing
    assert "124.4M parameters (12x768" in result.stdout and "24 GiB" in result.stdout


# ----------------------------------------------------------------------------------------------
# refusals


def test_muon_under_fsdp_is_refused_in_one_line(capsys):
    line = main_error_line(capsys, train, ["--parallel=fsdp", "--optimizer=muon", "--device=cpu"])
    assert "optimizer=muon cannot run under parallel=fsdp" in line and "Newton-Schulz" in line


def test_fsdp_without_torchrun_says_how_to_launch_it(capsys, word_data_dir, tmp_path):
    line = main_error_line(capsys, train, [*COMMON, f"--data_dir={word_data_dir}", *FSDP,
                                           f"--out_dir={tmp_path / 'out'}"])
    assert "launch it with torchrun" in line
    assert not (tmp_path / "out").exists()


def test_a_signal_during_an_fsdp_evaluation_stops_both_processes_and_saves(word_data_dir, tmp_path):
    """SIGINT while two fsdp processes evaluate (too many batches to finish): torchrun hands it to each, and
    rank 0 decides each stop for both, so they stop at the same batch together and save iteration 2 marked not
    evaluated (a resumed run evaluates it first)."""
    out, stdout, stderr = tmp_path / "out", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    command = [sys.executable, *TORCHRUN, str(REPO_ROOT / "train.py"), *COMMON, f"--data_dir={word_data_dir}", *FSDP,
               "--max_iters=4", "--eval_first=False", "--eval_iters=1000000", f"--out_dir={out}"]
    with stdout.open("w") as out_file, stderr.open("w") as err_file:
        with running(command, cwd=REPO_ROOT, env=env, stdout=out_file, stderr=err_file) as proc:
            deadline = time.time() + 120
            while "evaluating train" not in stderr.read_text():  # the bar shows once the evaluation has run 1 s
                assert proc.poll() is None, stderr.read_text()[-3000:]
                assert time.time() < deadline, "timed out"
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: torchrun, which hands it to each worker
            proc.wait(timeout=120)
    assert "SIGINT: the evaluation at iter 2 stopped" in stdout.read_text(), stderr.read_text()[-3000:]
    ckpt = load_checkpoint(out / "ckpt.pt")  # made from the shards as the run ended
    assert ckpt["iter_num"] == 2 and ckpt["evaluated"] is False
