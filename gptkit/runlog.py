"""A run's log: out_dir/log.jsonl, one JSON line per evaluation, and, when asked, the same records in
TensorBoard (`tensorboard = True`) and Weights & Biases (`wandb_log = True`); and samples.txt, a
short sample at each evaluation (`eval_sample_tokens`, EvalSamples at the end).

One writer (RunLog) sends each evaluation to log.jsonl and to those sinks; under torchrun only rank 0
has one. A sink whose package is missing is one warning line, and training goes on without it.

A resumed run repeats the iterations after its checkpoint, so each history drops what it had past
that point and never shows an iteration twice: log.jsonl drops those records; TensorBoard's event
files are written afresh from the records log.jsonl keeps; W&B continues the same run (its id is in
out_dir/wandb_run_id) and skips the iterations it already holds, since W&B's history only grows.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import torch

from gptkit.errors import UserError, first_line
from gptkit.rundir import write_atomically
from gptkit.tokenizer import load_tokenizer, prompt_ids

# log.jsonl's keys as TensorBoard and W&B name them: nanoGPT's W&B names where it logs the same thing
METRICS = {"train_loss": "train/loss", "val_loss": "val/loss", "lr": "lr", "tokens": "tokens",
           "tokens_per_s": "tokens_per_s", "elapsed_s": "elapsed_s"}


def read_log(out_dir):
    """The records of out_dir/log.jsonl, one dict per evaluation, oldest first; [] if there are none.

    A line that is not a whole record is skipped: a live run may be writing the last line right
    now, and a killed one may have left it half written.
    """
    path = Path(out_dir) / "log.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("iter"), int):
            records.append(record)
    return records


class ContinuedFile:
    """A file a run appends to (log.jsonl, samples.txt), continuing the history `kept` (text): the file is
    rewritten to that history at the first append, not before, so a run stopped before it wrote anything
    leaves the file (or its absence) as it found it; and atomically, so a kill mid-rewrite keeps the old one."""

    def __init__(self, path, kept=""):
        self.path, self.kept = Path(path), kept  # kept: None once written

    def append(self, text):
        if self.kept is not None:
            write_atomically(self.path, lambda tmp: tmp.write_text(self.kept, encoding="utf-8"))
            self.kept = None
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)


class LogFile:
    """out_dir/log.jsonl, appended to at each evaluation. On resume, records past the checkpoint are dropped
    (at the first record: ContinuedFile)."""

    def __init__(self, out_dir, resume_iter=None):
        """resume_iter: the checkpoint's iteration when resuming; None starts a fresh log."""
        previous = read_log(out_dir) if resume_iter is not None else []
        self.kept = [r for r in previous if r["iter"] <= resume_iter]  # the history this run continues
        self.last_logged = max((r["iter"] for r in previous), default=None)  # before this run started
        self.file = ContinuedFile(Path(out_dir) / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.kept))

    def write(self, record):
        self.file.append(json.dumps(record) + "\n")


def metrics(record):
    """{TensorBoard/W&B name: value} of one record; a value not measured yet (None) is left out."""
    return {name: record[key] for key, name in METRICS.items() if record.get(key) is not None}


class TensorBoard:
    """Event files in out_dir, so `tensorboard --logdir out_dir` (or its parent, for several runs) shows them.
    Written afresh from log.jsonl's history at the first record, as log.jsonl itself."""

    def __init__(self, out_dir, history):
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard package

        self.out_dir, self.history, self.open_writer, self.writer = out_dir, history, SummaryWriter, None

    def write(self, record):
        if self.writer is None:
            for old in Path(self.out_dir).glob("events.out.tfevents.*"):
                old.unlink()
            self.writer = self.open_writer(str(self.out_dir))
            for earlier in self.history:
                self.add(earlier)
        self.add(record)

    def add(self, record):
        for name, value in metrics(record).items():
            self.writer.add_scalar(name, value, record["iter"])
        self.writer.flush()  # on disk now: the curves are live, and a killed run loses nothing

    def close(self):
        if self.writer is not None:
            self.writer.close()


class WandB:
    """A W&B run, at step = iteration. WANDB_MODE=offline keeps it on disk (`wandb sync` uploads it later)."""

    def __init__(self, out_dir, project, name, settings, log):
        """settings: every setting, shown as the run's config. log: the LogFile, for the history so far."""
        import wandb  # ImportError without the wandb package

        id_file = Path(out_dir) / "wandb_run_id"
        run_id = id_file.read_text().strip() if log.last_logged is not None and id_file.is_file() else None
        try:
            self.run = wandb.init(project=project, name=name, config=settings, id=run_id,
                                  resume="allow" if run_id else None, dir=os.environ.get("WANDB_DIR", out_dir))
        except Exception as e:  # not logged in, no network, a bad project name: W&B's own message says which
            raise UserError(f"wandb_log=True but W&B did not start ({first_line(e)}); "
                            f"run `wandb login`, or set WANDB_MODE=offline, or drop wandb_log") from None
        id_file.write_text(self.run.id)
        # a run we continue holds every iteration logged before this process started
        self.skip_through = log.last_logged if run_id else None
        if run_id is None:  # a new W&B run gets the history so far: none, unless a resumed run turns W&B on
            for record in log.kept:
                self.write(record)

    def write(self, record):
        if self.skip_through is None or record["iter"] > self.skip_through:
            self.run.log(metrics(record), step=record["iter"])

    def close(self):
        self.run.finish()


class RunLog:
    """The one writer of a run's evaluations: log.jsonl, then each sink."""

    def __init__(self, file, sinks=()):
        self.file, self.sinks = file, list(sinks)

    def write(self, **record):
        self.file.write(record)
        for sink in self.sinks:
            sink.write(record)

    def close(self):
        for sink in self.sinks:
            sink.close()


def open_run_log(cfg, settings, resume_iter=None):
    """The run's writer: log.jsonl, plus TensorBoard and W&B as cfg (a TrainConfig) asks.

    settings: every setting of the run (for W&B's config). resume_iter: as LogFile.
    """
    log = LogFile(cfg.out_dir, resume_iter)
    sinks = []
    if cfg.tensorboard:
        sinks.append(optional_sink("tensorboard", "tensorboard", lambda: TensorBoard(cfg.out_dir, log.kept)))
    if cfg.wandb_log:
        sinks.append(optional_sink("wandb_log", "wandb", lambda: WandB(
            cfg.out_dir, cfg.wandb_project, cfg.wandb_run_name, settings, log)))
    return RunLog(log, [sink for sink in sinks if sink is not None])


def optional_sink(setting, package, open_sink):
    """open_sink(), or None and one warning line when `package` is not installed."""
    try:
        return open_sink()
    except ImportError:
        print(f"warning: {setting}=True but the {package} package is not installed (pip install {package}); "
              f"training goes on without it", file=sys.stderr)
        return None


class Speed:
    """Training tokens per second: `rate` smoothed for the progress bar and log.jsonl, and the mean over every
    timed step. The clock restarts after each evaluation, so only training counts."""

    def __init__(self, tokens_per_iter):
        self.tokens_per_iter, self.rate = tokens_per_iter, 0.0
        self.timed_iters, self.timed_s = 0, 0.0
        self.restart()

    def restart(self):
        self.last = time.time()

    def update(self, iters):
        now = time.time()
        rate = iters * self.tokens_per_iter / (now - self.last)
        self.rate = rate if self.rate == 0 else 0.9 * self.rate + 0.1 * rate
        self.timed_iters, self.timed_s, self.last = self.timed_iters + iters, self.timed_s + now - self.last, now
        return self.rate

    def summary(self, iters, wall_s):
        """`, N tokens/s overall; M tokens/s while training` for `iters` steps in `wall_s` seconds of a run
        (its start, evaluations and saves included): the second is the steps' alone; "" when nothing trained."""
        if not iters or wall_s <= 0:
            return ""
        overall = f", {iters * self.tokens_per_iter / wall_s:,.0f} tokens/s overall"
        if not self.timed_s:
            return overall
        return f"{overall}; {self.timed_iters * self.tokens_per_iter / self.timed_s:,.0f} tokens/s while training"


class EvalSamples:
    """A short sample at each evaluation, printed and appended to out_dir/samples.txt, so a learner watches
    noise turn into text (the "Let's build GPT" lecture does this by hand). The same prompt and seed
    every time: the samples differ only by what the model has learned. Its own generator leaves the
    training's random state alone, so resuming stays exact.
    """

    HEADER = re.compile(r"^=== iter (\d+), val loss \S+ ===$", re.M)

    START_TOKENS = 32  # at most this much of the training text stands in for an eval_sample_start it cannot encode

    def __init__(self, cfg, data, device, resume_iter=None, write=True):
        """data: the run's TokenData. write=False: sample without writing samples.txt (the other processes of a
        sharded run)."""
        self.cfg, self.tokenizer = cfg, load_tokenizer(data.meta)
        self.prompt = torch.tensor([prompt_ids(self.tokenizer, self.start(data, say=write))], device=device)  # (1, T)
        self.file = None
        if write:
            path, kept = Path(cfg.out_dir) / "samples.txt", ""
            if resume_iter is not None and path.is_file():  # drop the samples past the checkpoint
                text = path.read_text(encoding="utf-8")
                later = [m.start() for m in self.HEADER.finditer(text) if int(m.group(1)) > resume_iter]
                kept = text[:later[0]] if later else text
            self.file = ContinuedFile(path, kept)

    def start(self, data, say):
        """eval_sample_start; or, when the dataset's tokenizer cannot encode it (a config's 'ROMEO:\n' on a text
        without a capital O), the training text's first line or first words (START_TOKENS tokens at most), said in
        one line."""
        try:
            self.tokenizer.encode(self.cfg.eval_sample_start)
            return self.cfg.eval_sample_start
        except UserError as e:
            first = data.get_batch("train", 1, None, starts=torch.zeros(1, dtype=torch.long))[0][0]  # (T,)
            text = self.tokenizer.decode(first[:self.START_TOKENS].tolist())
            start = text[:text.index("\n") + 1] if "\n" in text else text[:text.rfind(" ") + 1] or text
            if say:
                print(f"note: eval_sample_start={self.cfg.eval_sample_start!r} cannot be encoded in dataset "
                      f"'{data.dir.name}' ({str(e).split(';')[0]}); the evaluation samples start as its training "
                      f"text does instead: {start!r}", file=sys.stderr)
            return start

    @torch.no_grad()
    def write(self, model, it, val_loss, ctx):
        """Sample, append to samples.txt, and return the text with its header."""
        generator = torch.Generator(device=self.prompt.device).manual_seed(self.cfg.seed)
        model.eval()
        with ctx:
            ids = model.generate(self.prompt, self.cfg.eval_sample_tokens, temperature=0.8, top_k=200,
                                 vocab_limit=self.tokenizer.vocab_size, generator=generator)[0].tolist()
        model.train()
        block = f"=== iter {it}, val loss {val_loss:.4f} ===\n{self.tokenizer.decode(ids)}\n\n"
        if self.file is not None:
            self.file.append(block)
        return block
