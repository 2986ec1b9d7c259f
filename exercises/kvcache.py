"""Exercise 11, kvcache: generation with a KV cache.

Generating n tokens by running the whole sequence through the model every step repeats all the
work of the step before. Under the causal mask the keys and values of past positions never change,
so a cache keeps them: the prompt runs once (the prefill), and then each new token runs alone,
its query attending to the cached keys and values plus its own.

GPT.forward in model.py uses the cache you pass it, model(idx, kv_cache=cache):
    - it numbers the new tokens' positions from cache.pos;
    - in each layer it calls keys, values = cache.update(layer, k, v) with the new positions' k, v
      (B, nh, T, hs) and attends to what update returns: every key and value of that layer so far,
      (B, nh, S, hs) with S = pos + T;
    - after the last layer it calls cache.advance(T).

Write the cache, then generate with it, greedily (the argmax of the last position's logits). It
must give exactly the tokens of generation without a cache.

Source: e.g. Pope et al. 2022, "Efficiently Scaling Transformer Inference" (the KV cache and its cost).
The repository's own is KVCache and stream in model.py.

Hint: one list entry per layer; torch.cat([old, new], dim=2) joins along the positions.

Check it: python3 learn.py check kvcache
"""

import torch


class KVCache:
    def __init__(self, n_layer):
        """An empty cache for a model of n_layer layers: pos = 0 positions seen."""
        raise NotImplementedError

    def update(self, layer, k, v):
        """Append this layer's new k, v (B, nh, T, hs); return all its keys and values so far (B, nh, S, hs)."""
        raise NotImplementedError

    def advance(self, n):
        """n more positions have been seen (GPT.forward calls it once per forward pass)."""
        raise NotImplementedError


@torch.no_grad()
def generate(model, idx, max_new_tokens):
    """idx: (B, T) prompt token ids -> (B, T + max_new_tokens), each new token the argmax of the logits
    at the last position. Use one KVCache(model.config.n_layer): model(prompt, kv_cache=cache) once, then
    model(newest token, kv_cache=cache) for each next one. T + max_new_tokens <= model.config.block_size.
    model(...) returns (logits (B, T_fed, vocab_size), None)."""
    raise NotImplementedError
