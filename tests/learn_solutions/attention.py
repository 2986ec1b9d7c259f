"""A correct solution of exercises/attention.py."""

import math

import torch
import torch.nn.functional as F


def causal_attention(q, k, v):
    T, hs = q.shape[-2:]
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=q.device))
    weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return weights @ v, weights
