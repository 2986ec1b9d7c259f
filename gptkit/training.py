"""What train.py's loop stands on: the run it trains (Run), built by start_run from scratch, from a
checkpoint to resume or from GPT-2's weights (build), where training stands (Progress, saved in every
checkpoint), the --trace_shapes pass, and the run's last line (summary).

train.py holds the algorithm (the learning rate, train_step, evaluate, the loop) and how the
processes of a run decide together; everything here runs once, before or after the loop.
"""

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gptkit.checkpoint import checkpoint_config, model_from_checkpoint, new_model
from gptkit.data import PairData, TokenData, model_vocab_size
from gptkit.distributed import Dist, barrier, put_on_device, wrap_model
from gptkit.errors import UserError
from gptkit.memory import check_memory
from gptkit.optim import make_optimizer
from gptkit.resume import load_checkpoint_state, resume_config
from gptkit.rundir import check_free_space
from gptkit.runlog import EvalSamples, RunLog, Speed, open_run_log
from gptkit.shape_trace import print_shape_trace
from gptkit.sharded import newest_checkpoint
from gptkit.system import restore_rng
from gptkit.tokenizer import load_tokenizer
from gptkit.translation import EvalTranslations
from model import GPT, GPTConfig


@dataclass
class Progress:
    """Where training stands: saved in every checkpoint, restored on resume."""

    iter_num: int = 0  # the iteration this run starts at (the loop counts on in its own `it`)
    best_val_loss: float = math.inf
    rng: dict | None = None  # the random states (system.rng_state) to continue from
    evaluated: bool = True  # whether iter_num was evaluated before the checkpoint was saved
    saved: bool = False  # whether this run has written a checkpoint
    resumed_from: Path | None = None  # the checkpoint (ckpt.pt or ckpt.dcp/) a resumed run started from


@dataclass
class Run:
    """Everything the loop works with, built once by start_run()."""

    cfg: object  # train.py's TrainConfig
    model: GPT  # the plain model (sharded in place under fsdp): what is saved
    train_model: torch.nn.Module  # the same, compiled and/or wrapped by DDP: what is trained
    eval_model: torch.nn.Module  # the same, compiled: what is evaluated
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # scales float16 losses so their gradients do not underflow; else a no-op
    data: TokenData | PairData
    ctx: object  # autocast, or nothing in float32
    generator: torch.Generator  # draws the training batches
    progress: Progress
    log: RunLog | None  # rank 0 only
    samples: EvalSamples | None  # with eval_sample_tokens: on the processes that evaluate (Dist.evaluates)
    translations: EvalTranslations | None  # sentence pairs: held-out ones translated and scored at each evaluation
    speed: Speed
    dist: Dist
    device: str


def start_run(model_cfg, cfg, data, dist, device, dtype, ctx, given):
    """Build (or resume) the model and optimizer and everything the loop needs, ready to train."""
    barrier(dist)  # rank 0 has claimed out_dir, which may put back a checkpoint a crash left moved aside
    model, optimizer, progress = build(model_cfg, cfg, data, device, given, dist)
    if dist.world_size > 1:
        torch.manual_seed(cfg.seed + dist.rank)  # different dropout masks on each process
    generator = torch.Generator().manual_seed(cfg.seed)
    if progress.rng is not None:
        restore_rng(progress.rng, generator, device)
    if dist.master and not cfg.eval_only:
        check_free_space(cfg.out_dir, model)
    train_model, eval_model = wrap_model(model, cfg, dist, device)
    resume_iter = progress.iter_num if cfg.init_from == "resume" else None
    log = open_run_log(cfg, {**asdict(model.config), **asdict(cfg)}, resume_iter) if dist.master else None
    sampling = cfg.eval_sample_tokens and dist.evaluates  # rank 0 alone writes samples.txt
    samples = EvalSamples(cfg, data, device, resume_iter, write=dist.master) if sampling else None
    translations = EvalTranslations(data) if isinstance(data, PairData) and dist.evaluates else None
    tokens_per_iter = cfg.batch_size * data.tokens_per_row * cfg.gradient_accumulation_steps
    if dist.master:
        if model.config.sees_the_future:
            print(f"note: mask={model.config.mask} lets each position see the token it must predict: the loss will "
                  f"fall by copying it, not by learning (docs/experiments.md, the mask)", file=sys.stderr)
        if progress.resumed_from is not None:
            print(f"resuming from iter {progress.iter_num} of {progress.resumed_from} (best val loss "
                  f"{progress.best_val_loss:.4f})", file=sys.stderr)
        print(f"{model.num_params() / 1e6:.2f}M parameters, {tokens_per_iter:,.0f} tokens per iteration, "
              f"device {device} x {dist.world_size}, dtype {str(dtype).removeprefix('torch.')}", file=sys.stderr)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    return Run(cfg, model, train_model, eval_model, optimizer, scaler, data, ctx, generator, progress, log, samples,
               translations, Speed(tokens_per_iter), dist, device)


def build(model_cfg, cfg, data, device, given=frozenset(), dist=Dist()):
    """The model and its optimizer, on the device (sharded: each process holds its slices of both), and
    the progress to start from. given: the keys of the settings the user gave, checked against a
    checkpoint to resume."""
    ckpt = None
    if cfg.init_from == "scratch":
        model_cfg.vocab_size = model_vocab_size(data.meta)
        if isinstance(model_cfg, GPTConfig):
            check_memory(model_cfg, cfg, device, dist.world_size)
        else:  # the encoder-decoder's special tokens are the dataset's
            model_cfg.pad_id, model_cfg.bos_id, model_cfg.eos_id = (data.specials[k] for k in ("pad", "bos", "eos"))
        model = new_model(model_cfg)
    elif cfg.init_from == "resume":
        # ckpt.pt, or the sharded ckpt.dcp/ when it was written later: its weights are read after sharding
        # (load_checkpoint_state), so that no process holds them all
        ckpt = newest_checkpoint(cfg.out_dir, sharded_first=dist.sharded)
        missing = [key for key in ("optimizer", "iter_num", "best_val_loss") if key not in ckpt]
        if missing and "sharded" not in ckpt:
            raise UserError(f"{Path(cfg.out_dir) / 'ckpt.pt'} has no {' or '.join(missing)}: it can be sampled from, "
                            f"not resumed")
        config = resume_config(checkpoint_config(ckpt), model_cfg, given)  # gptkit/resume.py
        model = new_model(config) if "sharded" in ckpt else model_from_checkpoint(ckpt, config)
    else:  # pretrained: OpenAI's GPT-2, or a local Hugging Face GPT-2 or Llama directory
        from gptkit.hf_weights import PRETRAINED, load_pretrained

        if cfg.init_from in PRETRAINED and data.meta.get("tokenizer") != "gpt2":
            raise UserError(f"init_from={cfg.init_from} needs a GPT-2 BPE dataset, but '{cfg.dataset}' is "
                            f"{data.meta.get('tokenizer')}-level; prepare one with: python3 prepare.py shakespeare")
        model = load_pretrained(cfg.init_from, dropout=model_cfg.dropout)
    check_fits(model, data, cfg)
    put_on_device(model, cfg, dist, device)  # sharded: in place, each process keeps its slice of every weight
    optimizer = make_optimizer(model, cfg, device)
    if ckpt is None:
        return model, optimizer, Progress()
    load_checkpoint_state(model, optimizer, ckpt, cfg)
    # nanoGPT stores best_val_loss as a tensor and no RNG state (the data order then starts afresh)
    return model, optimizer, Progress(ckpt["iter_num"], float(ckpt["best_val_loss"]), ckpt.get("rng"),
                                      ckpt.get("evaluated", True),
                                      resumed_from=ckpt.get("sharded", Path(cfg.out_dir) / "ckpt.pt"))


def check_fits(model, data, cfg):
    """The dataset must be the model's: the same vocabulary and a block_size the model has positions for."""
    source = "checkpoint" if cfg.init_from == "resume" else "pretrained model"
    vocab, block_size = model.config.vocab_size, model.config.block_size
    if vocab not in (data.meta["vocab_size"], model_vocab_size(data.meta)):  # GPT-2's 50257 is not padded
        raise UserError(f"the {source}'s vocabulary ({vocab}) does not match dataset '{cfg.dataset}' "
                        f"({data.meta['vocab_size']}); train on the dataset it was trained on")
    if cfg.init_from == "resume" and block_size != data.block_size:
        raise UserError(f"checkpoint block_size is {block_size}; resume with --block_size={block_size}")
    if data.block_size > block_size:
        raise UserError(f"block_size={data.block_size} is longer than the pretrained model's {block_size}; "
                        f"use --block_size={block_size} or less")
    if data.block_size < block_size:
        crop_block_size(model, data.block_size)  # e.g. fine-tune GPT-2's 1024 positions on 256


def crop_block_size(model, block_size):
    """Shrink a model's context (e.g. a pretrained 1024 model fine-tuned on 256 tokens), as nanoGPT's GPT method."""
    assert block_size <= model.config.block_size
    model.config.block_size = block_size
    if "wpe" in model.transformer:
        model.transformer.wpe.weight = torch.nn.Parameter(model.transformer.wpe.weight[:block_size])


def trace_shapes(model_cfg, cfg, data, device, given, dist):
    """--trace_shapes: one forward pass, printed; nothing is written, so out_dir is not claimed."""
    if cfg.model != "gpt":
        raise UserError("trace_shapes traces model.py's GPT; transformer.py's shapes are in its comments")
    model = build(model_cfg, cfg, data, device, given, dist)[0]
    tokenizer = load_tokenizer(data.meta) if data.meta.get("tokenizer") in ("char", "gpt2", "bpe") else None
    x, y = data.get_batch("train", 2, torch.Generator().manual_seed(cfg.seed))
    source = {"scratch": f"untrained: the initial weights of seed {cfg.seed} (sample.py --trace_shapes=True "
                         f"traces a trained checkpoint)",
              "resume": f"the checkpoint {Path(cfg.out_dir) / 'ckpt.pt'}"}.get(cfg.init_from, cfg.init_from)
    print_shape_trace(model, x, y, tokenizer=tokenizer, values=cfg.trace_values, layer=cfg.trace_layer, source=source)


def summary(cfg, it, signum, progress, speed, wall):
    """The run's last line: where it stopped, the best val loss, its wall time (`wall` seconds, from the start of
    the process) and its speed: overall (every second of the run) and while training (steps alone)."""
    if signum is not None:
        saved = f"saved {Path(cfg.out_dir) / 'ckpt.pt'}; continue with --init_from=resume" if progress.saved \
            else f"nothing was saved, {cfg.out_dir} is as it was"
        return f"interrupted at iter {it}: {saved}"
    rates = speed.summary(it - progress.iter_num, wall)
    return (f"done: iter {it}, best val loss {progress.best_val_loss:.4f}, {wall:.1f} s wall{rates}; "
            f"checkpoints in {cfg.out_dir}/")
