"""model.py: shapes, causality, positional encodings, dropout, attention paths, weight tying,
optimizer groups, parameter count, overfitting one batch, config validation, and the KV cache."""

import math

import pytest
import torch

from config import UserError
from data import TokenData
from model import GPT, GPTConfig, KVCache, sample_next, sinusoidal_encoding, tracing

pytestmark = pytest.mark.usefixtures("one_thread")

POS_ENCODINGS = ["learned", "sinusoidal", "rope", "none"]
VOCAB = 65  # Tiny Shakespeare's characters


def tiny(**overrides):
    args = dict(block_size=32, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32)
    return GPTConfig(**{**args, **overrides})


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(tiny(**overrides))


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


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_a_future_token_never_changes_earlier_logits(batch, pos_encoding):
    x, _ = batch
    model = make_model(pos_encoding=pos_encoding).eval()
    t = 20
    changed = x.clone()
    changed[:, t] = (changed[:, t] + 1) % VOCAB
    before, _ = model(x)
    after, _ = model(changed)
    torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, t:], before[:, t:], atol=1e-4)  # the change is seen from t on


def test_without_the_causal_mask_the_future_leaks(batch):
    """The control for the causality test: the same check fails when the model may look ahead."""
    x, _ = batch
    model = make_model(mask="none").eval()
    changed = x.clone()
    changed[:, 20] = (changed[:, 20] + 1) % VOCAB
    assert not torch.allclose(model(changed)[0][:, :20], model(x)[0][:, :20], atol=1e-4)


@pytest.mark.parametrize("dim", [2, 8, 32])
def test_sinusoidal_encoding_matches_the_formula(dim):
    positions = torch.arange(256)
    pe = sinusoidal_encoding(positions, dim)
    assert pe.shape == (256, dim)
    expected = torch.empty(256, dim, dtype=torch.float64)
    for pos in range(256):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    # float32 angles up to 255 rad carry ~1e-5 of rounding; a wrong formula is off by O(1)
    torch.testing.assert_close(pe.double(), expected, rtol=0, atol=2e-5)


def test_eval_mode_is_deterministic_with_dropout_and_train_mode_is_not(batch):
    x, y = batch
    model = make_model(dropout=0.2)
    model.eval()
    torch.testing.assert_close(model(x, y)[0], model(x, y)[0], rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x, y)[0], model(x, y)[0])


@pytest.mark.parametrize("mask", ["causal", "none"])
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_explicit_attention_equals_the_fused_kernel(batch, mask, pos_encoding):
    x, y = batch
    model = make_model(mask=mask, pos_encoding=pos_encoding).eval()
    assert all(block.attn.fast for block in model.transformer.h)
    fused_logits, fused_loss = model(x, y)
    seen = []
    with tracing(lambda name, t: seen.append(name)):  # tracing forces the explicit path
        explicit_logits, explicit_loss = model(x, y)
    assert "h.0.attn.softmax" in seen  # the explicit path really ran
    torch.testing.assert_close(explicit_logits, fused_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(explicit_loss, fused_loss, rtol=0, atol=1e-5)


def test_attention_weights_rows_sum_to_one_and_hide_the_future(batch):
    x, _ = batch
    model = make_model().eval()
    maps = {}
    with tracing(lambda name, t: maps.__setitem__(name, t)):
        model(x)
    weights = maps["h.1.attn.softmax"]  # (B, nh, T, T)
    assert weights.shape == (4, 2, 32, 32)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 2, 32))
    assert torch.all(weights.triu(diagonal=1) == 0)


# ---------------------------------------------------------------------------------------------
# parameters


def test_weight_tying():
    tied = make_model()
    assert tied.lm_head.weight is tied.transformer.wte.weight
    untied = make_model(tie_weights=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.num_params() == tied.num_params() + VOCAB * 32


@pytest.mark.parametrize("bias", [True, False])
def test_optimizer_groups_decay_matrices_only_and_cover_every_parameter_once(bias):
    model = make_model(bias=bias, tie_weights=False)
    groups = model.optimizer_groups(weight_decay=0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    not_decayed = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    listed = [id(p) for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed)) == len({id(p) for p in model.parameters()})
    for name, p in model.named_parameters():
        if p.dim() == 2:
            assert id(p) in decayed, name
        else:
            assert id(p) in not_decayed, name
            assert name.endswith(".bias") or ".ln_" in name or name.startswith("transformer.ln_f"), name
    assert {id(model.lm_head.weight), id(model.transformer.wte.weight)} <= decayed
    # AdamW accepts the groups as they are
    torch.optim.AdamW(groups, lr=1e-3)


def test_tied_weight_appears_once_in_optimizer_groups():
    model = make_model()
    listed = [p for g in model.optimizer_groups(0.1) for p in g["params"]]
    assert sum(p is model.lm_head.weight for p in listed) == 1


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
    with pytest.raises(UserError) as e:
        GPTConfig(n_embd=30, n_head=4).validate()
    assert "30" in str(e.value) and "4" in str(e.value)
    with pytest.raises(UserError):
        GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=4, n_embd=30))


@pytest.mark.parametrize("overrides, words", [
    (dict(n_layer=0), ["n_layer", "0"]),
    (dict(dropout=1.0), ["dropout"]),
    (dict(pos_encoding="rope", n_embd=6, n_head=2), ["rope", "3"]),
    (dict(pos_encoding="sinusoidal", n_embd=5, n_head=1), ["sinusoidal", "5"]),
])
def test_validate_rejects_impossible_models(overrides, words):
    with pytest.raises(UserError) as e:
        tiny(**overrides).validate()
    for word in words:
        assert word in str(e.value)


def test_learned_positions_refuse_sequences_past_block_size():
    model = make_model(block_size=8)
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


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
def test_generate_with_and_without_cache_gives_the_same_tokens(batch, pos_encoding, temperature):
    """Prompt 5, block 16, 40 new tokens: the generation runs well past block_size."""
    x, _ = batch
    model = make_model(pos_encoding=pos_encoding, block_size=16).eval()
    prompt = x[:2, :5]
    outs = [model.generate(prompt, 40, temperature=temperature, top_k=None, use_cache=use_cache,
                           generator=torch.Generator().manual_seed(7))
            for use_cache in (True, False)]
    assert outs[0].shape == (2, 45)
    assert torch.equal(outs[0][:, :5], prompt)
    assert torch.equal(outs[0], outs[1])


def test_generate_uses_the_cache(batch, monkeypatch):
    """With the cache each step after the prefill feeds one token; without it, the whole window."""
    x, _ = batch
    model = make_model(pos_encoding="rope", block_size=16).eval()
    lengths = {}
    for use_cache in (True, False):
        seen = lengths[use_cache] = []
        forward = GPT.forward
        monkeypatch.setattr(GPT, "forward", lambda self, idx, *a, **k: seen.append(idx.size(1)) or forward(self, idx, *a, **k))
        model.generate(x[:1, :5], 20, temperature=0, use_cache=use_cache)
        monkeypatch.undo()
    assert lengths[True] == [5] + [1] * 19
    assert lengths[False] == [min(5 + i, 16) for i in range(20)]


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
