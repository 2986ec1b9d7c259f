"""multihead: MultiHeadAttention(n_embd, n_head), whose forward the learner writes, checked against
model.CausalSelfAttention with the same weights; `learn.py train multihead` builds the model's
attention layers from it."""

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

import model
from gptkit.exercises.harness import (Training, check_shape, compare, first_match, holding_weights, random,
                                      unchanged_before)

TITLE = "multi-head attention: split, attend, merge, project"
WRITES = "MultiHeadAttention.forward"
SHAPES = [(2, 5, 16, 4), (1, 7, 32, 1), (3, 4, 24, 3), (1, 1, 8, 2)]  # (B, T, C, n_head)


def pair(C, n_head, seed=0):
    """The model's CausalSelfAttention and the learner's module, holding the same weights."""
    torch.manual_seed(seed)
    ref = model.CausalSelfAttention(model.GPTConfig(n_embd=C, n_head=n_head, block_size=64), 0)
    with torch.no_grad():  # GPT-2's biases start at 0; random ones show a bias left out
        ref.c_attn.bias.normal_()
        ref.c_proj.bias.normal_()
    return ref


def learners(mine, ref, C, n_head):
    """The learner's module holding ref's weights, or a failed Result when its parameters are not the template's."""
    return holding_weights(mine.call(mine.MultiHeadAttention, C, n_head), ref, "c_attn and c_proj")


def variants(ref, x, n_head):
    """What a learner's forward computes with the usual mistakes, from the same weights."""
    B, T, C = x.shape
    hs = C // n_head
    q, k, v = ref.c_attn(x).split(C, dim=2)

    def heads(t):
        return t.view(B, T, n_head, hs).transpose(1, 2)  # (B, nh, T, hs)

    def merged(y):
        return y.transpose(1, 2).contiguous().view(B, T, C)

    y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)  # (B, nh, T, hs)
    bare = [t.reshape(B, n_head, T, hs) for t in (q, k, v)]
    return [
        ("split the heads with .view(B, T, n_head, hs).transpose(1, 2): a bare .view(B, n_head, T, hs) "
         "mixes positions into heads", lambda: ref.c_proj(merged(F.scaled_dot_product_attention(*bare, is_causal=True)))),
        ("merge the heads with y.transpose(1, 2).contiguous().view(B, T, C): a bare .view(B, T, C) of "
         "(B, n_head, T, hs) mixes positions and heads", lambda: ref.c_proj(y.reshape(B, T, C))),
        ("the heads' outputs skip the output projection: return self.c_proj(y)", lambda: merged(y)),
        ("c_attn's output splits as q, k, v, in that order", lambda: ref.c_proj(merged(
            F.scaled_dot_product_attention(heads(k), heads(q), heads(v), is_causal=True)))),
        (f"you attend with one head of size C = {C}: split into n_head = {n_head} heads of size C // n_head",
         lambda: ref.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True)) if n_head > 1 else None),
        (f"the scores are divided by sqrt(C) = {math.sqrt(C):.2f}: each head divides by sqrt(head_size) = "
         f"{math.sqrt(hs):.2f}", lambda: ref.c_proj(merged(F.scaled_dot_product_attention(
             heads(q), heads(k), heads(v), is_causal=True, scale=1 / math.sqrt(C)))) if n_head > 1 else None),
        ("no causal mask: every position sees the future (is_causal=True, or the mask of your causal_attention)",
         lambda: ref.c_proj(merged(F.scaled_dot_product_attention(heads(q), heads(k), heads(v)))) if T > 1 else None),
    ]


@torch.no_grad()
def matches_model(mine):
    for B, T, C, n_head in SHAPES:
        ref = pair(C, n_head).eval()
        mha, wrong = learners(mine, ref, C, n_head)
        if wrong:
            yield wrong
            return
        x = random(B, T, C, seed=1)
        y = mine.call(mha, x.clone())
        where = f"B={B}, T={T}, C={C}, n_head={n_head}"
        yield check_shape(f"(B, T, C) in, (B, T, C) out ({where})", y, (B, T, C))
        expected = ref(x)
        yield compare(f"equals model.CausalSelfAttention with the same weights ({where})", y, expected,
                      lambda: first_match(y, variants(ref, x, n_head), atol=1e-4, rtol=1e-3, expected=expected))


@torch.no_grad()
def properties(mine):
    B, T, C, n_head = 2, 8, 16, 4
    ref = pair(C, n_head)
    mha, wrong = learners(mine, ref, C, n_head)
    if wrong:
        return
    x = random(B, T, C, seed=2)
    y = mine.call(mha, x.clone())
    later = x.clone()
    later[:, 4:] = random(B, T - 4, C, seed=3)
    y2 = mine.call(mha, later)
    yield unchanged_before(4, y, y2, 1, "an earlier position sees a later one: attend causally")


@contextmanager
def substitute(mine):
    """Every Block builds its attention (model.py's part `attention`) from the learner's MultiHeadAttention: the
    same parameters as model.CausalSelfAttention, in the same order, so the same initial weights."""

    class LearnersAttention(mine.MultiHeadAttention):
        def __init__(self, config, layer, parts=None):
            super().__init__(config.n_embd, config.n_head)
            self.resid_dropout = nn.Dropout(config.dropout)

        def forward(self, x, rotary=None, kv_cache=None):
            return self.resid_dropout(super().forward(x))  # (B, T, C)

    with model.using_parts(attention=LearnersAttention):
        yield


GROUPS = [matches_model, properties]
TRAIN = Training("your multi-head attention", substitute,
                 requires={"attn_score": ("dot",), "mask": ("causal",), "qk_norm": (False,), "bias": (True,),
                           "pos_encoding": ("learned", "sinusoidal", "none")})
