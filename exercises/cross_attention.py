"""Exercise 17, cross_attention: the encoder-decoder's attention, with a padding mask.

The Transformer that translates (transformer.py, docs/translation.md) attends in three places. The
decoder's self-attention is the GPT's, causal. The other two are this module, which you write:

- the encoder's self-attention: every source token reads every other, the whole sentence at once.
  There is no causal mask: the source is all there before a word is translated.
      attn(source, allowed)            source (B, S, C) -> (B, S, C)
- the decoder's cross-attention: each target position asks the source what to write next. The
  queries come from the decoder's x; the keys and values from the encoder's output, the memory.
      attn(x, allowed, memory)         x (B, T, C), memory (B, S, C) -> (B, T, C)

Both compute multi-head attention (Vaswani et al. 2017, sections 3.2.1-3.2.3):

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V          d_k = hs = C // n_head
    q = c_q(x), k and v = c_kv(source) split in two            (B, T, C); (B, S, C) each
    heads: .view(B, L, n_head, hs).transpose(1, 2)             (B, nh, T, hs); (B, nh, S, hs)
    scores = q @ kᵀ / sqrt(hs)                                 (B, nh, T, S): a row per query, a column per key
    y = softmax(scores, last axis) @ v, heads merged, c_proj   (B, T, C)

Padding: sentences of different lengths share a batch, the short ones filled up with a pad token at
the end. `allowed` (B, 1, 1, S) is True for a source's real tokens and False for its padding. It
hides padded KEYS: no query may read a padded source position, so its column of the scores is
-inf before the softmax. allowed's last axis is the scores' last axis (the keys); it broadcasts
over the heads and the queries as it is. A padded sentence then gives exactly the outputs it gives
alone. (A padded query's own output is never used: its target is ignored by the loss.)

Source: Vaswani et al. 2017, "Attention Is All You Need", 3.2.1 (scaled dot-product attention),
3.2.2 (multi-head), 3.2.3 (its three uses: encoder self-attention, where "all of the keys, values
and queries come from the same place"; encoder-decoder attention, where "the queries come from the
previous decoder layer, and the memory keys and values come from the output of the encoder").
The repository's own is transformer.py's Attention.

Hint: F.scaled_dot_product_attention(q, k, v, attn_mask=allowed) takes a boolean mask, True where a
key may be read (do not also pass is_causal). Or step by step: scores.masked_fill(~allowed,
float("-inf")), then F.softmax(..., dim=-1).

Check it: python3 learn.py check cross_attention
Train with it: python3 learn.py train cross_attention   (the English -> German numbers translator)
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        assert n_embd % n_head == 0
        self.n_embd, self.n_head, self.head_size = n_embd, n_head, n_embd // n_head
        self.c_q = nn.Linear(n_embd, n_embd)  # queries, from x
        self.c_kv = nn.Linear(n_embd, 2 * n_embd)  # keys and values, from the source
        self.c_proj = nn.Linear(n_embd, n_embd)  # mixes the heads' outputs

    def forward(self, x, allowed, source=None):
        """x: (B, T, C), the sequence asking; allowed: (B, 1, 1, S) bool, True for the source's real tokens;
        source: (B, S, C), the sequence answering (the encoder's memory), or None for x itself -> (B, T, C)."""
        raise NotImplementedError
