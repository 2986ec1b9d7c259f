"""Build a GPT yourself: write each piece, check it against the repository's own, then train with it.

    python3 learn.py                     the exercises in order, each one's state, and what to do next
    python3 learn.py start               copy the exercises into mine/ (a file already there is kept)
    python3 learn.py check attention     check mine/attention.py: each check passed or failed, and why
    python3 learn.py train attention     train the lab model with your attention, beside model.py's
    python3 learn.py train bpe           train it on Tiny Shakespeare cut by your BPE, beside the reference's
    python3 learn.py train cross_attention   train the translator with your cross-attention, beside transformer.py's

Each exercise is a template in exercises/NAME.py: the function or module to write, its shapes, the
formula and where it comes from, a hint. You edit your copy, mine/NAME.py (git ignores mine/).
`check` compares what yours computes with the repository's own code on random inputs of several
shapes, tests properties (a future token never changes an earlier output, ...), and for the
classic mistakes names the likely cause. `train` (the exercises that are parts of the model) trains
config/lab_char_cpu.py (cross_attention: config/translate_numbers_de.py, the encoder-decoder) with your
piece in place of the model file's into out-learn/NAME, and the same with the model file's own into
out-learn/reference-NAME (reused once trained), and plots both losses.
The path and the exercises: docs/learn.md. The checks: gptkit/exercises/.
"""

import contextlib
import io
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gptkit.checkpoint import settings_class
from gptkit.config import build_configs, closest_key_hint, command_args, read_command_line, read_config_file
from gptkit.data import load_meta
from gptkit.errors import UserError, run_main
from gptkit.exercises import EXERCISES
from gptkit.exercises.harness import LearnerError, learner_traceback, run_checks
from gptkit.plots import matplotlib_figure, plot_loss
from gptkit.runlog import read_log
from gptkit.runrecord import as_override, compared_settings, count_params, find_reusable, write_record
from model import GPTConfig
import train
from train import TrainConfig
from transformer import TransformerConfig

REPO = Path(__file__).resolve().parent
TEMPLATES = REPO / "exercises"
DETAILED = 3  # failures shown with expected and got; later ones with their cause alone
NOT_OVERRIDDEN = ("out_dir", "overwrite", "init_from")  # learn.py names the runs; both train from scratch
MODEL_FILES = {"gpt": "model.py", "transformer": "transformer.py"}  # where each kind of model (MODELS) is written


@dataclass
class LearnConfig:
    name: str = ""  # the exercise to check or train, e.g. attention (`python3 learn.py` lists them)
    mine: str = "mine"  # the folder of your solutions, mine/NAME.py
    # train: the training config both runs start from; empty: the exercise's (config/lab_char_cpu.py, the lab's GPT;
    # config/translate_numbers_de.py for cross_attention)
    config: str = ""
    out_root: str = "out-learn"  # train: your run trains into out_root/NAME, the reference's into out_root/reference-NAME


def trainable():
    return [name for name, exercise in EXERCISES.items() if exercise.TRAIN]


def exercise_named(name, command):
    if not name:
        raise UserError(f"name the exercise: python3 learn.py {command} attention (python3 learn.py lists them)")
    if name not in EXERCISES:
        raise UserError(f"unknown exercise '{name}'{closest_key_hint(name, list(EXERCISES))}; "
                        f"the exercises: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def solution_path(cfg, name):
    return Path(cfg.mine) / f"{name}.py"


def quietly(fn, *args):
    """fn(*args) with the learner's prints and warnings kept off the screen (the list checks everything)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def checked(cfg, name):
    """The Report of mine/NAME.py's checks; a UserError when it is missing or not started."""
    exercise, path = EXERCISES[name], solution_path(cfg, name)
    if not path.is_file():
        raise UserError(f"{path} does not exist; copy the exercises into {cfg.mine}/ with: python3 learn.py start")
    report = run_checks(exercise, path)
    if report.state == "not started":
        raise UserError(f"{name} is not started: {path} still raises NotImplementedError in "
                        f"{', '.join(report.not_written)}; write it, then run: python3 learn.py check {name}")
    return report


# ----------------------------------------------------------------------------------------------
# python3 learn.py: the list


def state_line(cfg, name):
    """(state, what to do next) of one exercise."""
    path = solution_path(cfg, name)
    if not path.is_file():
        return "not copied", f"python3 learn.py start   ({path} is missing)"
    report = quietly(run_checks, EXERCISES[name], path)
    if report.state == "not started":
        return "not started", f"write {EXERCISES[name].WRITES} in {path}, then: python3 learn.py check {name}"
    if report.state == "passing":
        return f"passing ({len(report.results)} checks)", ""
    why = "your code raises an exception" if report.error else (
        f"{len(report.failed)} of {len(report.results)} checks fail" if report.failed
        else f"{', '.join(report.not_written)} not written yet")
    return f"failing ({why})", f"python3 learn.py check {name}"


def list_command(cfg):
    print(f"Build a GPT yourself: write each piece in {cfg.mine}/NAME.py, check it, train with it (docs/learn.md).\n")
    if not Path(cfg.mine).is_dir():
        for i, (name, exercise) in enumerate(EXERCISES.items(), 1):
            print(f"  {i:2}  {name:<15} {exercise.TITLE}")
        print(f"\nnext: python3 learn.py start   (copies the exercises into {cfg.mine}/)")
        return
    todo = None
    for i, (name, exercise) in enumerate(EXERCISES.items(), 1):
        state, step = state_line(cfg, name)
        marker = "  [train]" if exercise.TRAIN else ""
        print(f"  {i:2}  {name:<15} {state:<22} {exercise.TITLE}{marker}")
        todo = todo or step
    if todo:
        print(f"\nnext: {todo}")
    else:
        print(f"\nall {len(EXERCISES)} pass. Train the lab model with your pieces: python3 learn.py train attention "
              f"(or {', '.join(n for n in trainable() if n != 'attention')})")
    print("[train]: python3 learn.py train NAME trains the model with your piece in place of the model file's")


# ----------------------------------------------------------------------------------------------
# start and check


def start_command(cfg):
    mine = Path(cfg.mine)
    if mine.exists() and not mine.is_dir():
        raise UserError(f"{mine} is a file; the solutions go in a folder: remove it or pick --mine=FOLDER")
    mine.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for name in EXERCISES:
        try:
            with open(mine / f"{name}.py", "x", encoding="utf-8") as f:  # "x": never replaces a file
                f.write((TEMPLATES / f"{name}.py").read_text(encoding="utf-8"))
            copied.append(name)
        except FileExistsError:
            kept.append(name)
    if copied:
        print(f"copied {len(copied)} exercise{'s' * (len(copied) > 1)} into {mine}/: {', '.join(copied)}")
    if kept:
        print(f"kept {len(kept)} already in {mine}/ (never overwritten; delete one and run start again for a "
              f"fresh copy): {', '.join(kept)}")
    first = next(iter(EXERCISES))
    print(f"next: open {mine / first}.py, write {EXERCISES[first].WRITES}, then: python3 learn.py check {first}")


def print_report(name, path, report):
    print(f"{name}: {EXERCISES[name].WRITES} in {path}")
    shown = 0
    for result in report.results:
        print(f"  {'passed' if result.passed else 'FAILED'}  {result.name}")
        if result.passed:
            continue
        if shown < DETAILED and (result.expected or result.got):
            print(f"            expected: {result.expected}\n            got:      {result.got}")
        if result.cause:
            print(f"            likely cause: {result.cause}")
        shown += 1
    for what in report.not_written:
        print(f"  FAILED  {what} is not written yet (it still raises NotImplementedError)")
    crashed = len(report.results) + 1  # the check whose call into the learner's code raised
    calling = f", calling {report.crashed_in}" if report.crashed_in else ""
    if report.error:
        print(f"\nthe checks stopped at check {crashed}{calling}:\n" + report.error)
    passed = sum(r.passed for r in report.results)
    if report.error:
        inputs = f" ({report.crashed_in})" if report.crashed_in else ""
        print(f"\ncrashed on check {crashed}{inputs}; {before_crash(passed, len(report.results))}fix it and run again: "
              f"python3 learn.py check {name}")
    elif report.state == "passing":
        done = f"; train with it: python3 learn.py train {name}" if EXERCISES[name].TRAIN else ""
        print(f"\nall {passed} checks passed{done}")
    else:
        print(f"\n{passed} of {len(report.results)} checks passed; fix the first failure and run again: "
              f"python3 learn.py check {name}")


def before_crash(passed, ran):
    """What the checks before a crash found, never reading as if every check passed: 'the 12 before it passed; '."""
    if not ran:
        return ""
    if passed == ran:
        return "the check before it passed; " if ran == 1 else f"the {ran} before it passed; "
    return f"{passed} of the {ran} before it passed; "


def check_command(cfg):
    exercise_named(cfg.name, "check")
    report = checked(cfg, cfg.name)
    print_report(cfg.name, solution_path(cfg, cfg.name), report)
    if report.state != "passing":
        sys.exit(1)


# ----------------------------------------------------------------------------------------------
# train


def training_config(cfg, exercise):
    """The config file both runs start from: --config, else the exercise's."""
    return cfg.config or exercise.TRAIN.config


def model_kind(values):
    """The MODELS kind that settings {key: value} train: train.py's `model` setting."""
    return dict(values).get("model", "gpt")


def train_settings(cfg, exercise, given):
    """The train.py arguments shared by both runs, the resolved settings that identify the reference run, and
    the model's parameter count."""
    config = training_config(cfg, exercise)
    for key, _ in given:
        if key in NOT_OVERRIDDEN:
            raise UserError(f"--{key}: learn.py names the runs (out_root/NAME and out_root/reference-NAME) and "
                            f"trains both from scratch; set --out_root to put them elsewhere")
    forced = exercise.TRAIN.overrides
    for key, value in given:
        if key in forced and value != forced[key]:
            raise UserError(f"--{key}={value!r}: {exercise.TRAIN.label} trains with {key}={forced[key]!r}, where "
                            f"the model file runs the piece yours replaces; drop --{key}")
    overrides = [*exercise.TRAIN.defaults.items(), *given, *forced.items()]
    values = [*read_config_file(config).items(), *overrides]
    kind, written_for = model_kind(values), model_kind(read_config_file(exercise.TRAIN.config))
    if kind != written_for:
        fix = "drop --model" if "model" in dict(given) else f"use a config with model={written_for!r}"
        raise UserError(f"{exercise.TRAIN.label} is a piece of {MODEL_FILES[written_for]}'s model and this run trains "
                        f"model={kind!r}; {fix}")
    model_cfg, train_cfg = build_configs([settings_class(values), TrainConfig], values)
    resolved = {**asdict(train_cfg), **asdict(model_cfg)}
    for key, allowed in exercise.TRAIN.requires.items():
        if resolved[key] not in allowed:
            raise UserError(f"{exercise.TRAIN.label} computes {key}={' or '.join(map(repr, allowed))} only, and this "
                            f"run has {key}={resolved[key]!r}; drop --{key} (or change {config})")
    meta = load_meta(Path(train_cfg.data_dir) / train_cfg.dataset)  # a missing dataset is said now, not as a failed run
    args = [config, *(as_override(k, v) for k, v in overrides), "--overwrite=True"]
    return args, compared_settings(model_cfg, train_cfg), count_params(model_cfg, meta)


def train_mine(name, exercise, args, out_dir, solution):
    """Train with the learner's piece in place of the model file's. Their exception shows their traceback lines."""
    print(f"training with {exercise.TRAIN.label} ({solution.path}) into {out_dir}", file=sys.stderr)
    try:
        with exercise.TRAIN.substitute(solution):
            train.main([*args, f"--out_dir={out_dir}"])
    except SystemExit as e:
        if e.code == 2:  # train.py's one-line error, e.g. a NaN loss
            print(f"training with {exercise.TRAIN.label} stopped (the error above); python3 learn.py check {name} may "
                  f"show why", file=sys.stderr)
        raise
    except Exception as e:
        print(learner_traceback(e, solution.folder), file=sys.stderr)
        raise UserError(f"{exercise.TRAIN.label} raised during training (above); python3 learn.py check {name} "
                        f"shows it on small inputs") from None


def train_reference(name, args, settings, params, out_root):
    """The model file's own run with the same settings: a finished one in out_root is reused."""
    out_dir = Path(out_root) / f"reference-{name}"
    source, _ = find_reusable(out_root, {"out_dir": out_dir, "settings": settings})
    if source is not None:
        print(f"the reference: reusing the finished run in {source} (the same settings)", file=sys.stderr)
        return source
    print(f"training the reference ({MODEL_FILES[settings['model']]}'s own) into {out_dir}", file=sys.stderr)
    (out_dir / "experiment.json").unlink(missing_ok=True)  # a record of other settings is no longer this run's
    start = time.time()
    train.main([*args, f"--out_dir={out_dir}"])
    # the record of a finished run (gptkit/runrecord.py): find_reusable finds it next time, experiment.py --reuse too
    write_record(out_dir, "ok", time.time() - start, params, args, settings)
    return out_dir


def train_command(cfg, given):
    exercise = exercise_named(cfg.name, "train")
    if not exercise.TRAIN:
        raise UserError(f"{cfg.name} is not a part of the model that trains; python3 learn.py train takes: "
                        f"{', '.join(trainable())}")
    config = training_config(cfg, exercise)
    if not exercise.TRAIN.datasets:
        args, settings, params = train_settings(cfg, exercise, given)
    report = checked(cfg, cfg.name)
    if report.error:
        raise UserError(f"your {cfg.name} raises an exception in its checks; fix it first: "
                        f"python3 learn.py check {cfg.name}")
    if report.state != "passing":
        print(f"note: {solution_path(cfg, cfg.name)} fails {len(report.failed) + len(report.not_written)} of its checks "
              f"(python3 learn.py check {cfg.name}); training with it anyway, to see what that does", file=sys.stderr)
    solution = report.solution
    args_ref = None
    if exercise.TRAIN.datasets:  # a tokenizer: each run trains on the text as its tokenizer cut it
        data_dir = dict(given).get("data_dir") or read_config_file(config).get("data_dir", "data")
        try:
            mine_data, reference_data = exercise.TRAIN.datasets(solution, data_dir)
        except LearnerError as e:
            print(e.text, file=sys.stderr)
            raise UserError(f"your {cfg.name} raised while preparing Tiny Shakespeare (above); python3 learn.py check "
                            f"{cfg.name} shows it on small inputs") from None
        args, _, _ = train_settings(cfg, exercise, [*given, ("dataset", mine_data)])
        args_ref, settings, params = train_settings(cfg, exercise, [*given, ("dataset", reference_data)])
    out_root = Path(cfg.out_root)
    mine_dir = out_root / cfg.name
    train_mine(cfg.name, exercise, args, mine_dir, solution)
    reference_dir = train_reference(cfg.name, args_ref or args, settings, params, out_root)

    runs = [(exercise.TRAIN.label, read_log(mine_dir)), ("the reference", read_log(reference_dir))]
    (_, mine_log), (_, reference_log) = runs
    last, ref = mine_log[-1], reference_log[-1]
    print(f"{exercise.TRAIN.label}: {final_scores(last)}; the reference: {final_scores(ref)} "
          f"(val {last['val_loss'] - ref['val_loss']:+.4f}, after {last['iter']} iterations)")
    try:
        matplotlib_figure()
    except UserError as e:
        print(f"warning: {e}; no plot written", file=sys.stderr)
        return
    title = f"{exercise.TRAIN.label} ({solution.path}) beside {MODEL_FILES[settings['model']]}'s, on {Path(config).name}"
    print(f"plot: {plot_loss(runs, out_root / f'{cfg.name}.png', title=title, scores=True)}")


def final_scores(record):
    """A run's last evaluation as the summary says it: its losses, and a translator's held-out exact match."""
    exact = f", exact match {record['exact_match']:.1%}" if "exact_match" in record else ""
    return f"train {record['train_loss']:.4f}, val {record['val_loss']:.4f}{exact}"


COMMANDS = {"list": [LearnConfig], "start": [LearnConfig], "check": [LearnConfig],
            "train": [LearnConfig, GPTConfig, TransformerConfig, TrainConfig]}


def parse(argv):
    """(command, LearnConfig, the other settings given [(key, value)] for train) of a command line, without
    running anything."""
    if not argv or (argv[0].startswith("--") and argv[0] != "--help"):
        command, rest = "list", argv  # `python3 learn.py [--mine=FOLDER]`
    else:
        command, rest = command_args(argv, COMMANDS)
    pairs = read_command_line(COMMANDS[command], rest, positional="name")
    cfg, *_ = build_configs(COMMANDS[command], pairs)  # every key checked now: a typo is said before any run
    given = [(k, v) for k, v in pairs if k not in {f.name for f in fields(LearnConfig)}]
    if command in ("list", "start") and cfg.name:
        raise UserError(f"python3 learn.py {command} takes no exercise name; check or train one: "
                        f"python3 learn.py check {cfg.name}")
    return command, cfg, given


@run_main
def main(argv):
    command, cfg, given = parse(argv)
    if command == "train":
        return train_command(cfg, given)
    {"list": list_command, "start": start_command, "check": check_command}[command](cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
