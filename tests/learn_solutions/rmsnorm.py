"""A correct solution of exercises/rmsnorm.py."""

import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    def __init__(self, ndim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x):
        rms = torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps)
        return self.weight * x / rms
