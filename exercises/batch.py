"""Exercise 1, batch: cut (input, target) examples out of the text.

A language model learns to predict the next token at every position at once: one window of T + 1
tokens of the text gives T examples. x is the window's first T tokens and y the same window shifted
one to the left, so y[b, t], the target of position t, is the token that follows x[b, t].

    data = [18, 47, 56, 57, 58,  1, 15, 47, 58]      starts = [2], block_size = 4
    x    = [[56, 57, 58,  1]]
    y    = [[57, 58,  1, 15]]

Source: Karpathy, "Let's build GPT: from scratch, in code, spelled out" (get_batch). The repository's
own is TokenData.get_batch in gptkit/data.py: read it after, not before.

Hint: one window per start, data[s : s + block_size]; torch.stack the B windows into a (B, T) tensor.

Check it: python3 learn.py check batch
"""

import torch


def get_batch(data, starts, block_size):
    """data: (N,) int64 token ids, one split of the dataset. starts: (B,) int64 offsets, each at most
    N - block_size - 1 (so that the last target exists).

    Returns x, y: (B, T) int64 each, T = block_size:
        x[b, t] = data[starts[b] + t]
        y[b, t] = data[starts[b] + t + 1]
    """
    raise NotImplementedError
