"""layernorm: LayerNorm(ndim, bias), whose forward the learner writes, checked against F.layer_norm (what
model.py's nn.LayerNorm computes); `learn.py train layernorm` builds every norm of the model from it."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, random

TITLE = "LayerNorm: each position to mean 0, variance 1"
WRITES = "LayerNorm.forward"
EPS = 1e-5  # nn.LayerNorm's, and the template's
# (shape, scale, offset): the last two are small values (where eps matters) and values far from 0
CASES = [((2, 5, 8), 1.0, 0.0), ((1, 1, 16), 1.0, 0.0), ((3, 7, 128), 1.0, 0.0), ((4, 6, 32), 1e-3, 0.0),
         ((2, 3, 64), 1.0, 300.0)]


def learners(mine, C, bias=True, seed=0):
    """The learner's LayerNorm with a random gain and bias (the initial 1 and 0 would hide them left out)."""
    ln = mine.call(mine.LayerNorm, C, bias=bias)
    with torch.no_grad():
        ln.weight.copy_(1 + 0.5 * random(C, seed=seed))
        if bias:
            ln.bias.copy_(0.5 * random(C, seed=seed + 1))
    return ln


def causes(got, x, weight, bias):
    """Compute the norms learners write by mistake; the one `got` matches names the mistake."""
    x = x.double()
    w, b = weight.detach().double(), (bias.detach().double() if bias is not None else 0.0)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)

    def scaled(x_hat):
        return w * x_hat + b

    def naive_var():  # E[x^2] - E[x]^2 in float32, as a learner's code computes it
        x32 = x.float()
        return ((x32 * x32).mean(-1, keepdim=True) - x32.mean(-1, keepdim=True) ** 2).double()

    return first_match(got, [
        ("you divide by the unbiased variance (by C - 1, torch.var's default): LayerNorm divides by C, "
         "x.var(-1, unbiased=False)", scaled((x - mean) / (x.var(-1, keepdim=True) + EPS).sqrt())),
        ("eps is added to the standard deviation: the formula adds it to the variance, sqrt(var + eps)",
         scaled((x - mean) / (var.sqrt() + EPS))),
        ("there is no eps: divide by sqrt(var + eps), which stays finite for a constant row",
         scaled((x - mean) / var.sqrt())),
        ("you normalise over the batch (dim 0); LayerNorm normalises each position over its C channels, dim=-1",
         scaled((x - x.mean(0, keepdim=True)) / (x.var(0, keepdim=True, unbiased=False) + EPS).sqrt())
         if x.shape[0] > 1 else None),
        ("you normalise over the whole tensor; each position (a row of the last dimension) gets its own mean and "
         "variance", scaled((x - x.mean()) / (x.var(unbiased=False) + EPS).sqrt())),
        ("the gain and the bias are not used: y = weight * x_hat + bias", (x - mean) / (var + EPS).sqrt()),
        ("the gain and the bias are swapped: y = weight * x_hat + bias",
         (b * (x - mean) / (var + EPS).sqrt() + w) if bias is not None else None),
        ("the variance as E[x²] - E[x]² loses its digits in float32 when the values are far from 0: "
         "use the mean of (x - mean)²", lambda: scaled((x - mean) / (naive_var().clamp(min=0) + EPS).sqrt())),
    ], atol=1e-3, rtol=1e-3, expected=scaled((x - mean) / (var + EPS).sqrt()))


def matches_layer_norm(mine):
    for i, (shape, scale, offset) in enumerate(CASES):
        C = shape[-1]
        ln = learners(mine, C, seed=i)
        x = random(*shape, seed=10 + i, scale=scale) + offset
        with torch.no_grad():
            y = mine.call(ln, x.clone())
            ref = F.layer_norm(x, (C,), ln.weight, ln.bias, EPS)
        where = f"shape {shape}" + (f", values of size {scale:g}" if scale != 1 else "") + (
            f", around {offset:g}" if offset else "")
        yield check_shape(f"the output has the input's shape ({where})", y, shape)
        # far from 0, float32 itself rounds x - mean to about 1e-4 of the spread
        yield compare(f"equals F.layer_norm ({where})", y, ref, lambda: causes(y, x, ln.weight, ln.bias),
                      atol=1e-3 if offset else 1e-4)


@torch.no_grad()
def properties(mine):
    C = 16
    ln = mine.call(mine.LayerNorm, C)
    starts = all(isinstance(p, torch.Tensor) for p in (ln.weight, ln.bias))
    yield Result("weight starts at 1 and bias at 0 (the norm starts as a pure normalisation)",
                 starts and bool((ln.weight == 1).all() and (ln.bias == 0).all()), "weight 1, bias 0",
                 "other values" if starts else "no weight or bias tensors", "keep the template's __init__")
    x = random(3, 5, C, seed=20) * 3 + 2
    y = mine.call(ln, x)
    yield compare("with weight 1 and bias 0 each row of the output has mean 0", y.mean(-1), torch.zeros(3, 5),
                  lambda: causes(y, x, ln.weight, ln.bias), atol=1e-5)
    yield compare("... and variance 1 (the biased variance, over the C channels)", y.var(-1, unbiased=False),
                  torch.ones(3, 5), lambda: causes(y, x, ln.weight, ln.bias), atol=1e-3)
    constant = torch.full((2, C), 7.0)
    y = mine.call(ln, constant)
    finite = bool(torch.isfinite(y).all())
    yield Result("a constant row (variance 0) gives 0, not NaN", finite and bool((y.abs() < 1e-4).all()),
                 "zeros", "NaN or inf" if not finite else f"up to {y.abs().max().item():.4g}",
                 "" if finite else "divide by sqrt(var + eps): eps keeps it finite")
    no_bias = learners(mine, C, bias=False, seed=5)
    x = random(2, 3, C, seed=21)
    y = mine.call(no_bias, x)
    yield compare("bias=False (self.bias is None): weight * x_hat alone", y,
                  F.layer_norm(x, (C,), no_bias.weight, None, EPS), lambda: causes(y, x, no_bias.weight, None),
                  atol=1e-4)


@contextmanager
def substitute(mine):
    """Every norm of the model (model.py's part `norm`) is the learner's LayerNorm: parameters with the same
    names (weight, bias) and the same start (1, 0)."""
    with model.using_parts(norm=lambda config: mine.LayerNorm(config.n_embd, bias=config.bias)):
        yield


GROUPS = [matches_layer_norm, properties]
TRAIN = Training("your LayerNorm", substitute, requires={"norm": ("layernorm",)})
