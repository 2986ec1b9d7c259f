"""attention: causal_attention(q, k, v) -> (y, weights), checked against model.py's own attention (the
weights of CausalSelfAttention.step_by_step, y of F.scaled_dot_product_attention); `learn.py train
attention` trains with it in place of step_by_step (explicit_attention=True)."""

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, as_tuple, check_shape, compare, first_match, random, same, unchanged_before

TITLE = "causal self-attention: softmax(q kᵀ/√hs + mask) v"
WRITES = "causal_attention"
SHAPES = [(1, 2, 7, 64), (2, 3, 5, 4), (3, 1, 1, 8), (1, 4, 16, 16)]  # (B, nh, T, hs); GPT-2's hs=64: sqrt(hs) = 8


def qkv(B, nh, T, hs, seed=0, scale=1.0):
    return [random(B, nh, T, hs, seed=seed + i, scale=scale) for i in range(3)]


def reference(q, k, v):
    """(y, weights) as model.py computes them: the weights that step_by_step taps, y from the fused kernel."""
    B, nh, T, hs = q.shape
    attn = model.CausalSelfAttention(model.GPTConfig(n_embd=nh * hs, n_head=nh, block_size=T, bias=False), 0)
    seen = {}
    attn.tap = lambda **tensors: seen.update(tensors)  # what tracing does: see the steps by name
    attn.step_by_step(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True), seen["softmax"]  # (B, nh, T, hs), (B, nh, T, T)


def masked_softmax(scores, allowed, dim=-1, fill=-math.inf):
    return F.softmax(scores.masked_fill(~allowed, fill), dim=dim)


def fitted_scale(weights, scores, causal):
    """c when weights = softmax(c * scores + mask), the learner's scores a multiple of the reference's; else None."""
    if not isinstance(weights, torch.Tensor) or weights.shape != scores.shape or not torch.isfinite(weights).all():
        return None
    seen = causal & (weights > 1e-30)
    log_w = weights.double().clamp(min=1e-300).log()
    # per row, both centred over the keys it sees: log w = c * s + (a constant per row)
    count = seen.sum(-1, keepdim=True).clamp(min=1)
    dl = torch.where(seen, log_w - (log_w * seen).sum(-1, keepdim=True) / count, 0.0)
    ds = torch.where(seen, scores - (scores * seen).sum(-1, keepdim=True) / count, 0.0)
    if (ds * ds).sum() == 0:
        return None
    c = ((dl * ds).sum() / (ds * ds).sum()).item()
    return c if same(weights, masked_softmax(c * scores, causal), atol=1e-4, rtol=1e-3) else None


def weight_causes(weights, q, k):
    """Compute the attention weights learners write by mistake; the one `weights` matches names the mistake."""
    T, hs = q.shape[-2:]
    raw = q.double() @ k.double().transpose(-2, -1)  # (B, nh, T, T)
    scores = raw / math.sqrt(hs)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    cause = first_match(weights, [
        (f"your scores are {math.sqrt(hs):.1f} times the reference's: did you divide by sqrt(head_size)?",
         masked_softmax(raw, causal)),
        (f"your scores are {1 / math.sqrt(hs):.3g} times the reference's: divide by sqrt(head_size), not by "
         f"head_size", masked_softmax(raw / hs, causal)),
        (f"position {T - 1} cannot see itself: the mask hides the diagonal (key <= query is allowed: torch.tril "
         f"keeps the diagonal; position 0, left seeing nothing, gets NaN)",
         masked_softmax(scores, causal.tril(-1)) if T > 1 else None),
        (f"the mask is on the wrong side: position 0 attends to its future and position {T - 1} only to itself; "
         f"hide key > query, the upper-right triangle (torch.tril)", masked_softmax(scores, causal.T) if T > 1 else None),
        ("the future gets weight: fill the masked scores with -inf, not 0 (exp(-inf) = 0, exp(0) = 1)",
         masked_softmax(scores, causal, fill=0.0) if T > 1 else None),
        ("your rows do not sum to 1: the mask is applied after the softmax; set the scores to -inf before it",
         F.softmax(scores, dim=-1) * causal if T > 1 else None),
        ("your weights sum to 1 over queries, not keys: softmax over the last dimension (dim=-1)",
         masked_softmax(scores, causal, dim=-2) if T > 1 else None),
        ("position 0 attends to position 1, in its future: set the scores where key > query to -inf before the softmax",
         F.softmax(scores, dim=-1) if T > 1 else None),
    ], atol=1e-4, rtol=1e-3, expected=masked_softmax(scores, causal))
    if cause or T == 1:
        return cause
    # two of the classic mistakes at once (the mask's and the softmax's): name both
    masks = [("the mask is on the wrong side (hide key > query, the upper-right triangle: torch.tril)", causal.T),
             ("the mask hides the diagonal (torch.tril keeps it)", causal.tril(-1)),
             ("there is no mask (set the scores where key > query to -inf)", torch.ones_like(causal))]
    softmaxes = [("the softmax is over queries, not keys (dim=-1)", scores, -2),
                 ("the scores are not divided by sqrt(head_size)", raw, -1)]
    cause = first_match(weights, [(f"two mistakes: {mask}, and {softmax}",
                                   lambda allowed=allowed, s=s, dim=dim: masked_softmax(s, allowed, dim=dim))
                                  for mask, allowed in masks for softmax, s, dim in softmaxes],
                        atol=1e-4, rtol=1e-3, expected=masked_softmax(scores, causal))
    if cause:
        return cause
    c = fitted_scale(weights, scores, causal)
    if c is not None and abs(c - 1) > 1e-3:
        return f"your scores are {c:.3g} times the reference's: scores = q @ kᵀ / sqrt(head_size)"
    return ""


def y_causes(y, weights, ref_weights, v):
    if not same(weights, ref_weights):
        return "y follows from the weights, which differ from the reference's (above)"
    return first_match(y, [
        ("y = weights @ v: each query's row of weights mixes the values; you used the transposed weights",
         weights.transpose(-2, -1) @ v),
    ]) or "y = weights @ v, (B, nh, T, T) @ (B, nh, T, hs)"


def matches_model(mine):
    for shape in SHAPES:
        B, nh, T, hs = shape
        q, k, v = qkv(*shape)
        out = mine.call(mine.causal_attention, q.clone(), k.clone(), v.clone())
        wrong = as_tuple(out, ("y", "weights"))
        if wrong:
            yield wrong
            return
        y, weights = out
        ref_y, ref_weights = reference(q, k, v)
        where = f"B={B}, nh={nh}, T={T}, hs={hs}"
        yield check_shape(f"y is (B, nh, T, hs) ({where})", y, (B, nh, T, hs))
        yield check_shape(f"weights are (B, nh, T, T) ({where})", weights, (B, nh, T, T))
        yield compare(f"weights equal step_by_step's softmax ({where})", weights, ref_weights,
                      lambda: weight_causes(weights, q, k))
        yield compare(f"y equals F.scaled_dot_product_attention's ({where})", y, ref_y,
                      lambda: y_causes(y, weights, ref_weights, v))


def properties(mine):
    B, nh, T, hs = 2, 2, 6, 8
    q, k, v = qkv(B, nh, T, hs, seed=10)
    y, weights = mine.call(mine.causal_attention, q.clone(), k.clone(), v.clone())
    if weights.shape != (B, nh, T, T) or y.shape != (B, nh, T, hs):
        yield Result("the properties need y (B, nh, T, hs) and weights (B, nh, T, T)", False,
                     f"{(B, nh, T, hs)}, {(B, nh, T, T)}", f"{tuple(y.shape)}, {tuple(weights.shape)}")
        return
    sums = weights.sum(-1)
    yield compare("each row of weights sums to 1 (a distribution over the keys)", sums, torch.ones_like(sums),
                  lambda: weight_causes(weights, q, k), atol=1e-5)
    future = weights.triu(1).abs().max().item()
    yield Result("no query gives weight to a key in its future (key > query)", future == 0, "0 above the diagonal",
                 f"up to {future:.4f}" if future else "", weight_causes(weights, q, k) if future else "")

    # a future token never changes an earlier output: change q, k, v from position 3 on
    cut = 3
    later = [t.clone() for t in (q, k, v)]
    for t, noise in zip(later, qkv(B, nh, T, hs, seed=20)):
        t[:, :, cut:] = noise[:, :, cut:]
    y2, _ = mine.call(mine.causal_attention, *later)
    yield unchanged_before(cut, y, y2, 2, "an earlier position sees a later one: the mask must hide every key > query")

    # large scores: exp(1000) overflows, softmax must not
    q, k, v = qkv(B, nh, T, hs, seed=30, scale=40.0)
    big_y, big_weights = mine.call(mine.causal_attention, q.clone(), k.clone(), v.clone())
    ref_y, ref_weights = reference(q, k, v)
    finite = bool(torch.isfinite(big_weights).all())
    yield compare("large scores (q, k times 40): the weights stay finite and equal the reference's", big_weights,
                  ref_weights, lambda: weight_causes(big_weights, q, k) or ("" if finite else "exp overflows for "
                  "large scores: subtract each row's max before exp (F.softmax does it for you)"), atol=1e-4)


@contextmanager
def substitute(mine):
    """The step-by-step attention, which explicit_attention=True runs for every forward pass (model.py's part
    step_by_step), computed by the learner's causal_attention."""

    def step_by_step(attn, q, k, v, mask=None):
        y, weights = mine.causal_attention(q, k, v)  # (B, nh, T, hs), (B, nh, T, T)
        if attn.training and attn.attn_dropout.p > 0:  # the model drops attention weights in training, as it does
            y = attn.attn_dropout(weights) @ v
        return y

    with model.using_parts(step_by_step=step_by_step):
        yield


GROUPS = [matches_model, properties]
TRAIN = Training("your attention", substitute, overrides={"explicit_attention": True},
                 requires={"attn_score": ("dot",), "mask": ("causal",)})
