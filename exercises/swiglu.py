"""Exercise 14, swiglu: SwiGLU, Llama's MLP.

GPT-2's MLP widens each position's vector, applies GELU, and narrows it back:
c_proj(gelu(c_fc x)). A gated linear unit makes two projections of x instead, and lets one decide,
channel by channel, how much of the other passes. SwiGLU's gate goes through SiLU, silu(z) =
z * sigmoid(z) (the "Swish" of the name):

    h = silu(c_fc x) * c_fc2 x         (..., hidden): the gate times what it lets through
    y = c_proj h                       (..., C)

c_fc is the gate (Hugging Face's gate_proj), c_fc2 the up projection (up_proj), c_proj the down
projection (down_proj). Three matrices instead of two: at hidden = 8/3 * C the MLP has GPT-2's
parameter count (Llama's rule).

Source: Shazeer 2020, "GLU Variants Improve Transformer", eq. 6 (FFN_SwiGLU). model.py's own is
SwiGLU, built under mlp=swiglu.

Hint: F.silu is SiLU. Each nn.Linear is called on x: self.c_fc(x).

Check it: python3 learn.py check swiglu
Train with it: python3 learn.py train swiglu
"""

import torch.nn as nn
import torch.nn.functional as F


class SwiGLU(nn.Module):
    def __init__(self, n_embd, hidden, bias=False):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)  # the gate
        self.c_fc2 = nn.Linear(n_embd, hidden, bias=bias)  # up: what the gate lets through
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # down, back to n_embd

    def forward(self, x):
        """x: (..., C) -> (..., C)."""
        raise NotImplementedError
