"""Exercise 13, rope: rotary positions (RoPE), as Llama encodes where a token is.

GPT-2 adds a learned vector per position to each token. RoPE adds nothing: it rotates each query
and key by an angle that grows with its position. The head's hs channels form hs/2 pairs; pair i
of position p turns by the angle p * theta_i, with theta_i = theta^(-2i / hs) (theta = 10000 in
RoFormer and Llama 2, 500000 in Llama 3). A pair (a, b) turned by angle t becomes

    (a cos t - b sin t,  a sin t + b cos t)

The dot product of a query turned by p * theta_i and a key turned by s * theta_i depends only on
p - s: attention sees how far apart two tokens are, not where they are. Only q and k turn; v is
what attention mixes, and stays as it is.

Which channels form pair i is a convention, and you choose: "half" pairs (x[i], x[i + hs/2]), as
model.py, GPT-NeoX and Hugging Face Llama do; "interleaved" pairs neighbours (x[2i], x[2i + 1]), as
RoFormer's paper and Meta's Llama code do. Both are right (docs/llama.md shows how weights convert
between them); set PAIRING to the one you write, and the checks hold you to it.

Source: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding", section
3.4. model.py's own: rotary_cos_sin and apply_rotary (the half pairing).

Hint: x[..., :hs//2] and x[..., hs//2:] are the halves; x[..., 0::2] and x[..., 1::2] the
neighbours. cos and sin of shape (T, hs/2) broadcast against (B, nh, T, hs/2).
F.scaled_dot_product_attention(q, k, v, is_causal=True) is causal attention.

Check it: python3 learn.py check rope
Train with it: python3 learn.py train rope
"""

import torch
import torch.nn.functional as F

PAIRING = "half"  # "half": (x[i], x[i + hs/2]); "interleaved": (x[2i], x[2i + 1])


def rope_angles(T, head_size, theta=10000.0):
    """-> (cos, sin), each (T, head_size/2) float32: row p, column i is the cos (sin) of p * theta^(-2i/head_size)."""
    raise NotImplementedError


def apply_rope(x, cos, sin):
    """x: (B, nh, T, hs) -> (B, nh, T, hs): every pair of every position p turned by its angle (row p of cos, sin)."""
    raise NotImplementedError


def rope_attention(q, k, v, cos, sin):
    """q, k, v: (B, nh, T, hs) -> y (B, nh, T, hs): causal attention with q and k rotated by apply_rope."""
    raise NotImplementedError
