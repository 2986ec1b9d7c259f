"""model.py, one property per test: shapes and the loss; causality under every causal variant and the
leak under the others; positional encodings and attention scores against their formulas; the fused
and explicit attention paths; dropout; parameters; config validation; the KV cache; sampling."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_model as make_tiny
from conftest import random_tokens, tiny_config
from gptkit.data import TokenData
from gptkit.decode import SlidingDecoder, StaticDecoder
from gptkit.tracing import tracing
import model as model_module
from model import GPT, GPTConfig, KVCache, apply_rotary, rotary_cos_sin, sample_next, sinusoidal_encoding

pytestmark = pytest.mark.usefixtures("one_thread")

POS_ENCODINGS = ["learned", "sinusoidal", "rope", "none"]
SCORES = ["dot", "dot_then_square", "square_then_dot", "neg_dot"]
VOCAB = 65  # Tiny Shakespeare's characters


def tiny(**overrides):
    """The tiny model of the real-text tests: Tiny Shakespeare's 65 characters, block 32."""
    return tiny_config(**{**dict(block_size=32, vocab_size=VOCAB, n_embd=32), **overrides})


def make_model(seed=0, **overrides):
    return make_tiny(seed, **{**dict(block_size=32, vocab_size=VOCAB, n_embd=32), **overrides})


def logits_of(model, x):
    with torch.no_grad():
        return model(x)[0]


@pytest.fixture(scope="module")
def data(char_data_dir):
    return TokenData(char_data_dir / "shakespeare_char", block_size=32)


@pytest.fixture(scope="module")
def batch(data):
    """A fixed (x, y) batch of real Tiny Shakespeare text, B=4, T=32."""
    return data.get_batch("train", 4, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------
# forward pass


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_forward_shapes_and_finite_scalar_loss(batch, pos_encoding):
    x, y = batch
    model = make_model(pos_encoding=pos_encoding)
    logits, loss = model(x, y)
    assert logits.shape == (4, 32, VOCAB)
    assert loss.dim() == 0 and torch.isfinite(loss)
    # a freshly initialised model predicts close to uniform: loss near ln(vocab)
    assert abs(loss.item() - math.log(VOCAB)) < 0.5
    logits_only, no_loss = model(x)
    assert no_loss is None and torch.equal(logits_only, logits)
    last, _ = model(x, last_only=True)
    assert last.shape == (4, 1, VOCAB)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_loss_is_mean_cross_entropy_of_the_logits(batch):
    x, y = batch
    logits, loss = make_model()(x, y)
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    expected = -log_probs.gather(-1, y[..., None]).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------
# masks: causal variants never see the future; none and anticausal do

CAUSAL_VARIANTS = [{"pos_encoding": p, "attn_score": s} for p in POS_ENCODINGS for s in SCORES] + [
    {"residual": False, "norm": "none"}, {"qk_norm": True, "tie_weights": False, "n_head": 1},
    {"explicit_attention": True}]


@pytest.mark.parametrize("overrides", CAUSAL_VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_a_future_token_never_changes_earlier_logits(overrides):
    model = make_tiny(**overrides).eval()
    x = random_tokens((2, 16))
    t = 9
    changed = x.clone()
    changed[:, t:] = (changed[:, t:] + 1) % 24
    before, after = logits_of(model, x), logits_of(model, changed)
    scale = before.abs().max()  # without residual and norm the logits start tiny (about 1e-13)
    assert (before[:, :t] - after[:, :t]).abs().max() <= 1e-6 * scale
    assert (before[:, t] - after[:, t]).abs().max() > 1e-3 * scale  # the changed position itself does change


@pytest.mark.parametrize("mask", ["none", "anticausal"])
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_none_and_anticausal_see_the_token_they_must_predict(mask, pos_encoding):
    """Position t-1 must predict token t. Under these masks its logits depend on token t: the leak
    (and the control for the causality test above: the same check fails when the model may look ahead)."""
    model = make_tiny(mask=mask, pos_encoding=pos_encoding).eval()
    x = random_tokens((2, 16))
    t = 9
    changed = x.clone()
    changed[:, t] = (changed[:, t] + 1) % 24  # change only the answer for position t-1
    before, after = logits_of(model, x), logits_of(model, changed)
    assert (before[:, t - 1] - after[:, t - 1]).abs().max() > 1e-4


def test_anticausal_hides_the_past_and_none_hides_nothing():
    x = random_tokens((2, 16))
    changed = x.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 24  # change the first token
    anti, full = make_tiny(mask="anticausal").eval(), make_tiny(mask="none").eval()
    torch.testing.assert_close(logits_of(anti, x)[:, 1:], logits_of(anti, changed)[:, 1:], rtol=0, atol=1e-6)
    assert (logits_of(full, x)[:, 1:] - logits_of(full, changed)[:, 1:]).abs().max() > 1e-4


@pytest.mark.parametrize("mask", ["causal", "none", "anticausal"])
def test_attention_weights_rows_sum_to_one_and_the_mask_hides_its_half(mask):
    """The hidden half of the (query, key) grid gets exactly zero weight."""
    weights, model = {}, make_tiny(mask=mask).eval()
    with tracing(model, lambda name, t: weights.setdefault(name, t)):
        logits_of(model, random_tokens((1, 8)))
    w = weights["h.1.attn.softmax"][0, 0]  # (T, S)
    upper, lower = torch.triu(w, diagonal=1), torch.tril(w, diagonal=-1)
    assert (upper == 0).all() == (mask == "causal")
    assert (lower == 0).all() == (mask == "anticausal")
    torch.testing.assert_close(w.sum(-1), torch.ones(8))


# ---------------------------------------------------------------------------------------------
# positional encodings match their formulas


@pytest.mark.parametrize("dim", [2, 8, 32])
def test_sinusoidal_encoding_matches_the_formula_also_past_block_size(dim):
    positions = list(range(256)) + [1000, 5000]
    pe = sinusoidal_encoding(torch.tensor(positions), dim)
    assert pe.shape == (len(positions), dim)
    expected = torch.empty(len(positions), dim, dtype=torch.float64)
    for row, pos in enumerate(positions):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            expected[row, 2 * i] = math.sin(angle)
            expected[row, 2 * i + 1] = math.cos(angle)
    # float32 angles up to 5000 rad carry ~4e-4 of rounding; a wrong formula is off by O(1)
    torch.testing.assert_close(pe.double(), expected, rtol=0, atol=5e-4)


def test_rope_rotates_each_pair_by_position_times_its_frequency():
    hs, positions = 4, [0, 1, 3, 200]
    x = torch.randn(1, 1, len(positions), hs, generator=torch.Generator().manual_seed(0))
    out = apply_rotary(x, *rotary_cos_sin(torch.tensor(positions), hs))
    for t, pos in enumerate(positions):
        for i in range(hs // 2):
            theta = pos * 10000 ** (-2 * i / hs)
            a, b = x[0, 0, t, i].item(), x[0, 0, t, i + hs // 2].item()  # the pair (x_i, x_{i + hs/2})
            assert out[0, 0, t, i].item() == pytest.approx(a * math.cos(theta) - b * math.sin(theta), abs=1e-5)
            assert out[0, 0, t, i + hs // 2].item() == pytest.approx(a * math.sin(theta) + b * math.cos(theta), abs=1e-5)


def test_rope_dot_products_depend_only_on_the_distance():
    hs = 8
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, hs, generator=g), torch.randn(1, 1, 1, hs, generator=g)

    def score(m, n):
        rq = apply_rotary(q, *rotary_cos_sin(torch.tensor([m]), hs))
        rk = apply_rotary(k, *rotary_cos_sin(torch.tensor([n]), hs))
        return (rq * rk).sum().item()

    assert score(3, 1) == pytest.approx(score(7, 5), abs=1e-4) == pytest.approx(score(102, 100), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-4)


@pytest.mark.parametrize("pos_encoding", ["sinusoidal", "rope", "none"])
def test_other_encodings_run_a_forward_longer_than_block_size(pos_encoding):
    logits = logits_of(make_tiny(pos_encoding=pos_encoding).eval(), random_tokens((1, 40)))
    assert logits.shape == (1, 40, 24) and torch.isfinite(logits).all()


def test_learned_positions_say_clearly_that_they_stop_at_block_size():
    model = make_tiny(pos_encoding="learned").eval()
    with pytest.raises(ValueError) as e:
        model(random_tokens((1, 17)))
    assert "block_size=16" in str(e.value) and "sinusoidal or rope" in str(e.value)
    cache = KVCache(model.config.n_layer, 32)  # room for more positions than the embedding has
    model(random_tokens((1, 16)), kv_cache=cache)  # positions 0-15: all of them
    with pytest.raises(ValueError, match="block_size=16: there is no embedding for position 16"):
        model(random_tokens((1, 1)), kv_cache=cache)


def test_eval_mode_is_deterministic_with_dropout_and_train_mode_is_not(batch):
    x, y = batch
    model = make_model(dropout=0.2)
    model.eval()
    torch.testing.assert_close(model(x, y)[0], model(x, y)[0], rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x, y)[0], model(x, y)[0])


# ---------------------------------------------------------------------------------------------
# the two attention paths, and the scores


@pytest.mark.parametrize("mask", ["causal", "none"])
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_explicit_attention_equals_the_fused_kernel(batch, mask, pos_encoding):
    x, y = batch
    fused_model = make_model(mask=mask, pos_encoding=pos_encoding).eval()
    explicit_model = make_model(mask=mask, pos_encoding=pos_encoding, explicit_attention=True).eval()
    assert all(b.attn.attend == b.attn.fused_attention for b in fused_model.transformer.h)
    assert not any(b.attn.attend == b.attn.fused_attention for b in explicit_model.transformer.h)
    fused_logits, fused_loss = fused_model(x, y)
    explicit_logits, explicit_loss = explicit_model(x, y)  # the same weights: same seed, same shapes
    torch.testing.assert_close(explicit_logits, fused_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(explicit_loss, fused_loss, rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides", [{"attn_score": "dot_then_square"}, {"attn_score": "square_then_dot"},
                                       {"attn_score": "neg_dot"}, {"mask": "anticausal"}, {"explicit_attention": True}])
def test_what_the_fused_kernel_cannot_compute_takes_the_explicit_path(overrides, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel was used")

    model = make_tiny(**overrides).eval()
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", refuse)
    logits_of(model, random_tokens((1, 8)))
    model.train()  # training too: explicit_attention=True is how a learner's edit of step_by_step runs in train.py
    model(random_tokens((2, 8)), random_tokens((2, 8)))[1].backward()


def test_tracing_takes_the_step_by_step_path_and_gets_the_same_logits(monkeypatch):
    model = make_tiny().eval()
    x = random_tokens((2, 16))
    seen = []
    with tracing(model, lambda name, t: seen.append(name)):
        traced = logits_of(model, x)
    assert "h.0.attn.softmax" in seen  # the step-by-step path really ran
    torch.testing.assert_close(traced, logits_of(model, x), rtol=1e-5, atol=1e-5)
    # and afterwards nothing is hooked: the fused kernel runs again and no step is reported
    fused = []
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention",
                        lambda *a, **k: fused.append(1) or torch.zeros(2, 2, 16, 8))
    logits_of(model, x)
    assert fused and not model.transformer.h[0].attn.c_proj._forward_hooks


@pytest.mark.parametrize("attn_score, formula", [
    ("dot", lambda q, k, hs: q @ k.mT / math.sqrt(hs)),
    ("dot_then_square", lambda q, k, hs: (q @ k.mT / math.sqrt(hs)).square()),
    ("square_then_dot", lambda q, k, hs: q.square() @ k.square().mT / math.sqrt(hs)),
    ("neg_dot", lambda q, k, hs: -(q @ k.mT) / math.sqrt(hs)),
])
def test_attention_scores_compute_their_formula(attn_score, formula):
    """dot: q.k/sqrt(hs); dot_then_square: (q.k/sqrt(hs))^2; square_then_dot: sum_i q_i^2 k_i^2 / sqrt(hs)."""
    seen, model = {}, make_tiny(attn_score=attn_score).eval()
    with tracing(model, lambda name, t: seen.setdefault(name, t)):
        logits_of(model, random_tokens((1, 8)))
    q, k = seen["h.0.attn.q"], seen["h.0.attn.k"]  # (B, nh, T, hs)
    torch.testing.assert_close(seen["h.0.attn.scores"], formula(q, k, q.size(-1)))


def test_square_then_dot_squares_each_component_before_the_sum():
    """The learner's "square the numbers, then take the dot product", on numbers one can check by hand."""
    model = make_tiny(attn_score="square_then_dot", n_embd=4, n_head=1)
    attn = model.transformer.h[0].attn
    q = torch.tensor([[[[1.0, -2.0, 0.0, 3.0]]]])  # (B=1, nh=1, T=1, hs=4)
    k = torch.tensor([[[[2.0, 1.0, -5.0, -1.0]]]])
    seen = {}
    with tracing(model, lambda name, t: seen.setdefault(name, t)):
        attn.step_by_step(q, k, k)
    # 1*4 + 4*1 + 0*25 + 9*1 = 17, over sqrt(4); the plain dot product would be 2 - 2 + 0 - 3 = -3
    assert seen["h.0.attn.scores"].item() == pytest.approx(17 / 2)


def test_the_fused_kernel_computes_what_step_by_step_attention_computes():
    attn = make_tiny().eval().transformer.h[0].attn
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    explicit = attn.step_by_step(q, k, v)
    torch.testing.assert_close(explicit, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# parameters


def test_weight_tying():
    tied = make_model()
    assert tied.lm_head.weight is tied.transformer.wte.weight
    untied = make_model(tie_weights=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.num_params() == tied.num_params() + VOCAB * 32


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_num_params_matches_the_architecture(pos_encoding):
    L, C, V, T = 2, 32, VOCAB, 32
    model = make_model(pos_encoding=pos_encoding)
    per_block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C)
    expected = V * C + L * per_block + 2 * C  # tied wte/lm_head counted once, plus ln_f
    wpe = T * C if pos_encoding == "learned" else 0
    assert model.num_params() == expected
    assert model.num_params(non_embedding=False) == expected + wpe
    assert model.num_params(non_embedding=False) == sum(p.numel() for p in set(model.parameters()))


def test_a_tiny_model_overfits_one_batch_of_real_text(batch):
    x, y = batch
    model = make_model(n_embd=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if loss.item() < 0.1:
            break
    assert first > 3.0  # it started from near-uniform predictions
    assert loss.item() < 0.1


# ---------------------------------------------------------------------------------------------
# GPTConfig.validate


def test_validate_n_embd_not_divisible_by_n_head_names_both_numbers():
    with pytest.raises(ValueError) as e:
        GPTConfig(n_embd=30, n_head=4).validate()
    assert "30" in str(e.value) and "4" in str(e.value)
    with pytest.raises(ValueError):
        GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=4, n_embd=30))


@pytest.mark.parametrize("overrides, words", [
    (dict(n_layer=0), ["n_layer", "0"]),
    (dict(dropout=1.0), ["dropout"]),
    (dict(pos_encoding="rope", n_embd=6, n_head=2), ["rope", "3"]),
    (dict(pos_encoding="sinusoidal", n_embd=5, n_head=1), ["sinusoidal", "5"]),
    (dict(attn_score="squared"), ["attn_score", "'squared'", "'dot_then_square'"]),
])
def test_validate_rejects_impossible_models(overrides, words):
    """With ValueError: model.py imports nothing of ours; the command line shows it as one line."""
    with pytest.raises(ValueError) as e:
        tiny(**overrides).validate()
    for word in words:
        assert word in str(e.value)


# ---------------------------------------------------------------------------------------------
# KV cache (issue 4)


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_cached_logits_equal_the_full_forward(batch, pos_encoding):
    x, _ = batch
    model = make_model(pos_encoding=pos_encoding).eval()
    with torch.no_grad():
        full, _ = model(x)
        cache = KVCache(model.config.n_layer, model.config.block_size)
        steps = [model(x[:, :7], kv_cache=cache)[0]]  # prefill
        for t in range(7, x.size(1)):
            steps.append(model(x[:, t:t + 1], kv_cache=cache)[0])  # then one token at a time
    assert cache.pos == x.size(1)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("sliding", [False, True])
def test_generate_with_and_without_cache_gives_the_same_tokens(batch, pos_encoding, temperature, sliding):
    """Prompt 5, block 16, 40 new tokens: the generation runs well past block_size (model.Decoder recomputes the
    window there; decode.py's SlidingDecoder slides a RoPE cache)."""
    x, _ = batch
    model = make_model(pos_encoding=pos_encoding, block_size=16).eval()
    prompt = x[:2, :5]
    outs = [model.generate(prompt, 40, temperature=temperature, top_k=None, use_cache=use_cache,
                           generator=torch.Generator().manual_seed(7),
                           decoder=SlidingDecoder(model, prompt, use_cache) if sliding else None)
            for use_cache in (True, False)]
    assert outs[0].shape == (2, 45)
    assert torch.equal(outs[0][:, :5], prompt)
    assert torch.equal(outs[0], outs[1])


def test_generate_uses_the_cache(batch, monkeypatch):
    """With the cache each step after the prefill feeds one token; without it, the whole window. Past block_size
    model.Decoder recomputes the window; decode.py's SlidingDecoder slides RoPE's cache on."""
    x, _ = batch
    model = make_model(pos_encoding="rope", block_size=16).eval()
    lengths = {}
    for use_cache in (True, False):
        seen = lengths[use_cache] = []
        forward = GPT.forward
        monkeypatch.setattr(GPT, "forward", lambda self, idx, *a, **k: seen.append(idx.size(1)) or forward(self, idx, *a, **k))
        model.generate(x[:1, :5], 20, temperature=0, use_cache=use_cache)
        model.generate(x[:1, :5], 20, temperature=0, decoder=SlidingDecoder(model, x[:1, :5], use_cache))
        monkeypatch.undo()
    assert lengths[True] == [5] + [1] * 11 + [16] * 8 + [5] + [1] * 19
    assert lengths[False] == [min(5 + i, 16) for i in range(20)] * 2


def test_a_token_decoded_after_the_cache_attends_without_a_mask(monkeypatch):
    """It sees every key, so the fused kernel gets no mask (its fastest path); a chunk after cached positions,
    and decode.py's static buffer, whose slots past the query are empty, keep theirs."""
    model = make_tiny(pos_encoding="rope").eval()  # 2 layers, block 16
    masks, sdpa = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, attn_mask=None, **k: masks.append(attn_mask) or sdpa(*a, attn_mask=attn_mask, **k))
    prompt = random_tokens((1, 5))  # a prefill (is_causal), then 19 steps, the last 8 in the ring
    model.generate(prompt, 20, temperature=0, decoder=SlidingDecoder(model, prompt))
    assert len(masks) == 2 * 20 and all(m is None for m in masks)
    masks.clear()
    with torch.no_grad():
        cache = KVCache(model.config.n_layer, 16)
        model(random_tokens((1, 5)), kv_cache=cache)
        model(random_tokens((1, 3)), kv_cache=cache)  # positions 5-7: key 7 comes after queries 5 and 6
    assert masks[:2] == [None, None] and all(m is not None for m in masks[2:])
    masks.clear()
    prompt = random_tokens((1, 5))
    model.generate(prompt, 3, temperature=0, decoder=StaticDecoder(model, prompt, compile=False))
    assert len(masks) == 2 * 3 and all(m is not None for m in masks)


@pytest.mark.parametrize("mask", ["none", "anticausal"])
def test_non_causal_masks_do_not_use_the_cache_and_match_uncached(batch, mask):
    x, _ = batch
    model = make_model(mask=mask, block_size=16).eval()
    prompt = x[:2, :5]
    kv_caches = []
    forward = GPT.forward

    def spy(self, idx, targets=None, kv_cache=None, last_only=False):
        kv_caches.append(kv_cache)
        return forward(self, idx, targets, kv_cache, last_only)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GPT, "forward", spy)
        cached = model.generate(prompt, 25, temperature=1.0, use_cache=True, generator=torch.Generator().manual_seed(3))
    assert kv_caches and all(c is None for c in kv_caches)
    uncached = model.generate(prompt, 25, temperature=1.0, use_cache=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(cached, uncached)


def test_temperature_zero_is_deterministic_whatever_the_generator(batch):
    x, _ = batch
    model = make_model().eval()
    a = model.generate(x[:2, :5], 20, temperature=0, generator=torch.Generator().manual_seed(1))
    b = model.generate(x[:2, :5], 20, temperature=0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    # and it is argmax at each step
    logits, _ = model(a[:, :-1])
    assert torch.equal(logits[:, 4:].argmax(-1), a[:, 5:])


def test_sampling_depends_on_the_generator_seed(batch):
    x, _ = batch
    model = make_model().eval()
    a = model.generate(x[:2, :5], 30, temperature=1.0, generator=torch.Generator().manual_seed(1))
    b = model.generate(x[:2, :5], 30, temperature=1.0, generator=torch.Generator().manual_seed(1))
    c = model.generate(x[:2, :5], 30, temperature=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# sample_next


def test_top_k_never_returns_a_token_outside_the_k_largest():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 50, generator=g)
    for k in (1, 3, 10):
        drawn = sample_next(logits, temperature=1.5, top_k=k, generator=g)  # (4000, 1)
        allowed = torch.topk(logits, k).indices
        assert (drawn == allowed).any(dim=-1).all()
        if k > 1:  # and it does sample among them, not always the top one
            assert (drawn[:, 0] != logits.argmax(-1)).any()


def test_top_k_one_is_greedy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 50, generator=g)
    assert torch.equal(sample_next(logits, 1.0, top_k=1, generator=g), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1, keepdim=True))


@pytest.mark.parametrize("top_p, nucleus", [(0.7, {0, 1}), (0.85, {0, 1, 2}), (0.4, {0}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_nucleus(top_p, nucleus):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    order = torch.tensor([2, 0, 3, 1])  # shuffle the vocabulary so the nucleus is not a prefix
    logits = torch.empty(4)
    logits[order] = probs.log()
    drawn = sample_next(logits.expand(20000, 4), 1.0, top_p=top_p, generator=torch.Generator().manual_seed(0))
    assert set(drawn.unique().tolist()) == {order[i].item() for i in nucleus}
    # within the nucleus, tokens keep their relative probabilities
    counts = torch.bincount(drawn[:, 0], minlength=4).double() / len(drawn)
    kept = probs[sorted(nucleus)].double()
    torch.testing.assert_close(counts[order[sorted(nucleus)]], kept / kept.sum(), rtol=0, atol=0.02)


def test_top_k_and_top_p_combine():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(5000, 4)
    drawn = sample_next(logits, 1.0, top_k=3, top_p=0.99, generator=torch.Generator().manual_seed(0))
    assert set(drawn.unique().tolist()) == {0, 1, 2}


# ---------------------------------------------------------------------------------------------
# Llama's pieces as settings: grouped-query attention, SwiGLU, norm_eps, rope_theta


def repeated_kv_model(gqa):
    """A model with n_kv_head = n_head whose every key and value head is a copy of gqa's head h // group."""
    c = gqa.config
    full = GPT(GPTConfig(**{**dataclasses.asdict(c), "n_kv_head": 0})).eval()
    state, hs, group = gqa.state_dict(), c.n_embd // c.n_head, c.n_head // c.kv_heads
    for name, tensor in list(state.items()):
        if name.endswith("attn.c_attn.weight") or name.endswith("attn.c_attn.bias"):
            q, k, v = tensor.split([c.n_embd, c.kv_heads * hs, c.kv_heads * hs])
            repeat = lambda t: t.unflatten(0, (c.kv_heads, hs)).repeat_interleave(group, 0).flatten(0, 1)  # noqa: E731
            state[name] = torch.cat([q, repeat(k), repeat(v)])
    full.load_state_dict(state)
    return full


@pytest.mark.parametrize("n_kv_head", [1, 2])
@pytest.mark.parametrize("explicit_attention", [False, True])
def test_grouped_query_attention_equals_full_attention_with_repeated_key_value_heads(batch, n_kv_head,
                                                                                      explicit_attention):
    x, y = batch
    gqa = make_model(n_head=4, n_kv_head=n_kv_head, pos_encoding="rope", explicit_attention=explicit_attention).eval()
    attn = gqa.transformer.h[0].attn
    assert attn.c_attn.weight.shape == ((4 + 2 * n_kv_head) * 8, 32)  # q: nh heads, k and v: n_kv_head each
    full = repeated_kv_model(gqa)
    torch.testing.assert_close(gqa(x, y)[0], full(x, y)[0], rtol=0, atol=1e-5)


def test_with_n_kv_head_equal_to_n_head_the_state_dict_is_gpt2s():
    """Byte-compatible checkpoints: n_kv_head = n_head (0 or given) names and shapes every weight as before."""
    default, given = make_model(), make_model(n_kv_head=2)
    assert {k: v.shape for k, v in default.state_dict().items()} == {k: v.shape for k, v in given.state_dict().items()}
    assert all(torch.equal(default.state_dict()[k], t) for k, t in given.state_dict().items())


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_the_kv_cache_shrinks_by_n_head_over_n_kv_head(n_kv_head):
    model = make_tiny(n_embd=32, n_head=4, n_kv_head=n_kv_head).eval()
    prompt = random_tokens((1, 5))
    caches = [KVCache(model.config.n_layer, 16)]
    static = StaticDecoder(model, prompt, compile=False)
    with torch.no_grad():
        model(prompt, kv_cache=caches[0])
        static.next_logits()
    per_token = caches[0].k.numel() * caches[0].k.element_size() * 2 / 16  # keys and values, every layer
    assert per_token == 2 * 2 * n_kv_head * 8 * 4  # k and v x layers x heads x hs x float32
    static_bytes = sum(t.numel() * t.element_size() for t in static.cache.k + static.cache.v)
    assert static_bytes == per_token * 16


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_generation_with_grouped_query_attention_is_the_same_with_and_without_the_cache(batch, pos_encoding,
                                                                                         n_kv_head):
    model = make_model(n_head=4, n_kv_head=n_kv_head, pos_encoding=pos_encoding, block_size=16).eval()
    prompt = batch[0][:2, :5]
    uncached = model.generate(prompt, 11, temperature=0, use_cache=False)
    assert torch.equal(model.generate(prompt, 11, temperature=0), uncached)
    assert torch.equal(model.generate(prompt, 11, temperature=0, decoder=StaticDecoder(model, prompt, compile=False)),
                       uncached)


@pytest.mark.parametrize("bias", [True, False])
def test_swiglu_has_three_matrices_and_at_two_thirds_the_width_the_gelu_mlps_parameters(bias):
    C = 48
    gelu = make_tiny(n_embd=C, bias=bias).transformer.h[0].mlp
    swiglu = make_tiny(n_embd=C, bias=bias, mlp="swiglu", mlp_hidden=2 * 4 * C // 3).transformer.h[0].mlp
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    h = 128
    assert count(swiglu) == 3 * C * h + (2 * h + C if bias else 0)
    assert count(gelu) == 2 * C * 4 * C + (4 * C + C if bias else 0)
    assert count(swiglu) - count(gelu) == (0 if not bias else 2 * h - 4 * C)  # equal matrices; biases differ
    x = torch.randn(2, 3, C)
    expected = swiglu.c_proj(F.silu(swiglu.c_fc(x)) * swiglu.c_fc2(x))  # w2(silu(w1 x) * w3 x), Shazeer 2020
    torch.testing.assert_close(swiglu(x), expected)


def test_norm_eps_reaches_every_norm_and_rope_theta_the_angles(batch):
    for norm, kind in [("layernorm", torch.nn.LayerNorm), ("rmsnorm", torch.nn.RMSNorm)]:
        model = make_model(norm=norm, norm_eps=1e-3)
        norms = [m for m in model.modules() if isinstance(m, kind)]
        assert len(norms) == 2 * 2 + 1 and all(m.eps == 1e-3 for m in norms)
    assert make_model(norm="rmsnorm").transformer.ln_f.eps == 1e-5  # Llama's, not torch's default (None)
    x, _ = batch
    base, other = make_model(pos_encoding="rope").eval(), make_model(pos_encoding="rope", rope_theta=500000.0).eval()
    seen = {}
    with tracing(other, lambda name, t: seen.setdefault(name, t)):
        logits_of(other, x[:1, :8])
    q, cos_sin = seen["h.0.attn.q"], rotary_cos_sin(torch.arange(8), 16, 500000.0)
    torch.testing.assert_close(seen["h.0.attn.q_rope"], apply_rotary(q, *cos_sin))
    assert not torch.allclose(logits_of(base, x[:1, :8]), logits_of(other, x[:1, :8]))


@pytest.mark.parametrize("overrides, words", [
    (dict(n_head=4, n_kv_head=3), ["n_kv_head=3", "n_head=4", "[1, 2, 4]"]),
    (dict(n_kv_head=-1), ["n_kv_head", "-1"]),
    (dict(mlp_hidden=-8), ["mlp_hidden", "-8"]),
    (dict(norm_eps=0.0), ["norm_eps", "positive"]),
    (dict(rope_theta=-1.0), ["rope_theta", "positive"]),
    (dict(mlp="geglu"), ["mlp='geglu'", "'swiglu'"]),
])
def test_validate_rejects_impossible_llama_settings(overrides, words):
    with pytest.raises(ValueError) as e:
        tiny(**overrides).validate()
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_a_checkpoint_written_before_the_llama_settings_loads_as_it_was_trained(batch, norm):
    """Without n_kv_head, mlp, mlp_hidden, norm_eps and rope_theta in model_args: GPT-2's defaults, and an rmsnorm
    model keeps the eps it was trained with (torch's default then, not 1e-5)."""
    from gptkit.checkpoint import model_from_checkpoint

    model = make_model(norm=norm).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.RMSNorm):
                m.eps = None  # how nn.RMSNorm(n_embd) was built before norm_eps
    new = ("n_kv_head", "mlp", "mlp_hidden", "norm_eps", "rope_theta")
    old_args = {k: v for k, v in dataclasses.asdict(model.config).items() if k not in new}
    loaded = model_from_checkpoint({"model": model.state_dict(), "model_args": old_args}).eval()
    assert loaded.config.mlp == "gelu" and loaded.config.kv_heads == loaded.config.n_head
    x, _ = batch
    assert torch.equal(logits_of(loaded, x), logits_of(model, x))
