"""A correct solution of exercises/gqa.py."""

import torch
import torch.nn.functional as F


def repeat_kv(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=1)


def grouped_attention(q, k, v):
    n_rep = q.size(1) // k.size(1)
    return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)
