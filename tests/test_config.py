"""gptkit/config.py: config files are read as data (never executed), overrides are typed and checked, and
every script reads its command line the same way."""

import dataclasses
import functools
from typing import Literal

import pytest

from conftest import REPO_ROOT, run_script
from gptkit.config import build_configs, parse_args, parse_override, read_config_file
from gptkit.errors import UserError, error_line
import train
from model import GPTConfig
from train import TrainConfig

CONFIG_FILES = sorted((REPO_ROOT / "config").glob("*.py"))
CLASSES = [GPTConfig, TrainConfig]


def write(tmp_path, text, name="cfg.py"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def parse(argv):
    return parse_args(CLASSES, argv, config_file=True)


def error_of(argv):
    with pytest.raises(UserError) as e:
        parse(argv)
    return str(e.value)


@functools.cache
def help_of(script):
    """`python3 SCRIPT --help`, run once per script (a CompletedProcess: the tests only read it)."""
    return run_script(script, "--help")


# ---------------------------------------------------------------------------------------------
# config files


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_real_config_files_read_as_python_would(path):
    """Our own config files are trusted, so executing them gives the reference values."""
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    expected = {k: v for k, v in namespace.items() if not k.startswith("__")}
    values = read_config_file(path)
    assert values == expected
    assert {type(v) for v in values.values()} <= {int, float, str, bool}

    if "vary" in values or "walk" in values:  # a sweep config: experiment.py reads it, and checks every run it plans
        import experiment

        exp, keys, runs = experiment.plan([str(path)])
        assert exp.vary + exp.walk == [values.get("vary") or values["walk"]] and len(runs) > 1
        return
    model_cfg, cfg, _ = train.parse([str(path)])  # the model's settings as its `model` says: GPT or encoder-decoder
    for key, value in values.items():
        got = getattr(model_cfg, key) if hasattr(model_cfg, key) else getattr(cfg, key)
        assert got == value, key


def test_arithmetic_and_earlier_names(tmp_path):
    path = write(tmp_path, "\n".join([
        "# a comment",
        "gradient_accumulation_steps = 5 * 8",
        "max_iters = 2 ** 10 - 24",
        "lr_decay_iters = max_iters",
        "learning_rate = 6e-4",
        "min_lr = learning_rate / 10",
        "warmup_iters = max_iters // 10 % 7",
        "decay_lr = not False",
        "beta2 = -(-0.99)",
        "out_dir = 'out-' + 'x'",
        "dropout = 0.1",
    ]))
    values = read_config_file(path)
    assert values["gradient_accumulation_steps"] == 40
    assert values["max_iters"] == 1000 and values["lr_decay_iters"] == 1000
    assert values["min_lr"] == pytest.approx(6e-5)
    assert values["warmup_iters"] == (1000 // 10) % 7
    assert values["decay_lr"] is True and values["beta2"] == 0.99 and values["out_dir"] == "out-x"
    model_cfg, cfg = parse([str(path)])
    assert cfg.gradient_accumulation_steps == 40 and cfg.lr_decay_iters == 1000 and model_cfg.dropout == 0.1


def test_a_name_not_defined_earlier_is_an_error(tmp_path):
    path = write(tmp_path, "lr_decay_iters = max_iters\nmax_iters = 10\n")
    with pytest.raises(UserError, match="max_iters"):
        read_config_file(path)


@pytest.mark.parametrize("line", [
    "out_dir = __import__('os').system('touch {marker}')",
    "out_dir = open('{marker}', 'w')",
    "out_dir = str(open('{marker}', 'w'))",
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w').write('x')",
    "exec(\"open('{marker}', 'w')\")",
    "[open('{marker}', 'w') for _ in range(1)]",
    "with open('{marker}', 'w') as f: pass",
    "import os; os.system('touch {marker}')",
    "out_dir = (lambda: open('{marker}', 'w'))()",
    "out_dir = ''.__class__.__mro__",
])
def test_code_in_a_config_file_is_refused_and_never_executed(tmp_path, line):
    marker = tmp_path / "marker"
    path = write(tmp_path, "batch_size = 4\n" + line.format(marker=marker) + "\n")
    with pytest.raises(UserError) as e:
        parse([str(path)])
    assert str(path) in str(e.value)  # names the file (and line)
    assert not marker.exists()


def test_nanogpt_style_imports_and_a_run_name_computed_by_code_are_accepted(tmp_path, capsys):
    """nanoGPT's finetune config: `import time` and a wandb_run_name computed by code, which is not run."""
    path = write(tmp_path, "\"\"\"A docstring.\"\"\"\nimport time\nwandb_log = True\nwandb_project = 'ft'\n"
                           "wandb_run_name = 'ft-' + str(time.time())\nbatch_size = 1\n")
    model_cfg, cfg = parse([str(path)])
    assert cfg.batch_size == 1 and cfg.wandb_log and cfg.wandb_project == "ft"
    assert cfg.wandb_run_name == TrainConfig.wandb_run_name
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"warning: {path}:5:") and "str(time.time())" in warning and "default" in warning
    _, cfg = parse([str(path), "--wandb_log=False", "--wandb_run_name=mine", "--batch_size=2"])
    assert (cfg.wandb_log, cfg.wandb_run_name, cfg.batch_size) == (False, "mine", 2)
    # any other key computed by code is still an error
    with pytest.raises(UserError, match="only literals"):
        parse([str(write(tmp_path, "import time\nout_dir = 'out-' + str(time.time())\n"))])


@pytest.mark.parametrize("line", ["import os", "import time as t", "import time, os", "from time import time",
                                  "import torch"])
def test_an_import_other_than_nanogpts_import_time_is_refused_not_skipped(tmp_path, line):
    """A newcomer's `import os` beside `n_layer = 4` once trained a default-shaped model in silence."""
    path = write(tmp_path, f"n_layer = 4\n{line}\n")
    with pytest.raises(UserError) as e:
        parse([str(path)])
    assert f"{path}:2: a config file holds settings, not code: `{line}` is refused" in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        parse([str(tmp_path / "nope.py")])
    with pytest.raises(UserError, match="valid"):
        parse([str(write(tmp_path, "batch_size = = 3\n"))])
    with pytest.raises(UserError, match="key = value"):
        parse([str(write(tmp_path, "a, b = 1, 2\n"))])


def test_a_config_file_cannot_take_hours_or_all_memory(tmp_path):
    """Found by tests/test_fuzz.py: each line may square the value of the last (a 2**30-fold growth in 30
    lines); a sum of thousands of terms is a tree deeper than Python's stack (a RecursionError)."""
    doubling = "seed = 9 ** 99\n" + "seed = seed * seed\n" * 30
    for text, phrase in [
        (doubling, ":3: `seed * seed` is too large for a setting (numbers below 2**1024"),
        ("out_dir = 'x' * 10 ** 12\n", "`'x' * 10 ** 12` is too large for a setting"),
        ("out_dir = 'x' * 1000\n" + "out_dir = out_dir + out_dir\n" * 40, "`out_dir + out_dir` is too large"),
        ("max_iters = 10 ** 400\n", "`10 ** 400` is too large"),
        ("max_iters = 1" + " + 1" * 900 + "\n", None),  # deep, but within reach
        ("max_iters = 1" + " + 1" * 5000 + "\n", "nested too deeply"),
    ]:
        path = write(tmp_path, text)
        if phrase is None:
            assert read_config_file(path)["max_iters"] == 901
            continue
        with pytest.raises(UserError) as e:
            read_config_file(path)
        assert phrase in str(e.value), str(e.value)
    assert read_config_file(write(tmp_path, "seed = 2 ** 1023\nx = 'ab' * 3\n")) == {"seed": 2**1023, "x": "ababab"}
    with pytest.raises(UserError, match="nested too deeply"):  # deep enough for the evaluator, not the parser
        read_config_file(write(tmp_path, "seed = " + "-" * 5000 + "1\n"))


def test_an_error_is_printed_as_one_line_whatever_it_quotes(tmp_path):
    """Found by tests/test_fuzz.py: an argument holding a carriage return or another control character,
    a block statement in a config file: each made the `error:` message two lines."""
    assert error_line(UserError("unknown setting 'a\rb\x1ec\u2028'")) == \
        "error: unknown setting 'a\\rb\\x1ec\\u2028'"
    block = write(tmp_path, "def f():\n    open('x', 'w')\n")
    assert error_of([str(block)]).endswith("expected `key = value`, found `def f():`")
    line = error_line(UserError(error_of(["--n_layer\r=2"])))
    assert line == "error: unknown setting 'n_layer\\r' (did you mean 'n_layer'?)" and len(line.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# overrides


def test_overrides_apply_on_top_of_the_file_in_order(tmp_path):
    path = write(tmp_path, "batch_size = 4\nn_layer = 3\n")
    model_cfg, cfg = parse([str(path), "--batch_size=8", "--batch_size=16", "--out_dir=somewhere"])
    assert (cfg.batch_size, model_cfg.n_layer, cfg.out_dir) == (16, 3, "somewhere")


def test_unknown_key_suggests_the_closest():
    message = error_of(["--batch_sise=3"])
    assert "batch_sise" in message and "did you mean 'batch_size'" in message


def test_wrong_type_names_the_key_and_the_type():
    message = error_of(["--batch_size=abc"])
    assert "batch_size" in message and "int" in message
    assert "batch_size" in error_of(["--batch_size=2.5"])


def test_int_widens_to_float_but_bool_must_be_bool():
    _, cfg = parse(["--learning_rate=1"])
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    _, cfg = parse(["--compile=True"])
    assert cfg.compile is True
    for bad in ("--compile=1", "--compile=yes", "--compile=0"):
        message = error_of([bad])
        assert "compile" in message and "bool" in message
    message = error_of(["--batch_size=True"])  # a bool is not an int either
    assert "batch_size" in message


def test_literal_fields_reject_bad_values_with_a_suggestion():
    message = error_of(["--pos_encoding=rop"])
    assert "pos_encoding" in message and "did you mean 'rope'" in message
    assert "'learned'" in message  # lists the choices
    assert "init_from" in error_of(["--init_from=resum"])
    model_cfg, _ = parse(["--pos_encoding=rope"])
    assert model_cfg.pos_encoding == "rope"


@pytest.mark.parametrize("arg, key, value", [
    ("--start=a=b", "start", "a=b"),
    ("--out_dir=x==y=", "out_dir", "x==y="),
    ("--start=FILE:p.txt", "start", "FILE:p.txt"),
    ("--n_layer=4", "n_layer", 4),
    ("--learning_rate=3e-4", "learning_rate", 3e-4),
    ("--out_dir='quoted'", "out_dir", "quoted"),
    ("--out_dir=", "out_dir", ""),
])
def test_override_parsing(arg, key, value):
    assert parse_override(arg) == (key, value)


def test_string_override_with_equals_reaches_the_config():
    _, cfg = parse(["--out_dir=runs/lr=1e-3"])
    assert cfg.out_dir == "runs/lr=1e-3"


@pytest.mark.parametrize("arg", ["batch_size=3", "--batch_size", "-batch_size=3"])
def test_malformed_overrides_are_refused(arg):
    argv = ["--n_layer=2", arg]  # not first, so not taken for a config file
    message = error_of(argv)
    assert "--key=value" in message


def test_validate_runs_after_building():
    assert "n_embd=30" in error_of(["--n_embd=30", "--n_head=4"])
    assert "batch_size" in error_of(["--batch_size=0"])


def test_build_configs_routes_each_key_to_its_class():
    @dataclasses.dataclass
    class A:
        x: int = 1
        mode: Literal["a", "b"] = "a"

    @dataclasses.dataclass
    class B:
        y: float = 2.0
        name: str = "n"
        maybe: int | None = None

    a, b = build_configs([A, B], {"x": 5, "y": 3, "mode": "b", "name": 7, "maybe": None})
    assert (a.x, a.mode, b.y, b.name, b.maybe) == (5, "b", 3.0, "7", None)
    a, b = build_configs([A, B], {"maybe": 4})
    assert b.maybe == 4
    with pytest.raises(UserError, match="maybe"):
        build_configs([A, B], {"maybe": "four"})


def test_help_lists_every_setting_with_its_default_and_exits_0():
    result = help_of("train.py")
    assert result.returncode == 0, result.stderr
    assert "Train a GPT" in result.stdout  # the script's docstring first
    for line in ("--n_embd=768  (int)", "--pos_encoding='learned'  (learned|sinusoidal|rope|none)",
                 "--learning_rate=0.0006  (float)", "--eval_full_val=False  (bool) val loss over the whole val split"):
        assert line in result.stdout


# ---------------------------------------------------------------------------------------------
# one command-line convention for every script

SCRIPTS = ["train.py", "sample.py", "prepare.py", "export.py", "experiment.py", "visualize.py", "bench.py", "learn.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help_with_what_it_does_and_every_setting(script):
    result = help_of(script)
    assert result.returncode == 0 and not result.stderr, result.stderr
    first_doc_line = (REPO_ROOT / script).read_text().split('"""')[1].strip().splitlines()[0]
    assert result.stdout.startswith(first_doc_line)
    settings_lines = [line for line in result.stdout.splitlines() if line.startswith("    --")]
    assert len(settings_lines) >= 3 and all("(" in line for line in settings_lines)


def test_positional_arguments_go_to_the_setting_that_takes_them():
    @dataclasses.dataclass
    class One:
        dest: str = ""
        n: int = 1

    @dataclasses.dataclass
    class Many:
        runs: list[str] = dataclasses.field(default_factory=list)

    assert parse_args([One], ["out", "--n=2"], positional="dest") == [One("out", 2)]
    with pytest.raises(UserError, match="expected one dest, got 2"):
        parse_args([One], ["a", "b"], positional="dest")
    with pytest.raises(UserError, match="unexpected argument 'a'"):
        parse_args([One], ["a"])
    assert parse_args([Many], ["a", "b", "--runs=c"], positional="runs") == [Many(["c", "a", "b"])]
    assert build_configs([Many], [("runs", "x"), ("runs", ["y", "z"])]) == [Many(["x", "y", "z"])]


def test_commands_are_checked_with_a_suggestion():
    from gptkit.config import command_args

    commands = {"attention": [], "loss": []}
    assert command_args(["loss", "a", "--x=1"], commands) == ("loss", ["a", "--x=1"])
    with pytest.raises(UserError, match="unknown command 'atention' \\(did you mean 'attention'\\?\\); name one of"):
        command_args(["atention"], commands)
    with pytest.raises(UserError, match="name one of: attention, loss"):
        command_args([], commands)


def test_a_two_word_setting_says_how_to_write_it():
    assert "(--vary=VALUE, one word)" in error_of(["--vary", "n_head=1,2"])
    assert "did you mean 'attn_score'" in error_of(["--attn=dot"])  # a prefix of a setting is a near miss


@pytest.mark.parametrize("script", ["train.py", "sample.py", "prepare.py", "bench.py", "visualize.py", "experiment.py",
                                    "export.py"])
def test_every_setting_in_help_says_what_it_does(script):
    """--help is the settings' documentation: a setting listed with only its type says nothing."""
    result = help_of(script)
    assert result.returncode == 0, result.stderr
    settings = [line.split() for line in result.stdout.splitlines() if line.startswith("    --")]
    assert settings and [words[0] for words in settings if len(words) < 3] == []


def test_a_trailing_comma_is_named_as_the_mistake(tmp_path):
    """`learning_rate = 1e-3,` is Python's one-item tuple: the error names the comma, where it is and the fix,
    not only "got [0.001] (list)"; a string setting is refused alike (it would otherwise become "['out']")."""
    path = write(tmp_path, "n_layer = 2\nlearning_rate = 1e-3,\n")
    assert error_of([str(path)]) == (f"{path}:2: `learning_rate = 1e-3,` ends with a comma, which makes learning_rate "
                                     f"a list ([0.001]); remove the trailing comma")
    assert error_of([str(write(tmp_path, "out_dir = 'out',\n", "s.py"))]).endswith(
        "`out_dir = 'out',` ends with a comma, which makes out_dir a list (['out']); remove the trailing comma")
    assert error_of(["--learning_rate=1e-3,"]) == ("`--learning_rate=1e-3,` ends with a comma, which makes "
                                                   "learning_rate a list ([0.001]); remove the trailing comma")
    assert parse([str(write(tmp_path, "learning_rate = (1e-3)\n", "p.py"))])[1].learning_rate == 1e-3


def test_a_trailing_comma_on_a_list_setting_is_its_one_item(tmp_path):
    @dataclasses.dataclass
    class Sweep:
        vary: list[str] = dataclasses.field(default_factory=list)

    (sweep,) = build_configs([Sweep], read_config_file(write(tmp_path, "vary = 'n_head=1,2',\n")))
    assert sweep.vary == ["n_head=1,2"]


def test_a_mistyped_config_file_name_gets_a_did_you_mean(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert "(did you mean config/shakespeare_char_cpu.py?)" in error_of(["config/shakespear_char_cpu.py"])
    assert "(did you mean config/lab_char_cpu.py?)" in error_of(["confg/lab_char_cpu.py"])  # a misspelt folder
    assert "did you mean" not in error_of(["config/something_else_entirely.py"])
