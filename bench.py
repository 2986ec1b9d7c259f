"""Benchmarks that print figures (never timed unit tests).

  python3 bench.py sample [--n_layer=6 --n_embd=384 ...]   sampling tokens/s, batch 1 and 8: nanoGPT's loop
                                                        (no cache), the KV cache, the cache with int8 weights,
                                                        and the static cache with a compiled step (gpt-fast)
  python3 bench.py sample OUT_DIR                          the same for a trained run, and its val loss in
                                                        float32 and int8 on the dataset it was trained on
  python3 bench.py int8 [--n_layer=6 ...]                  ms per token at batch 1, float32 vs each int8
                                                        implementation (PyTorch's dynamic int8, torchao's)
  python3 bench.py llama_cpp FILE.gguf [--new_tokens=255]  the same batch-1 sampling in llama.cpp itself, on a
                                                        file export.py wrote (needs llama-cpp-python)
  python3 bench.py train config/x.py [--key=value ...]      training tokens/s, MFU, peak memory
  python3 bench.py time_to_loss OUT_DIR [OUT_DIR ...] --target=1.4697
                                                        first time a run's val loss reached the target
  python3 bench.py tokenizer [--input=FILE] [--vocab_size=4096] [--size_mb=100]
                                                        BPE training (rustbpe, Hugging Face tokenizers): time
                                                        and peak memory; encoding MB/s beside tiktoken's GPT-2;
                                                        with --size_mb, prepare.py on that much text
  python3 bench.py gpu --nanogpt_dir=DIR [--quick=True]  ours beside nanoGPT on one GPU, every figure from one run:
                                                        GPT-2 124M training throughput (and each lever), time to
                                                        val 1.4697 on Tiny Shakespeare, sampling (gptkit/suite.py,
                                                        docs/performance.md); 8 minutes on an H100
  python3 bench.py cpu_bf16 [config/x.py ...]              the CPU recipes in float32 and bfloat16, time to the same
                                                        val loss side by side, and sampling tokens/s (6 minutes)
  python3 bench.py memory config/x.py [--gpus=8 --gpu_memory=80GB]
                                                        memory per GPU (weights, gradients, optimizer state,
                                                        activations) under DDP and FSDP, with and without
                                                        activation checkpointing, and the largest micro-batch
                                                        that fits: the planner of gptkit/memory.py, no GPU needed

Without OUT_DIR, sampling and training run on random weights and random tokens: speed does not
depend on them. Without a config file, sample and int8 time the 6x384 Shakespeare model of docs/sampling.md.
"""

import contextlib
import copy
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import torch
from tqdm import tqdm

from gptkit.checkpoint import checkpoint_path, load_checkpoint, load_trained
from gptkit.config import closest_key_hint, command_args, parse_args
from gptkit.data import TokenData, load_meta, model_vocab_size
from gptkit.decode import SlidingDecoder, StaticDecoder, why_not_static
from gptkit.errors import UserError, first_line, run_main
from gptkit.memory import USABLE
from gptkit.optim import make_optimizer
from gptkit.quantize import quantize
from gptkit.runlog import read_log
from gptkit.suite import CpuBf16Config, GpuSuiteConfig, cpu_bf16_suite, gpu_suite, random_dataset
from gptkit.system import estimate_mfu, maybe_compile, peak_flops, pick_device, pick_dtype, setup_torch
from model import GPT, GPTConfig, stream
from train import TrainConfig, mean_loss, train_step

# train: one change each against the configured run, timed in the same process after it (time_training)
LEVERS = ("eager", "foreach", "muon", "host_data")
SAMPLE_LOOPS = ("no_cache", "kv_cache", "int8", "static")


@dataclass
class BenchConfig:
    bench_iters: int = 50  # timed training iterations
    bench_warmup: int = 10  # untimed iterations first (compilation, allocator warm-up)
    new_tokens: int = 500  # tokens generated per sample in the sampling benchmark
    bench_compile: bool = True  # sample: also time the compiled static-cache step (each variant compiles: minutes)
    nanogpt_dir: str = ""  # sample: a karpathy/nanoGPT checkout, to time its own model.py's generate too
    peak_flops: float = 0.0  # the device's peak FLOP/s for MFU; 0: look it up by GPU name
    compile_mode: str = "default"  # train with --compile=True: torch.compile's mode (default, max-autotune, ...)
    # train: comma-separated, each timed after the configured run in the same process (one compilation
    # serves them all): eager, foreach, muon, host_data, batch_size=N
    levers: str = ""
    sample_loops: str = ",".join(SAMPLE_LOOPS)  # sample: the loops to time (static: only with bench_compile)
    json_out: str = ""  # train, sample: append each row's figures to this file as a JSON line (bench.py gpu)

    def validate(self):
        if self.new_tokens <= 0:
            raise UserError(f"new_tokens must be positive, got {self.new_tokens}")
        for lever in split_list(self.levers):
            name, _, value = lever.partition("=")
            if name == "batch_size" and not (value.isdigit() and int(value) > 0):
                raise UserError(f"levers: {lever} needs a positive whole number, e.g. batch_size=16")
            if name != "batch_size" and lever not in LEVERS:
                raise UserError(f"levers: unknown lever {lever!r}{closest_key_hint(lever, [*LEVERS, 'batch_size'])}; "
                                f"one of {', '.join(LEVERS)}, batch_size=N")
        for loop in split_list(self.sample_loops):
            if loop not in SAMPLE_LOOPS:
                raise UserError(f"sample_loops: unknown loop {loop!r}{closest_key_hint(loop, list(SAMPLE_LOOPS))}; "
                                f"one of {', '.join(SAMPLE_LOOPS)}")


def split_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def write_json_line(path, record):
    """One row of figures, appended, for bench.py gpu to read back (gptkit/suite.py)."""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


@dataclass
class MemoryConfig:
    gpus: int = 8  # GPUs the run is spread over (torchrun's processes)
    gpu_memory: str = "80GB"  # each GPU's memory, e.g. 24GB, 40GB, 80GB (GPU makers' GB: GiB, 2**30 bytes)

    def validate(self):
        if self.gpus <= 0:
            raise UserError(f"gpus must be positive, got {self.gpus}")
        gpu_memory_bytes(self.gpu_memory)


def gpu_memory_bytes(text):
    """'80GB', '80GiB', '80' (GB), '24576MB' -> bytes; a GPU's "80GB" is 80 GiB (2**30 bytes each)."""
    number = text.upper().removesuffix("B").removesuffix("I")
    unit = {"G": 2**30, "M": 2**20, "T": 2**40}.get(number[-1:], None)
    try:
        value = float(number[:-1] if unit else number) * (unit or 2**30)
    except ValueError:
        value = 0
    if not value > 0:
        raise UserError(f"gpu_memory={text!r} is not a size; write it as 24GB, 40GB or 80GB")
    return int(value)


@dataclass
class LlamaCppConfig:
    gguf: str = ""  # the GGUF file export.py wrote (the positional argument)
    new_tokens: int = 255  # tokens sampled after a one-token prompt, as bench.py sample does
    threads: int = 0  # llama.cpp's CPU threads; 0: as many as torch uses here

    def validate(self):
        if not self.gguf:
            raise UserError("name the file: python3 bench.py llama_cpp FILE.gguf (write one with export.py --to=gguf)")


@dataclass
class TokenizerConfig:
    input: str = ""  # the text to train and encode on; empty: the shipped Tiny Shakespeare
    vocab_size: int = 4096  # tokens of the BPE each library trains
    size_mb: int = 0  # also prepare.py --tokenizer=bpe on this many MB (the text repeated, each copy perturbed)
    threads: int = 2  # prepare.py's encoding threads for the size_mb run

    def validate(self):
        if self.vocab_size < 258 or self.size_mb < 0 or self.threads < 1:
            raise UserError("vocab_size must be at least 258, size_mb not negative, threads positive")


@dataclass
class TimeToLossConfig:
    runs: list[str] = field(default_factory=list)  # the out_dirs to read (positional arguments)
    target: float = 1.4697  # the val loss to reach

    def validate(self):
        if not self.runs:
            raise UserError("name the runs: python3 bench.py time_to_loss OUT_DIR [OUT_DIR ...] --target=1.4697")


def device_peak_flops(device, override):
    if override:
        return override
    return peak_flops(torch.cuda.get_device_name()) if device.startswith("cuda") else 0.0


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dataset_vocab_size(cfg):
    """The config's dataset vocabulary when it is prepared (a char-level config times a 65-token head)."""
    dataset_dir = Path(cfg.data_dir) / cfg.dataset
    return load_meta(dataset_dir)["vocab_size"] if (dataset_dir / "meta.json").is_file() else None


def bench_train(model_cfg, cfg, bench):
    """Training tokens/s, MFU and peak memory for the configured run, then for each lever (bench.levers) in
    the same process: the compiled model is reused, so each lever costs seconds, not a compilation."""
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    ctx = setup_torch(device, dtype, cfg.threads)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = dataset_vocab_size(cfg) or (50257 if model_cfg.vocab_size > 1024 else model_cfg.vocab_size)
        # enough windows that batches differ (the speed does not depend on which): 100 batches' worth
        n_tokens = min(2_000_000, 100 * cfg.batch_size * model_cfg.block_size + model_cfg.block_size + 1)
        folder = random_dataset(Path(tmp) / "random", vocab, n_tokens)
        model_cfg.vocab_size = model_vocab_size({"vocab_size": vocab})
        model = GPT(model_cfg).to(device)
        # static shapes: a batch_size lever compiles its own graph, as a run of that batch size would
        compiled = maybe_compile(model, cfg.compile, mode=bench.compile_mode, dynamic=False)
        rows = []
        for lever in ["", *split_list(bench.levers)]:
            figures = time_training(model, model if lever == "eager" else compiled, folder, cfg, bench, lever, ctx,
                                    dtype, device)
            write_json_line(bench.json_out, {"command": "train", **figures})
            rows.append((lever or "as configured", f"{figures['ms_per_iter']:.2f}", f"{figures['tokens_per_s']:,.0f}",
                         f"{100 * figures['mfu']:.1f}%" if figures["mfu"] else "n/a (set --peak_flops)",
                         f"{figures['peak_memory'] / 2**30:.2f} GiB" if figures["peak_memory"] else "n/a",
                         f"{figures['warmup_s']:.1f}"))
    compiled_as = f"compile {bench.compile_mode}" if cfg.compile else "eager"
    print(f"training {model.num_params() / 1e6:.1f}M parameters ({model_cfg.n_layer}x{model_cfg.n_embd}, block "
          f"{model_cfg.block_size}, vocab {model_cfg.vocab_size}), {cfg.batch_size} x {model_cfg.block_size} tokens x "
          f"{cfg.gradient_accumulation_steps}, {str(dtype).removeprefix('torch.')}, {cfg.optimizer}, {compiled_as}; "
          f"{machine(device)}")
    print_table(["lever", "ms/iter", "tokens/s", "MFU", "peak memory", "warm-up s"], rows)


def time_training(model, train_model, folder, cfg, bench, lever, ctx, dtype, device):
    """The figures of bench.bench_iters steps after bench.bench_warmup, with one lever changed ("": none)."""
    name, _, value = lever.partition("=")
    if name == "muon":
        cfg = replace(cfg, optimizer="muon")
    if name == "batch_size":
        cfg = replace(cfg, batch_size=int(value))
    data = TokenData(folder, model.config.block_size, device)
    if name == "host_data":  # held on the host as a split read by memmap is: each batch gathered there, copied over
        data.splits = {split: tokens.cpu() for split, tokens in data.splits.items()}
    optimizer = make_optimizer(model, cfg, device)
    if name == "foreach":  # torch's default on CUDA when not asked for fused: a kernel per op over all tensors
        for group in optimizer.param_groups:
            if "fused" in group:
                group["fused"] = False
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    generator = torch.Generator().manual_seed(0)

    def step():
        return train_step(train_model, optimizer, scaler, data, cfg, ctx, generator)

    t0 = time.perf_counter()
    for _ in range(bench.bench_warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(bench.bench_iters):
        loss = step()
    loss.item()
    sync(device)
    dt = (time.perf_counter() - t0) / bench.bench_iters
    tokens_per_iter = cfg.batch_size * model.config.block_size * cfg.gradient_accumulation_steps
    peak = device_peak_flops(device, bench.peak_flops)
    return {"lever": lever, "batch_size": cfg.batch_size, "tokens_per_iter": tokens_per_iter,
            "ms_per_iter": 1000 * dt, "tokens_per_s": tokens_per_iter / dt, "warmup_s": warmup_s,
            "mfu": estimate_mfu(model, tokens_per_iter / dt, peak) if peak else None, "peak_flops": peak,
            "peak_memory": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
            "device": machine(device), "parameters": model.num_params()}


def bench_sample(model_cfg, cfg, bench, run_dir=None):
    """Tokens/s at batch 1 and 8 for nanoGPT's loop, the KV cache, the cache with int8 weights, and gpt-fast's
    static cache with a compiled one-token step; with nanogpt_dir, nanoGPT's own generate too.

    "no cache" is nanoGPT's generate loop: crop the context to block_size, run all of it through the
    model for every token, top-k sample (model.stream with use_cache=False, on our model). Sampling as
    sample.py's defaults (and nanoGPT's sample.py): temperature 0.8, top_k 200. A compiled row's
    "compile s" is its first step, compilation included, which the tokens/s leave out.
    With run_dir, the trained model in it, and its val loss in float32 and int8.
    """
    device = pick_device(cfg.device)
    loops = split_list(bench.sample_loops)
    dtype = pick_dtype(cfg.dtype, device, int8="int8" in loops)
    ctx = setup_torch(device, dtype, cfg.threads)
    model = load_trained(run_dir, device=device).model if run_dir else GPT(model_cfg).to(device).eval()
    models, notes = {"fp32": model}, []
    variants = [variant for loop, variant in (("no_cache", ("no cache (nanoGPT)", "fp32")),
                                              ("kv_cache", ("kv cache", "fp32")), ("int8", ("kv cache", "int8")))
                if loop in loops]
    if "int8" in loops:
        try:
            models["int8"] = quantize(copy.deepcopy(model), "int8", device, dtype)
        except UserError as e:
            notes.append(f"int8: {e}")
    if bench.bench_compile and "static" in loops:
        why = why_not_timed_static(model, bench.new_tokens)
        if why is None:
            variants.append(("static cache, compiled", "fp32"))
        else:
            notes.append(f"static cache, compiled: not timed: {why}")
    nanogpt = nanogpt_model(bench.nanogpt_dir, model, device) if bench.nanogpt_dir else None
    rows = []
    for batch in (1, 8):
        base = None
        if nanogpt is not None:
            base = time_nanogpt_generate(nanogpt, batch, bench.new_tokens, ctx, device)
            rows.append((batch, "nanoGPT's own generate", "fp32", f"{batch * bench.new_tokens / base:,.0f}",
                         f"{1000 * base / bench.new_tokens:.2f}", "1.0x", ""))
            write_json_line(bench.json_out, sample_figures(batch, "nanoGPT's own generate", "fp32", base, None, bench))
        for loop, weights in variants:
            if weights not in models:
                continue
            dt, compiled = time_generation(models[weights], batch, bench.new_tokens, loop, ctx, device)
            write_json_line(bench.json_out, sample_figures(batch, loop, weights, dt, compiled, bench))
            base = base or dt
            rows.append((batch, loop, weights, f"{batch * bench.new_tokens / dt:,.0f}",
                         f"{1000 * dt / bench.new_tokens:.2f}", f"{base / dt:.1f}x",
                         f"{compiled:.1f}" if compiled is not None else ""))
    config = model.config
    print(f"sampling {bench.new_tokens} new tokens, {model.num_params() / 1e6:.1f}M parameters "
          f"({config.n_layer}x{config.n_embd}, block {config.block_size}, vocab {config.vocab_size}"
          f"{', ' + str(run_dir) if run_dir else ', random weights'}), {str(dtype).removeprefix('torch.')}, "
          f"{machine(device)}")
    print_table(["batch", "loop", "weights", "tokens/s", "ms/step", "vs nanoGPT", "compile s"], rows)
    for note in notes:
        print(note)
        write_json_line(bench.json_out, {"command": "sample", "note": note})
    if run_dir:
        print_val_losses(models, run_dataset(run_dir, config.block_size, device), cfg, ctx)


def sample_figures(batch, loop, weights, seconds, compile_seconds, bench):
    return {"command": "sample", "batch": batch, "loop": loop, "weights": weights, "new_tokens": bench.new_tokens,
            "tokens_per_s": batch * bench.new_tokens / seconds, "ms_per_step": 1000 * seconds / bench.new_tokens,
            "compile_s": compile_seconds}


def print_val_losses(models, data, cfg, ctx):
    losses = {weights: val_loss(model, data, cfg.batch_size, cfg.eval_iters, ctx) for weights, model in models.items()}
    fp32, tokens = losses["fp32"]
    print(f"val loss over {tokens:,} of the {data.num_tokens('val'):,} val tokens in {data.dir}")
    print_table(["weights", "val loss", "vs fp32"],
                [(weights, f"{loss:.4f}", f"{100 * (loss / fp32 - 1):+.3f}%") for weights, (loss, _) in losses.items()])


def why_not_timed_static(model, new_tokens):
    """Why the static cache's compiled row cannot be timed for new_tokens after a one-token prompt, and what to try;
    None if it can."""
    block_size = model.config.block_size
    why = why_not_static(model, 1, new_tokens)
    if why is not None and 1 + new_tokens > block_size:
        return f"{why}; try --new_tokens={block_size - 1}"
    if why is None and new_tokens < 3:
        return "it leaves out its first two steps (the prefill and the compiling one), so it needs new_tokens >= 3"
    return why


def time_generation(model, batch, new_tokens, loop, ctx, device):
    """(seconds to sample new_tokens after a one-token prompt, as sample.py does, compile seconds or None).
    loop: "no cache (nanoGPT)", "kv cache" or "static cache, compiled". Eager loops get a short warm-up;
    a compiled one is timed after its first (compiling) step."""
    idx = torch.zeros(batch, 1, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(0)

    if loop == "static cache, compiled":  # bench_sample checked that it fits and has steps left to time
        with ctx:
            decoder = StaticDecoder(model, idx)
            stream_steps = stream(model, idx, new_tokens, temperature=0.8, top_k=200, generator=generator,
                                  decoder=decoder)
            next(stream_steps), next(stream_steps)  # the prefill, then the first step, which compiles
            sync(device)
            t0 = time.perf_counter()
            for _ in stream_steps:
                pass
            sync(device)
            per_token = (time.perf_counter() - t0) / (new_tokens - 2)
            return per_token * new_tokens, decoder.compile_seconds  # as if all new_tokens were timed

    def generate(n):
        decoder = SlidingDecoder(model, idx, use_cache=loop != "no cache (nanoGPT)")
        for _ in stream(model, idx, n, temperature=0.8, top_k=200, generator=generator, decoder=decoder):
            pass

    return seconds_after_warmup(generate, new_tokens, ctx, device), None


def seconds_after_warmup(generate, new_tokens, ctx, device):
    """Seconds generate(new_tokens) takes, after generate(8) as a warm-up."""
    with ctx:
        generate(8)
        sync(device)
        t0 = time.perf_counter()
        generate(new_tokens)
        sync(device)
    return time.perf_counter() - t0


def nanogpt_model(folder, model, device):
    """nanoGPT's own GPT (its model.py, imported from a checkout that is not part of this repository) of the
    same shape, holding the same weights."""
    path = Path(folder) / "model.py"
    if not path.is_file():
        raise UserError(f"no nanoGPT model.py in {folder}; pass --nanogpt_dir=PATH/TO/nanoGPT (a git clone)")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = model.config
    with contextlib.redirect_stdout(sys.stderr):  # it prints its parameter count
        theirs = module.GPT(module.GPTConfig(block_size=c.block_size, vocab_size=c.vocab_size, n_layer=c.n_layer,
                                             n_head=c.n_head, n_embd=c.n_embd, dropout=0.0, bias=c.bias))
    theirs.load_state_dict(model.state_dict(), strict=False)  # the same names; nanoGPT may add a mask buffer
    return theirs.to(device).eval()


@torch.no_grad()
def time_nanogpt_generate(model, batch, new_tokens, ctx, device):
    """Seconds for nanoGPT's GPT.generate to sample new_tokens after a one-token prompt, after a short warm-up."""
    idx = torch.zeros(batch, 1, dtype=torch.long, device=device)
    return seconds_after_warmup(lambda n: model.generate(idx, n, temperature=0.8, top_k=200), new_tokens, ctx, device)


def run_dataset(run_dir, block_size, device):
    """The dataset a trained run was trained on, as its checkpoint's settings name it (nanoGPT's too)."""
    ckpt = load_checkpoint(checkpoint_path(run_dir), mmap=True)
    settings = ckpt.get("train_config") or ckpt.get("config") or {}
    return TokenData(Path(settings.get("data_dir", "data")) / settings.get("dataset", "shakespeare_char"),
                     block_size, device)


def val_loss(model, data, batch_size, max_batches, ctx):
    """(mean loss, tokens) over consecutive val windows from the start of the split: all of it, or max_batches
    batches of batch_size windows (--eval_iters, --batch_size)."""
    windows = len(data.sequential_starts("val"))
    n = min(max_batches, -(-windows // batch_size))
    batches = tqdm(islice(data.sequential_batches("val", batch_size), n), total=n, desc="val loss", file=sys.stderr,
                   leave=False)
    return mean_loss(model, batches, ctx)


def bench_int8(model_cfg, cfg, bench):
    """ms per token at batch 1 with the KV cache, float32 vs each int8 implementation; and the block's
    Linear layers alone (4 per layer), the part int8 speeds up. torchao's rows need `pip install torchao`."""
    device = pick_device(cfg.device)
    ctx = setup_torch(device, pick_dtype(cfg.dtype, device, int8=True), cfg.threads)
    model = GPT(model_cfg).to(device).eval()
    rows = []
    for name, make in INT8_IMPLEMENTATIONS.items():
        try:
            variant = make(copy.deepcopy(model), device)
        except (ImportError, UserError) as e:
            rows.append((name, "-", "-", "-", first_line(e)[:70]))
            continue
        # the best of 3: a busy machine only ever adds time
        linear = min(time_linears(variant, bench.new_tokens, ctx) for _ in range(3))
        dt = min(time_generation(variant, 1, bench.new_tokens, "kv cache", ctx, device)[0] for _ in range(3))
        rows.append((name, f"{1000 * linear:.2f}", f"{1000 * dt / bench.new_tokens:.2f}",
                     f"{bench.new_tokens / dt:,.0f}", ""))
    print(f"batch 1, kv cache, {bench.new_tokens} new tokens, {model_cfg.n_layer}x{model_cfg.n_embd} "
          f"(block {model_cfg.block_size}, vocab {model_cfg.vocab_size}), {machine(device)}")
    print_table(["weights", "Linear layers ms/token", "whole token ms", "tokens/s", "note"], rows)


def torchao_int8(config_name):
    def make(model, device):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao.quantization as ao
        ao.quantize_(model, getattr(ao, config_name)())
        return model
    return make


INT8_IMPLEMENTATIONS = {
    "fp32": lambda model, device: model,
    "int8: torch quantize_dynamic (ours)": lambda model, device: quantize(model, "int8", device, torch.float32),
    "int8: torchao Int8WeightOnlyConfig": torchao_int8("Int8WeightOnlyConfig"),
    "int8: torchao Int8DynamicActivationInt8WeightConfig": torchao_int8("Int8DynamicActivationInt8WeightConfig"),
}


@torch.no_grad()
def time_linears(model, iters, ctx):
    """Seconds per pass through the blocks' Linear layers (c_attn, c_proj, c_fc, mlp.c_proj) on one token."""
    layers = [m for block in model.transformer.h for m in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc,
                                                            block.mlp.c_proj)]
    inputs = [torch.randn(1, 1, layer.in_features, device=model.transformer.wte.weight.device) for layer in layers]
    with ctx:
        for _ in range(8):
            for layer, x in zip(layers, inputs):
                layer(x)
        t0 = time.perf_counter()
        for _ in range(iters):
            for layer, x in zip(layers, inputs):
                layer(x)
    return (time.perf_counter() - t0) / iters


def bench_llama_cpp(cfg):
    """Tokens/s of llama.cpp (through llama-cpp-python) sampling cfg.new_tokens at batch 1 after a one-token
    prompt, temperature 0.8 and top_k 200 as bench.py sample: the figure to set beside sample.py's."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError("bench.py llama_cpp needs llama-cpp-python: pip install llama-cpp-python "
                        "(it compiles llama.cpp: 10 minutes or more)") from None
    if not Path(cfg.gguf).is_file():
        raise UserError(f"{cfg.gguf} not found; write it with: python3 export.py --out_dir=DIR --to=gguf {cfg.gguf}")
    threads = cfg.threads or torch.get_num_threads()
    llm = llama_cpp.Llama(cfg.gguf, n_ctx=0, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
    if cfg.new_tokens + 1 > llm.n_ctx():
        raise UserError(f"new_tokens={cfg.new_tokens} does not fit the model's context ({llm.n_ctx()}): lower it")
    prompt = llm.tokenize(b"\n", add_bos=False, special=False)[:1] or [0]

    def generate(n):
        llm.reset()
        for i, _ in enumerate(llm.generate(prompt, temp=0.8, top_k=200, top_p=1.0, min_p=0.0, reset=True), 1):
            if i == n:
                break

    generate(8)  # warm-up
    dt = min(timed(generate, cfg.new_tokens) for _ in range(3))  # the best of 3: a busy machine only adds time
    print(f"llama.cpp {llama_cpp.__version__} on {cfg.gguf}, batch 1, {cfg.new_tokens} new tokens, {threads} threads")
    print_table(["tokens/s", "ms/token"], [(f"{cfg.new_tokens / dt:,.0f}", f"{1000 * dt / cfg.new_tokens:.2f}")])


def timed(function, *args):
    t0 = time.perf_counter()
    function(*args)
    return time.perf_counter() - t0


def machine(device):
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name()}), torch {torch.__version__}"
    return (f"cpu ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads), "
            f"torch {torch.__version__}")


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


def bench_memory(model_cfg, cfg, memory):
    """The planner's bytes per GPU for DDP and FSDP, with and without activation checkpointing."""
    from gptkit.memory import estimated_params, plan_memory

    model_cfg.vocab_size = model_vocab_size({"vocab_size": dataset_vocab_size(cfg) or model_cfg.vocab_size})
    gpu, n = gpu_memory_bytes(memory.gpu_memory), memory.gpus
    rows = []
    for parallel in ("ddp", "fsdp"):
        for checkpointing in (False, True):
            plan = plan_memory(model_cfg, cfg, n, parallel, checkpointing)
            rows.append((parallel, "yes" if checkpointing else "no", gib(plan.weights + plan.weight_copies),
                         gib(plan.gradients + plan.gradient_buffers), gib(plan.optimizer),
                         gib(plan.activations + plan.activation_peak), gib(plan.total),
                         "yes" if plan.fits(gpu) else "no", plan.largest_batch(gpu)))
    dtype = "bfloat16" if cfg.dtype == "auto" else cfg.dtype
    print(f"{estimated_params(model_cfg) / 1e6:.1f}M parameters ({model_cfg.n_layer}x{model_cfg.n_embd}, block "
          f"{model_cfg.block_size}, vocab {model_cfg.vocab_size}), {cfg.optimizer}, {dtype}, batch_size "
          f"{cfg.batch_size}, gradient_accumulation_steps {cfg.gradient_accumulation_steps}, on {n} "
          f"GPU{'s' if n > 1 else ''} of {gpu / 2**30:g} GiB; GiB per GPU:")
    print_table(["parallel", "activation checkpointing", "weights", "gradients", "optimizer", "activations",
                 "total", f"fits in {gpu / 2**30 * USABLE:g} GiB", "largest batch_size"], rows)
    print(f"A plan (gptkit/memory.py, docs/memory.md): weights, gradients and optimizer state are counted exactly; "
          f"activations are Korthikanti et al.'s count plus a model of the peaks; {100 * USABLE:.0f}% of each GPU "
          f"is planned on.")


def in_child(function, *args):
    """(function(*args), seconds, peak resident MiB above the child's start): run in a fresh process, so that
    memory Rust allocates (which Python's tracemalloc cannot see) is measured and nothing is shared."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, function, *args).result()


def _measured(function, *args):
    import resource

    def rss_mib(key):
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024

    start = rss_mib("VmRSS:")
    t0 = time.perf_counter()
    result = function(*args)
    seconds = time.perf_counter() - t0
    peak = max(rss_mib("VmHWM:"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result, seconds, peak - start


def train_rustbpe(text, vocab_size):
    from gptkit.tokenizer import train_bpe

    return train_bpe([text], vocab_size).vocab_size


def train_hf_tokenizers(text, vocab_size):
    """Hugging Face tokenizers' BPE trainer with the same pre-tokenization (GPT-2's byte-level split)."""
    import tokenizers

    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([text], trainer)
    return hf.get_vocab_size()


def perturbed_copies(text, size_mb, path):
    """Write about size_mb MB to path: the text again and again, copy k with its lines rotated by k * 7919 and
    every 5th word (from word k % 5) capitalised, so that later copies are not the same text."""
    lines, written = text.splitlines(keepends=True), 0
    with open(path, "w", encoding="utf-8") as f:
        for k in itertools.count():
            shift = k * 7919 % len(lines)
            words = "".join(lines[shift:] + lines[:shift]).split(" ")
            copy_ = " ".join(w.capitalize() if i % 5 == k % 5 else w for i, w in enumerate(words))
            f.write(copy_)
            written += len(copy_.encode())
            if written >= size_mb * 1e6:
                return written


def prepare_big(path, vocab_size, threads):
    """prepare.py end to end, as a user runs it: the tokens it wrote, and its peak resident MiB."""
    import resource

    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, str(Path(__file__).parent / "prepare.py"), "text", f"--input={path}",
                        "--name=big", "--tokenizer=bpe", f"--vocab_size={vocab_size}", f"--num_proc={threads}",
                        f"--data_dir={out}"], check=True)
        meta = json.loads((Path(out) / "big" / "meta.json").read_text())
    return meta["train_tokens"] + meta["val_tokens"], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def bench_tokenizer(cfg):
    """BPE training time and peak memory, rustbpe beside Hugging Face tokenizers; encoding speed beside
    tiktoken's GPT-2 on the same text; with size_mb, prepare.py --tokenizer=bpe end to end on that much."""
    from gptkit.tokenizer import GPT2Tokenizer, train_bpe

    if cfg.input:
        text = Path(cfg.input).read_text(encoding="utf-8")
    else:
        import lzma

        text = lzma.decompress((Path(__file__).parent / "corpus" / "tinyshakespeare.txt.xz").read_bytes()).decode()
    mb = len(text.encode()) / 1e6
    print(f"{cfg.input or 'Tiny Shakespeare'}: {mb:.2f} MB; {machine('cpu')}")
    rows = []
    for name, trainer in (("rustbpe (prepare.py's)", train_rustbpe), ("Hugging Face tokenizers", train_hf_tokenizers)):
        vocab, seconds, peak = in_child(trainer, text, cfg.vocab_size)
        rows.append((name, vocab, f"{seconds:.2f}", f"{peak:,.0f}"))
    print_table(["BPE trainer", "vocab", "seconds", "peak MiB above start"], rows)

    ours, gpt2 = train_bpe([text], cfg.vocab_size), GPT2Tokenizer()
    rows = []
    for name, tokenizer in (("tiktoken GPT-2 (50,257)", gpt2), (f"ours, trained ({cfg.vocab_size:,})", ours)):
        tokenizer.encode(text[:10000])  # warm-up
        seconds = min(timed(tokenizer.encode, text) for _ in range(3))
        rows.append((name, f"{len(tokenizer.encode(text)):,}", f"{mb / seconds:.1f}", seconds))
    base = rows[0][3]
    print_table(["encoder, one thread", "tokens", "MB/s", "time vs GPT-2"],
                [(*row[:3], f"{row[3] / base:.2f}x") for row in rows])
    if cfg.size_mb:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "big.txt"
            n_bytes = perturbed_copies(text, cfg.size_mb, path)
            (tokens, peak), seconds, _ = in_child(prepare_big, path, cfg.vocab_size, cfg.threads)
        print(f"prepare.py --tokenizer=bpe --vocab_size={cfg.vocab_size} on {n_bytes / 1e6:.0f} MB (the text "
              f"repeated, perturbed): {seconds:.1f} s for training and encoding ({n_bytes / 1e6 / seconds:.1f} MB/s, "
              f"{cfg.threads} encoding threads), {tokens:,} tokens, prepare.py's peak resident memory {peak:,.0f} MiB")


def gib(n):
    return f"{n / 2**30:.2f}"


def print_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


SPEED = [GPTConfig, TrainConfig, BenchConfig]
COMMANDS = {"sample": SPEED, "int8": SPEED, "llama_cpp": [LlamaCppConfig], "train": SPEED,
            "time_to_loss": [TimeToLossConfig], "memory": [GPTConfig, TrainConfig, MemoryConfig],
            "tokenizer": [TokenizerConfig], "gpu": [GpuSuiteConfig], "cpu_bf16": [CpuBf16Config]}


def parse(argv):
    """(command, its validated settings, the run folder `sample` reads or None), without running anything."""
    command, rest = command_args(argv, COMMANDS)
    if command == "memory":
        return command, parse_args(COMMANDS["memory"], rest, config_file=True), None
    if command == "time_to_loss":
        return command, parse_args([TimeToLossConfig], rest, positional="runs"), None
    if command == "llama_cpp":
        return command, parse_args([LlamaCppConfig], rest, positional="gguf"), None
    if command == "tokenizer":
        return command, parse_args([TokenizerConfig], rest), None
    if command == "gpu":
        return command, parse_args([GpuSuiteConfig], rest), None
    if command == "cpu_bf16":
        return command, parse_args([CpuBf16Config], rest, positional="recipes"), None
    positional = [a for a in rest if not a.startswith("-")]
    run_dir = positional[0] if command == "sample" and positional and not positional[0].endswith(".py") else None
    if run_dir:
        rest = [a for a in rest if a != run_dir]
    elif command in ("sample", "int8") and not positional:
        # without a config file: the 6x384 Shakespeare model of docs/sampling.md
        defaults = ["--n_layer=6", "--n_head=6", "--n_embd=384", "--block_size=256", "--vocab_size=65", "--device=cpu"]
        rest = defaults + rest
    return command, parse_args(SPEED, rest, config_file=True), run_dir


@run_main
def main(argv):
    command, configs, run_dir = parse(argv)
    if command == "time_to_loss":
        return time_to_loss(configs[0].runs, configs[0].target)
    if command == "llama_cpp":
        return bench_llama_cpp(configs[0])
    if command == "tokenizer":
        return bench_tokenizer(configs[0])
    if command == "memory":
        return bench_memory(*configs)
    if command == "gpu":
        return gpu_suite(configs[0])
    if command == "cpu_bf16":
        return cpu_bf16_suite(configs[0])
    model_cfg, cfg, bench = configs
    if command == "sample":
        return bench_sample(model_cfg, cfg, bench, run_dir)
    (bench_int8 if command == "int8" else bench_train)(model_cfg, cfg, bench)


if __name__ == "__main__":
    main(sys.argv[1:])
