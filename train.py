"""Train a GPT: python train.py config/shakespeare_char.py --batch_size=32 --device=cpu

The algorithm: build the model and optimizer (or resume them), then loop: every eval_interval
iterations evaluate on train and val, log, checkpoint; take one optimizer step on
gradient_accumulation_steps micro-batches. Settings are the fields of GPTConfig (model.py) and
TrainConfig (below), read from a plain `key = value` config file and `--key=value` overrides.
"""

import time

# Before every other import: log.jsonl's elapsed_s counts from process start, so the 2-3 s that
# importing torch takes on a small CPU are in it, as they are in a user's wall-clock time.
START_TIME = time.time()

import json
import math
import os
import shutil
import signal
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from checkpoint import (is_nanogpt_checkpoint, load_checkpoint, model_from_checkpoint, optimizer_state_from_nanogpt,
                        remove_partial_writes, save_checkpoint)
from config import UserError, closest_key_hint, parse_args, run_main
from data import TokenData
from model import GPT, GPTConfig, print_shape_trace
from muon import Muon
from system import autocast, maybe_compile, pick_device, pick_dtype

# nanoGPT config keys we accept so its config files run unchanged, but do not use
NANOGPT_UNUSED = ("wandb_log", "wandb_project", "wandb_run_name")
# init_from: a fresh model, out_dir/ckpt.pt, OpenAI's GPT-2 weights (gpt2_weights.py), or a GPT-2 directory
INIT_FROM = ("scratch", "resume", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


@dataclass
class TrainConfig:
    out_dir: str = "out"
    dataset: str = "shakespeare_char"  # a folder under data_dir written by prepare.py
    data_dir: str = "data"
    init_from: str = "scratch"  # scratch, resume, gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a GPT-2 directory
    overwrite: bool = False  # allow a scratch run to replace the checkpoints already in out_dir
    # batch: tokens per optimizer step = batch_size * block_size * gradient_accumulation_steps
    batch_size: int = 12
    gradient_accumulation_steps: int = 1
    # AdamW with linear warmup then cosine decay to min_lr at lr_decay_iters
    max_iters: int = 5000
    learning_rate: float = 6e-4
    min_lr: float = 6e-5
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0: decay over max_iters
    decay_lr: bool = True
    optimizer: Literal["adamw", "muon"] = "adamw"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the global gradient norm; 0 disables
    # evaluation and checkpoints
    eval_interval: int = 250
    eval_iters: int = 200  # random batches per split for the loss estimate
    eval_full_val: bool = False  # val loss over the whole val split instead of eval_iters batches
    eval_first: bool = True  # also evaluate before the first step (the untrained loss, about ln(vocab_size))
    eval_only: bool = False
    log_interval: int = 10  # iterations between progress-bar updates of the loss
    always_save_checkpoint: bool = True  # ckpt.pt at every evaluation; best.pt only when val improves
    stop_at_val_loss: float = 0.0  # stop as soon as val loss reaches this (0: never)
    # system
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    compile: bool = False
    backend: str = ""  # torch.distributed backend under torchrun; empty: nccl on CUDA, gloo on CPU
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default
    seed: int = 1337
    trace_shapes: bool = False  # print each named tensor's shape for one forward pass, then exit

    def validate(self):
        if self.init_from not in INIT_FROM and not Path(self.init_from).is_dir():
            raise UserError(f"init_from={self.init_from!r} is not one of {', '.join(INIT_FROM)} nor a directory "
                            f"holding a GPT-2 checkpoint{closest_key_hint(self.init_from, list(INIT_FROM))}")
        for key in ("batch_size", "gradient_accumulation_steps", "eval_interval", "log_interval"):
            if getattr(self, key) <= 0:
                raise UserError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("max_iters", "warmup_iters", "lr_decay_iters", "threads"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must not be negative, got {getattr(self, key)}")
        if self.eval_iters <= 0:  # no batches would make every evaluated loss NaN
            raise UserError(f"eval_iters must be positive, got {self.eval_iters}")
        if not (0 < self.learning_rate < math.inf and 0 <= self.min_lr < math.inf):
            raise UserError("learning_rate must be positive and min_lr not negative (both finite)")
        for key in ("weight_decay", "grad_clip"):
            if not 0 <= getattr(self, key) < math.inf:
                raise UserError(f"{key} must be a finite number >= 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise UserError(f"{key} must be in [0, 1), got {getattr(self, key)}")


def lr_at(it, cfg):
    """Linear warmup from lr/(warmup+1) (never 0: nanoGPT PR #578), then cosine decay to min_lr."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it >= decay_iters:
        return cfg.min_lr
    progress = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


# ----------------------------------------------------------------------------------------------
# building, evaluating, checkpointing


def model_vocab_size(meta):
    """The dataset's vocabulary, padded to a multiple of 64 when large (50257 -> 50304) for fast matmuls."""
    n = meta["vocab_size"]
    return n if n < 1024 else (n + 63) // 64 * 64


class Optimizers:
    """Several optimizers stepped as one: Muon for the hidden matrices, AdamW for the rest."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none=True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state):
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)


def make_optimizer(model, cfg, device):
    """AdamW (fused on CUDA: one kernel for all parameters); or Muon for the 2-D weights inside blocks.

    Muon (Jordan et al. 2024) orthogonalises each matrix's momentum with a Newton-Schulz
    iteration; the speedrun found it trains in fewer steps. Its lr is scaled to match AdamW's
    update size (Liu et al. 2025), so one learning_rate and schedule serve both.
    """
    fused = device.startswith("cuda")
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.optimizer_groups(cfg.weight_decay), lr=cfg.learning_rate, betas=betas, fused=fused)
    hidden = {id(p) for p in model.hidden_matrices()}
    groups = [{**g, "params": [p for p in g["params"] if id(p) not in hidden]}
              for g in model.optimizer_groups(cfg.weight_decay)]
    return Optimizers(
        Muon(model.hidden_matrices(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay),
        torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas, fused=fused),
    )


def build(model_cfg, cfg, data, device):
    """The model, optimizer and loop state: fresh, or restored from out_dir/ckpt.pt."""
    state = {"iter_num": 0, "best_val_loss": float("inf")}
    if cfg.init_from == "resume":
        ckpt = load_checkpoint(Path(cfg.out_dir) / "ckpt.pt")
        model = model_from_checkpoint(ckpt)
        if model.config.vocab_size not in (data.meta["vocab_size"], model_vocab_size(data.meta)):  # GPT-2's is unpadded
            raise UserError(f"checkpoint vocabulary ({model.config.vocab_size}) does not match dataset "
                            f"'{cfg.dataset}' ({data.meta['vocab_size']}); resume with the dataset it was trained on")
        if model.config.block_size != data.block_size:
            raise UserError(f"checkpoint block_size is {model.config.block_size}; resume with --block_size={model.config.block_size}")
        model.to(device)
        optimizer = make_optimizer(model, cfg, device)
        if is_nanogpt_checkpoint(ckpt):  # nanoGPT numbers its AdamW's parameters in another order
            if getattr(cfg, "optimizer", "adamw") != "adamw":
                raise UserError("a nanoGPT checkpoint holds AdamW's state; resume it with --optimizer=adamw")
            ckpt["optimizer"] = optimizer_state_from_nanogpt(ckpt["optimizer"], model)
        optimizer.load_state_dict(ckpt["optimizer"])
        # nanoGPT stores best_val_loss as a tensor and no RNG state (the data order then starts afresh)
        state = {"iter_num": ckpt["iter_num"], "best_val_loss": float(ckpt["best_val_loss"])}
        if "rng" in ckpt:
            state["rng"] = ckpt["rng"]
    elif cfg.init_from != "scratch":  # pretrained: OpenAI's GPT-2, or a local GPT-2 directory
        from gpt2_weights import PRETRAINED, load_hf_gpt2

        if cfg.init_from in PRETRAINED and data.meta.get("tokenizer") != "gpt2":
            raise UserError(f"init_from={cfg.init_from} needs a GPT-2 BPE dataset, but '{cfg.dataset}' is "
                            f"{data.meta.get('tokenizer')}-level; prepare one with: python prepare.py shakespeare")
        model = load_hf_gpt2(cfg.init_from, dropout=model_cfg.dropout)
        if model.config.vocab_size not in (data.meta["vocab_size"], model_vocab_size(data.meta)):
            raise UserError(f"the pretrained vocabulary ({model.config.vocab_size}) does not match dataset "
                            f"'{cfg.dataset}' ({data.meta['vocab_size']})")
        if data.block_size > model.config.block_size:
            raise UserError(f"block_size={data.block_size} is longer than the pretrained model's "
                            f"{model.config.block_size}; use --block_size={model.config.block_size} or less")
        model.crop_block_size(data.block_size)  # e.g. fine-tune GPT-2's 1024 positions on 256
        model.to(device)
        optimizer = make_optimizer(model, cfg, device)
    else:
        model_cfg.vocab_size = model_vocab_size(data.meta)
        model = GPT(model_cfg).to(device)
        optimizer = make_optimizer(model, cfg, device)
    return model, optimizer, state


@torch.no_grad()
def evaluate(model, data, cfg, ctx):
    """Mean loss on each split. The same batches every time (fixed seed), so evaluations compare."""
    model.eval()
    losses = {}
    for split in ("train", "val"):
        if split == "val" and cfg.eval_full_val:
            batches = data.sequential_batches(split, cfg.batch_size)
        else:
            generator = torch.Generator().manual_seed(cfg.seed)
            batches = (data.get_batch(split, cfg.batch_size, generator) for _ in range(cfg.eval_iters))
        total, count = 0.0, 0
        for x, y in batches:
            with ctx:
                _, loss = model(x, y)
            total, count = total + loss.float() * y.numel(), count + y.numel()
        losses[split] = (total / max(count, 1)).item() if count else float("nan")
    model.train()
    return losses


def rng_state(generator, device):
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state, generator, device):
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"])


def check_out_dir(cfg):
    """Fail before training, not after: an unwritable out_dir, or checkpoints a scratch run would replace."""
    out = Path(cfg.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create out_dir {out} ({e.strerror}); choose another --out_dir") from None
    try:  # really write, not os.access: root passes permission checks but not a read-only disk
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"out_dir {out} is not writable ({e.strerror}); choose another --out_dir") from None
    if cfg.init_from != "resume" and not cfg.overwrite and not cfg.eval_only and (out / "ckpt.pt").exists():
        raise UserError(f"{out} already holds a checkpoint; continue it with --init_from=resume, "
                        f"start over with --overwrite=True, or pick another --out_dir")
    remove_partial_writes(out)


def check_free_space(out_dir, model):
    """Fail before training when out_dir's disk cannot hold the checkpoints it will write.

    A checkpoint holds the weights and AdamW's two moments (about 3x the parameters). Each write
    needs room for the new file beside the old one until the rename; best.pt and ckpt.pt both.
    """
    size = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    missing = sum(not (Path(out_dir) / name).exists() for name in ("best.pt", "ckpt.pt"))
    need, free = size * max(1, missing), shutil.disk_usage(out_dir).free
    if free < need:
        raise UserError(f"out_dir {out_dir} has {free / 2**20:,.1f} MiB free but checkpoints need about "
                        f"{need / 2**20:,.1f} MiB; free some disk space or choose another --out_dir")


class LogFile:
    """out_dir/log.jsonl: one JSON line per evaluation. On resume, lines past the checkpoint are dropped."""

    def __init__(self, path, resume_iter=None):
        """resume_iter: the checkpoint's iteration when resuming; None starts a fresh log."""
        self.path = Path(path)
        lines = self.path.read_text().splitlines() if resume_iter is not None and self.path.exists() else []
        kept = [line for line in lines if (n := self._iter(line)) is not None and n <= resume_iter]
        tmp = self.path.with_name(self.path.name + ".tmp")  # a kill mid-rewrite keeps the old log
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    @staticmethod
    def _iter(line):
        """The line's iteration; None for a line cut short by a crash mid-write."""
        try:
            return json.loads(line)["iter"]
        except (ValueError, KeyError, TypeError):
            return None

    def write(self, **record):
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------------------------
# distributed data parallel (torchrun)


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self):
        return self.rank == 0


def setup_distributed(cfg, device):
    """Under torchrun (it sets RANK), join the process group: NCCL on CUDA, gloo on CPU."""
    if "RANK" not in os.environ:
        return Dist(), device
    dist = Dist(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=cfg.backend or ("nccl" if device.startswith("cuda") else "gloo"))
    if cfg.gradient_accumulation_steps % dist.world_size:
        raise UserError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be a multiple of "
                        f"the number of processes ({dist.world_size}): each takes an equal share of the micro-batches")
    return dist, device


def broadcast_flag(flag, dist, device):
    """Rank 0 decides (e.g. to stop); every rank follows, so none waits forever for the others."""
    if dist.world_size == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


# ----------------------------------------------------------------------------------------------
# stopping: Ctrl-C and SIGTERM, and a loss that is no longer a number


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step and save ckpt.pt.

    The handler only records the signal (the loop acts on it between steps) and gives the signals
    back to their previous handlers, so a second Ctrl-C stops at once, without saving: even during
    a checkpoint write, which is atomic, so the previous checkpoint stays whole.
    """

    def __init__(self):
        self.signum, self.previous = None, {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum
        self.restore()
        # os.write, not print: a handler may run in the middle of another write to stderr
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
                    f"(Ctrl-C again: quit now without saving)\n".encode())

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def check_finite(loss, it, out_dir, bar):
    """Stop before a NaN or infinite loss reaches a checkpoint: the last good one stays in out_dir."""
    if not math.isfinite(loss):
        bar.close()  # so the error is a line of its own, after the progress bar's
        raise UserError(f"loss is {loss} at iter {it}; stopped without saving, the last good checkpoint in "
                        f"{out_dir} is kept. Lower learning_rate, or use dtype=bfloat16 instead of float16")


# ----------------------------------------------------------------------------------------------
# the loop


def train_step(model, optimizer, scaler, data, cfg, ctx, generator, dist):
    """One optimizer step on gradient_accumulation_steps micro-batches, shared across processes.

    Every process draws the same global batch from the same generator and takes its own share,
    so N processes compute exactly what one process would (and the data order resumes exactly).
    """
    starts = data.random_starts("train", (cfg.gradient_accumulation_steps, cfg.batch_size), generator)
    mine = starts[dist.rank::dist.world_size]
    for micro, micro_starts in enumerate(mine):
        x, y = data.get_batch("train", cfg.batch_size, None, starts=micro_starts)
        # DDP averages gradients over processes at each backward; only the last micro-step needs it
        # (nanoGPT syncs every micro-step). no_sync must wrap the forward too (build-nanogpt PR #30).
        last = micro == len(mine) - 1
        with model.no_sync() if dist.world_size > 1 and not last else nullcontext(), ctx:
            _, loss = model(x, y)
            # average over micro-steps so k micro-batches equal one k-times larger batch (nanoGPT #168)
            scaler.scale(loss / len(mine)).backward()
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss


@run_main
def main(argv):
    model_cfg, cfg = parse_args([GPTConfig, TrainConfig], argv, ignored=NANOGPT_UNUSED)
    dist, device = setup_distributed(cfg, pick_device(cfg.device))
    dtype = pick_dtype(cfg.dtype, device)
    if cfg.optimizer == "muon" and dtype == torch.float16:
        raise UserError("optimizer=muon does not support float16 gradient scaling; use --dtype=bfloat16 or float32")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + dist.rank)  # different dropout masks on each process
    ctx = autocast(device, dtype)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    data = TokenData(Path(cfg.data_dir) / cfg.dataset, model_cfg.block_size, device)
    if dist.master and not cfg.trace_shapes:
        check_out_dir(cfg)
    model, optimizer, state = build(model_cfg, cfg, data, device)
    if dist.master and not cfg.trace_shapes and not cfg.eval_only:
        check_free_space(cfg.out_dir, model)
    generator = torch.Generator().manual_seed(cfg.seed)  # draws the training batches
    if "rng" in state:
        restore_rng(state["rng"], generator, device)
    if cfg.trace_shapes:
        print_shape_trace(model, *data.get_batch("train", 2, generator))
        return

    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)  # fp16 gradients underflow without it
    eval_model = train_model = maybe_compile(model, cfg.compile)
    if dist.world_size > 1:
        device_ids = [dist.local_rank] if device.startswith("cuda") else None
        train_model = torch.nn.parallel.DistributedDataParallel(train_model, device_ids=device_ids)
    out_dir = Path(cfg.out_dir)
    # eval_only evaluates the resumed checkpoint; a run that trains on has already evaluated it
    checkpoint_iter = state["iter_num"] if cfg.init_from == "resume" else None
    resumed_at = None if cfg.eval_only else checkpoint_iter
    log = LogFile(out_dir / "log.jsonl", checkpoint_iter) if dist.master else None
    tokens_per_iter = cfg.batch_size * model.config.block_size * cfg.gradient_accumulation_steps
    if dist.master:
        print(f"{model.num_params() / 1e6:.2f}M parameters, {tokens_per_iter:,} tokens per iteration, "
              f"device {device} x {dist.world_size}, dtype {str(dtype).removeprefix('torch.')}", file=sys.stderr)

    def checkpoint(name, it):
        try:
            save_checkpoint(out_dir / name, model, optimizer, iter_num=it, best_val_loss=state["best_val_loss"],
                            train_config=asdict(cfg), meta=data.meta, rng=rng_state(generator, device))
        except UserError:  # a failed write (disk full): the previous checkpoint is kept
            bar.close()  # so the error is a line of its own, after the progress bar's
            raise

    it, loss, interrupted = state["iter_num"], None, False
    bar = tqdm(total=cfg.max_iters, initial=it, unit="it", dynamic_ncols=True, file=sys.stderr, disable=not dist.master)
    tokens_per_s, last = 0.0, time.time()
    stop_request = StopRequest()
    while True:
        lr = lr_at(it, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr

        due = it % cfg.eval_interval == 0 or it == cfg.max_iters
        skipped = it == resumed_at or (it == 0 and not (cfg.eval_first or cfg.eval_only))
        if due and not skipped:
            stop = cfg.eval_only
            if dist.master:
                losses = evaluate(eval_model, data, cfg, ctx)
                for value in losses.values():
                    check_finite(value, it, out_dir, bar)
                log.write(iter=it, train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                          tokens=it * tokens_per_iter, elapsed_s=round(time.time() - START_TIME, 3))
                bar.write(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                if not cfg.eval_only:
                    if losses["val"] < state["best_val_loss"]:
                        state["best_val_loss"] = losses["val"]
                        checkpoint("best.pt", it)
                    if cfg.always_save_checkpoint or it == cfg.max_iters:
                        checkpoint("ckpt.pt", it)
                if losses["val"] <= cfg.stop_at_val_loss:
                    bar.write(f"val loss {losses['val']:.4f} reached stop_at_val_loss={cfg.stop_at_val_loss}")
                    stop = True
            if broadcast_flag(stop, dist, device):
                break
            last = time.time()  # throughput counts training time only
        if it >= cfg.max_iters:
            break
        # Ctrl-C or SIGTERM: save at this iteration, after its evaluation (so resuming, which skips
        # the evaluation at the checkpoint's iteration, runs exactly as if never stopped).
        # Under torchrun rank 0 decides, every log_interval steps (a broadcast is a GPU sync).
        if (dist.world_size == 1 or it % cfg.log_interval == 0) and broadcast_flag(
                stop_request.signum is not None, dist, device):
            if dist.master:
                if loss is not None:
                    check_finite(loss.item(), it, out_dir, bar)
                checkpoint("ckpt.pt", it)
            interrupted = True
            break

        loss = train_step(train_model, optimizer, scaler, data, cfg, ctx, generator, dist)
        it += 1

        if it % cfg.log_interval == 0 and dist.master:
            loss_value = loss.item()  # a GPU sync, so only every log_interval iterations
            check_finite(loss_value, it, out_dir, bar)
            now = time.time()
            rate = cfg.log_interval * tokens_per_iter / (now - last)
            tokens_per_s = rate if tokens_per_s == 0 else 0.9 * tokens_per_s + 0.1 * rate
            last = now
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}")
        bar.update(1)
    bar.close()
    stop_request.restore()
    if dist.world_size > 1:
        torch.distributed.destroy_process_group()
    if interrupted:
        if dist.master:
            print(f"interrupted at iter {it}: saved {out_dir / 'ckpt.pt'}; continue with --init_from=resume",
                  file=sys.stderr)
        sys.exit(128 + (stop_request.signum or signal.SIGTERM))  # the shell's code for death by that signal
    if dist.master:
        print(f"done: iter {it}, best val loss {state['best_val_loss']:.4f}, {time.time() - START_TIME:.1f} s, "
              f"{tokens_per_s:,.0f} tokens/s; checkpoints in {out_dir}/")


if __name__ == "__main__":
    main(sys.argv[1:])
