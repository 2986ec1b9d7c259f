"""cross_attention: Attention(n_embd, n_head), whose forward the learner writes: x's queries attending over a source's
keys and values, padded source keys hidden. Checked against transformer.Attention with the same weights, as the
encoder's self-attention (the source is x) and as the decoder's cross-attention (the source is the encoder's memory);
`learn.py train cross_attention` builds the translator's encoder self-attention and cross-attention from it and trains
config/translate_numbers_de.py."""

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

import model
import transformer
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, holding_weights, random, same

TITLE = "cross-attention with a padding mask: the encoder-decoder's attention"
WRITES = "Attention.forward"
# the encoder's self-attention: (B, S, C, n_head, each source's length), padded to S
ENCODER = [(2, 6, 16, 4, (6, 3)), (3, 5, 8, 2, (2, 5, 4)), (1, 4, 12, 3, (4,))]
# cross-attention: (B, T, S, C, n_head, lengths), T target positions asking a padded source of S. T = S first: there,
# queries and keys swapped still give the right shape, so the mistake is named before a shape error can stop the checks
CROSS = [(2, 5, 5, 16, 4, (5, 2)), (2, 3, 7, 16, 4, (7, 4)), (1, 6, 4, 8, 2, (4,)), (3, 1, 6, 8, 2, (6, 1, 3))]

CAUSAL = ("a causal mask hides the later source tokens: the encoder and cross-attention read the whole source, so "
          "drop the tril (or is_causal=True) and hide only the padded keys")
CAUSAL_ALONE = ("a causal mask in place of the padding mask: read the whole source (no tril, no is_causal) and hide "
                "only the padded keys, scores.masked_fill(~allowed, float('-inf'))")
SIDES = ("the queries come from the source and the keys and values from x: the asking sequence x makes the queries, "
         "q = c_q(x), and the source makes the keys and values, k, v = c_kv(source)")
TRANSPOSED = ("the scores are k qᵀ, a row per key: compute q @ k.transpose(-2, -1), (B, nh, T, S), a row per query, "
              "and softmax over its last axis")
QUERIES = ("the padding mask hides padded queries (the T axis) instead of padded keys: allowed (B, 1, 1, S) lines up "
           "with the scores' last axis as it is, scores.masked_fill(~allowed, float('-inf')), no transpose")
INVERTED = ("the mask is inverted: allowed is True where a key may be read, so hide ~allowed, "
            "scores.masked_fill(~allowed, float('-inf')) (or attn_mask=allowed)")
UNMASKED = ("padded source tokens are read: hide them before the softmax, scores.masked_fill(~allowed, float('-inf')) "
            "(or attn_mask=allowed in F.scaled_dot_product_attention)")


def reference(C, n_head, seed=0):
    """transformer.Attention with random weights and biases (a bias left out shows), in eval mode."""
    torch.manual_seed(seed)
    ref = transformer.Attention(model.GPTConfig(n_embd=C, n_head=n_head, dropout=0.0))
    with torch.no_grad():
        for linear in (ref.c_q, ref.c_kv, ref.c_proj):
            linear.bias.normal_()
    return ref.eval()


def learners(mine, ref, C, n_head):
    """The learner's module holding ref's weights, or a failed Result when its parameters are not the template's."""
    return holding_weights(mine.call(mine.Attention, C, n_head), ref, "c_q, c_kv and c_proj")


def padding_mask(lengths, S):
    """allowed (B, 1, 1, S): True for each source's first `length` tokens, False for its padding."""
    return (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def attended(ref, x, source, mask=None, fill=-math.inf, causal=False, transposed=False, fused=False):
    """What an Attention computes with ref's weights, done as a learner might: x's queries over source's keys and
    values, the scores masked where `mask` (broadcast to them) is False with `fill`, under a top-left causal mask;
    fused: a row with no key allowed gives 0, as in F.scaled_dot_product_attention (the softmax's gives NaN)."""
    B, T, C = x.shape
    q = ref.heads(ref.c_q(x))  # (B, nh, T, hs)
    k, v = ref.keys_values(source)  # (B, nh, S, hs) each
    scores = q @ k.transpose(-2, -1) / math.sqrt(ref.head_size)  # (B, nh, T, S)
    if transposed:
        scores = scores.transpose(-2, -1)  # k q^T: (B, nh, S, T)
    if causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), -math.inf)
    if mask is not None:
        scores = scores.masked_fill(~mask, fill)
    weights = F.softmax(scores, dim=-1)
    if fused:
        weights = weights.nan_to_num(0.0)
    y = weights @ v  # (B, nh, T, hs)
    return ref.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)


WAYS = [{}, {"fill": -1e9}, {"fused": True}]  # hiding a key: -inf, a large negative number, or the fused kernel's mask


def diagnose(ref, got, x, source, allowed):
    """The cause of the first known mistake `got` equals, from the same inputs and weights, or ''."""
    T, S = x.size(1), source.size(1)
    square = T == S  # a mistake that exchanges the T and S axes has the right shape only here
    on_queries = allowed.transpose(-1, -2)  # (B, 1, S, 1): hides rows, i.e. queries

    def variant(**how):
        return lambda: attended(ref, x, source, **how)

    def if_square(fn):
        return (lambda: fn() if square else None)

    return first_match(got, [
        (CAUSAL, variant(mask=allowed, causal=True)),
        (CAUSAL_ALONE, variant(causal=True)),
        (SIDES, if_square(lambda: attended(ref, source, x, allowed)) if source is not x else None),
        (TRANSPOSED, if_square(variant(mask=allowed, transposed=True))),
        *((QUERIES, if_square(variant(mask=on_queries, **how))) for how in WAYS),
        *((INVERTED, variant(mask=~allowed, **how)) for how in WAYS),
        (UNMASKED, variant()),
    ], atol=1e-4, rtol=1e-3, expected=attended(ref, x, source, allowed))


@torch.no_grad()
def encoder_self_attention(mine):
    for B, S, C, n_head, lengths in ENCODER:
        ref = reference(C, n_head)
        attn, wrong = learners(mine, ref, C, n_head)
        if wrong:
            yield wrong
            return
        source, allowed = random(B, S, C, seed=S), padding_mask(lengths, S)
        y = mine.call(attn, source.clone(), allowed.clone())
        where = f"B={B}, S={S}, C={C}, n_head={n_head}, source lengths {lengths}"
        yield check_shape(f"attn(source, allowed): (B, S, C) ({where})", y, (B, S, C))
        expected = ref(source, allowed)
        yield compare(f"the encoder's self-attention equals transformer.Attention with the same weights ({where})",
                      y, expected, lambda: diagnose(ref, y, source, source, allowed), atol=1e-4, rtol=1e-3)


@torch.no_grad()
def cross_attention(mine):
    for B, T, S, C, n_head, lengths in CROSS:
        ref = reference(C, n_head)
        attn, wrong = learners(mine, ref, C, n_head)
        if wrong:
            yield wrong
            return
        x, memory, allowed = random(B, T, C, seed=T), random(B, S, C, seed=S + 10), padding_mask(lengths, S)
        y = mine.call(attn, x.clone(), allowed.clone(), memory.clone())
        where = f"B={B}, T={T}, S={S}, C={C}, n_head={n_head}, source lengths {lengths}"
        yield check_shape(f"attn(x, allowed, memory): (B, T, C) ({where})", y, (B, T, C))
        expected = ref(x, allowed, ref.keys_values(memory))
        yield compare(f"cross-attention equals transformer.Attention with the same weights ({where})", y, expected,
                      lambda: diagnose(ref, y, x, memory, allowed), atol=1e-4, rtol=1e-3)


def moved(a, b):
    """(B, L): how far each position's output moved between a and b (B, L, C)."""
    return (a - b).abs().amax(dim=-1)


@torch.no_grad()
def padding(mine):
    """A padded source is read as it is alone; its padding is never read; its last real token is read from every
    position: of the source itself in the encoder, of the target in cross-attention (no causal mask on either)."""
    B, T, S, C, n_head, lengths = 2, 4, 7, 16, 4, (7, 4)
    ref = reference(C, n_head)
    attn, wrong = learners(mine, ref, C, n_head)
    if wrong:
        return
    x, memory, allowed = random(B, T, C, seed=20), random(B, S, C, seed=21), padding_mask(lengths, S)
    n = lengths[1]  # row 1: n real tokens, then S - n of padding
    uses = [  # (which use, its outputs from a source, the positions compared: a padded query's output is never used)
        ("the encoder", lambda source, a: attn(source, a), slice(0, n)),
        ("cross-attention", lambda source, a: attn(x[-source.size(0):], a, source), slice(None)),
    ]
    for kind, outputs, positions in uses:
        y = mine.call(outputs, memory.clone(), allowed.clone())
        if not check_shape("", y, (B, S if kind == "the encoder" else T, C)).passed:
            return

        def cause(fallback):
            asking = memory if kind == "the encoder" else x
            return diagnose(ref, y, asking, memory, allowed) or fallback

        mine_rows = y[1:, positions]
        alone = mine.call(outputs, memory[1:, :n].clone(), padding_mask((n,), n))[:, positions]
        equal = same(mine_rows, alone)
        yield Result(f"{kind}: a source of {n} tokens padded to {S} gives the outputs it gives alone", equal,
                     "the same outputs", "" if equal else f"they differ by {moved(mine_rows, alone).max():.4f}",
                     "" if equal else cause(UNMASKED))

        changed = memory.clone()
        changed[1, n:] = random(S - n, C, seed=22)
        again = mine.call(outputs, changed, allowed.clone())[1:, positions]
        unmoved = same(again, mine_rows)
        yield Result(f"{kind}: changing a source's padding changes none of the outputs read from it", unmoved,
                     "the same outputs", "" if unmoved else f"they moved by {moved(again, mine_rows).max():.4f}",
                     "" if unmoved else cause(UNMASKED))

        changed = memory.clone()
        changed[1, n - 1] = random(C, seed=23)  # the source's last real token
        again = mine.call(outputs, changed, allowed.clone())[1:, positions]
        still = [i for i, d in enumerate(moved(again, mine_rows)[0].tolist()) if d < 1e-6]
        yield Result(f"{kind}: changing a source's last real token changes the output at every position", not still,
                     "every position's output changed", f"position {still[0]} did not" if still else "",
                     cause(CAUSAL) if still else "")


@contextmanager
def substitute(mine):
    """The translator's encoder self-attention and cross-attention (transformer.py's part `attention`) built from the
    learner's Attention, whose forward computes the source's keys and values itself."""

    class LearnersAttention(nn.Module):
        """transformer.Attention's interface around the learner's module: what decoding keeps of the source between
        steps (keys_values) is the source itself."""

        def __init__(self, config):
            super().__init__()
            self.attn = mine.Attention(config.n_embd, config.n_head)
            self.resid_dropout = nn.Dropout(config.dropout)

        def keys_values(self, source):
            return (source,)  # (B, S, C)

        def forward(self, x, allowed, kv=None):
            return self.resid_dropout(self.attn(x, allowed, None if kv is None else kv[0]))  # (B, T, C)

    with transformer.using_parts(attention=LearnersAttention):
        yield


GROUPS = [encoder_self_attention, cross_attention, padding]
# dropout=0 for both runs: the learner's module has no dropout on its attention weights, and without dropout a
# correct module trains as transformer.py's, to float rounding. 200 steps: after them, without dropout, the noam
# schedule's learning rate swings this model's exact match by many points (the reference: 96.9% at step 200, 81.9%
# at 400), and float rounding alone then parts two correct modules' runs
TRAIN = Training("your cross-attention", substitute, overrides={"dropout": 0.0}, requires={"bias": (True,)},
                 config="config/translate_numbers_de.py", defaults={"max_iters": 200, "eval_interval": 50})
