"""Change one thing, keep everything else equal, and compare: one training run per value.

    python3 experiment.py config/lab_char_cpu.py --vary=pos_encoding=learned,sinusoidal,rope,none
    python3 experiment.py config/lab_char_cpu.py --vary=n_head=1,8 --vary=mask=causal,none --max_iters=600
    python3 experiment.py config/sweep_mask.py       # a sweep config: the training config and what to vary
    python3 experiment.py config/sweep_encoder.py    # two training configs compared: the encoder-decoder vs a GPT

Each run is `python3 train.py CONFIG [--key=value ...] --KEY=VALUE --out_dir=OUT_ROOT/KEY=VALUE
--overwrite=True` in a fresh interpreter (same seed, so the runs differ only in KEY), its output kept
in OUT_ROOT/KEY=VALUE/train.log. Other --key=value settings go to every run. --vary given twice
makes the grid of all combinations. At the end: a table of final train and val loss, best val
loss, wall time, training tokens/s, parameter count and the KV cache's bytes per token in float32
(printed, and saved as OUT_ROOT/KEYS.md), and the curves in OUT_ROOT/KEYS.png (which needs matplotlib)
with a bar of each run's tokens/s. Runs that translate (log.jsonl carries exact_match) also get their
held-out exact match (final and best), BLEU and chrF in the table, and exact match in the plot.

--vary=config=A.py,B.py compares training configs that differ in many settings, even in the model (a GPT
or model='transformer', the encoder-decoder): each run is its config file as it is, named by the file's
stem (OUT_ROOT/A), with the other --key=value settings given to every run. config/sweep_encoder.py asks
"do we need the encoder?" this way (docs/experiments.md).

--reuse=True skips a run when OUT_ROOT already holds a finished one with exactly the same settings
(the default run of every sweep is the same run, for example). Runs are deterministic on CPU.

--walk="CHANGE; CHANGE; ..." walks instead of varying: run 0 is the config as it is, and run i adds the i-th
change to run i - 1's settings, so each step changes one thing on top of the steps before it. A change is one
or more KEY=VALUE separated by spaces (a step may need two settings, e.g. "mlp=swiglu mlp_hidden=341").
config/walk_llama.py walks the lab's GPT-2 to a Llama, one setting at a time (docs/experiments.md).

A sweep config is a config file that also sets `vary` (a string as on the command line, or a list
of them for a grid); `config` names the training config it starts from, and its other keys are
settings for every run. config/sweep_mask.py is one:

    config = 'config/lab_char_cpu.py'
    vary = 'mask=causal,none,anticausal'
"""

import dataclasses
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from tqdm import tqdm

from gptkit.checkpoint import MODELS, settings_class
from gptkit.config import build_configs, field_types, help_text, parse_override, read_args, read_config_file
from gptkit.data import load_meta
from gptkit.errors import UserError, run_main
from gptkit.memory import kv_cache_bytes_per_token
from gptkit.plots import LEAK, matplotlib_figure, plot_loss
from gptkit.runlog import read_log
from gptkit.runrecord import NOT_COMPARED, as_override, compared_settings, count_params, find_reusable, write_record
from model import GPTConfig
from train import TrainConfig
from transformer import TransformerConfig

REPO = Path(__file__).resolve().parent


@dataclass
class ExperimentConfig:
    config: str = ""  # the training config file every run starts from (in a sweep config); --vary=config: one per run
    out_root: str = "out-exp"  # each run trains into out_root/KEY=VALUE
    reuse: bool = False  # skip runs already finished in out_root with exactly the same settings
    plot: str = ""  # the comparison PNG; empty: out_root/KEYS.png
    jobs: int = 1  # runs at once; above 1, each run gets --threads=cores/jobs unless threads is set
    vary: list[str] = field(default_factory=list)  # KEY=v1,v2: one run per value; given twice, the grid
    walk: list[str] = field(default_factory=list)  # "KEY=VALUE [KEY=VALUE]; ...": one change per step, on the last

    def validate(self):
        if self.jobs < 1:
            raise UserError(f"jobs must be at least 1, got {self.jobs}")


EXPERIMENT_KEYS = {f.name for f in dataclasses.fields(ExperimentConfig)}


def parse_vary(text):
    """'key=v1,v2' -> (key, ['v1', 'v2']): values are kept as typed, as train.py will read them."""
    key, sep, values = text.partition("=")
    values = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key or not values:
        raise UserError(f"bad --vary '{text}': write it as --vary=KEY=value1,value2")
    if len(set(values)) != len(values):
        raise UserError(f"--vary {key} lists a value twice: {text}")
    return key, values


def plan(argv):
    """Read the command line (and a sweep config) into the experiment settings and the list of runs."""
    if "-h" in argv or "--help" in argv:
        print(help_text([ExperimentConfig, GPTConfig, TransformerConfig, TrainConfig]))
        sys.exit(0)
    pairs, positional = read_args(argv)
    if len(positional) > 1:
        raise UserError(f"expected one config file, got {len(positional)}: {' '.join(positional)}; "
                        f"settings look like --key=value")
    file_values = {}
    if positional:
        file_values = read_config_file(positional[0])
        if "vary" not in file_values and "walk" not in file_values:  # a plain training config: train.py reads it
            file_values = {"config": positional[0]}
    values = [*file_values.items(), *pairs]
    (exp,) = build_configs([ExperimentConfig], [(k, v) for k, v in values if k in EXPERIMENT_KEYS])
    settings = {k: v for k, v in values if k not in EXPERIMENT_KEYS}
    if exp.jobs > 1 and "threads" not in settings:  # N runs with all cores each would fight over them
        settings["threads"] = max(1, (os.cpu_count() or 1) // exp.jobs)
    if exp.vary and exp.walk:
        raise UserError("give --vary (one run per value) or --walk (one change per step), not both")
    if not exp.vary and not exp.walk:
        raise UserError("nothing to vary: add --vary=KEY=value1,value2 (e.g. --vary=pos_encoding=learned,rope)")
    if exp.walk:
        keys, steps = ["step", "change"], walk_steps(exp.walk)
    else:
        grid = [parse_vary(v) for v in exp.vary]
        keys = [k for k, _ in grid]
        if len(set(keys)) != len(keys):
            raise UserError(f"--vary names {keys} more than once")
        stems = training_configs(exp, dict(grid).get("config"))
        steps = []
        for combo in product(*[[(k, v) for v in vs] for k, vs in grid]):
            row = tuple((k, stems[v] if k == "config" else v) for k, v in combo)  # a config file by its stem
            steps.append((",".join(v if k == "config" else f"{k}={v}" for k, v in row), row, list(combo)))
    for key in {k for _, _, changes in steps for k, _ in changes}:
        if key == "config" and exp.walk:
            raise UserError("--walk config: a walk changes the settings of one training config; compare configs "
                            "with --vary=config=A.py,B.py")
        if key in NOT_COMPARED or key in EXPERIMENT_KEYS and key != "config":
            raise UserError(f"--vary {key}: that setting names the run, it does not change it")

    runs, any_model = [], field_types([settings for _, settings in MODELS.values()])
    for name, combo, changes in steps:  # combo: the run's row in the table; changes: its (key, value) settings
        changes = dict(changes)
        config = changes.pop("config", exp.config)  # --vary=config: each run starts from its own file
        name = name.replace("/", "_").replace(" ", "_")
        out_dir = Path(exp.out_root) / name
        base = read_config_file(config) if config else {}
        run_values = {**base, **settings, **{k: parse_override(f"--{k}={v}")[1] for k, v in changes.items()},
                      "out_dir": str(out_dir), "overwrite": True}
        # every run's settings are checked before the first one starts: a typo costs seconds, not a sweep
        model_class = settings_class(run_values)
        for key in settings:  # a setting of the other kind of model, given to every run
            if key not in field_types([model_class, TrainConfig]) and key in any_model:
                raise UserError(f"run {name}: {key} is not a setting of its model ({model_class.__name__}), but "
                                f"every run is given it; set it in the config file of the runs it is for")
        try:
            model_cfg, train_cfg = build_configs([model_class, TrainConfig], run_values)
        except UserError as e:
            raise UserError(f"run {name}: {e}" if "config" in keys else str(e)) from None  # which file it is
        args = [*([config] if config else []), *(as_override(k, v) for k, v in settings.items()),
                *(f"--{k}={v}" for k, v in changes.items()), f"--out_dir={out_dir}", "--overwrite=True"]
        runs.append({"name": name, "combo": combo, "out_dir": out_dir, "args": args, "model_cfg": model_cfg,
                     "train_cfg": train_cfg, "settings": compared_settings(model_cfg, train_cfg)})
    return exp, keys, runs


def training_configs(exp, paths):
    """{path: its stem} for --vary=config=A.py,B.py, each a training config run as it is (the stem names the
    run); {} when config is not varied. Each file is checked before any run starts."""
    if paths is None:
        return {}
    if exp.config:
        raise UserError(f"--vary=config names each run's training config, so there is no other to start from: "
                        f"drop {exp.config} (or the sweep config's `config = ` line)")
    configs = {}
    for path in paths:
        try:
            values = read_config_file(path)
        except UserError as e:
            raise UserError(f"--vary=config: {e}") from None
        if "vary" in values or "walk" in values:
            sets = "vary" if "vary" in values else "walk"
            raise UserError(f"--vary=config: {path} is a sweep config (it sets {sets}); "
                            f"name training configs, e.g. --vary=config=config/translate_numbers_de.py,"
                            f"config/translate_numbers_de_gpt.py")
        configs[path] = Path(path).stem
    if len(set(configs.values())) != len(configs):
        raise UserError(f"--vary=config: two config files share a name ({', '.join(paths)}); each run is named by "
                        f"its file's name, so rename one")
    return configs


def walk_steps(walk):
    """--walk's changes -> [(name, combo, changes)] per run: run 0 the config itself, run i with changes 1..i, a
    later value of a key replacing an earlier one (n_kv_head=2, then n_kv_head=1)."""
    steps, changes = [("0-baseline", (("step", "0"), ("change", "none (the config)")), [])], {}
    texts = [text.strip() for given in walk for text in given.split(";") if text.strip()]
    for i, text in enumerate(texts, start=1):
        step = [parse_vary(part) for part in text.split()]
        if not step or any(len(values) != 1 for _, values in step):
            raise UserError(f"bad --walk step '{text}': a step is KEY=VALUE, or several separated by spaces; steps "
                            f"are separated by ';'")
        changes.update({key: values[0] for key, values in step})
        steps.append((f"{i}-{text}", (("step", str(i)), ("change", text.replace(" ", ", "))), list(changes.items())))
    return steps


def say(message):
    """A line on stderr above the progress bar (stdout holds only the table)."""
    tqdm.write(message, file=sys.stderr)


class Training:
    """One train.py run in the background, its output going to out_dir/train.log."""

    def __init__(self, run):
        self.run, self.out_dir = run, run["out_dir"]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "experiment.json").unlink(missing_ok=True)
        cmd = [sys.executable, str(REPO / "train.py"), *run["args"]]
        self.log = open(self.out_dir / "train.log", "w")
        self.log.write(" ".join(cmd) + "\n")
        self.log.flush()
        self.start = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def done(self):
        return self.proc.poll() is not None

    def stop(self):
        """Ctrl-C: stop the run too, not just this script (train.py saves a checkpoint on SIGTERM)."""
        self.proc.terminate()
        self.proc.wait()
        self.log.close()

    def result(self):
        """-> (status, seconds) of a finished run; a failure is reported on stderr."""
        seconds = time.time() - self.start
        self.log.close()
        if self.proc.returncode == 0:
            return "ok", seconds
        lines = (self.out_dir / "train.log").read_text(errors="replace").splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        say(f"{self.run['name']}: train.py failed: {(errors or lines or ['?'])[-1]} "
                  f"(see {self.out_dir / 'train.log'})")
        return "failed", seconds


def train_all(todo, jobs, bar, on_done):
    """Run the trainings in `todo`, `jobs` at a time, calling on_done(run, status, seconds) for each."""
    waiting, active, shown = list(todo), [], None
    try:
        while waiting or active:
            while waiting and len(active) < jobs:
                active.append(Training(waiting.pop(0)))
            time.sleep(0.5)
            for training in [t for t in active if t.done()]:
                active.remove(training)
                on_done(training.run, *training.result())
            progress = []
            for training in active:
                records = read_log(training.out_dir)
                if records:
                    r = records[-1]
                    progress.append(f"{training.run['name']}: iter {r['iter']}, val {r['val_loss']:.3f}")
            if progress and progress != shown:  # show each new evaluation once
                shown = progress
                bar.set_postfix_str("; ".join(progress))
    except BaseException:
        for training in active:
            training.stop()
        raise


def bits_per_byte(meta, split):
    """The factor from a dataset's loss (nats per token) to bits per byte of its text, or None if prepare.py
    recorded no byte counts. Datasets cut by different tokenizers compare only per byte: per token, a
    tokenizer with longer tokens has more to predict in each (Shannon's bits per character, nats -> bits)."""
    n_bytes = meta.get(f"{split}_bytes")
    return meta[f"{split}_tokens"] / n_bytes / math.log(2) if n_bytes and meta.get(f"{split}_tokens") else None


def per_byte_records(records, meta):
    """A run's log with train_loss and val_loss in bits per byte of its dataset's text."""
    factors = {split: bits_per_byte(meta, split) for split in ("train", "val")}
    return [{**r, **{f"{split}_loss": r[f"{split}_loss"] * f for split, f in factors.items()
                     if f and r.get(f"{split}_loss") is not None}} for r in records]


SCORES = ["exact match", "best exact match", "BLEU", "chrF"]  # of held-out translations (gptkit/translation.py)


def scores(log):
    """A translation run's cells under SCORES: the last evaluation's, and its best exact match with its iteration."""
    scored = [r for r in log if "exact_match" in r]
    if not scored:
        return [""] * len(SCORES)
    last, best = scored[-1], max(scored, key=lambda r: r["exact_match"])  # the first of equal bests
    return [f"{last['exact_match']:.1%}", f"{best['exact_match']:.1%} @{best['iter']}", f"{last['bleu']:.1f}",
            f"{last['chrf']:.1f}"]


def results_table(keys, rows):
    """A Markdown table, one row per run; a run whose mask let it see the tokens it predicts is marked,
    and a note under the table says why its low loss ranks nowhere. Rows carrying their dataset's
    "meta" (the datasets differ) get the val loss in bits per byte too; runs that translate (their log
    carries exact_match) get their held-out scores."""
    per_byte = any("meta" in row for row in rows)
    translating = any("exact_match" in r for row in rows for r in row["records"])
    head = [*keys, "train loss", "val loss", *(["val bits/byte"] if per_byte else []), "best val",
            *(SCORES if translating else []), "time (s)", "tokens/s", "params", "KV bytes/token", "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        values = [str(v) for _, v in row["combo"]]
        log = row["records"]
        if row["status"] == "ok" and log:
            last = log[-1]
            best = min(r["val_loss"] for r in log)
            leak = f" ({LEAK})" if row["model_cfg"].sees_the_future else ""
            values += [f"{last['train_loss']:.4f}", f"{last['val_loss']:.4f}{leak}"]
            if per_byte:
                factor = bits_per_byte(row.get("meta", {}), "val")
                values.append(f"{last['val_loss'] * factor:.4f}" if factor else "(no byte count)")
            values.append(f"{best:.4f}")
        else:
            values += [row["status"], "", "", *([""] if per_byte else [])]
        if translating:
            values += scores(log)
        speed = log[-1].get("tokens_per_s") if log else None  # training's, at the last evaluation
        params = f"{row['params']:,}" if row["params"] is not None else ""  # None: its dataset is missing
        values += [f"{row['seconds']:.0f}", f"{speed:,}" if speed else "", params,
                   f"{kv_cache_bytes_per_token(row['model_cfg']):,}", str(row["source"])]
        lines.append("| " + " | ".join(values) + " |")
    if any(isinstance(row["model_cfg"], TransformerConfig) for row in rows):
        lines += ["", "KV bytes/token of an encoder-decoder: its decoder's self-attention keys and values per target "
                      "token. Decoding also keeps each decoder layer's cross-attention keys and values of the source, "
                      "as many bytes again per source token (transformer.TranslationCache); a GPT's count covers "
                      "every token of its context, source and target alike."]
    if any(row["model_cfg"].sees_the_future for row in rows):
        lines += ["", f"{LEAK}: under mask=none or anticausal each position sees the token it is trained to predict, "
                      "so the loss falls by copying it. It is not comparable with a causal model's, and the model "
                      "cannot generate: there is no future to copy (docs/experiments.md, the mask)."]
    return "\n".join(lines)


def dataset_meta(run):
    """The run's dataset's meta.json (a swept dataset, another tokenizer, changes the vocabulary and so the
    parameter count); None when the dataset is missing: that run fails and says why, the others go on."""
    try:
        return load_meta(Path(run["train_cfg"].data_dir) / run["train_cfg"].dataset)
    except UserError:
        return None


@run_main
def main(argv):
    exp, keys, runs = plan(argv)
    stem = "walk" if exp.walk else "-".join(keys)
    plot_path = Path(exp.plot) if exp.plot else Path(exp.out_root) / f"{stem}.png"
    try:
        matplotlib_figure()
    except UserError as e:
        print(f"warning: {e}; the table will be printed but no plot written", file=sys.stderr)
        plot_path = None

    rows, todo = {}, []
    bar = tqdm(total=len(runs), unit="run", desc="runs", dynamic_ncols=True, file=sys.stderr)

    def add_row(run, status, seconds, params, source):
        records = read_log(source)
        rows[run["name"]] = {**run, "status": status, "seconds": seconds, "params": params, "source": source,
                             "records": records}
        if records and status == "ok":
            say(f"{run['name']}: train loss {records[-1]['train_loss']:.4f}, "
                      f"val loss {records[-1]['val_loss']:.4f}, {seconds:.0f} s")
        bar.update(1)

    def params(run):
        meta = dataset_meta(run)
        return count_params(run["model_cfg"], meta) if meta else None

    def trained(run, status, seconds):
        record = write_record(run["out_dir"], status, seconds, params(run), run["args"], run["settings"],
                              vary=dict(run["combo"]))
        add_row(run, status, record["seconds"], record["params"], run["out_dir"])

    for run in runs:
        source, record = find_reusable(exp.out_root, run) if exp.reuse else (None, None)
        if record is not None:
            say(f"{run['name']}: reusing the finished run in {source}")
            add_row(run, "ok", record["seconds"], record["params"], source)
        else:
            todo.append(run)
    train_all(todo, exp.jobs, bar, trained)
    bar.close()
    rows = [rows[run["name"]] for run in runs]
    if "dataset" in keys:  # different texts or tokenizers: their losses per token do not compare, per byte they do
        for row in rows:
            row["meta"] = dataset_meta(row) or {}

    table = results_table(keys, rows)
    print(table)
    table_path = Path(exp.out_root) / f"{stem}.md"
    table_path.write_text(table + "\n")
    print(f"table saved to {table_path}", file=sys.stderr)
    if plot_path is not None:
        drawn = [row for row in rows if row["records"]]
        label = (lambda combo: f"{combo[0][1]}: {combo[1][1]}") if exp.walk else \
            (lambda combo: ", ".join(v if k == "config" else f"{k}={v}" for k, v in combo))
        curves = [(label(row["combo"]),
                   per_byte_records(row["records"], row["meta"]) if "meta" in row else row["records"]) for row in drawn]
        leaks = {i for i, row in enumerate(drawn) if row["model_cfg"].sees_the_future}
        config_name = Path(exp.config).name if exp.config else "the default settings"
        if "config" in keys:
            stems = dict.fromkeys(dict(row["combo"])["config"] for row in rows)
            others = [key for key in keys if key != "config"]
            title = f"{' vs '.join(stems)}, each as its config file sets it"
            title += f", by {', '.join(others)}" if others else ""
        elif exp.walk:
            title = f"one change per step on {config_name}"
        else:
            title = f"{', '.join(keys)} on {config_name}, all else equal"
        unit = "bits per byte of text" if "dataset" in keys else "cross-entropy loss"
        out = plot_loss(curves, plot_path, title=title, leaks=leaks, unit=unit, scores=True, speed=True)
        print(f"plot saved to {out}", file=sys.stderr)
    failed = [row["name"] for row in rows if row["status"] != "ok"]
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
