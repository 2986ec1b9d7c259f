"""Train a GPT: python3 train.py config/shakespeare_char.py --batch_size=32 --device=cpu

The algorithm, in reading order: the settings (TrainConfig, and GPTConfig in model.py), then
lr_at (the learning rate of a step), train_step (batches, forward, loss, backward, clip, optimizer
step), evaluate (the mean loss on train and val), and train, the loop: every eval_interval
iterations evaluate, log, keep the best checkpoint and maybe stop; otherwise set the learning rate
and take one step. Below the loop, the plumbing: building the model and optimizer (from scratch,
from a checkpoint to resume, or from GPT-2's weights), saving, processes under torchrun and
signals; then main. Settings come from a plain `key = value` config file and `--key=value`
overrides; --help lists them all.

To follow one step, read train_step here, GPT.forward in model.py and TokenData.get_batch in
gptkit/data.py. Everything else train.py calls (checkpoints, logs, the run folder) is in gptkit/.
"""

import time

# Before every other import: log.jsonl's elapsed_s counts from process start, so the 2-3 s that
# importing torch takes on a small CPU are in it, as they are in a user's wall-clock time.
START_TIME = time.time()

import itertools
import math
import signal
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from gptkit.config import build_configs, read_command_line
from gptkit.checkpoint import settings_class
from gptkit.data import model_inputs, open_data
from gptkit.distributed import agreed, broadcast_flag, check_parallel, no_sync, setup_distributed, teardown_distributed
from gptkit.errors import UserError, run_main
from gptkit.hf_weights import PRETRAINED, check_init_from
from gptkit.rundir import claim_out_dir
from gptkit.sharded import files_from_sharded, save_checkpoint_or_shards
from gptkit.system import StopRequest, pick_device, pick_dtype, rng_state, setup_torch
from gptkit.training import start_run, summary, trace_shapes
from model import GPTConfig
from transformer import TransformerConfig

# ----------------------------------------------------------------------------------------------
# the settings (the model's are GPTConfig in model.py, or TransformerConfig in transformer.py)

# init_from: a fresh model, out_dir/ckpt.pt, OpenAI's GPT-2 weights, or a Hugging Face GPT-2 or Llama directory
# (gptkit/hf_weights.py)
INIT_FROM = ("scratch", "resume", *PRETRAINED)


@dataclass
class TrainConfig:
    out_dir: str = "out"  # checkpoints (ckpt.pt, best.pt), log.jsonl and samples.txt
    dataset: str = "shakespeare_char"  # a folder under data_dir written by prepare.py
    data_dir: str = "data"  # where prepare.py wrote the datasets
    init_from: str = "scratch"  # scratch, resume, gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a GPT-2 or Llama directory
    # gpt: model.py's decoder-only GPT; transformer: transformer.py's encoder-decoder, which trains on the sentence
    # pairs of prepare.py numbers_de or translation (a GPT trains on them too, as source, BOS, target)
    model: Literal["gpt", "transformer"] = "gpt"
    overwrite: bool = False  # allow a scratch run to replace the checkpoints already in out_dir
    # tokens per optimizer step = batch_size * block_size * gradient_accumulation_steps
    batch_size: int = 12  # sequences per micro-batch (per forward and backward pass)
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step (a multiple of the processes)
    # the learning rate: linear warmup then cosine decay to min_lr at lr_decay_iters (GPT-2, nanoGPT)
    max_iters: int = 5000  # optimizer steps
    learning_rate: float = 6e-4  # the peak learning rate, reached at the end of the warmup
    min_lr: float = 6e-5  # where the cosine decay ends
    warmup_iters: int = 100  # linear warmup steps, starting above 0 (also the warmup of the noam schedule)
    lr_decay_iters: int = 0  # 0: decay over max_iters
    decay_lr: bool = True  # False: a constant learning_rate
    # cosine: as above; noam: "Attention Is All You Need" eq. 3, noam_factor * n_embd^-0.5 *
    # min(step^-0.5, step * warmup_iters^-1.5), which ignores learning_rate and min_lr
    lr_schedule: Literal["cosine", "noam"] = "cosine"
    noam_factor: float = 1.0  # the noam schedule's overall scale (the paper's is 1)
    # smooth the training targets: (1 - e) on the right token, e spread over the vocabulary (Szegedy et al.
    # 2016; the Transformer paper's e_ls = 0.1); evaluation still reports the plain cross-entropy
    label_smoothing: float = 0.0
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for the blocks' matrices, AdamW for the rest
    weight_decay: float = 0.1  # decoupled, on 2-D weights only (never biases or norm gains)
    beta1: float = 0.9  # AdamW's first-moment (momentum) decay
    beta2: float = 0.95  # AdamW's second-moment decay
    grad_clip: float = 1.0  # clip the global gradient norm; 0 disables
    # evaluation and checkpoints
    eval_interval: int = 250  # steps between evaluations (and checkpoints)
    eval_iters: int = 200  # random batches per split for the loss estimate
    eval_full_val: bool = False  # val loss over the whole val split instead of eval_iters batches
    eval_first: bool = True  # also evaluate before the first step (the untrained loss, about ln(vocab_size))
    eval_only: bool = False  # evaluate once and exit
    log_interval: int = 10  # iterations between progress-bar updates of the loss
    always_save_checkpoint: bool = True  # ckpt.pt at every evaluation; best.pt only when val improves
    stop_at_val_loss: float = 0.0  # stop as soon as val loss reaches this (0: never)
    # a sample at each evaluation, printed and appended to out_dir/samples.txt: watch noise become text
    eval_sample_tokens: int = 0  # the sample's length in tokens; 0: no samples
    eval_sample_start: str = "\n"  # the sample's prompt (the same seed each time: only the model changes)
    # system
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA (else fp16) and bf16 CPUs
    compile: bool = False  # torch.compile the model (eager where it cannot: Windows)
    backend: str = ""  # torch.distributed backend under torchrun; empty: nccl on CUDA, gloo on CPU
    # under torchrun: ddp keeps a whole copy of the weights, gradients and AdamW state on every GPU; fsdp
    # (FSDP2) splits each of them across the GPUs, 1/N each, for models one GPU cannot hold (docs/memory.md)
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # free each Block's gathered weights after its forward: holds the least; False keeps them until backward,
    # one all-gather less per Block
    fsdp_reshard_after_forward: bool = True
    # False: a sharded run accumulates whole float32 gradients on each GPU between syncs (docs/memory.md)
    sync_every_micro_step: bool = False  # average gradients at every micro-step, as nanoGPT: more traffic
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default
    seed: int = 1337  # the initial weights, the data order and dropout
    trace_shapes: bool = False  # print each named tensor's shape for one forward pass, then exit
    trace_values: bool = False  # with trace_shapes: print the numbers too (try a tiny --block_size=8)
    trace_layer: int | None = None  # with trace_shapes: show only this layer's steps (0 is the first)
    # logging beyond log.jsonl (gptkit/runlog.py): rank 0 sends every evaluation there too
    tensorboard: bool = False  # TensorBoard event files in out_dir (needs the tensorboard package)
    wandb_log: bool = False  # Weights & Biases (needs the wandb package; WANDB_MODE=offline works offline)
    wandb_project: str = "owt"  # the W&B project (nanoGPT's default)
    wandb_run_name: str = "gpt2"  # the W&B run's name (nanoGPT's default)

    def validate(self):
        if not self.out_dir:  # "" would be the current folder, named nowhere: say it
            raise UserError("out_dir is empty; name the folder for checkpoints and log.jsonl, e.g. --out_dir=out")
        check_init_from(self.init_from, INIT_FROM)
        for key in ("batch_size", "gradient_accumulation_steps", "eval_interval", "log_interval"):
            if getattr(self, key) <= 0:
                raise UserError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("max_iters", "warmup_iters", "lr_decay_iters", "threads", "eval_sample_tokens"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must not be negative, got {getattr(self, key)}")
        if self.eval_iters <= 0:  # no batches would make every evaluated loss NaN
            raise UserError(f"eval_iters must be positive, got {self.eval_iters}")
        if not (0 < self.learning_rate < math.inf and 0 <= self.min_lr < math.inf):
            raise UserError("learning_rate must be positive and min_lr not negative (both finite)")
        for key in ("weight_decay", "grad_clip"):
            if not 0 <= getattr(self, key) < math.inf:
                raise UserError(f"{key} must be a finite number >= 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise UserError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0 < self.noam_factor < math.inf:
            raise UserError(f"noam_factor must be a positive finite number, got {self.noam_factor}")
        if not math.isfinite(self.stop_at_val_loss):
            raise UserError(f"stop_at_val_loss must be a finite number, got {self.stop_at_val_loss}")
        if self.model == "transformer" and self.optimizer != "adamw":
            raise UserError("model=transformer trains with --optimizer=adamw (Muon's matrices are the GPT's blocks)")
        if self.model == "transformer" and self.init_from not in ("scratch", "resume"):
            raise UserError(f"init_from={self.init_from} loads a GPT's weights; model=transformer trains from scratch "
                            f"(or resumes)")
        if self.parallel == "fsdp" and self.optimizer == "muon":
            raise UserError("optimizer=muon cannot run under parallel=fsdp: its Newton-Schulz step needs each "
                            "weight matrix whole, and sharding leaves each process a slice; use --optimizer=adamw "
                            "or --parallel=ddp")


# ----------------------------------------------------------------------------------------------
# the algorithm: the learning rate, one step, evaluation, the loop


def lr_at(it, cfg, n_embd):
    """The learning rate of step `it`: linear warmup from lr/(warmup+1) (never 0: nanoGPT PR #578), then
    cosine decay to min_lr; or the noam schedule, counting steps from 1 (its step 0 would be 0)."""
    if cfg.lr_schedule == "noam":
        step = it + 1
        return cfg.noam_factor * n_embd ** -0.5 * min(step ** -0.5, step * max(cfg.warmup_iters, 1) ** -1.5)
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it >= decay_iters:
        return cfg.min_lr
    progress = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def train_step(model, optimizer, scaler, data, cfg, ctx, generator, rank=0, world_size=1):
    """One optimizer step on gradient_accumulation_steps micro-batches, shared across processes.

    Every process draws the same global batch from the same generator and takes its own share,
    so N processes compute exactly what one process would (and the data order resumes exactly).
    Returns the last micro-batch's loss (a tensor: reading it would wait for the GPU).
    """
    starts = data.random_starts("train", (cfg.gradient_accumulation_steps, cfg.batch_size), generator)
    mine = starts[rank::world_size]
    for micro, micro_starts in enumerate(mine):
        x, y = data.get_batch("train", cfg.batch_size, None, starts=micro_starts)  # (B, T) each, y = x shifted by one
        # DDP and FSDP average gradients over processes at each backward; only the last micro-step needs it
        # (nanoGPT syncs every micro-step). no_sync must wrap the forward too (build-nanogpt PR #30).
        sync = micro == len(mine) - 1 or cfg.sync_every_micro_step
        with no_sync(model) if world_size > 1 and not sync else nullcontext(), ctx:
            # the mean cross-entropy of the next token (x: a GPT's tokens, or the encoder-decoder's source and target)
            _, loss = model(*model_inputs(x), y, label_smoothing=cfg.label_smoothing)
            # average over micro-steps so k micro-batches equal one k-times larger batch (nanoGPT #168)
            scaler.scale(loss / len(mine)).backward()
    if cfg.grad_clip:
        scaler.unscale_(optimizer)  # clip the true gradients, not the float16-scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)  # sharded: the norm of all the slices
    scaler.step(optimizer)  # skipped when float16 gradients overflowed; a plain step otherwise
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss


@torch.no_grad()
def evaluate(model, data, cfg, ctx, stop=lambda: False, show_progress=True):
    """Mean loss on each split. The same batches every time (fixed seed), so evaluations compare.

    An evaluation that takes more than a second shows its own progress bar (show_progress: on one process
    of several). None when stop() became true (Ctrl-C, SIGTERM) before it ended: evaluating a large model
    on a CPU takes minutes, a signal must not wait.
    """
    model.eval()
    losses = {}
    for split in ("train", "val"):
        if split == "val" and cfg.eval_full_val:
            batches = data.sequential_batches(split, cfg.batch_size)
            total = -(-len(data.sequential_starts(split)) // cfg.batch_size)
        else:
            generator = torch.Generator().manual_seed(cfg.seed)
            batches = (data.get_batch(split, cfg.batch_size, generator) for _ in range(cfg.eval_iters))
            total = cfg.eval_iters
        batches = itertools.takewhile(lambda _: not stop(), batches)
        with tqdm(batches, total=total, desc=f"evaluating {split}", unit="batch", leave=False, delay=1.0,
                  dynamic_ncols=True, file=sys.stderr, disable=not show_progress) as bar:
            losses[split] = mean_loss(model, bar, ctx)[0]
        if stop():
            break
    model.train()
    return None if stop() else losses


@torch.no_grad()
def mean_loss(model, batches, ctx):
    """(mean loss per token, tokens) over batches of (x, y); summed on the device, so no sync per batch. Targets -1
    (a sentence pair's padding and source) are not predicted, so not counted."""
    total, count = 0.0, 0
    for x, y in batches:
        with ctx:
            _, loss = model(*model_inputs(x), y)
        predicted = (y != -1).sum()
        total, count = total + loss.float() * predicted, count + predicted
    return ((total / count).item() if count else float("nan")), int(count)


def train(run):
    """Evaluate when due, then step, until max_iters, a stop, or a signal; returns (iter, signal or None)."""
    cfg, dist = run.cfg, run.dist
    it, loss = run.progress.iter_num, None
    with tqdm(total=cfg.max_iters, initial=it, unit="it", dynamic_ncols=True, file=sys.stderr,
              disable=not dist.master) as bar, StopRequest() as stop_request:
        while True:
            lr = lr_at(it, cfg, run.model.config.n_embd)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            if evaluation_due(it, cfg, run.progress):
                if evaluate_and_save(run, it, lr, bar, stop_request):
                    return it, stop_request.signum
                bar.unpause()  # the evaluation's time is not the steps': the ETA counts steps only
                run.speed.restart()
            if it >= cfg.max_iters:
                return it, None
            # Ctrl-C or SIGTERM: save at this iteration, after its evaluation (so resuming, which skips the
            # evaluation at the checkpoint's iteration, runs exactly as if never stopped)
            if stopped_by_signal(run, it, loss, stop_request):
                return it, stop_request.signum or signal.SIGTERM

            loss = train_step(run.train_model, run.optimizer, run.scaler, run.data, cfg, run.ctx, run.generator,
                              dist.rank, dist.world_size)
            it += 1
            if it % cfg.log_interval == 0 and dist.master:
                loss_value = loss.item()  # a GPU sync, so only every log_interval iterations
                check_finite(loss_value, it, cfg.out_dir)
                tokens_per_s = run.speed.update(cfg.log_interval)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}")
            bar.update(1)


# ----------------------------------------------------------------------------------------------
# the plumbing: what the loop stands on


def evaluation_due(it, cfg, progress):
    """Every eval_interval iterations and at the end; not before training when eval_first is off, nor again at
    the iteration a run resumes from when it was evaluated before that checkpoint was saved."""
    resumed_here = cfg.init_from == "resume" and not cfg.eval_only and it == progress.iter_num and progress.evaluated
    if resumed_here or (it == 0 and not (cfg.eval_first or cfg.eval_only)):
        return False
    return it % cfg.eval_interval == 0 or it == cfg.max_iters


def evaluate_and_save(run, it, lr, bar, stop_request):
    """Evaluate, log, keep the best checkpoint and the latest; True when training should stop. The processes
    that evaluate do (Dist.evaluates: rank 0, or all of a sharded model); rank 0 decides for all."""
    cfg, dist, progress = run.cfg, run.dist, run.progress
    if not dist.evaluates:
        return broadcast_flag(False, dist, run.device)  # rank 0's decision
    losses = evaluate_together(run, stop_request)
    if losses is None:  # a signal stopped it: save this iteration marked not evaluated (resuming evaluates it)
        if dist.master:
            bar.write(f"{signal.Signals(stop_request.signum or signal.SIGTERM).name}: the evaluation at iter {it} "
                      f"stopped")
        if it > progress.iter_num:  # else this run trained nothing: its checkpoint holds this iteration
            save(run, "ckpt.pt", it, evaluated=False)
        return broadcast_flag(True, dist, run.device)
    for value in losses.values():
        check_finite(value, it, cfg.out_dir)
    log_evaluation(run, it, lr, losses, bar)
    if not cfg.eval_only:
        if losses["val"] < progress.best_val_loss:
            progress.best_val_loss = losses["val"]
            save(run, "best.pt", it)
        if cfg.always_save_checkpoint or it == cfg.max_iters:
            save(run, "ckpt.pt", it)
    reached = losses["val"] <= cfg.stop_at_val_loss
    if reached and dist.master:
        bar.write(f"val loss {losses['val']:.4f} reached stop_at_val_loss={cfg.stop_at_val_loss}")
    return broadcast_flag(cfg.eval_only or reached, dist, run.device)


def evaluate_together(run, stop_request):
    """evaluate() on each process that evaluates, all of them stopping at the same batch and deciding on the same
    losses: when sharded, each forward pass needs every process, so rank 0 decides each stop and its losses are
    everyone's (deciding alone, one could stop while the others wait for it forever)."""
    dist, device = run.dist, run.device
    stop = lambda: agreed(stop_request.signum is not None, dist, device)  # noqa: E731
    losses = evaluate(run.eval_model, run.data, run.cfg, run.ctx, stop=stop, show_progress=dist.master)
    return None if losses is None else agreed(losses, dist, device)


def log_evaluation(run, it, lr, losses, bar):
    """log.jsonl and the line above the progress bar (rank 0), and the evaluation's sample: every process that
    evaluates draws it (a sharded model's forward pass needs them all), rank 0 shows it."""
    scores, said = run.translations.write(run.model, run.ctx) if run.translations is not None else ({}, None)
    if run.dist.master:
        run.log.write(iter=it, train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                      tokens=round(it * run.speed.tokens_per_iter), tokens_per_s=round(run.speed.rate) or None,
                      elapsed_s=round(time.time() - START_TIME, 3), **scores)
        bar.write(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if said:
            bar.write(said)
    if run.samples is not None:
        sample = run.samples.write(run.model, it, losses["val"], run.ctx)
        if run.dist.master:
            bar.write(sample.rstrip("\n"))


def stopped_by_signal(run, it, loss, stop_request):
    """Whether Ctrl-C or SIGTERM asked to stop; if so, ckpt.pt is saved at `it` first (unless this run has not
    trained a step). Under torchrun rank 0 decides, every log_interval steps (a broadcast is a GPU sync)."""
    dist = run.dist
    if dist.world_size > 1 and it % run.cfg.log_interval:
        return False
    if not broadcast_flag(stop_request.signum is not None, dist, run.device):
        return False
    if dist.evaluates and it > run.progress.iter_num:
        if loss is not None:
            check_finite(loss.item(), it, run.cfg.out_dir)
        save(run, "ckpt.pt", it)
    return True


def save(run, name, it, evaluated=True):
    """out_dir/name (ckpt.pt, best.pt), or its sharded form (gptkit/sharded.py). evaluated: whether iteration
    `it` was evaluated (logged, best.pt updated) before this save."""
    save_checkpoint_or_shards(Path(run.cfg.out_dir) / name, run.model, run.optimizer, run.dist,
                              iter_num=it, best_val_loss=run.progress.best_val_loss, train_config=asdict(run.cfg),
                              meta=run.data.meta, rng=rng_state(run.generator, run.device), evaluated=evaluated)
    run.progress.saved = True


def check_finite(loss, it, out_dir):
    """Stop before a NaN or infinite loss reaches a checkpoint: the last good one stays in out_dir."""
    if not math.isfinite(loss):
        raise UserError(f"loss is {loss} at iter {it}; stopped without saving, the last good checkpoint in "
                        f"{out_dir} is kept. Lower learning_rate, or use dtype=bfloat16 instead of float16")


def parse(argv):
    """(the model's settings: GPTConfig, or TransformerConfig for model=transformer; TrainConfig; the keys the user
    gave) of a command line, without running anything: the keys given are what a resumed run checks against its
    checkpoint."""
    settings = read_command_line([GPTConfig, TransformerConfig, TrainConfig], argv, config_file=True)
    return (*build_configs([settings_class(settings), TrainConfig], settings), {key for key, _ in settings})


@run_main
def main(argv):
    model_cfg, cfg, given = parse(argv)
    dist, device = setup_distributed(pick_device(cfg.device), cfg.backend, cfg.parallel)
    dtype = pick_dtype(cfg.dtype, device)
    if cfg.optimizer == "muon" and dtype == torch.float16:
        raise UserError("optimizer=muon does not support float16 gradient scaling; use --dtype=bfloat16 or float32")
    check_parallel(cfg, dist, dtype)
    ctx = setup_torch(device, dtype, cfg.threads)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process (sharding splits them as drawn)
    data = open_data(Path(cfg.data_dir) / cfg.dataset, model_cfg.block_size, device, cfg.model)
    if cfg.trace_shapes:
        return trace_shapes(model_cfg, cfg, data, device, given, dist)
    # one writer per out_dir for the run's whole life (eval_only too: it appends to log.jsonl)
    fresh = cfg.init_from != "resume" and not (cfg.overwrite or cfg.eval_only)
    with claim_out_dir(cfg.out_dir, protect_checkpoints=fresh) if dist.master else nullcontext() as lock:
        run = start_run(model_cfg, cfg, data, dist, device, dtype, ctx, given)
        it, signum = train(run)
        if run.log is not None:
            run.log.close()
        if lock is not None and not run.progress.saved:
            lock.leave_as_found = True  # a run stopped before it saved anything changes nothing, as a refused one
        progress, speed = run.progress, run.speed
        del run  # a sharded model holds on to the process group: let go of it before leaving the group
        teardown_distributed()
        if dist.master and dist.sharded:  # rank 0 alone, still holding out_dir
            for name in files_from_sharded(cfg.out_dir):  # for sample.py, export.py, visualize.py
                print(f"wrote {Path(cfg.out_dir) / name} from its sharded form", file=sys.stderr)
    if dist.master:
        print(summary(cfg, it, signum, progress, speed, time.time() - START_TIME),
              file=sys.stderr if signum is not None else sys.stdout)
    if signum is not None:
        sys.exit(128 + signum)  # the shell's code for death by that signal


if __name__ == "__main__":
    main(sys.argv[1:])
