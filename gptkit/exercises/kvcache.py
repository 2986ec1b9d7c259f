"""kvcache: a KVCache (update, advance, pos) and generate(model, idx, max_new_tokens) with it, checked
against model.KVCache, and against model.stream without a cache: cached generation must give the
very tokens that running the whole sequence every step gives."""

from contextlib import contextmanager

import torch

import model
from gptkit.exercises.harness import Result, as_tuple, check_shape, compare, first_match, random

TITLE = "generation with a KV cache, the uncached tokens"
WRITES = "KVCache, generate"
N_LAYER, B, NH, HS = 2, 2, 2, 4
STEPS = [2, 2, 1]  # tokens per forward pass: a prompt of 2, then 2, then 1


def tiny_gpt(pos_encoding, seed=0):
    """A tiny random GPT with weights large enough (std 0.5, not 0.02) that its attention is sharp and its
    next token depends on the positions: a cache that loses or shifts one changes the logits plainly."""
    torch.manual_seed(seed)
    config = model.GPTConfig(block_size=16, vocab_size=24, n_layer=N_LAYER, n_head=NH, n_embd=NH * HS,
                             pos_encoding=pos_encoding)
    gpt = model.GPT(config).eval()
    with torch.no_grad():
        for p in gpt.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return gpt


def cache_causes(got, new, fed, layer, kind, expected):
    """fed: every (layer, k or v) updated so far, oldest first, this update last."""
    own = [t for l, t in fed if l == layer]
    alike = len({t.shape for t in own}) == 1  # dim 1 joins only tensors of as many positions
    return first_match(got, [
        (f"update returned only the new {kind}s: return all this layer has seen, the past and the new "
         f"(torch.cat([old, new], dim=2), along the positions)", new if len(own) > 1 else None),
        (f"the new {kind}s come before the old ones: append, torch.cat([old, new], dim=2)",
         lambda: torch.cat(own[::-1], dim=2) if len(own) > 1 else None),
        (f"the layers share one cache: layer {layer} got the other layer's {kind}s too; keep each layer's apart "
         f"(e.g. one list entry per layer)", lambda: torch.cat([t for _, t in fed], dim=2) if len(fed) > 1 else None),
        ("concatenate along dim 2, the positions: (B, nh, S, hs); you joined the heads (dim 1)",
         lambda: torch.cat(own, dim=1) if len(own) > 1 and alike else None),
    ]) or (f"shape (B, nh, S, hs) with S = {expected.shape[2]} positions seen; you returned S = {got.shape[2]}"
           if isinstance(got, torch.Tensor) and got.dim() == 4 and got.shape[2] != expected.shape[2] else "")


def cache_matches_model_kvcache(mine):
    cache = mine.call(mine.KVCache, N_LAYER)
    ref = model.KVCache(N_LAYER, max_len=64)
    fed = {"key": [], "value": []}
    seen = 0
    for step, T in enumerate(STEPS):
        for layer in range(N_LAYER):
            k, v = random(B, NH, T, HS, seed=10 * step + layer), random(B, NH, T, HS, seed=100 + 10 * step + layer)
            fed["key"].append((layer, k))
            fed["value"].append((layer, v))
            got = mine.call(cache.update, layer, k.clone(), v.clone())
            expected = ref.update(layer, k, v)
            wrong = as_tuple(got, ("keys", "values"))
            if wrong:
                yield wrong
                return
            for kind, mine_t, ref_t in zip(("key", "value"), got, expected):
                yield compare(f"after {seen} positions seen, layer {layer} gets {T} new: update returns its "
                              f"{kind}s (B, nh, {seen + T}, hs)", mine_t, ref_t,
                              lambda: cache_causes(mine_t, (k, v)[kind == "value"], fed[kind], layer, kind, ref_t))
        mine.call(cache.advance, T)
        ref.advance(T)
        seen += T
        pos = getattr(cache, "pos", None)
        yield Result(f"advance({T}) after the last layer: pos = {seen}", pos == seen, str(seen), str(pos),
                     "" if pos == seen else "pos counts positions seen, not updates: only advance(n) moves it, by n "
                     "(GPT.forward calls it once per forward pass, after the last layer)")


def uncached(gpt, idx, n):
    return torch.cat([idx, *model.stream(gpt, idx, n, temperature=0.0, use_cache=False)], dim=1)


@contextmanager
def watching(gpt):
    """Record each forward pass of gpt: [tokens fed, the cache passed or None, its pos before, last logits]."""
    calls = []

    def before(module, args, kwargs):
        idx = args[0] if args else kwargs["idx"]
        cache = kwargs.get("kv_cache", args[2] if len(args) > 2 else None)
        calls.append([idx.shape[1], cache, getattr(cache, "pos", None)])

    def after(module, args, kwargs, out):
        calls[-1].append(out[0][:, -1].detach().clone())  # (B, vocab)

    handles = [gpt.register_forward_pre_hook(before, with_kwargs=True),
               gpt.register_forward_hook(after, with_kwargs=True)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def cached_logits(name, gpt, calls, tokens, cause):
    """A Result: each cached forward pass gave the logits that the whole sequence so far gives without a cache."""
    fed = 0
    for T, cache, _, logits in calls:
        if cache is None:
            continue
        fed += T
        with torch.no_grad():
            expected = gpt(tokens[:, :fed])[0][:, -1]  # (B, vocab)
        result = compare(name, logits, expected, cause, atol=1e-4)
        if not result.passed:
            result.name += f": they differ after {fed} tokens"
            return result
    return Result(name, True)


@contextmanager
def answering_masks(mine):
    """model.py asks every cache which keys each query may see (attn_mask); the learner's KVCache, like
    model.KVCache, holds position s in slot s, so model.KVCache's answer is theirs. Meanwhile the KVCache of
    their file is their class with that answer added."""
    theirs = mine.KVCache
    mine.module.KVCache = type(theirs.__name__, (theirs,), {"attn_mask": model.KVCache.attn_mask})
    try:
        yield mine.module.KVCache
    finally:
        mine.module.KVCache = theirs


def cache_in_model_stream(mine):
    """The learner's cache inside the repository's own generation loop (model.stream, whose Decoder builds the
    cache model.py's part `cache` names)."""
    for pos_encoding in ("learned", "rope"):
        with answering_masks(mine) as cache, model.using_parts(cache=lambda n_layer, max_len: cache(n_layer)):
            gpt = tiny_gpt(pos_encoding)
        idx = torch.randint(24, (B, 4), generator=torch.Generator().manual_seed(1))
        with answering_masks(mine), watching(gpt) as calls:
            got = mine.call(lambda: torch.cat([idx, *model.stream(gpt, idx, 8, temperature=0.0)], dim=1))
        yield cached_logits(f"model.stream with your KVCache: each step's logits equal the uncached model's "
                            f"(pos_encoding={pos_encoding})", gpt, calls, got,
                            lambda: "your cache changes what the model sees: see the KVCache checks above")
        yield compare(f"model.stream with your KVCache gives the uncached tokens (pos_encoding={pos_encoding})", got,
                      uncached(gpt, idx, 8), lambda: "your cache changes what the model sees: see the KVCache "
                      "checks above")


def generate_causes(calls):
    cached = [(T, pos) for T, cache, pos, _ in calls if cache is not None]
    if not cached:
        return "generate never passes the cache: logits, _ = model(idx_new, kv_cache=cache)"
    if len(cached) < len(calls):
        return "a step runs without the cache: pass it every time, model(idx[:, -1:], kv_cache=cache)"
    if any(T > 1 for T, _ in cached[1:]):
        return ("after the prefill, feed only the newest token: model(idx[:, -1:], kv_cache=cache); the cache "
                "holds the rest")
    fed = 0
    for T, pos in cached:
        if pos is not None and pos > fed:
            return ("the cache's pos ran ahead of the tokens fed: GPT.forward calls cache.advance(T) itself; do not "
                    "advance it in generate")
        fed += T
    return ("generation with your cache differs from uncached generation: if the KVCache checks above fail, fix "
            "them first; else take the argmax of the last position's logits, logits[:, -1]")


def generate_matches_uncached(mine):
    for pos_encoding, T, n in (("learned", 1, 5), ("learned", 4, 8), ("rope", 5, 10)):
        gpt = tiny_gpt(pos_encoding, seed=2)
        idx = torch.randint(24, (B, T), generator=torch.Generator().manual_seed(3))
        with answering_masks(mine), watching(gpt) as calls:
            got = mine.call(mine.generate, gpt, idx.clone(), n)
        where = f"pos_encoding={pos_encoding}, a prompt of {T}, {n} new tokens"
        yield check_shape(f"(B, T + max_new_tokens) = ({B}, {T + n}) ({where})", got, (B, T + n))
        fed = [T_in for T_in, cache, _, _ in calls if cache is not None]
        runs_one = len(fed) >= 2 and all(t == 1 for t in fed[1:])
        yield Result(f"each new token runs alone through the model, after one prefill ({where})", runs_one,
                     f"[{T}, 1, 1, ...] tokens per forward pass", str([c[0] for c in calls]),
                     "" if runs_one else generate_causes(calls))
        if isinstance(got, torch.Tensor) and got.shape == (B, T + n):
            yield cached_logits(f"each step's logits equal the uncached model's on the same tokens ({where})", gpt,
                                calls, got, lambda: generate_causes(calls))
        yield compare(f"the same tokens as model.stream without a cache, greedy ({where})", got,
                      uncached(gpt, idx, n), lambda: generate_causes(calls))


GROUPS = [cache_matches_model_kvcache, cache_in_model_stream, generate_matches_uncached]
TRAIN = None
