"""A correct solution of exercises/layernorm.py."""

import torch
import torch.nn as nn


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias=True, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        y = self.weight * (x - mean) / torch.sqrt(var + self.eps)
        return y + self.bias if self.bias is not None else y
