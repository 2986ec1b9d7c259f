"""A correct solution of exercises/swiglu.py."""

import torch
import torch.nn as nn


class SwiGLU(nn.Module):
    def __init__(self, n_embd, hidden, bias=False):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_fc2 = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)

    def forward(self, x):
        gate = self.c_fc(x)
        return self.c_proj(gate * torch.sigmoid(gate) * self.c_fc2(x))
