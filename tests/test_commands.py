"""Every command the repository shows runs as shown: in README.md, docs/*.md, the config files' comments,
the scripts' docstrings (their --help) and the notebook's prose, each `python3 SCRIPT.py ...` is read by
that script's own parse(), exactly as its main() reads it: an unknown setting, a wrong form (`--vary KEY=v1`
for `--vary=KEY=v1`), a missing config file, command or script fails here. Synopses with placeholders
(`OUT_DIR`, `[--key=value ...]`) get a real value for each placeholder first; where none fits, at least
the script must exist. Running them is other tests' work: these commands train for minutes. And each is
spelled `python3 ...`, as the README spells it: a bare `python` is missing on many machines, so the hint fails."""

import ast
import json
import re
import shlex

import pytest

import bench
import experiment
import export
import learn
import prepare
import sample
import train
import visualize
from conftest import REPO_ROOT
from gptkit.errors import UserError

PARSERS = {"train.py": train.parse, "sample.py": sample.parse, "prepare.py": prepare.parse, "export.py": export.parse,
           "visualize.py": visualize.parse, "bench.py": bench.parse, "experiment.py": experiment.plan,
           "learn.py": learn.parse}
COMMAND = re.compile(r"(?:python3? |torchrun [^`\n]*?)(\w+\.py)\b([^`\n|&#]*)")
# what a synopsis's placeholders stand for: a value each script accepts
PLACEHOLDERS = [("KEY=v1,v2,...", "n_head=1,2"), ("KEY=v1,v2", "n_head=1,2"), ("--KEY=VALUE", "--n_head=2"),
                ("OUT_ROOT/KEY=VALUE", "out-exp/n_head=2"), ("CONFIG.py", "config/lab_char_cpu.py"),
                ("CONFIG", "config/lab_char_cpu.py"), ("config/x.py", "config/lab_char_cpu.py"),
                ("FILE.gguf", "model.gguf"), ("OUT_DIR", "out-x"), ("DIR2", "out-y"), ("DEST", "dest"),
                ("--input=DIR", "--input=docs"), ("=DIR", "=out-x")]
UNFILLED = re.compile(r"\[|\b[A-Z][A-Z_]{2,}\b(?!:)|path/to|/\.\.\.")  # `--start=FILE:x` is syntax, not a placeholder


def shown_texts():
    """{where: text} of everything a user reads that may show a command."""
    texts = {str(p.relative_to(REPO_ROOT)): p.read_text() for p in [REPO_ROOT / "README.md",
                                                                   *sorted((REPO_ROOT / "docs").glob("*.md"))]}
    texts.update({str(p.relative_to(REPO_ROOT)): p.read_text() for p in sorted((REPO_ROOT / "config").glob("*.py"))})
    for script in sorted(REPO_ROOT.glob("*.py")):
        texts[script.name] = ast.get_docstring(ast.parse(script.read_text())) or ""
    notebook = json.loads((REPO_ROOT / "walkthrough.ipynb").read_text())
    texts["walkthrough.ipynb"] = "\n".join("".join(cell["source"]) for cell in notebook["cells"]
                                           if cell["cell_type"] == "markdown")
    return texts


def shown_commands():
    """[(where, script, the arguments as written)], a command continued with a backslash joined into one line."""
    found = []
    for where, text in shown_texts().items():
        for match in COMMAND.finditer(text.replace("\\\n", " ")):
            arguments = re.split(r"\s{2,}", match.group(2))[0].strip()  # a docstring's column of comments after it
            found.append((where, match.group(1), arguments))
    return found


def fill(arguments):
    """The arguments with a value for each placeholder, an optional setting `[--text="..."]` taken as given, and
    the other optional groups (`[--key=value ...]`, `[OUT_DIR ...]`) and trailing `...` left out."""
    for placeholder, value in PLACEHOLDERS:
        arguments = arguments.replace(placeholder, value)
    arguments = re.sub(r"=N\b", "=8", arguments)  # a count: --gpus=N
    arguments = re.sub(r"\[(--(?!key=)\w+=[^\]\s]*)\]", r"\1", arguments)
    arguments = re.sub(r"\[[^\]]*\]", "", arguments)
    return re.sub(r"(^|\s)\.\.\.(?=\s|$)", " ", arguments).strip()


COMMANDS = shown_commands()


def test_the_repository_shows_commands_of_every_script():
    assert len(COMMANDS) > 80
    assert {script for _, script, _ in COMMANDS} >= set(PARSERS)


@pytest.mark.parametrize("where, script, arguments", COMMANDS, ids=[f"{w}: {s} {a}"[:90] for w, s, a in COMMANDS])
def test_a_shown_command_runs_as_shown(where, script, arguments, monkeypatch):
    assert (REPO_ROOT / script).is_file() or script == "SCRIPT.py", f"{where} shows {script}, which does not exist"
    filled = fill(arguments)
    if script not in PARSERS or UNFILLED.search(filled):
        return  # a synopsis: `SCRIPT.py [COMMAND] ...`, `visualize.py loss out-a out-b ...`
    monkeypatch.chdir(REPO_ROOT)  # config/... paths are relative to the repository, where commands are run
    try:
        PARSERS[script](shlex.split(filled))
    except SystemExit as e:  # --help prints and exits
        assert "--help" in filled and e.code == 0
    except UserError as e:
        pytest.fail(f"{where}: `{script} {arguments}` does not run as shown: {e}")


BARE_PYTHON = re.compile(r"(?<![\w./-])python (?=[\w./-]*\.py\b|-[mc]\b|SCRIPT)")


def printed_strings():
    """{where: text} of every string literal in the scripts, gptkit/ and the exercises: the hints, suggestions
    and --help a user is shown (an f-string's literal parts included)."""
    files = [*sorted(REPO_ROOT.glob("*.py")), *sorted((REPO_ROOT / "gptkit").rglob("*.py")),
             *sorted((REPO_ROOT / "exercises").glob("*.py"))]
    return {str(f.relative_to(REPO_ROOT)): "\n".join(node.value for node in ast.walk(ast.parse(f.read_text()))
                                                    if isinstance(node, ast.Constant) and isinstance(node.value, str))
            for f in files}


def test_every_shown_command_is_spelled_python3():
    texts = {**shown_texts(), **printed_strings()}
    bare = [f"{where}: {line.strip()}" for where, text in texts.items() for line in text.splitlines()
            if BARE_PYTHON.search(line)]
    assert not bare, "spell these `python3 ...`:\n" + "\n".join(bare)
    assert BARE_PYTHON.search("fix: python prepare.py x") and not BARE_PYTHON.search("python3 prepare.py x")


def test_a_wrong_form_is_caught(monkeypatch):
    """What the lab config's header once showed: `--vary KEY=v1,v2`, which experiment.py refuses."""
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(UserError, match="settings look like --key=value"):
        experiment.plan(shlex.split(fill("config/lab_char_cpu.py --vary KEY=v1,v2")))
