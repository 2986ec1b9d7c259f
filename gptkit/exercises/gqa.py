"""gqa: repeat_kv and grouped_attention, checked against model.repeat_kv and causal attention over the repeated
keys and values (what model.py computes under n_kv_head); `learn.py train gqa` trains with grouped_attention
in place of step_by_step (explicit_attention=True, n_kv_head=2)."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, random

TITLE = "grouped-query attention: query heads sharing key and value heads"
WRITES = "repeat_kv, grouped_attention"
# (B, nh, nkv, T, hs): groups of 3 and 2, multi-query (nkv = 1), and one head per key head (plain attention)
SHAPES = [(2, 6, 2, 5, 4), (1, 4, 2, 7, 8), (1, 4, 1, 3, 4), (2, 2, 2, 4, 4)]


def tiled(x, n):
    """The keys repeated in turn (0, 1, 0, 1, ...): query head h reading key head h % nkv."""
    return x.repeat(1, n, 1, 1)


def repeat_causes(got, x, n):
    return first_match(got, [
        (f"the key heads are repeated in the wrong order: yours go round in turn (0, 1, ..., 0, 1, ...), so query "
         f"head h reads key head h % n_kv_head; the groups are consecutive, query heads 0..{n - 1} share key head 0 "
         f"(repeat each head n_rep times in place: repeat_interleave on dim 1)", tiled(x, n)),
        ("you repeat along the positions (dim 2); the heads are dim 1", x.repeat_interleave(n, dim=2)),
    ], expected=model.repeat_kv(x, n))


def repeats_like_model(mine):
    for B, nh, nkv, T, hs in SHAPES:
        n = nh // nkv
        x = random(B, nkv, T, hs, seed=nh + T)
        got = mine.call(mine.repeat_kv, x.clone(), n)
        where = f"B={B}, n_kv_head={nkv}, n_rep={n}, S={T}, hs={hs}"
        yield check_shape(f"(B, n_kv_head * n_rep, S, hs) ({where})", got, (B, nh, T, hs))
        yield compare(f"equals model.repeat_kv: query head h reads key head h // n_rep ({where})", got,
                      model.repeat_kv(x, n), lambda: repeat_causes(got, x, n))


def reference(q, k, v):
    n = q.size(1) // k.size(1)
    return F.scaled_dot_product_attention(q, model.repeat_kv(k, n), model.repeat_kv(v, n), is_causal=True)


def attention_causes(y, q, k, v):
    n = q.size(1) // k.size(1)
    sdpa, rep = F.scaled_dot_product_attention, model.repeat_kv
    return first_match(y, [
        ("the key and value heads are repeated in the wrong order: in turn (0, 1, 0, 1, ...) instead of in groups; "
         "query heads 0..n_rep-1 share key head 0 (repeat_interleave on dim 1)",
         sdpa(q, tiled(k, n), tiled(v, n), is_causal=True)),
        ("the keys are repeated in groups but the values in turn: repeat both alike",
         sdpa(q, rep(k, n), tiled(v, n), is_causal=True)),
        ("the values are repeated in groups but the keys in turn: repeat both alike",
         sdpa(q, tiled(k, n), rep(v, n), is_causal=True)),
        ("no causal mask: a position sees its future", sdpa(q, rep(k, n), rep(v, n))),
    ], atol=1e-4, rtol=1e-4, expected=reference(q, k, v))


def attention_matches(mine):
    for B, nh, nkv, T, hs in SHAPES:
        q = random(B, nh, T, hs, seed=1)
        k, v = random(B, nkv, T, hs, seed=2), random(B, nkv, T, hs, seed=3)
        y = mine.call(mine.grouped_attention, q.clone(), k.clone(), v.clone())
        where = f"B={B}, n_head={nh}, n_kv_head={nkv}, T={T}, hs={hs}"
        yield check_shape(f"y is (B, n_head, T, hs) ({where})", y, (B, nh, T, hs))
        yield compare(f"equals causal attention over the repeated keys and values ({where})", y, reference(q, k, v),
                      lambda: attention_causes(y, q, k, v), atol=1e-4)


def sharing(mine):
    """Two query heads of one group asking the same question get the same answer; of two groups, not."""
    B, nh, nkv, T, hs = 1, 4, 2, 5, 8
    q = random(B, 1, T, hs, seed=7).expand(B, nh, T, hs).clone()  # every head asks the same
    k, v = random(B, nkv, T, hs, seed=8), random(B, nkv, T, hs, seed=9)
    y = mine.call(mine.grouped_attention, q, k, v)
    if not check_shape("", y, (B, nh, T, hs)).passed:
        return
    same_group = bool(torch.allclose(y[:, 0], y[:, 1], atol=1e-5))
    yield Result("query heads 0 and 1 (one group) read the same key and value head", same_group,
                 "equal outputs for equal queries", "different outputs" if not same_group else "",
                 "" if same_group else attention_causes(y, q, k, v))
    other_group = not torch.allclose(y[:, 0], y[:, 2], atol=1e-5)
    yield Result("query heads 0 and 2 (two groups) read different ones", other_group,
                 "different outputs", "equal outputs" if not other_group else "",
                 "" if other_group else attention_causes(y, q, k, v))


@contextmanager
def substitute(mine):
    """The step-by-step attention, which explicit_attention=True runs for every forward pass (model.py's part
    step_by_step), computed by the learner's grouped_attention over n_kv_head key and value heads."""

    def step_by_step(attn, q, k, v, mask=None):
        return mine.grouped_attention(q, k, v)  # (B, nh, T, hs); training has no cache, so the mask is causal

    with model.using_parts(step_by_step=step_by_step):
        yield


GROUPS = [repeats_like_model, attention_matches, sharing]
TRAIN = Training("your grouped-query attention", substitute, overrides={"explicit_attention": True, "n_kv_head": 2},
                 requires={"attn_score": ("dot",), "mask": ("causal",), "dropout": (0.0,)})
