"""Exercise 5, layernorm: LayerNorm.

Each position's vector of C channels is normalised on its own, to mean 0 and variance 1, then
scaled and shifted by a learned gain and bias (one number per channel), so that the next layer
sees inputs of a steady size however the residual stream grows:

    mean = x.mean over the last dimension          (..., 1)
    var  = mean of (x - mean)^2, same dimension    (..., 1)   divided by C, not C - 1
    y    = weight * (x - mean) / sqrt(var + eps) + bias

Source: Ba, Kiros and Hinton 2016, "Layer Normalization", section 3. model.py uses torch's
nn.LayerNorm, which computes this.

Hint: keepdim=True keeps the (..., 1) shapes that broadcast against x. self.bias is None when
bias=False.

Check it: python3 learn.py check layernorm
Train with it: python3 learn.py train layernorm
"""

import torch
import torch.nn as nn


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias=True, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x):
        """x: (..., C) -> (..., C), each x[..., :] normalised over its C channels."""
        raise NotImplementedError
