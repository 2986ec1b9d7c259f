"""rmsnorm: RMSNorm(ndim, eps), whose forward the learner writes, checked against F.rms_norm (what model.py's
nn.RMSNorm computes under norm=rmsnorm); `learn.py train rmsnorm` builds every norm of the model from it."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, random

TITLE = "RMSNorm: each position divided by its root mean square (Llama's norm)"
WRITES = "RMSNorm.forward"
EPS = 1e-5  # the template's default, Llama 2's rms_norm_eps
# (shape, scale): small values (where eps matters), and values far from 1
CASES = [((2, 5, 8), 1.0), ((1, 1, 16), 1.0), ((3, 7, 128), 1.0), ((4, 6, 32), 1e-3), ((2, 3, 64), 30.0)]


def learners(mine, C, seed=0):
    """The learner's RMSNorm with a random gain (the initial 1 would hide it left out)."""
    norm = mine.call(mine.RMSNorm, C, eps=EPS)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * random(C, seed=seed))
    return norm


def causes(got, x, weight):
    """Compute the norms learners write by mistake; the one `got` matches names the mistake."""
    x, w = x.double(), weight.detach().double()
    ms = x.pow(2).mean(-1, keepdim=True)  # (..., 1): the mean square over the C channels
    centred = x - x.mean(-1, keepdim=True)
    return first_match(got, [
        ("you subtract the mean: that is LayerNorm (without its bias); RMSNorm divides x itself by its root mean "
         "square, x / sqrt(mean(x²) + eps)", w * centred / (centred.pow(2).mean(-1, keepdim=True) + EPS).sqrt()),
        ("eps is added outside the root, to the RMS: RMSNorm adds it to the mean square, sqrt(mean(x²) + eps)",
         w * x / (ms.sqrt() + EPS)),
        ("there is no eps: divide by sqrt(mean(x²) + eps), which stays finite for a row of zeros", w * x / ms.sqrt()),
        ("you divide by the root of the sum of squares (the length of the vector); RMSNorm takes the mean over the C "
         "channels", w * x / (x.pow(2).sum(-1, keepdim=True) + EPS).sqrt()),
        ("you divide by the mean square itself: take its square root", w * x / (ms + EPS)),
        ("you normalise over the whole tensor; each position gets its own root mean square, over its C channels "
         "(dim=-1)", w * x / (x.pow(2).mean() + EPS).sqrt()),
        ("the gain is not used: y = weight * x / sqrt(mean(x²) + eps)", x / (ms + EPS).sqrt()),
    ], atol=1e-3, rtol=1e-3, expected=w * x / (ms + EPS).sqrt())


def matches_rms_norm(mine):
    for i, (shape, scale) in enumerate(CASES):
        C = shape[-1]
        norm = learners(mine, C, seed=i)
        x = random(*shape, seed=10 + i, scale=scale)
        with torch.no_grad():
            y = mine.call(norm, x.clone())
            ref = F.rms_norm(x, (C,), norm.weight, EPS)
        where = f"shape {shape}" + (f", values of size {scale:g}" if scale != 1 else "")
        yield check_shape(f"the output has the input's shape ({where})", y, shape)
        yield compare(f"equals F.rms_norm, model.py's nn.RMSNorm ({where})", y, ref,
                      lambda: causes(y, x, norm.weight), atol=1e-4)


@torch.no_grad()
def properties(mine):
    C = 16
    norm = mine.call(mine.RMSNorm, C, eps=EPS)
    starts = isinstance(getattr(norm, "weight", None), torch.Tensor)
    yield Result("weight starts at 1 (the norm starts as a pure normalisation), and there is no bias",
                 starts and bool((norm.weight == 1).all()) and getattr(norm, "bias", None) is None, "weight 1, no bias",
                 "other values" if starts else "no weight tensor", "keep the template's __init__")
    x = random(3, 5, C, seed=20) * 3 + 2
    y = mine.call(norm, x)
    yield compare("with weight 1 each row of the output has mean square 1", y.pow(2).mean(-1), torch.ones(3, 5),
                  lambda: causes(y, x, norm.weight), atol=1e-3)
    yield compare("... and keeps its mean (RMSNorm does not centre: x and its output point the same way)",
                  y.mean(-1), (x / x.pow(2).mean(-1, keepdim=True).sqrt()).mean(-1), lambda: causes(y, x, norm.weight),
                  atol=1e-3)
    y_big = mine.call(norm, 1000.0 * x)
    yield compare("scaling a row by 1000 changes nothing (the scale is divided out)", y_big, y,
                  lambda: causes(y_big, 1000.0 * x, norm.weight), atol=1e-4)
    zeros = mine.call(norm, torch.zeros(2, C))
    finite = bool(torch.isfinite(zeros).all())
    yield Result("a row of zeros gives zeros, not NaN", finite and bool((zeros == 0).all()), "zeros",
                 "NaN or inf" if not finite else f"up to {zeros.abs().max().item():.4g}",
                 "" if finite else "divide by sqrt(mean(x²) + eps): eps keeps it finite")


@contextmanager
def substitute(mine):
    """Every norm of the model (model.py's part `norm`) is the learner's RMSNorm: a parameter of the same name
    (weight) and start (1), and the model's eps (norm_eps)."""
    with model.using_parts(norm=lambda config: mine.RMSNorm(config.n_embd, eps=config.norm_eps)):
        yield


GROUPS = [matches_rms_norm, properties]
TRAIN = Training("your RMSNorm", substitute, overrides={"norm": "rmsnorm"})
