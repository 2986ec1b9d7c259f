"""swiglu: SwiGLU.forward, the learner's, checked against model.SwiGLU holding the same weights (mlp=swiglu);
`learn.py train swiglu` runs every Block's MLP through it."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, random

TITLE = "SwiGLU: Llama's gated MLP"
WRITES = "SwiGLU.forward"
CASES = [((2, 5, 8), 24, False), ((1, 3, 16), 40, True), ((3, 4, 32), 88, False)]  # (x shape, hidden, bias)


def learners(mine, C, hidden, bias, seed=0):
    """The learner's SwiGLU with random weights (and biases, random too: zeros would hide one left out)."""
    mlp = mine.call(mine.SwiGLU, C, hidden, bias=bias)
    with torch.no_grad():
        for i, p in enumerate(mlp.parameters()):
            p.copy_(random(*p.shape, seed=seed + i, scale=0.5))
    return mlp


def reference(mlp, C, hidden, bias):
    """model.SwiGLU of this size holding the learner's module's weights (the same names: c_fc, c_fc2, c_proj)."""
    ref = model.SwiGLU(model.GPTConfig(n_embd=C, n_head=1, mlp="swiglu", mlp_hidden=hidden, bias=bias)).eval()
    ref.load_state_dict(mlp.state_dict())
    return ref


def causes(got, x, mlp):
    """Compute the MLPs learners write by mistake; the one `got` matches names the mistake."""
    gate, up, down = mlp.c_fc, mlp.c_fc2, mlp.c_proj
    g, u = gate(x), up(x)  # (..., hidden) each
    return first_match(got, [
        ("gate and up are swapped, the SiLU on the wrong branch: it goes on c_fc x (the gate, Llama's gate_proj), "
         "which then multiplies c_fc2 x (up_proj)", down(F.silu(u) * g)),
        ("the activation is on the product: SiLU applies to the gate c_fc x alone, and the product comes after it",
         down(F.silu(g * u))),
        ("the activation is after the down projection: silu(c_fc x) * c_fc2 x goes into c_proj",
         F.silu(down(g * u))),
        ("the activation is on both branches: only the gate passes through SiLU", down(F.silu(g) * F.silu(u))),
        ("there is no activation: c_proj(silu(c_fc x) * c_fc2 x)", down(g * u)),
        ("that is GLU's sigmoid: SwiGLU uses SiLU, silu(z) = z * sigmoid(z)", down(torch.sigmoid(g) * u)),
        ("that is GEGLU's GELU: SwiGLU uses SiLU, silu(z) = z * sigmoid(z)", down(F.gelu(g) * u)),
        ("that is ReGLU's ReLU: SwiGLU uses SiLU, silu(z) = z * sigmoid(z)", down(F.relu(g) * u)),
        ("the branches are added: a gated unit multiplies them, silu(c_fc x) * c_fc2 x", down(F.silu(g) + u)),
        ("the up branch is missing: c_proj(silu(c_fc x) * c_fc2 x) multiplies two projections", down(F.silu(g))),
    ], atol=1e-4, rtol=1e-4, expected=down(F.silu(g) * u))


@torch.no_grad()
def matches_model(mine):
    for i, (shape, hidden, bias) in enumerate(CASES):
        C = shape[-1]
        mlp = learners(mine, C, hidden, bias, seed=10 * i)
        x = random(*shape, seed=100 + i)
        y = mine.call(mlp, x.clone())
        where = f"x {shape}, hidden {hidden}" + (", with biases" if bias else "")
        yield check_shape(f"the output has x's shape ({where})", y, shape)
        yield compare(f"equals model.SwiGLU with the same weights ({where})", y,
                      reference(mlp, C, hidden, bias)(x), lambda: causes(y, x, mlp))


@torch.no_grad()
def properties(mine):
    C, hidden = 8, 24
    mlp = learners(mine, C, hidden, False, seed=3)
    x = random(2, 6, C, seed=4)
    y = mine.call(mlp, x.clone())
    if not check_shape("", y, x.shape).passed:
        return
    # an MLP works on each position alone: changing one leaves the others as they were
    changed = x.clone()
    changed[:, 3] = random(2, C, seed=5)
    y2 = mine.call(mlp, changed)
    others = [t for t in range(6) if t != 3]
    alone = bool(torch.allclose(y2[:, others], y[:, others], atol=1e-6))
    yield Result("each position is computed on its own (changing position 3 leaves the others)", alone,
                 "the same outputs", "other positions changed" if not alone else "",
                 "" if alone else "apply the three projections to x as it is, (..., C): no mixing along T")
    # a closed gate passes nothing: silu(z) -> 0 as z -> -inf
    mlp.c_fc.weight.zero_()
    closed = mine.call(mlp, x.clone())
    yield compare("with the gate's weights at zero the output is zero (silu(0) = 0: the gate is closed)", closed,
                  torch.zeros_like(closed), lambda: causes(closed, x, mlp), atol=1e-6)


@contextmanager
def substitute(mine):
    """Every Block (model.py's part `block`) runs its MLP, model.SwiGLU under mlp=swiglu, through the learner's
    SwiGLU.forward: the model's own c_fc, c_fc2 and c_proj (the same weights, made in the same order), the
    learner's computation."""

    class LearnersBlock(model.Block):
        def forward(self, x, rotary=None, kv_cache=model.NO_CACHE):
            x = x + self.attn(self.ln_1(x), rotary, kv_cache)  # (B, T, C)
            return x + self.mlp.dropout(mine.SwiGLU.forward(self.mlp, self.ln_2(x)))  # (B, T, C)

    with model.using_parts(block=LearnersBlock):
        yield


GROUPS = [matches_model, properties]
TRAIN = Training("your SwiGLU", substitute, overrides={"mlp": "swiglu"}, requires={"residual": (True,)})
