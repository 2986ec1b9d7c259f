"""Exercise 6, block: the transformer Block, GPT-2's pre-LayerNorm form.

Each Block reads the residual stream x, computes something from a normalised copy of it, and adds
the result back. The stream itself passes through untouched, which lets gradients flow straight
from the loss to the first layer however deep the model is:

    x = x + dropout(attn(ln_1(x)))      tokens exchange information
    x = x + dropout(mlp(ln_2(x)))       each token thinks on its own

Dropout (Srivastava et al. 2014) zeroes a random fraction of each branch's output in training
only; the residual stream is never dropped. Sources: He et al. 2016 (residual connections);
Radford et al. 2019, GPT-2, section 2.3 (the norm moved to each branch's input); Vaswani et al.
2017, section 5.4 (dropout on each sublayer's output). The repository's own is Block in model.py.

Hint: the pieces are given. forward is two lines, one per branch.

Check it: python3 learn.py check block
Train with it: python3 learn.py train block
"""

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, ln_1, attn, ln_2, mlp, dropout=0.0):
        """ln_1, ln_2: LayerNorms; attn: causal self-attention and mlp: the feed-forward network, each
        (B, T, C) -> (B, T, C). dropout: the probability of zeroing each value of a branch's output."""
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp
        self.dropout = nn.Dropout(dropout)  # active in training mode only (module.train() / .eval())

    def forward(self, x):
        """x: (B, T, C) -> (B, T, C)."""
        raise NotImplementedError
