"""The shape of model.py, counted (issue "One GPT to read, the lab beside it"): its length, what it imports,
the branches inside its forward passes, and no mock.patch reaching into it from outside the tests.

`python3 tests/test_layout.py [FILE]` prints the figures: lines, `if`s and conditional expressions in
forward methods, and the ten longest functions.
"""

import ast
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = REPO_ROOT / "model.py"


def functions(tree):
    """(qualified name, node) of every function and method defined at module level or in a module-level class."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield f"{node.name}.{item.name}", item


def branches(node):
    """`if` statements and conditional expressions (x if c else y) inside a function."""
    return sum(isinstance(n, (ast.If, ast.IfExp)) for n in ast.walk(node))


def length(node):
    return node.end_lineno - node.lineno + 1


def figures(path=MODEL):
    source = Path(path).read_text()
    tree = ast.parse(source)
    funcs = dict(functions(tree))
    forwards = {name: branches(node) for name, node in funcs.items() if name.endswith(".forward")}
    longest = sorted(((length(node), name) for name, node in funcs.items()), reverse=True)[:10]
    return {"lines": len(source.splitlines()), "forward_branches": forwards, "longest": longest,
            "functions": funcs, "tree": tree, "source": source}


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "").split(".")[0]


# Issue 30 asks for 450 lines; model.py then gained issue 34's settings (grouped-query attention, SwiGLU,
# norm_eps, rope_theta: about 45 lines) and the Parts a GPT is built from (about 30). The training and measuring
# helpers left for gptkit (optim.py, system.py, training.py); this holds what remains from growing.
MAX_LINES = 520


def test_model_py_stays_short():
    assert figures()["lines"] <= MAX_LINES


def test_model_py_imports_only_torch_and_the_standard_library_and_names_no_gptkit_module():
    f = figures()
    outside = {m for m in imported_modules(f["tree"]) if m != "torch" and m not in sys.stdlib_module_names}
    assert outside == set()
    assert "gptkit" not in f["source"]


def test_forward_passes_hold_at_most_ten_branches_block_none():
    f = figures()
    assert sum(f["forward_branches"].values()) <= 10, f["forward_branches"]
    assert f["forward_branches"]["Block.forward"] == 0
    assert length(f["functions"]["CausalSelfAttention.forward"]) <= 25


def test_no_mock_patch_outside_the_tests():
    code = [*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "gptkit").rglob("*.py"), *(REPO_ROOT / "exercises").glob("*.py")]
    users = [str(p.relative_to(REPO_ROOT)) for p in code
             if "mock.patch" in p.read_text() or "from unittest import mock" in p.read_text()]
    assert len(code) > 20 and users == []


if __name__ == "__main__":
    f = figures(sys.argv[1] if len(sys.argv) > 1 else MODEL)
    print(f"lines: {f['lines']}")
    print(f"ifs and conditional expressions in forward methods: {sum(f['forward_branches'].values())} "
          f"{f['forward_branches']}")
    print("ten longest functions:")
    for n, name in f["longest"]:
        print(f"  {n:4d}  {name}")
