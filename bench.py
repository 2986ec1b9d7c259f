"""Benchmarks that print figures (never timed unit tests).

  python bench.py sample [--n_layer=6 --n_embd=384 ...]   sampling tokens/s, batch 1 and 8, cache vs none
  python bench.py train config/x.py [--key=value ...]      training tokens/s, MFU, peak memory
  python bench.py time_to_loss OUT_DIR [OUT_DIR ...] --target=1.4697
                                                        first time a run's val loss reached the target

Sampling and training run on random weights and random tokens: speed does not depend on them.
"""

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data import TokenData, load_meta, model_vocab_size
from model import GPT, GPTConfig
from optim import make_optimizer, train_step
from runlog import read_log
from settings import TrainConfig, UserError, command_args, parse_args, run_main
from system import maybe_compile, pick_device, pick_dtype, setup_torch

# dense bf16 peak FLOP/s by device name, for MFU (nanoGPT measured against the A100 always: #182)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


@dataclass
class BenchConfig:
    bench_iters: int = 50  # timed training iterations
    bench_warmup: int = 10  # untimed iterations first (compilation, allocator warm-up)
    new_tokens: int = 500  # tokens generated per sample in the sampling benchmark
    peak_flops: float = 0.0  # the device's peak FLOP/s for MFU; 0: look it up by GPU name


@dataclass
class TimeToLossConfig:
    runs: list[str] = field(default_factory=list)  # the out_dirs to read (positional arguments)
    target: float = 1.4697  # the val loss to reach

    def validate(self):
        if not self.runs:
            raise UserError("name the runs: python bench.py time_to_loss OUT_DIR [OUT_DIR ...] --target=1.4697")


def device_peak_flops(device, override):
    if override:
        return override
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        return next((flops for key, flops in PEAK_FLOPS.items() if key in name), 0.0)
    return 0.0


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def random_dataset(folder, vocab_size, n_tokens):
    """A dataset of random tokens in prepare.py's format, so the real data path is what is timed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        rng.integers(0, vocab_size, n_tokens, dtype=np.uint16).tofile(folder / f"{split}.bin")
    (folder / "meta.json").write_text(json.dumps({"tokenizer": "random", "vocab_size": vocab_size}))
    return folder


def dataset_vocab_size(cfg):
    """The config's dataset vocabulary when it is prepared (a char-level config times a 65-token head)."""
    dataset_dir = Path(cfg.data_dir) / cfg.dataset
    return load_meta(dataset_dir)["vocab_size"] if (dataset_dir / "meta.json").is_file() else None


def bench_train(model_cfg, cfg, bench):
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    ctx = setup_torch(device, dtype, cfg.threads)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = dataset_vocab_size(cfg) or (50257 if model_cfg.vocab_size > 1024 else model_cfg.vocab_size)
        data = TokenData(random_dataset(Path(tmp) / "random", vocab, 2_000_000), model_cfg.block_size, device)
        model_cfg.vocab_size = model_vocab_size({"vocab_size": vocab})
        model = GPT(model_cfg).to(device)
        optimizer = make_optimizer(model, cfg, device)
        train_model = maybe_compile(model, cfg.compile)
        scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
        generator = torch.Generator().manual_seed(0)

        def step():
            return train_step(train_model, optimizer, scaler, data, cfg, ctx, generator)

        for _ in range(bench.bench_warmup):
            step()
        sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(bench.bench_iters):
            loss = step()
        loss.item()
        sync(device)
        dt = (time.perf_counter() - t0) / bench.bench_iters
    tokens_per_iter = cfg.batch_size * model_cfg.block_size * cfg.gradient_accumulation_steps
    tokens_per_s = tokens_per_iter / dt
    peak = device_peak_flops(device, bench.peak_flops)
    mfu = f"{100 * model.estimate_mfu(tokens_per_s, peak):.1f}%" if peak else "n/a (set --peak_flops)"
    memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.startswith("cuda") else "n/a"
    rows = [("device", f"{device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'})"),
            ("torch", torch.__version__), ("parameters", f"{model.num_params() / 1e6:.1f}M"),
            ("tokens/iter", f"{tokens_per_iter:,}"), ("ms/iter", f"{1000 * dt:.2f}"),
            ("tokens/s", f"{tokens_per_s:,.0f}"), ("MFU", mfu), ("peak memory", memory)]
    print_table(["training", "value"], rows)


def bench_sample(model_cfg, cfg, bench):
    device = pick_device(cfg.device)
    ctx = setup_torch(device, pick_dtype(cfg.dtype, device), cfg.threads)
    model = GPT(model_cfg).to(device).eval()
    rows = []
    for batch in (1, 8):
        for use_cache in (False, True):
            idx = torch.zeros(batch, 1, dtype=torch.long, device=device)
            generator = torch.Generator(device=device).manual_seed(0)
            with ctx:
                model.generate(idx, 8, use_cache=use_cache, generator=generator)  # warm-up
                sync(device)
                t0 = time.perf_counter()
                model.generate(idx, bench.new_tokens, use_cache=use_cache, generator=generator)
                sync(device)
            dt = time.perf_counter() - t0
            rows.append((batch, "yes" if use_cache else "no", f"{batch * bench.new_tokens / dt:,.0f}", f"{dt:.2f}"))
    print(f"sampling {bench.new_tokens} new tokens, {model.num_params() / 1e6:.1f}M parameters "
          f"({model_cfg.n_layer}x{model_cfg.n_embd}, block {model_cfg.block_size}), {device}, torch {torch.__version__}")
    print_table(["batch", "kv cache", "tokens/s", "seconds"], rows)


def time_to_loss(out_dirs, target):
    rows = []
    for out_dir in out_dirs:
        records = read_log(out_dir)
        if not records:
            raise UserError(f"no evaluations logged in {Path(out_dir) / 'log.jsonl'}; train with --out_dir={out_dir} first")
        hit = next((r for r in records if r["val_loss"] <= target), None)
        best = min(records, key=lambda r: r["val_loss"])
        rows.append((out_dir, f"{hit['elapsed_s']:.1f}" if hit else "not reached", hit["iter"] if hit else "-",
                     f"{best['val_loss']:.4f} @ {best['iter']}"))
    print_table(["run", f"seconds to val <= {target}", "iter", "best val"], rows)


def print_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


@run_main
def main(argv):
    speed = [GPTConfig, TrainConfig, BenchConfig]
    command, rest = command_args(argv, {"sample": speed, "train": speed, "time_to_loss": [TimeToLossConfig]})
    if command == "time_to_loss":
        (cfg,) = parse_args([TimeToLossConfig], rest, positional="runs")
        return time_to_loss(cfg.runs, cfg.target)
    if command == "sample" and not any(not a.startswith("-") for a in rest):
        # without a config file: the 6x384 Shakespeare model of the README
        defaults = ["--n_layer=6", "--n_head=6", "--n_embd=384", "--block_size=256", "--vocab_size=65", "--device=cpu"]
        rest = defaults + rest
    model_cfg, cfg, bench = parse_args(speed, rest, config_file=True)
    (bench_sample if command == "sample" else bench_train)(model_cfg, cfg, bench)


if __name__ == "__main__":
    main(sys.argv[1:])
