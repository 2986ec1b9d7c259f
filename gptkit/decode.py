"""Decoding beyond model.py's sampling loop: a KV cache that slides past block_size (RoPE), gpt-fast's
static cache with a compiled one-token step, and beam search.

Sliding cache: model.Decoder recomputes the last block_size positions every step once the context
outgrows block_size. Under RoPE a query only needs the last block_size keys, at relative distances it
was trained on, and those never change: RingKVCache keeps them in a ring (each new position
overwrites the oldest), and SlidingDecoder keeps using it.

Static cache (meta-pytorch/gpt-fast): the keys and values of every layer are allocated to block_size
at once, each step writes its position in place, and attention runs over the whole buffer with the
mask hiding what is not written yet. Every one-token step then has the same shapes and no Python
number that changes, so torch.compile compiles it once (on CUDA with CUDA graphs, which replay the
whole step as one launch). The tokens are those of model.Decoder, cached or not (the tests check it).
On a 2-core CPU it measured no faster than the eager cache (docs/sampling.md): there a step's time
is the weights read from memory, which compiling does not change.

Beam search keeps the beam_width most likely continuations at each step instead of sampling one
(the Transformer paper decodes translations this way); SlidingDecoder.keep makes its cache follow the beams.
"""

import time

import torch
import torch.nn.functional as F

from gptkit.system import maybe_compile
from model import Decoder, KVCache


class RingKVCache(KVCache):
    """model.KVCache that, once more than max_len positions have been seen, overwrites the oldest with each new one.

    Key order does not matter to attention (a softmax-weighted sum), so the ring needs no shifting; and every
    slot then holds a position before the one new query, so it sees them all (attn_mask None, as KVCache's
    for one query)."""

    def update(self, layer, k, v):
        if self.pos + k.size(2) <= self.max_len:
            return super().update(layer, k, v)
        assert k.size(2) == 1, "past max_len the cache takes one position at a time"
        slot = self.pos % self.max_len
        self.k[layer, :, :, slot:slot + 1] = k
        self.v[layer, :, :, slot:slot + 1] = v
        return self.k[layer], self.v[layer]  # (B, nkv, max_len, hs)

    def keep(self, rows):
        """Keep the sequences `rows` (B',) of the batch, in that order (beam search reorders its beams)."""
        if self.k is not None:
            self.k, self.v = self.k[:, rows], self.v[:, rows]


class SlidingDecoder(Decoder):
    """model.Decoder whose cache, under RoPE, slides past block_size (each query sees the last block_size keys at
    the relative distances it was trained on) instead of recomputing the window every step; and whose contexts
    and cache can follow beam search (keep). The tokens are model.Decoder's."""

    def new_cache(self):
        return RingKVCache(self.model.config.n_layer, self.model.config.block_size)

    def full(self):
        return self.model.config.pos_encoding != "rope" and super().full()

    def keep(self, rows):
        """Keep the contexts `rows` (and their cached keys and values), in that order."""
        self.context = self.context[rows]
        if self.cache is not None:
            self.cache.keep(rows)


class StaticKVCache:
    """Keys and values of every layer in buffers of max_len positions, written in place.

    pos is a tensor, not a Python number, so a compiled step reads it as data and is never recompiled
    for a new position.
    """

    def __init__(self, n_layer, max_len, device):
        self.n_layer, self.max_len = n_layer, max_len
        # one (B, nh, max_len, hs) buffer per layer, allocated by the first (eager) update; not slices of one
        # tensor: a compiled step that writes into a slice would copy the whole tensor back, every layer
        self.k = self.v = None
        self.pos = torch.zeros((), dtype=torch.long, device=device)  # positions seen, as model.KVCache's pos

    def update(self, layer, k, v):
        """Write k, v (B, nkv, T, hs) at the next T positions; return the whole buffers (B, nkv, max_len, hs),
        slot s holding position s."""
        if self.k is None:
            B, nkv, _, hs = k.shape
            self.k = [k.new_zeros(B, nkv, self.max_len, hs) for _ in range(self.n_layer)]
            self.v = [k.new_zeros(B, nkv, self.max_len, hs) for _ in range(self.n_layer)]
        positions = self.pos + torch.arange(k.size(2), device=k.device)  # (T,)
        self.k[layer].index_copy_(2, positions, k)
        self.v[layer].index_copy_(2, positions, v)
        return self.k[layer], self.v[layer]

    def attn_mask(self, T, device):
        """(T, max_len): query pos + t sees the slots up to its own, so the causal mask hides the slots not
        written yet too. Always a tensor: a compiled step has the same shapes every time."""
        queries = self.pos + torch.arange(T, device=device)  # (T,) positions
        return torch.arange(self.max_len, device=device)[None, :] <= queries[:, None]  # (T, max_len)

    def advance(self, n):
        self.pos += n  # in place: the same tensor every step


def why_not_static(model, prompt_len, new_tokens, use_cache=True):
    """Why StaticDecoder cannot decode new_tokens after a prompt of prompt_len tokens, in words; None if it can."""
    if prompt_len + new_tokens > model.config.block_size:
        return "the static cache holds block_size positions"
    if not use_cache or model.config.mask != "causal":
        return "it needs the KV cache (use_cache) and the causal mask"
    return None


class StaticDecoder:
    """model.Decoder's interface over a StaticKVCache, the one-token step compiled (or not: compile=False).

    Only for generations that fit in block_size (prompt + new tokens): a static buffer cannot slide.
    compile_seconds is the time the first compiled step took, compilation included.
    """

    def __init__(self, model, idx, compile=True):
        if model.config.mask != "causal":
            raise ValueError("a KV cache needs the causal mask")
        self.model, self.context = model, idx  # (B, T)
        self.cache = StaticKVCache(model.config.n_layer, model.config.block_size, idx.device)
        # on CUDA with CUDA graphs (the whole step replays as one launch); on a CPU inductor's C++ kernels
        step = maybe_compile(model, compile, mode="reduce-overhead" if idx.is_cuda else "default", fullgraph=True)
        self.step = lambda token: step(token, kv_cache=self.cache)[0][:, -1, :]  # (B, 1) -> (B, vocab)
        self.compile_seconds = None

    @torch.no_grad()
    def next_logits(self):
        T = self.context.size(1)
        if T > self.model.config.block_size:
            raise ValueError(f"the static cache holds block_size={self.model.config.block_size} positions")
        if self.cache.k is None:  # prefill: the prompt at once, eagerly (its length is seen once)
            logits, _ = self.model(self.context, kv_cache=self.cache, last_only=True)
            return logits[:, -1, :]
        newest = self.newest.to(memory_format=torch.contiguous_format)  # (B, 1): same strides, no recompiling
        if self.compile_seconds is None:
            t0 = time.perf_counter()
            logits = self.step(newest).clone()
            self.compile_seconds = time.perf_counter() - t0
            return logits
        return self.step(newest).clone()  # a CUDA graph reuses its output buffer

    def append(self, tokens):
        self.context = torch.cat([self.context, tokens], dim=1)
        self.newest = tokens  # (B, 1)


def length_penalty(n, alpha):
    """GNMT's lp(n) = ((5 + n) / 6)^alpha (Wu et al. 2016, eq. 14): alpha 0 ranks by log-probability alone;
    larger alpha favours longer hypotheses, whose log-probability is lower just for being longer."""
    return ((5 + n) / 6) ** alpha


@torch.no_grad()
def beam_search(model, idx, max_new_tokens, beam_width, alpha=0.0, vocab_limit=None, eos=None, use_cache=True,
                decoder=None):
    """The most likely continuations of one prompt idx (1, T) under the model, best first:
    [(tokens: list of ids, score)], at most beam_width of them. decoder: another object with Decoder's
    interface and keep (transformer.py's TranslationDecoder, whose context starts at BOS); by default
    SlidingDecoder(model, idx, use_cache).

    Each step extends every beam by every token, scores each extension by its total log-probability
    log p(continuation | prompt), and keeps the beam_width best (SlidingDecoder.keep reorders the KV cache
    to follow them). A beam that produces `eos` is finished. Finished and surviving beams are ranked by
    log p / length_penalty(length, alpha). beam_width=1 is greedy decoding.
    """
    decoder = decoder or SlidingDecoder(model, idx, use_cache)
    scores = torch.zeros(1, device=decoder.context.device)  # (W,) log-probability of each beam's continuation
    start, finished = decoder.context.size(1), []
    for _ in range(max_new_tokens):
        logp = F.log_softmax(decoder.next_logits()[:, :vocab_limit].float(), dim=-1)  # (W, V)
        vocab = logp.size(-1)
        total = (scores[:, None] + logp).flatten()  # (W * V,) every beam extended by every token
        # 2W candidates: even if W of them end, W go on
        top = total.topk(min(2 * beam_width if eos is not None else beam_width, total.numel()))
        keep = []
        for score, index in zip(top.values.tolist(), top.indices.tolist()):
            row, token = divmod(index, vocab)
            if token == eos:
                finished.append((decoder.context[row, start:].tolist() + [token], score))
            elif len(keep) < beam_width:
                keep.append((row, token, score))
        if not keep:
            break
        device = decoder.context.device
        rows = torch.tensor([r for r, _, _ in keep], device=device)
        decoder.keep(rows)
        decoder.append(torch.tensor([[t] for _, t, _ in keep], device=device))  # (W, 1)
        scores = torch.tensor([s for _, _, s in keep], device=device)
    beams = finished + [(row[start:], s) for row, s in zip(decoder.context.tolist(), scores.tolist())]
    ranked = sorted(beams, key=lambda b: -b[1] / length_penalty(len(b[0]), alpha))
    return [(tokens, score / length_penalty(len(tokens), alpha)) for tokens, score in ranked[:beam_width]]
