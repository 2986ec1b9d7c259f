"""Benchmark suites that run whole programs side by side and print one table: bench.py gpu (ours beside
nanoGPT on one GPU) and bench.py cpu_bf16 (the CPU recipes in float32 and bfloat16).

Each task is a child process (nanoGPT's train.py, our train.py, bench.py train or sample) with a time
budget: it is ended (with everything it started) when the budget is spent, and the suite as a whole
stops starting tasks when its own budget is spent, so a GPU session can plan its minutes. Figures
come from the children's own output: nanoGPT's "iter N: ... time Yms" and "step N: ... val loss Y"
lines, our train.py's "iter N: ... val loss Y" lines, and the JSON lines of bench.py --json_out.
Every child's output is kept in out_dir/logs/, and the table is rewritten after every task (as
table.md and figures.json), so a suite cut short still shows what it measured.

Time to a val loss is from the child's start (the interpreter's, so imports count) to the line that
reports it, on the same clock for nanoGPT and us.
"""

import json
import os
import pickle
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from gptkit.data import load_meta
from gptkit.config import closest_key_hint
from gptkit.errors import UserError
from gptkit.system import cpu_has_bf16, estimate_mfu, peak_flops

REPO_ROOT = Path(__file__).resolve().parents[1]
NANOGPT_TARGET = 1.4697  # nanoGPT's published best val loss on Tiny Shakespeare char (its README)
# nanoGPT's files the suite runs: copied, unmodified, into out_dir/nanogpt/ beside the data it reads
NANOGPT_FILES = ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py")
EVAL_LINE = re.compile(r"(?:iter|step) (\d+): train loss [^,]+, val loss ([0-9.]+|nan|inf)")  # ours | nanoGPT's
NANOGPT_ITER_LINE = re.compile(r"iter (\d+): loss [^,]+, time ([0-9.]+)ms")
SUITE_LINE = "bench.py gpu: "  # what the wrapper around nanoGPT's train.py prints at exit
# Runs nanoGPT's train.py as `python train.py ARGS` would, and prints its peak CUDA memory at exit
# (over its whole run: its script has no place to reset the count after the warm-up, as ours does).
NANOGPT_WRAPPER = (
    "import atexit, json, runpy, sys, torch\n"
    "def report():\n"
    "    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()\n"
    f"    print({SUITE_LINE!r} + json.dumps({{'peak_memory': torch.cuda.max_memory_allocated() if cuda else None}}))\n"
    "atexit.register(report)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")

# --scale=tiny: every row at toy sizes on the CPU, nothing compiled; what the tests run, so the suite
# cannot rot while no GPU is at hand. Its figures measure nothing.
TINY_MODEL = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32"]
TINY_SYSTEM = ["--device=cpu", "--dtype=float32", "--compile=False"]
TINY_TRAINING = [*TINY_MODEL, *TINY_SYSTEM, "--batch_size=4", "--max_iters=20", "--eval_interval=10",
                 "--eval_iters=2", "--warmup_iters=0", "--learning_rate=0.01"]
TINY_TARGET = 3.6  # reached at the first evaluation after 10 steps
# bench.py gpu's tasks, in the order they run (gpu_tasks)
GPU_TASKS = ["nanogpt_train", "ours_train", "nanogpt_time_to_loss", "ours_time_to_loss", "ours_time_to_loss_fast",
             "sampling", "ours_train_batch", "ours_train_max_autotune"]


@dataclass
class GpuSuiteConfig:
    nanogpt_dir: str = ""  # a karpathy/nanoGPT checkout: its train.py, model.py, configurator.py, config/
    out_dir: str = "out-bench-gpu"  # table.md, figures.json, logs/ (replaced by each run of the suite)
    data_dir: str = "data"  # where `python3 prepare.py shakespeare_char` wrote the char dataset
    quick: bool = False  # a smoke test: every row for seconds (time to loss stops early, unreached)
    budget_s: float = 480.0  # the whole suite's seconds, compilation included; tasks past it are not started
    # full: on a CUDA GPU at the sizes; tiny: toy sizes on the CPU, to test the suite itself
    scale: Literal["full", "tiny"] = "full"
    tasks: str = ""  # comma-separated task names to run (e.g. to rerun the ones a spent budget cut); empty: all

    def validate(self):
        if not self.nanogpt_dir:
            raise UserError("name nanoGPT's folder: python3 bench.py gpu --nanogpt_dir=PATH/TO/nanoGPT "
                            "(a clone of github.com/karpathy/nanoGPT)")
        if not self.budget_s > 0:
            raise UserError(f"budget_s must be positive, got {self.budget_s}")
        for name in self.tasks.split(","):
            if name.strip() and name.strip() not in GPU_TASKS:
                raise UserError(f"tasks: no task {name.strip()!r}{closest_key_hint(name.strip(), GPU_TASKS)}; "
                                f"the tasks: {', '.join(GPU_TASKS)}")


@dataclass
class CpuBf16Config:
    recipes: list[str] = field(default_factory=list)  # config files (positional); none: the three CPU recipes
    out_dir: str = "out-bench-cpu-bf16"  # table.md, figures.json, logs/ (replaced by each run)
    data_dir: str = "data"  # where `python3 prepare.py shakespeare_char` wrote the char dataset
    budget_s: float = 360.0  # the whole comparison's seconds; runs past it are not started
    run_budget_s: float = 75.0  # each training run's seconds: a bfloat16 run slower than that is cut, as not paying
    scale: Literal["full", "tiny"] = "full"  # tiny: toy sizes, to test the command itself

    def validate(self):
        for key in ("budget_s", "run_budget_s"):
            if not getattr(self, key) > 0:
                raise UserError(f"{key} must be positive, got {getattr(self, key)}")


# ----------------------------------------------------------------------------------------------
# running children


def run_child(command, cwd, log_path, budget_s, watch=None, env=None):
    """Run command in its own process group, its stdout and stderr into log_path, for at most budget_s
    seconds. watch(line, seconds since start) sees each line as it comes; True ends the child there.
    Whatever the outcome, nothing it started is left running (compile workers included). env: variables to set.
    Returns (exit code or None if ended here, seconds, how it ended: "exited", "watched" or "over budget")."""
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}  # lines as printed: their time is the figure
    start = time.perf_counter()
    ended, buffer = None, b""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while ended is None:
                left = budget_s - (time.perf_counter() - start)
                if left <= 0:
                    ended = "over budget"
                elif not select.select([proc.stdout], [], [], min(left, 1.0))[0]:
                    ended = "exited" if proc.poll() is not None else None  # exited; a process it started holds the pipe
                else:
                    chunk = os.read(proc.stdout.fileno(), 1 << 16)
                    log.write(chunk)
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    seconds = time.perf_counter() - start
                    # a progress bar redraws with \r: the line is what follows the last one
                    texts = (line.decode(errors="replace").rsplit("\r", 1)[-1] for line in lines)
                    if watch and any(watch(text, seconds) for text in texts):
                        ended = "watched"
                    elif not chunk:  # its output closed: it is exiting
                        try:
                            proc.wait(timeout=max(budget_s - (time.perf_counter() - start), 0.1))
                            ended = "exited"
                        except subprocess.TimeoutExpired:
                            ended = "over budget"
        finally:
            seconds = time.perf_counter() - start
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child if still running, and whatever it started
            except ProcessLookupError:  # all gone already
                pass
            proc.wait()
            proc.stdout.close()
    return (proc.returncode if ended == "exited" else None), seconds, ended


class Suite:
    """Tasks run one after another under the suite's budget; their results saved after each."""

    def __init__(self, out_dir, budget_s, header, render):
        self.out, self.budget_s, self.header, self.render = Path(out_dir), budget_s, header, render
        for folder in ("logs", "runs", "json", "compile_cache"):  # a previous run's are replaced
            shutil.rmtree(self.out / folder, ignore_errors=True)
            (self.out / folder).mkdir(parents=True)
        # torch.compile's caches of this run alone: every run compiles cold, as on a fresh machine, and the
        # figures that include compiling compare across runs
        self.env = {"TORCHINDUCTOR_CACHE_DIR": str(self.out / "compile_cache")}
        self.start, self.results = time.perf_counter(), {}

    def run(self, tasks):
        with tqdm(tasks, desc="tasks", unit="task", file=sys.stderr, dynamic_ncols=True) as bar:
            for task in bar:
                bar.set_postfix_str(task.key)
                result = self.run_task(task)
                bar.write(f"{task.key}: {result['status']}, {result['seconds']:.1f} s of its {task.budget_s:.0f} s "
                          f"({result['log']})")
        elapsed = time.perf_counter() - self.start
        print(self.save())
        print(f"done: {len(tasks)} tasks in {elapsed:.0f} s of the {self.budget_s:.0f} s budget; "
              f"{self.out / 'table.md'}, {self.out / 'figures.json'}, logs in {self.out / 'logs'}/")

    def run_task(self, task):
        log = self.out / "logs" / f"{task.key}.log"
        left = self.budget_s - (time.perf_counter() - self.start)
        result = {"command": [str(c) for c in task.command], "budget_s": task.budget_s, "log": str(log),
                  "seconds": 0.0, "evals": [], "rows": [], "warmup": task.warmup}
        if left < 1:
            result["status"] = "not run: the suite's budget was spent"
            self.results[task.key] = result
            return result
        json_out = self.out / "json" / f"{task.key}.jsonl"

        def watch(line, seconds):
            found = EVAL_LINE.search(line)
            if found:
                val = float(found.group(2))
                result["evals"].append({"iter": int(found.group(1)), "val_loss": val, "seconds": round(seconds, 2)})
                return task.target is not None and val <= task.target
            if line.startswith(SUITE_LINE):
                result["rows"].append(json.loads(line[len(SUITE_LINE):]))
            iteration = NANOGPT_ITER_LINE.search(line)
            if iteration:
                result.setdefault("iter_ms", []).append(float(iteration.group(2)))
            return False

        command = [*task.command, f"--json_out={json_out}"] if task.json else task.command
        code, seconds, ended = run_child(command, task.cwd, log, min(task.budget_s, left), watch, self.env)
        if json_out.is_file():
            result["rows"] += [json.loads(line) for line in json_out.read_text().splitlines() if line.strip()]
        result["seconds"] = round(seconds, 2)
        if ended == "over budget":
            cut = "the suite's budget" if left < task.budget_s else f"its {task.budget_s:.0f} s budget"
            result["status"] = f"cut at {seconds:.0f} s: {cut} was spent"
        elif ended == "watched":
            result["status"] = "reached the target"
        else:
            result["status"] = "ok" if code == 0 else f"failed (exit {code}; see its log)"
        self.results[task.key] = result
        self.save()
        return result

    def save(self):
        """table.md and figures.json as they stand (a suite cut short keeps what it measured); the page."""
        page = self.header + "\n\n" + self.render(self.results) + "\n"
        (self.out / "table.md").write_text(page)
        (self.out / "figures.json").write_text(json.dumps({"header": self.header, "tasks": self.results}, indent=1))
        return page


@dataclass
class Task:
    key: str  # names its log, and its results in figures.json
    command: list
    cwd: Path
    budget_s: float
    json: bool = False  # a bench.py command: it writes its figures as JSON lines (--json_out)
    target: float | None = None  # end the child at the first val loss <= target
    warmup: int = 0  # nanoGPT's train.py: iterations after its first not timed (its first compiles and evaluates)


def python():
    return sys.executable or "python3"


# ----------------------------------------------------------------------------------------------
# bench.py gpu


def gpu_suite(cfg):
    """Ours beside nanoGPT on one GPU: training throughput, time to val 1.4697, sampling (docs/performance.md)."""
    tiny = cfg.scale == "tiny"
    if not tiny and not torch.cuda.is_available():
        raise UserError("bench.py gpu measures on a CUDA GPU and this machine has none; --scale=tiny runs the whole "
                        "suite at toy sizes on the CPU (what tests/test_suite.py does)")
    out = Path(cfg.out_dir).resolve()
    char_data = char_dataset(cfg.data_dir)
    work = nanogpt_workdir(cfg.nanogpt_dir, out / "nanogpt", char_data)
    target = TINY_TARGET if tiny else NANOGPT_TARGET
    tasks = gpu_tasks(cfg, work, char_data.parent, out / "runs", target)
    chosen = {name.strip() for name in cfg.tasks.split(",") if name.strip()}
    tasks = [task for task in tasks if task.key in chosen] if chosen else tasks
    mode = "--scale=tiny: toy sizes on the CPU, nothing compiled; a test of the suite, no measurement" if tiny \
        else "--quick: a smoke test, few iterations" if cfg.quick else "full"
    device = "CPU" if tiny else torch.cuda.get_device_name()
    header = (f"# python3 bench.py gpu: ours beside nanoGPT ({mode})\n\n"
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, {device}; "
              f"nanoGPT from {Path(cfg.nanogpt_dir).resolve()}")
    Suite(out, cfg.budget_s, header, lambda results: gpu_table(results, target, device, tiny)).run(tasks)


def gpu_tasks(cfg, work, data_dir, runs, target):
    """The suite's tasks in the order they run, each with its budget in seconds (the issue: all of it in 8
    minutes on one H100, compilation included). The rows that matter most run first; the costliest
    levers (two more compilations, then max-autotune's) last, where a spent budget cuts them."""
    tiny = cfg.scale == "tiny"
    warmup, iters = (1, 2) if tiny else (3, 10) if cfg.quick else (10, 50)
    gpt2 = ["--dropout=0.0", "--bias=False"] + (TINY_MODEL if tiny else ["--n_layer=12", "--n_head=12", "--n_embd=768",
                                                                         "--block_size=1024"])
    system = TINY_SYSTEM if tiny else ["--device=cuda", "--dtype=bfloat16", "--compile=True"]
    batch, *more = (2, 3, 4) if tiny else (12, 16, 32)
    bench_train = [python(), "bench.py", "train", *gpt2, *system, "--dataset=openwebtext", f"--data_dir={data_dir}",
                   f"--bench_warmup={warmup}", f"--bench_iters={iters}"]
    # time to loss: nanoGPT's config and ours as they ship; --quick stops them early, tiny shrinks them
    short = TINY_TRAINING if tiny else ["--max_iters=40", "--eval_interval=20", "--eval_iters=10"] if cfg.quick else []
    ours = [f"--data_dir={data_dir}", "--overwrite=True", "--eval_sample_tokens=0", f"--stop_at_val_loss={target}",
            *short, *(["--eval_full_val=False"] if tiny else [])]
    sample = [python(), "bench.py", "sample", *gpt2, *system[:2], "--vocab_size=50304",
              f"--new_tokens={8 if tiny else 50 if cfg.quick else 500}", f"--nanogpt_dir={work}",
              "--sample_loops=kv_cache,static", *(["--bench_compile=False"] if tiny else [])]
    budget = 120 if tiny else None  # a loaded CPU must not cut the test's tasks
    tasks = [
        Task("nanogpt_train", [python(), "-c", NANOGPT_WRAPPER, "train.py", *gpt2, *system, "--dataset=gpt2_random",
                               f"--batch_size={batch}", "--gradient_accumulation_steps=1",
                               f"--max_iters={warmup + iters}", "--eval_iters=1", "--log_interval=1",
                               "--always_save_checkpoint=False"], work, budget or 90, warmup=warmup),
        Task("ours_train", [*bench_train, f"--batch_size={batch}", "--levers=eager,foreach,muon,host_data"],
             REPO_ROOT, budget or 90, json=True),
        Task("nanogpt_time_to_loss", [python(), "train.py", "config/train_shakespeare_char.py", *short], work,
             budget or 120, target=target),
        Task("ours_time_to_loss", [python(), "train.py", "config/shakespeare_char.py", f"--out_dir={runs / 'char'}",
                                   *ours], REPO_ROOT, budget or 60, target=target),
        Task("ours_time_to_loss_fast", [python(), "train.py", "config/shakespeare_char_fast.py",
                                        f"--out_dir={runs / 'char_fast'}", *ours], REPO_ROOT, budget or 50,
             target=target),
        Task("sampling", sample, REPO_ROOT, budget or 90, json=True),
        Task("ours_train_batch", [*bench_train, f"--batch_size={more[0]}", f"--levers=batch_size={more[1]}"],
             REPO_ROOT, budget or 90, json=True),
        Task("ours_train_max_autotune", [*bench_train, f"--batch_size={batch}", "--compile_mode=max-autotune"],
             REPO_ROOT, budget or 90, json=True),
    ]
    assert [task.key for task in tasks] == GPU_TASKS
    return tasks


def char_dataset(data_dir):
    folder = Path(data_dir).resolve() / "shakespeare_char"
    if not (folder / "meta.json").is_file():
        raise UserError(f"no prepared dataset in {folder}; run: python3 prepare.py shakespeare_char "
                        f"(or pass --data_dir=)")
    return folder


def nanogpt_workdir(nanogpt_dir, work, char_data):
    """A folder to run nanoGPT's train.py in (it reads configurator.py and data/ from its working folder):
    its files, copied unmodified; data/shakespeare_char/ holding our prepared tokens (the same split of the
    same text as its prepare.py writes) with its meta.pkl; data/gpt2_random/, random GPT-2 tokens without a
    meta.pkl, for which its train.py takes GPT-2's 50304 vocabulary."""
    source = Path(nanogpt_dir)
    missing = [name for name in NANOGPT_FILES if not (source / name).is_file()]
    if missing:
        raise UserError(f"{source} lacks nanoGPT's {', '.join(missing)}; pass --nanogpt_dir=PATH/TO/nanoGPT "
                        f"(a clone of github.com/karpathy/nanoGPT)")
    shutil.rmtree(work, ignore_errors=True)
    for name in NANOGPT_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, work / name)
    char = work / "data" / "shakespeare_char"
    char.mkdir(parents=True)
    for split in ("train.bin", "val.bin"):
        shutil.copyfile(char_data / split, char / split)
    chars = load_meta(char_data)["chars"]
    with open(char / "meta.pkl", "wb") as f:  # as nanoGPT's data/shakespeare_char/prepare.py writes it
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                     "stoi": {c: i for i, c in enumerate(chars)}}, f)
    random_dataset(work / "data" / "gpt2_random", 50257, 2_000_000, meta=False)
    return work


def random_dataset(folder, vocab_size, n_tokens, meta=True):
    """A dataset of random tokens in prepare.py's format, so the real data path is what is timed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        rng.integers(0, vocab_size, n_tokens, dtype=np.uint16).tofile(folder / f"{split}.bin")
    if meta:
        (folder / "meta.json").write_text(json.dumps({"tokenizer": "random", "vocab_size": vocab_size}))
    return folder


# the rows of the throughput table: (who, setting, task, lever)
THROUGHPUT_ROWS = [
    ("nanoGPT train.py", "compile", "nanogpt_train", None),
    ("ours", "compile (as train.py --compile=True)", "ours_train", ""),
    ("ours", "eager", "ours_train", "eager"),
    ("ours", "AdamW foreach, not fused", "ours_train", "foreach"),
    ("ours", "Muon for the block matrices", "ours_train", "muon"),
    ("ours", "dataset in host memory, batches copied", "ours_train", "host_data"),
    ("ours", "batch_size {batch_size}", "ours_train_batch", ""),
    ("ours", "batch_size {batch_size}", "ours_train_batch", "batch_size="),
    ("ours", "compile mode max-autotune", "ours_train_max_autotune", ""),
]


def gpu_table(results, target, device, tiny):
    """The suite's markdown: three tables and the tasks' budgets, from whatever has run so far."""
    lines = ["## GPT-2 124M training throughput, bf16" + (" (--scale=tiny: a toy shape)" if tiny else ""), "",
             "| run | setting | tokens/iter | ms/iter | tokens/s | vs nanoGPT | MFU | peak memory |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    nanogpt = nanogpt_throughput(results.get("nanogpt_train"), device)
    base = nanogpt["tokens_per_s"] if nanogpt else None
    for who, setting, key, lever in THROUGHPUT_ROWS:
        if lever is None:
            row = nanogpt
        else:
            rows = [r for r in results.get(key, {}).get("rows", []) if r.get("command") == "train"]
            row = next((r for r in rows if r["lever"] == lever or lever.endswith("=") and r["lever"].startswith(lever)),
                       None)
        if row is None:
            setting = setting.format(batch_size="N")
            lines.append(f"| {who} | {setting} | | | | | | {status_of(results.get(key))} |")
            continue
        setting = setting.format(**row)
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") else "n/a"
        memory = f"{row['peak_memory'] / 2**30:.2f} GiB" if row.get("peak_memory") else "n/a"
        lines.append(f"| {who} | {setting} | {row['tokens_per_iter']:,} | {row['ms_per_iter']:.2f} | "
                     f"{row['tokens_per_s']:,.0f} | {ratio(row['tokens_per_s'], base)} | {mfu} | {memory} |")
    lines += ["", f"## Time from process start to val loss <= {target}, Tiny Shakespeare char", "",
              "| run | config | seconds | at iter | val loss | last val seen |", "|" + " --- |" * 6]
    for who, config, key in (("nanoGPT train.py", "config/train_shakespeare_char.py", "nanogpt_time_to_loss"),
                             ("ours", "config/shakespeare_char.py", "ours_time_to_loss"),
                             ("ours", "config/shakespeare_char_fast.py", "ours_time_to_loss_fast")):
        lines.append(f"| {who} | {config} | " + time_to_loss_cells(results.get(key), target) + " |")
    lines += ["", "## Sampling the GPT-2 124M shape, bf16, after a one-token prompt", "",
              "| batch | loop | tokens/s | ms/token | vs nanoGPT | compile s |", "|" + " --- |" * 6]
    sampling = results.get("sampling", {})
    rows = [r for r in sampling.get("rows", []) if r.get("command") == "sample"]
    for batch in (1, 8):
        base = next((r["tokens_per_s"] for r in rows if r.get("batch") == batch and "nanoGPT" in r["loop"]), None)
        for r in (r for r in rows if r.get("batch") == batch):
            compile_s = f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else ""
            lines.append(f"| {batch} | {r['loop']} | {r['tokens_per_s']:,.0f} | {r['ms_per_step']:.2f} | "
                         f"{ratio(r['tokens_per_s'], base)} | {compile_s} |")
    lines += [f"\n{r['note']}" for r in rows if "note" in r]
    if not rows:
        lines.append(f"| | | | | | {status_of(sampling or None)} |")
    return "\n".join(lines + ["", tasks_table(results)])


def nanogpt_throughput(result, device):
    """nanoGPT's own iteration times (its log's "time Yms"), after its first iteration (compilation, an
    evaluation) and the warm-up, as tokens/s; MFU by our formula on the same shape and the device's peak,
    as for our rows."""
    timed = (result or {}).get("iter_ms", [])[1 + result["warmup"]:] if result else []
    if not timed:
        return None
    argv = dict(arg[2:].split("=", 1) for arg in result["command"] if arg.startswith("--"))
    tokens_per_iter = int(argv["batch_size"]) * int(argv["block_size"])
    tokens_per_s = tokens_per_iter / (sum(timed) / len(timed) / 1000)
    exit_report = next((r for r in result["rows"] if "peak_memory" in r), {})
    peak = peak_flops(device)
    mfu = estimate_mfu(nanogpt_model(argv), tokens_per_s, peak) if peak else None
    return {"tokens_per_iter": tokens_per_iter, "ms_per_iter": sum(timed) / len(timed), "tokens_per_s": tokens_per_s,
            "mfu": mfu, "peak_memory": exit_report.get("peak_memory")}


def nanogpt_model(argv):
    """Our model in nanoGPT's shape, built on no device (for its FLOPs per token, gptkit.system.flops_per_token)."""
    from model import GPT, GPTConfig

    with torch.device("meta"):
        return GPT(GPTConfig(n_layer=int(argv["n_layer"]), n_head=int(argv["n_head"]), n_embd=int(argv["n_embd"]),
                             block_size=int(argv["block_size"]), vocab_size=50304, bias=False))


def time_to_loss_cells(result, target):
    if result is None:
        return "| | | | not run"
    evals = result["evals"]
    hit = next((e for e in evals if e["val_loss"] <= target), None)
    last = f"{evals[-1]['val_loss']:.4f} at iter {evals[-1]['iter']}" if evals else "none"
    if hit:
        return f"**{hit['seconds']:.1f}** | {hit['iter']} | {hit['val_loss']:.4f} | {last}"
    return f"not reached ({status_of(result)}) | | | {last}"


def tasks_table(results):
    lines = ["## Tasks: each a process, with its time budget", "", "| task | budget s | took s | status | log |",
             "| --- | --- | --- | --- | --- |"]
    for key, r in results.items():
        lines.append(f"| {key} | {r['budget_s']:.0f} | {r['seconds']:.1f} | {r['status']} | {Path(r['log']).name} |")
    return "\n".join(lines)


def status_of(result):
    return "not run" if result is None else result["status"]


def ratio(value, base):
    return f"{value / base:.2f}x" if base else ""


# ----------------------------------------------------------------------------------------------
# bench.py cpu_bf16

# The CPU recipes and the val loss each is timed to: nanoGPT's CPU result (1.886) for the two char
# recipes (reached at iter 200 and 180 in float32); the lab's 2.48 at its iter 100 (float32 2.4587).
CPU_RECIPES = {"config/shakespeare_char_cpu_fast.py": 1.886, "config/shakespeare_char_cpu.py": 1.886,
               "config/lab_char_cpu.py": 2.48}


def cpu_bf16_suite(cfg):
    """The CPU recipes in float32 and bfloat16, time to the same val loss side by side, and sampling."""
    tiny = cfg.scale == "tiny"
    recipes = {path: CPU_RECIPES.get(path, CPU_RECIPES["config/shakespeare_char_cpu.py"]) for path in cfg.recipes} \
        if cfg.recipes else CPU_RECIPES
    configs = {path: Path(path) if Path(path).is_file() else REPO_ROOT / path for path in recipes}
    for path, config in configs.items():
        if not config.is_file():
            raise UserError(f"no config file {path}; name one like config/shakespeare_char_cpu.py")
    out = Path(cfg.out_dir).resolve()
    data_dir = char_dataset(cfg.data_dir).parent
    tasks = []
    for path, target in recipes.items():
        for dtype in ("float32", "bfloat16"):
            name = f"{Path(path).stem}_{dtype}"
            command = [python(), "train.py", str(configs[path].resolve()), f"--data_dir={data_dir}",
                       f"--out_dir={out / 'runs' / name}", "--overwrite=True", "--eval_sample_tokens=0",
                       f"--stop_at_val_loss={TINY_TARGET if tiny else target}",
                       *([*TINY_TRAINING, "--eval_full_val=False"] if tiny else []), f"--dtype={dtype}"]  # last: wins
            tasks.append(Task(name, command, REPO_ROOT, cfg.run_budget_s, target=TINY_TARGET if tiny else target))
    for dtype in ("float32", "bfloat16"):
        shape = [*TINY_MODEL, "--vocab_size=65", "--new_tokens=8"] if tiny else ["--new_tokens=200"]
        tasks.append(Task(f"sampling_{dtype}", [python(), "bench.py", "sample", "--device=cpu", f"--dtype={dtype}",
                                                "--sample_loops=kv_cache", *shape], REPO_ROOT, 60, json=True))
    header = (f"# python3 bench.py cpu_bf16: float32 beside bfloat16 autocast on this CPU"
              f"{' (--scale=tiny: toy sizes, no measurement)' if tiny else ''}\n\n"
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, {cpu_name()}, "
              f"{torch.get_num_threads()} threads, torch's kernels: {torch.backends.cpu.get_cpu_capability()}, "
              f"native bfloat16 (cpuinfo/sysctl): {'yes' if cpu_has_bf16() else 'no'}")
    targets = {Path(path).stem: TINY_TARGET if tiny else target for path, target in recipes.items()}
    Suite(out, cfg.budget_s, header, lambda results: cpu_bf16_table(results, targets)).run(tasks)


def cpu_name():
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "CPU"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "CPU")


def cpu_bf16_table(results, targets):
    lines = ["## Time from process start to the val loss, float32 and bfloat16", "",
             "| recipe | val loss <= | float32 s (iter) | bfloat16 s (iter) | bf16 / f32 | last val (f32, bf16) |",
             "|" + " --- |" * 6]
    for stem, target in targets.items():
        cells, seconds, last = [], [], []
        for dtype in ("float32", "bfloat16"):
            result = results.get(f"{stem}_{dtype}")
            evals = result["evals"] if result else []
            hit = next((e for e in evals if e["val_loss"] <= target), None)
            cells.append(f"{hit['seconds']:.1f} ({hit['iter']})" if hit else f"not reached: {status_of(result)}")
            seconds.append(hit["seconds"] if hit else None)
            last.append(f"{evals[-1]['val_loss']:.4f}" if evals else "-")
        slower = f"{seconds[1] / seconds[0]:.2f}x" if all(seconds) else ""
        lines.append(f"| {stem} | {target} | {cells[0]} | {cells[1]} | {slower} | {', '.join(last)} |")
    lines += ["", "## Sampling tokens/s: bench.py sample's 6x384 model (--scale=tiny: 1x32), KV cache", "",
              "| batch | float32 | bfloat16 | bfloat16 / float32 |", "| --- | --- | --- | --- |"]
    for batch in (1, 8):
        speeds = []
        for dtype in ("float32", "bfloat16"):
            rows = results.get(f"sampling_{dtype}", {}).get("rows", [])
            speeds.append(next((r["tokens_per_s"] for r in rows if r.get("batch") == batch), None))
        cells = [f"{s:,.0f}" if s else "-" for s in speeds]
        lines.append(f"| {batch} | {cells[0]} | {cells[1]} | {ratio(speeds[1], speeds[0]) if all(speeds) else ''} |")
    return "\n".join(lines + ["", tasks_table(results)])
