"""Exercise 3, attention: causal self-attention, for every head at once.

Each position t asks a question (its query q[t]); every position s offers an answer key k[s] and a
value v[s]. Position t mixes the values, weighted by how well each key matches its query. A language
model may not look ahead at the tokens it is predicting, so position t sees positions s <= t only:

    scores  = q @ kᵀ / sqrt(hs)                    (B, nh, T, T): query t, key s
    scores[..., t, s] = -inf  where s > t          the future: exp(-inf) = 0 after the softmax
    weights = softmax(scores) over the keys        each row sums to 1
    y       = weights @ v                          (B, nh, T, hs)

Dividing by sqrt(hs) keeps the scores' spread near 1 whatever the head size, so the softmax does
not saturate. Source: Vaswani et al. 2017, "Attention Is All You Need", section 3.2.1 (equation 1)
and 3.2.3 (the mask). The repository's own is CausalSelfAttention.step_by_step in model.py.

Hint: torch.tril(torch.ones(T, T, dtype=torch.bool)) is True where key <= query;
scores.masked_fill(~mask, float("-inf")) then F.softmax(..., dim=-1).

Check it: python3 learn.py check attention
Train with it: python3 learn.py train attention
"""

import math

import torch
import torch.nn.functional as F


def causal_attention(q, k, v):
    """q, k, v: (B, nh, T, hs) -> y (B, nh, T, hs), weights (B, nh, T, T)."""
    raise NotImplementedError
