"""Exercise 12, rmsnorm: RMSNorm, Llama's norm.

LayerNorm (exercise 5) centres each position's vector and scales it to variance 1. RMSNorm keeps
only the scaling: it divides the vector by its root mean square, then applies a learned gain, one
number per channel. No mean is subtracted and there is no bias:

    rms = sqrt(mean of x^2 over the last dimension + eps)      (..., 1)
    y   = weight * x / rms

eps goes inside the square root, added to the mean square (the formula's, and torch's).

Source: Zhang and Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4. Llama, Mistral and
Qwen use it; model.py builds torch's nn.RMSNorm under norm=rmsnorm, with eps = norm_eps.

Hint: keepdim=True keeps the (..., 1) shape that broadcasts against x.

Check it: python3 learn.py check rmsnorm
Train with it: python3 learn.py train rmsnorm
"""

import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    def __init__(self, ndim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x):
        """x: (..., C) -> (..., C), each x[..., :] divided by its root mean square over its C channels."""
        raise NotImplementedError
