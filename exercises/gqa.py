"""Exercise 15, gqa: grouped-query attention.

In multi-head attention (exercise 4) every query head has its own key and value head. When
generating, the keys and values of every past position are kept (the KV cache, exercise 11), and
at each step the whole cache is read: it, not the arithmetic, limits how fast a large model
samples. Grouped-query attention keeps fewer key and value heads, n_kv_head, each shared by a group
of n_rep = n_head / n_kv_head query heads, and the cache shrinks by that factor. n_kv_head = 1 is
multi-query attention.

The groups are consecutive: with n_head = 6 and n_kv_head = 2, query heads 0, 1, 2 read key and
value head 0, and query heads 3, 4, 5 read head 1. Query head h reads key head h // n_rep. To use
ordinary attention, repeat each key and value head n_rep times in place, then attend as before.

Source: Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from
Multi-Head Checkpoints"; Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need"
(multi-query). model.py's own: repeat_kv, used under n_kv_head.

Hint: torch.repeat_interleave(x, n_rep, dim=1) repeats each head in place; x.repeat(1, n_rep, 1, 1)
does not. F.scaled_dot_product_attention(q, k, v, is_causal=True) is causal attention.

Check it: python3 learn.py check gqa
Train with it: python3 learn.py train gqa
"""

import torch
import torch.nn.functional as F


def repeat_kv(x, n_rep):
    """x: (B, n_kv_head, S, hs) -> (B, n_kv_head * n_rep, S, hs), head j of x becoming heads j*n_rep .. j*n_rep+n_rep-1."""
    raise NotImplementedError


def grouped_attention(q, k, v):
    """q: (B, n_head, T, hs); k, v: (B, n_kv_head, T, hs), n_head a multiple of n_kv_head -> y (B, n_head, T, hs),
    causal attention, query head h reading key and value head h // (n_head // n_kv_head)."""
    raise NotImplementedError
