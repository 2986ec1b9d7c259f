"""Exercise 4, multihead: multi-head attention as a module.

One Linear layer makes the queries, keys and values of every head at once, from the (B, T, C)
token vectors. The C channels are split into n_head heads of hs = C // n_head channels; each head
attends in its own subspace; the heads' outputs are put side by side again and mixed by the output
projection:

    q, k, v = c_attn(x).split(C, dim=2)           (B, T, C) each
    q = q.view(B, T, n_head, hs).transpose(1, 2)  (B, nh, T, hs), the same for k and v
    y = causal attention of q, k, v               (B, nh, T, hs)
    y = y.transpose(1, 2).contiguous().view(B, T, C)
    out = c_proj(y)                               (B, T, C)

Source: Vaswani et al. 2017, section 3.2.2 (MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O).
The repository's own is CausalSelfAttention.forward in model.py.

Hint: the attention itself is F.scaled_dot_product_attention(q, k, v, is_causal=True), which computes
what your causal_attention computes (without returning the weights). The work here is the shapes.

Check it: python3 learn.py check multihead
Train with it: python3 learn.py train multihead
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # q, k, v of every head in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd)  # mixes the heads' outputs

    def forward(self, x):
        """x: (B, T, C) -> (B, T, C)."""
        raise NotImplementedError
