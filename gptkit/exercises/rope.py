"""rope: rope_angles, apply_rope and rope_attention, in the pairing the learner names (PAIRING: "half", model.py's
and Hugging Face's, or "interleaved", RoFormer's and Meta's), checked against model.rotary_cos_sin, the rotation
in that pairing (model.apply_rotary for "half") and attention over the rotated q and k; `learn.py train rope`
trains with the learner's rotary attention in every Block (pos_encoding=rope)."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, random, same

TITLE = "rotary positions (RoPE): rotate q and k by their position, in either pairing"
WRITES = "rope_angles, apply_rope, rope_attention"
PAIRINGS = ("half", "interleaved")
ANGLE_CASES = [(8, 16, 10000.0), (5, 4, 10000.0), (33, 64, 500000.0), (1, 2, 10000.0)]  # (T, head_size, theta)
SHAPES = [(2, 3, 7, 8), (1, 2, 5, 16), (1, 1, 1, 4)]  # (B, nh, T, hs)


def interleaved_rotary(x, cos, sin):
    """RoFormer's and Meta's pairing: the neighbours (x[2i], x[2i + 1]) turn by angle i."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., hs/2) each
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)  # (..., hs)


ROTATE = {"half": model.apply_rotary, "interleaved": interleaved_rotary}
OTHER = {"half": "interleaved", "interleaved": "half"}
DESCRIBED = {"half": "the two halves, (x[i], x[i + hs/2])", "interleaved": "neighbours, (x[2i], x[2i + 1])"}


def pairing(mine):
    """The learner's PAIRING, or a failed Result saying what it must be."""
    value = getattr(mine.module, "PAIRING", None)
    if value in PAIRINGS:
        return value, None
    return None, Result("PAIRING names the pairing you wrote", False, "'half' or 'interleaved'", repr(value),
                        "set PAIRING at the top of your file to the channels you pair: 'half' for (x[i], x[i + hs/2]), "
                        "'interleaved' for (x[2i], x[2i + 1])")


def angle_causes(got, T, hs, theta):
    """Compute the angles learners write by mistake; the one (cos, sin) `got` matches names the mistake."""
    p, i = torch.arange(T).double()[:, None], torch.arange(hs // 2).double()[None, :]  # (T, 1), (1, hs/2)

    def table(a):  # cos and sin side by side, compared together
        a = a.expand(T, hs // 2)
        return torch.cat([a.cos(), a.sin()], -1)

    right = p * theta ** (-2 * i / hs)
    return first_match(torch.cat(list(got), -1), [
        ("one angle per position: every pair turns by the same angle; pair i turns at its own frequency, "
         "theta^(-2i/head_size), so its angle is pos * theta^(-2i/head_size)", table(p)),
        ("the frequency follows the position, not the pair: pair i at position p turns by p * theta^(-2i/head_size)",
         table(i * theta ** (-2 * p / hs))),
        ("the exponent reads 2i as i: torch.arange(0, head_size, 2) already counts 2i", table(p * theta ** (-i / hs))),
        ("you multiply by theta^(2i/head_size); the frequencies fall: theta^(-2i/head_size)",
         table(p * theta ** (2 * i / hs))),
        ("cos and sin are swapped: return cos first", torch.cat([right.sin(), right.cos()], -1)),
        ("your positions start at 1: the first row is position 0 (angle 0)", table((p + 1) * theta ** (-2 * i / hs))),
    ], atol=1e-4, rtol=1e-4, expected=table(right))


def angles_match_model(mine):
    for T, hs, theta in ANGLE_CASES:
        got = mine.call(mine.rope_angles, T, hs, theta)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            yield Result("rope_angles returns (cos, sin)", False, "a tuple of two tensors", f"a {type(got).__name__}")
            return
        cos, sin = got
        where = f"T={T}, head_size={hs}, theta={theta:g}"
        yield check_shape(f"cos is (T, head_size/2) ({where})", cos, (T, hs // 2))
        yield check_shape(f"sin is (T, head_size/2) ({where})", sin, (T, hs // 2))
        ref_cos, ref_sin = model.rotary_cos_sin(torch.arange(T), hs, theta)
        yield compare(f"cos and sin equal model.rotary_cos_sin's ({where})", torch.cat([cos, sin], -1),
                      torch.cat([ref_cos, ref_sin], -1), lambda: angle_causes((cos, sin), T, hs, theta), atol=1e-4)


def rotation_causes(got, x, cos, sin, chosen):
    """The rotations learners write by mistake; the one `got` matches names it."""
    x1, x2 = x.chunk(2, dim=-1)
    e1, e2 = x[..., 0::2], x[..., 1::2]
    return first_match(got, [
        (f"your rotation pairs {DESCRIBED[OTHER[chosen]]}, the {OTHER[chosen]} pairing, but PAIRING = {chosen!r}: "
         f"set PAIRING = {OTHER[chosen]!r}, or pair {DESCRIBED[chosen]}", ROTATE[OTHER[chosen]](x, cos, sin)),
        ("the pairing is mixed up: you read the halves (x[i], x[i + hs/2]) but write the pair to neighbours "
         "(2i, 2i + 1); read and write the same channels",
         torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)),
        ("the pairing is mixed up: you read neighbours (x[2i], x[2i + 1]) but write the pair to the halves "
         "(i, i + hs/2); read and write the same channels",
         torch.cat([e1 * cos - e2 * sin, e1 * sin + e2 * cos], dim=-1)),
        ("you rotate the other way: the first of a pair becomes a cos - b sin, the second a sin + b cos",
         ROTATE[chosen](x, cos, -sin)),
        ("cos and sin are swapped", ROTATE[chosen](x, sin, cos)),
    ], atol=1e-4, rtol=1e-4, expected=ROTATE[chosen](x, cos, sin))


def rotation_matches(mine):
    chosen, wrong = pairing(mine)
    if wrong:
        yield wrong
        return
    for B, nh, T, hs in SHAPES:
        x = random(B, nh, T, hs, seed=B + T)
        cos, sin = model.rotary_cos_sin(torch.arange(T), hs)
        got = mine.call(mine.apply_rope, x.clone(), cos, sin)
        where = f"B={B}, nh={nh}, T={T}, hs={hs}"
        yield check_shape(f"the output has x's shape ({where})", got, (B, nh, T, hs))
        yield compare(f"equals the {chosen} pairing's rotation, {DESCRIBED[chosen]} ({where})", got,
                      ROTATE[chosen](x, cos, sin), lambda: rotation_causes(got, x, cos, sin, chosen))


def rotation_properties(mine):
    chosen, wrong = pairing(mine)
    if wrong:
        return
    T, hs = 9, 8
    cos, sin = model.rotary_cos_sin(torch.arange(T), hs)
    x = random(1, 2, T, hs, seed=3)
    got = mine.call(mine.apply_rope, x.clone(), cos, sin)
    if not check_shape("", got, x.shape).passed:
        return
    yield compare("a rotation keeps each vector's length", got.norm(dim=-1), x.norm(dim=-1),
                  lambda: rotation_causes(got, x, cos, sin, chosen), atol=1e-4)
    yield compare("position 0 is not rotated (its angle is 0)", got[:, :, 0], x[:, :, 0],
                  lambda: rotation_causes(got, x, cos, sin, chosen), atol=1e-6)
    # the same query and key at every position: their rotated dot product depends on the distance alone
    q = mine.call(mine.apply_rope, random(1, 1, 1, hs, seed=4).expand(1, 1, T, hs).clone(), cos, sin)[0, 0]
    k = mine.call(mine.apply_rope, random(1, 1, 1, hs, seed=5).expand(1, 1, T, hs).clone(), cos, sin)[0, 0]
    scores = q @ k.T  # (T, T)
    relative = all(torch.allclose(scores.diagonal(d), scores.diagonal(d)[:1].expand(T - abs(d)), atol=1e-4)
                   for d in range(-T + 1, T))
    yield Result("rotated q.k depends only on the distance between the positions (relative position)", relative,
                 "the same score along each diagonal", "scores that differ along a diagonal" if not relative else "",
                 "" if relative else "rotate q and k by the same angles, pair by pair")


def reference_attention(q, k, v, cos, sin, chosen):
    rotate = ROTATE[chosen]
    return F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v, is_causal=True)


def attention_causes(y, q, k, v, cos, sin, chosen):
    rotate = ROTATE[chosen]
    rq, rk = rotate(q, cos, sin), rotate(k, cos, sin)
    sdpa = F.scaled_dot_product_attention
    return first_match(y, [
        ("you rotate v too: RoPE turns only q and k, whose dot product then sees the distance; v is what is mixed, "
         "as it is", sdpa(rq, rk, rotate(v, cos, sin), is_causal=True)),
        ("k is not rotated: rotate q and k alike", sdpa(rq, k, v, is_causal=True)),
        ("q is not rotated: rotate q and k alike", sdpa(q, rk, v, is_causal=True)),
        ("nothing is rotated: apply_rope to q and k before the scores", sdpa(q, k, v, is_causal=True)),
        ("you rotate the output: rotate q and k before attention, not y after it", rotate(sdpa(q, k, v, is_causal=True),
                                                                                          cos, sin)),
        ("no causal mask: a position sees its future", sdpa(rq, rk, v)),
    ], atol=1e-4, rtol=1e-4, expected=sdpa(rq, rk, v, is_causal=True))


def attention_matches(mine):
    chosen, wrong = pairing(mine)
    if wrong:
        yield wrong
        return
    for B, nh, T, hs in SHAPES:
        q, k, v = (random(B, nh, T, hs, seed=20 + i) for i in range(3))
        cos, sin = model.rotary_cos_sin(torch.arange(T), hs)
        y = mine.call(mine.rope_attention, q.clone(), k.clone(), v.clone(), cos, sin)
        where = f"B={B}, nh={nh}, T={T}, hs={hs}"
        yield check_shape(f"y is (B, nh, T, hs) ({where})", y, (B, nh, T, hs))
        expected = reference_attention(q, k, v, cos, sin, chosen)

        def diagnose():
            rotation_right = same(mine.call(mine.apply_rope, q.clone(), cos, sin), ROTATE[chosen](q, cos, sin), atol=1e-4)
            return attention_causes(y, q, k, v, cos, sin, chosen) or (
                "" if rotation_right else "y follows from apply_rope, which differs from the reference (above)")

        yield compare(f"equals causal attention over the rotated q and k ({where})", y, expected, diagnose, atol=1e-4)


@contextmanager
def substitute(mine):
    """Every Block's attention (model.py's part `attention`) rotates with the learner's code: model.py's own
    projections (c_attn, c_proj: the same weights, in the same order), and between them the learner's
    rope_angles and rope_attention in place of model.py's rotary_cos_sin, apply_rotary and attention."""

    class LearnersAttention(model.CausalSelfAttention):
        def __init__(self, config, layer, parts=None):
            super().__init__(config, layer, parts)
            self.rope_theta = config.rope_theta

        def forward(self, x, rotary=None, kv_cache=model.NO_CACHE):
            B, T, C = x.size()
            q, k, v = (t.view(B, T, -1, self.head_size).transpose(1, 2)  # (B, nh, T, hs) each
                       for t in self.c_attn(x).split(self.widths, dim=2))
            cos, sin = (t.to(x.device) for t in mine.rope_angles(T, self.head_size, self.rope_theta))  # (T, hs/2)
            y = mine.rope_attention(q, k, v, cos, sin)  # (B, nh, T, hs)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))  # (B, T, C)

    with model.using_parts(attention=LearnersAttention):
        yield


GROUPS = [angles_match_model, rotation_matches, rotation_properties, attention_matches]
TRAIN = Training("your RoPE", substitute, overrides={"pos_encoding": "rope"},
                 requires={"attn_score": ("dot",), "mask": ("causal",), "qk_norm": (False,), "n_kv_head": (0,),
                           "dropout": (0.0,)})
