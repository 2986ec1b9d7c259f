"""gptkit/tracing.py: its table of step names (STEPS) is the one the model's `tap` calls and hooks produce,
and every name a forward pass hands out is described."""

import ast

import pytest
import torch

from conftest import REPO_ROOT, make_model, random_tokens
from gptkit.tracing import STEPS, describe_step, step_of, tracing

pytestmark = pytest.mark.usefixtures("one_thread")


def tapped_names():
    """The keyword names of every self.tap(...) call in model.py: the steps attention shows by name."""
    tree = ast.parse((REPO_ROOT / "model.py").read_text())
    return {kw.arg for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "tap"
            for kw in node.keywords}


def test_every_tap_in_model_py_is_a_step_of_the_table():
    names = tapped_names()
    assert {"q", "k", "v", "scores", "mask", "softmax", "out"} <= names  # the parse found the calls
    assert {f"attn.{name}" for name in names} <= set(STEPS)


@pytest.mark.parametrize("overrides", [
    dict(), dict(pos_encoding="rope", qk_norm=True, n_kv_head=1), dict(pos_encoding="sinusoidal", residual=False),
    dict(mlp="swiglu", norm="rmsnorm", attn_score="neg_dot", mask="anticausal"),
])
def test_every_traced_name_is_in_the_table_and_described(overrides):
    seen = []
    model = make_model(**overrides).eval()
    with torch.no_grad(), tracing(model, lambda name, t: seen.append(name)):
        model(random_tokens((1, 8)), random_tokens((1, 8)))
    assert "h.1.attn.softmax" in seen and seen[-1] == "loss"
    for name in seen:
        assert step_of(name) in STEPS, name
        assert describe_step(name, model.config), name
    # and the table names nothing a forward pass of some model never hands out (the attention steps of the
    # tapped names, the hooked modules and the outputs)
    assert set(STEPS) <= {f"attn.{n}" for n in tapped_names()} | {
        "idx", "tok_emb", "pos_emb", "ln_1", "attn.merged", "attn.c_proj", "attn_residual", "attn_output", "ln_2",
        "mlp", "out", "ln_f", "logits", "loss"}


def test_what_the_watching_function_returns_changes_nothing():
    """fn may return what it likes (dict.setdefault returns the tensor): the forward pass is the same."""
    model, x = make_model().eval(), random_tokens((2, 8))
    with torch.no_grad():
        expected = model(x)[0]
        with tracing(model, lambda name, t: t[0]):  # a hook returning this would replace inputs and outputs
            traced = model(x)[0]
    torch.testing.assert_close(traced, expected)
