"""A correct solution of exercises/rope.py, in the half pairing (model.py's); tests/test_learn.py also checks an
interleaved one, written from this."""

import torch
import torch.nn.functional as F

PAIRING = "half"


def rope_angles(T, head_size, theta=10000.0):
    i = torch.arange(0, head_size, 2, dtype=torch.float32)  # 2i
    freqs = 1.0 / theta ** (i / head_size)  # (hs/2,)
    angles = torch.arange(T, dtype=torch.float32)[:, None] * freqs[None, :]  # (T, hs/2)
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x, cos, sin):
    half = x.size(-1) // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def rope_attention(q, k, v, cos, sin):
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)
