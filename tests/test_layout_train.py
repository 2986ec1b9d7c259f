"""train.py reads as the algorithm in one stretch, with its plumbing in gptkit/, and no script leans on
another script's plumbing (issue 30's targets, counted with ast rather than by eye)."""

import ast
import re

from conftest import REPO_ROOT

TRAIN = REPO_ROOT / "train.py"
SCRIPTS = {"prepare", "train", "sample", "visualize", "experiment", "bench", "export", "learn"}
# What a script may take from train.py: its settings, its step and its entry point (bench.py times the
# step, experiment.py and learn.py check settings before a run, learn.py trains in its own process
# with the learner's piece in place). Nothing else crosses between scripts: plumbing lives in gptkit/.
TRAIN_INTERFACE = {"TrainConfig", "train_step", "mean_loss", "main"}


def function_lengths(path):
    """{name: lines from `def` to its last line} of every function at the top of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name: node.end_lineno - node.lineno + 1 for node in tree.body if isinstance(node, ast.FunctionDef)}


def imports_of_scripts(path):
    """[(script, {names taken from it})] for each import of a top-level script in the file at `path`; for a
    plain `import train`, the names are the attributes the file reads from it (train.main -> main)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in SCRIPTS:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SCRIPTS:
                    name = alias.asname or alias.name
                    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                            and isinstance(n.value, ast.Name) and n.value.id == name}
                    found.append((alias.name, used))
    return found


def test_train_py_is_short_and_its_loop_reads_in_one_stretch():
    lines = TRAIN.read_text(encoding="utf-8").splitlines()
    lengths = function_lengths(TRAIN)
    assert len(lines) <= 450
    assert lengths["train"] <= 35
    assert lengths["evaluate_and_save"] <= 30
    assert lengths["main"] <= 40
    assert lengths["train_step"] <= 30  # the one named training step stays whole
    # the algorithm first, in reading order, then the plumbing, then main
    order = list(lengths)
    algorithm = ["lr_at", "train_step", "evaluate", "train", "evaluate_and_save", "main"]
    assert [order.index(name) for name in algorithm] == sorted(order.index(name) for name in algorithm)
    assert order[-1] == "main"


def test_train_py_names_fsdp_no_more_than_its_settings_need():
    assert len(re.findall("fsdp", TRAIN.read_text(encoding="utf-8"), re.IGNORECASE)) <= 15


def test_no_script_imports_another_scripts_plumbing():
    files = [*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "gptkit").rglob("*.py")]
    assert REPO_ROOT / "learn.py" in files and REPO_ROOT / "bench.py" in files
    crossings = {}
    for path in files:
        for script, names in imports_of_scripts(path):
            crossings.setdefault(path.relative_to(REPO_ROOT).as_posix(), set()).update(f"{script}.{n}" for n in names)
    for where, names in crossings.items():
        assert not where.startswith("gptkit/"), f"{where} imports a script: {sorted(names)}"
        outside = sorted(n for n in names if n.split(".")[0] != "train" or n.split(".")[1] not in TRAIN_INTERFACE)
        assert not outside, f"{where} imports another script's internals: {outside}; move them to gptkit/"
    # the check sees what is there: learn.py runs train.py's main, bench.py times its step
    assert "train.main" in crossings["learn.py"] and "train.train_step" in crossings["bench.py"]
