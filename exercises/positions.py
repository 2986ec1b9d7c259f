"""Exercise 2, positions: the sinusoidal positional encoding.

Attention by itself does not know the order of the tokens: it sees a set. The encoding adds to each
token's vector a pattern that depends on its position: sines and cosines at d_model/2 frequencies,
whose wavelengths run from 2*pi positions to 10000 * 2*pi:

    PE(pos, 2i)     = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model))

for pos = 0 .. num_positions - 1 and i = 0 .. d_model/2 - 1: column 2i holds a sine, column 2i + 1
the cosine of the same angle.

Source: Vaswani et al. 2017, "Attention Is All You Need", section 3.5. The repository's own is
sinusoidal_encoding in model.py.

Hint: torch.arange(0, d_model, 2) is already 2i (0, 2, 4, ...). Compute the angles as a
(num_positions, d_model/2) table with broadcasting, then fill pe[:, 0::2] and pe[:, 1::2].

Check it: python3 learn.py check positions
Train with it: python3 learn.py train positions
"""

import torch


def sinusoidal_encoding(num_positions, d_model):
    """-> (num_positions, d_model) float32: row pos is the encoding of position pos. d_model is even."""
    raise NotImplementedError
