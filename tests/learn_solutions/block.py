"""A correct solution of exercises/block.py."""

import torch.nn as nn


class Block(nn.Module):
    def __init__(self, ln_1, attn, ln_2, mlp, dropout=0.0):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.dropout(self.attn(self.ln_1(x)))
        x = x + self.dropout(self.mlp(self.ln_2(x)))
        return x
