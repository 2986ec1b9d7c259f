"""gptkit/decode.py: gpt-fast's static cache (eager and compiled) gives the tokens of model.Decoder, cached or
not; beam search finds the most likely continuation, equals greedy at width 1 and follows its beams in the
KV cache."""

import itertools

import re

import pytest
import torch
import torch.nn.functional as F

import sample
from conftest import main_error_line, make_model, random_tokens
from gptkit.checkpoint import load_trained
from gptkit.decode import SlidingDecoder, StaticDecoder, beam_search, length_penalty
from model import Decoder, stream

pytestmark = pytest.mark.usefixtures("one_thread")


def generate(model, idx, n, decoder=None, use_cache=True, **sampling):
    tokens = stream(model, idx, n, use_cache=use_cache, decoder=decoder, **sampling)
    return torch.cat(list(tokens), dim=1)  # (B, n)


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope", "none"])
@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "top_k": 10}])
def test_the_static_cache_gives_the_tokens_of_the_cached_and_uncached_paths(pos_encoding, sampling):
    model = make_model(pos_encoding=pos_encoding).eval()  # block 16
    prompt = random_tokens((2, 5))

    def tokens(**kwargs):
        return generate(model, prompt, 11, generator=torch.Generator().manual_seed(3), **sampling, **kwargs)

    static = tokens(decoder=StaticDecoder(model, prompt, compile=False))  # 5 + 11 = the whole block
    assert torch.equal(static, tokens(use_cache=True))
    assert torch.equal(static, tokens(use_cache=False))


def test_the_static_cache_attends_only_to_the_positions_written():
    """Its buffers hold block_size slots from the start; the mask must hide the ones not written yet."""
    model = make_model().eval()
    prompt = random_tokens((1, 3))
    decoder = StaticDecoder(model, prompt, compile=False)
    decoder.next_logits()  # prefill: 3 of 16 slots written
    decoder.append(torch.tensor([[7]]))
    torch.testing.assert_close(decoder.next_logits(), model(torch.cat([prompt, torch.tensor([[7]])], 1))[0][:, -1])
    assert all(k[:, :, 4:].abs().sum() == 0 for k in decoder.cache.k)  # the slots past position 3: never written


@pytest.mark.parametrize("new_tokens, note", [
    (20, "compiled the decode step in"),
    (40, "the static cache holds block_size positions"),  # past block_size (32): decoded as before, and said
], ids=["compiled", "longer-than-the-static-cache"])
def test_the_compiled_decode_step_gives_the_eager_tokens(tiny_run, capsys, new_tokens, note):
    args = [f"--out_dir={tiny_run.out_dir}", "--device=cpu", "--num_samples=2", f"--max_new_tokens={new_tokens}",
            "--temperature=0", "--start=ROMEO:"]
    sample.main(args)
    eager = capsys.readouterr().out
    sample.main([*args, "--compile=True"])
    compiled = capsys.readouterr()
    assert compiled.out == eager
    assert note in compiled.err


@pytest.mark.parametrize("new_tokens, note", [
    (20, "the static cache holds block_size positions; try --new_tokens=15"),  # 1 + 20 > block 16
    (2, "it leaves out its first two steps"),  # the prefill and the compiling step: none left to time
], ids=["longer-than-the-static-cache", "too-few-steps"])
def test_bench_sample_says_why_it_does_not_time_the_static_cache(capsys, new_tokens, note):
    import bench

    # bench_compile=True, the default; the eager rows are still timed
    bench.main(["sample", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--vocab_size=11",
                f"--new_tokens={new_tokens}"])
    out = capsys.readouterr().out
    loops = [line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ") and "kv cache" in line]
    assert loops == ["kv cache"] * 4  # fp32 and int8, batch 1 and 8
    assert "static cache, compiled |" not in out
    assert f"static cache, compiled: not timed: {note}" in out


# ---------------------------------------------------------------------------------------------
# beam search


def logprob(model, prompt, continuation):
    """log p(continuation | prompt) by one forward pass over prompt + continuation."""
    ids = torch.tensor([prompt + continuation])
    logp = F.log_softmax(model(ids)[0][0].float(), dim=-1)  # (T, vocab)
    return sum(logp[len(prompt) - 1 + i, token].item() for i, token in enumerate(continuation))


def test_beam_width_1_is_greedy(tiny_run, capsys):
    args = [f"--out_dir={tiny_run.out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=50", "--start=ROMEO:"]
    sample.main([*args, "--temperature=0"])
    greedy = capsys.readouterr().out
    sample.main([*args, "--beam_width=1"])
    beam = capsys.readouterr()
    assert beam.out == greedy  # 50 tokens: past block_size
    assert beam.err.startswith("[beam 1, score -")


def test_beam_scores_go_to_stderr_and_a_pipe_gets_the_text_only(tiny_run, cli):
    """`sample.py --beam_width=3 > out.txt`: out.txt holds the beams' text between nanoGPT's separators."""
    run = cli("sample.py", f"--out_dir={tiny_run.out_dir}", "--device=cpu", "--num_samples=3", "--max_new_tokens=20",
              "--start=ROMEO:", "--beam_width=3")
    assert run.returncode == 0, run.stderr
    beams = run.stdout[:-1].split(sample.SEPARATOR)
    assert len(beams) == 3 and all(b.startswith("ROMEO:") and len(b) == 26 for b in beams), run.stdout
    assert "[beam" not in run.stdout and "score" not in run.stdout
    scores = [float(s) for s in re.findall(r"^\[beam \d, score (-?[\d.]+)\]$", run.stderr, re.M)]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True), run.stderr


def test_beam_search_finds_the_most_likely_sequence_when_its_width_covers_every_prefix():
    """Vocabulary 5, 3 new tokens: width 25 keeps every 2-token prefix, so the beam is exhaustive; the best of all
    125 continuations, scored one by one, is the one it returns, with that score."""
    model = make_model(vocab_size=5, seed=4).eval()
    prompt = [1, 3, 2]
    scored = {c: logprob(model, prompt, list(c)) for c in itertools.product(range(5), repeat=3)}
    best = max(scored, key=scored.get)
    (tokens, score), *_ = beam_search(model, torch.tensor([prompt]), 3, beam_width=25)
    assert tuple(tokens) == best and score == pytest.approx(scored[best], abs=1e-4)
    narrow = beam_search(model, torch.tensor([prompt]), 3, beam_width=2)
    assert len(narrow) == 2 and narrow[0][1] >= narrow[1][1]


def test_beams_score_at_least_what_greedy_scores_on_the_trained_model(tiny_run):
    """Not a theorem (a pruned prefix can hide a better path), but what a trained model shows: wider beams find
    continuations at least as likely as greedy's, and their scores are the sequences' real log-probabilities."""
    trained = load_trained(tiny_run.out_dir)
    model, prompt = trained.model, trained.tokenizer.encode("ROMEO:")
    greedy = generate(model, torch.tensor([prompt]), 20, temperature=0)[0].tolist()
    greedy_score = logprob(model, prompt, greedy)
    for width in (2, 4, 8):
        tokens, score = beam_search(model, torch.tensor([prompt]), 20, width)[0]
        assert score >= greedy_score - 1e-4
        assert score == pytest.approx(logprob(model, prompt, tokens), abs=1e-3)


def test_a_beam_that_ends_is_finished_and_ranked_with_gnmts_length_penalty():
    model = make_model(vocab_size=6, seed=2).eval()
    prompt = [1, 2]
    for alpha in (0.0, 1.0):
        beams = beam_search(model, torch.tensor([prompt]), 6, beam_width=3, alpha=alpha, eos=0)
        for tokens, score in beams:
            assert len(tokens) == 6 or tokens[-1] == 0  # ran to the end, or produced eos and stopped
            assert 0 not in tokens[:-1]
            assert score == pytest.approx(logprob(model, prompt, tokens) / length_penalty(len(tokens), alpha), abs=1e-4)
        assert [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)
    assert length_penalty(1, 0.6) == 1.0 and length_penalty(7, 1.0) == 2.0  # ((5 + n) / 6)^alpha


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_keeping_beams_reorders_the_kv_cache_with_them(pos_encoding):
    """After keep(rows), the cached decoder gives the logits of a fresh uncached one on the reordered contexts."""
    model = make_model(pos_encoding=pos_encoding).eval()
    contexts = random_tokens((3, 6))
    cached = SlidingDecoder(model, contexts)
    cached.next_logits()
    cached.keep(torch.tensor([2, 2, 0]))
    cached.append(torch.tensor([[5], [9], [1]]))
    expected = Decoder(model, torch.cat([contexts[[2, 2, 0]], torch.tensor([[5], [9], [1]])], 1), use_cache=False)
    torch.testing.assert_close(cached.next_logits(), expected.next_logits(), rtol=1e-5, atol=1e-5)


def test_bad_beam_settings_are_one_line(tiny_run, capsys):
    line = main_error_line(capsys, sample, [f"--out_dir={tiny_run.out_dir}", "--beam_width=-2"])
    assert "beam_width and length_penalty must not be negative" in line
