"""The variants a learner changes one at a time, and the tools to watch what happens.

Every variant trains without NaN; causal ones never see the future and none/anticausal do (the
leak); sinusoidal and RoPE match their formulas; the explicit attention path equals the fused
kernel; generation runs past block_size; the shape trace names every step; the PNG writers make
valid images of the asked size; experiment.py runs a sweep end to end.
"""

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import experiment
import model as model_module
import sample
import train
import visualize
from checkpoint import save_checkpoint
from config import UserError
from model import GPT, GPTConfig, apply_rotary, rotary_cos_sin, sinusoidal_encoding, tracing
from tokenizer import CharTokenizer, load_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB = 24
VARIANTS = [
    *[("pos_encoding", v) for v in ("learned", "sinusoidal", "rope", "none")],
    *[("attn_score", v) for v in ("dot", "squared_dot", "neg_dot")],
    *[("mask", v) for v in ("causal", "none", "anticausal")],
    ("residual", False), ("norm", "none"), ("norm", "rmsnorm"), ("tie_weights", False),
    ("n_head", 1), ("n_head", 4), ("dropout", 0.2), ("activation", "relu2"), ("qk_norm", True),
]
CAUSAL_VARIANTS = [
    {"pos_encoding": p, "attn_score": s} for p in ("learned", "sinusoidal", "rope", "none")
    for s in ("dot", "squared_dot", "neg_dot")
] + [{"residual": False, "norm": "none"}, {"qk_norm": True, "tie_weights": False, "n_head": 1}]


def tiny(**overrides):
    args = dict(block_size=16, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=16)
    return GPTConfig(**{**args, **overrides})


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(tiny(**overrides))


def tokens(shape, seed=0):
    return torch.randint(VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk; fails if it is not a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------------------------------------
# every variant trains


@pytest.mark.parametrize("key, value", VARIANTS, ids=[f"{k}={v}" for k, v in VARIANTS])
def test_every_variant_trains_a_few_steps_without_nan(key, value):
    model = make_model(**{key: value}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seq = tokens((4, 17))
    losses = []
    for _ in range(5):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]  # it learns the batch, if slowly


def test_no_residual_and_no_norm_still_train_through_train_py(tmp_path, tiny_train_args):
    """The worst combination must train badly, not crash: train.py stops on a NaN loss."""
    code = train.main([*tiny_train_args, "--residual=False", "--norm=none", "--max_iters=10", "--eval_interval=10",
                       f"--out_dir={tmp_path}"])
    assert code in (None, 0)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["iter"] == 10 and math.isfinite(log[-1]["train_loss"])


# ---------------------------------------------------------------------------------------------
# masks: causal variants never see the future; none and anticausal do


def logits_of(model, x):
    with torch.no_grad():
        return model(x)[0]


@pytest.mark.parametrize("overrides", CAUSAL_VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_causal_variants_never_see_the_future(overrides):
    model = make_model(**overrides).eval()
    x = tokens((2, 16))
    t = 9
    changed = x.clone()
    changed[:, t:] = (changed[:, t:] + 1) % VOCAB
    before, after = logits_of(model, x), logits_of(model, changed)
    scale = before.abs().max()  # without residual and norm the logits start tiny (about 1e-13)
    assert (before[:, :t] - after[:, :t]).abs().max() <= 1e-6 * scale
    assert (before[:, t] - after[:, t]).abs().max() > 1e-3 * scale  # the changed position itself does change


@pytest.mark.parametrize("mask", ["none", "anticausal"])
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_none_and_anticausal_see_the_token_they_must_predict(mask, pos_encoding):
    """Position t-1 must predict token t. Under these masks its logits depend on token t: the leak."""
    model = make_model(mask=mask, pos_encoding=pos_encoding).eval()
    x = tokens((2, 16))
    t = 9
    changed = x.clone()
    changed[:, t] = (changed[:, t] + 1) % VOCAB  # change only the answer for position t-1
    before, after = logits_of(model, x), logits_of(model, changed)
    assert (before[:, t - 1] - after[:, t - 1]).abs().max() > 1e-4


def test_anticausal_hides_the_past_and_none_hides_nothing():
    x = tokens((2, 16))
    changed = x.clone()
    changed[:, 0] = (changed[:, 0] + 1) % VOCAB  # change the first token
    anti, full = make_model(mask="anticausal").eval(), make_model(mask="none").eval()
    torch.testing.assert_close(logits_of(anti, x)[:, 1:], logits_of(anti, changed)[:, 1:], rtol=0, atol=1e-6)
    assert (logits_of(full, x)[:, 1:] - logits_of(full, changed)[:, 1:]).abs().max() > 1e-4


@pytest.mark.parametrize("mask", ["causal", "none", "anticausal"])
def test_the_mask_shape_in_the_attention_weights(mask):
    """The hidden half of the (query, key) grid gets exactly zero weight."""
    weights = {}
    with tracing(lambda name, t: weights.setdefault(name, t)):
        logits_of(make_model(mask=mask).eval(), tokens((1, 8)))
    w = weights["h.0.attn.softmax"][0, 0]  # (T, S)
    upper, lower = torch.triu(w, diagonal=1), torch.tril(w, diagonal=-1)
    assert (upper == 0).all() == (mask == "causal")
    assert (lower == 0).all() == (mask == "anticausal")
    torch.testing.assert_close(w.sum(-1), torch.ones(8))


@pytest.mark.parametrize("mask", ["none", "anticausal"])
def test_a_leaking_mask_learns_to_copy_what_a_causal_model_cannot_predict(mask):
    """Random tokens: nothing to predict, so a causal model stays at log(vocab). A model that can see
    the next token learns to copy it, and its loss collapses: the training loss of the leak."""

    def final_loss(mask):
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=16, vocab_size=16, n_layer=1, n_head=2, n_embd=32, mask=mask))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(0)
        for _ in range(40):
            seq = torch.randint(16, (16, 17), generator=generator)  # fresh random tokens every step
            _, loss = model(seq[:, :-1], seq[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    chance = math.log(16)
    assert final_loss("causal") > 0.95 * chance
    assert final_loss(mask) < 0.6 * chance


# ---------------------------------------------------------------------------------------------
# positional encodings match their formulas


def test_sinusoidal_encoding_matches_the_formula_past_block_size():
    dim, positions = 6, [0, 1, 5, 1000]
    pe = sinusoidal_encoding(torch.tensor(positions), dim)
    for row, pos in enumerate(positions):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert pe[row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


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


# ---------------------------------------------------------------------------------------------
# attention scores and the two attention paths


def test_explicit_path_with_default_settings_equals_scaled_dot_product_attention():
    model = make_model().eval()
    attn = model.transformer.h[0].attn
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    positions = torch.arange(16)
    explicit = attn.explicit_attention(q, k, v, positions, positions, 0.0)
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-6)
    # and the whole model: tracing forces the explicit path
    x = tokens((2, 16))
    fast = logits_of(model, x)
    with tracing(lambda name, t: None):
        slow = logits_of(model, x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides", [{"attn_score": "squared_dot"}, {"attn_score": "neg_dot"}, {"mask": "anticausal"}])
def test_variants_that_are_not_the_default_take_the_explicit_path(overrides, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel was used")

    model = make_model(**overrides).eval()
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", refuse)
    logits_of(model, tokens((1, 8)))


@pytest.mark.parametrize("attn_score, formula", [
    ("dot", lambda s: s), ("squared_dot", lambda s: s.square()), ("neg_dot", lambda s: -s),
])
def test_attention_scores_compute_what_their_one_line_doc_says(attn_score, formula):
    seen = {}
    with tracing(lambda name, t: seen.setdefault(name, t)):
        logits_of(make_model(attn_score=attn_score, pos_encoding="learned").eval(), tokens((1, 8)))
    q, k = seen["h.0.attn.q"], seen["h.0.attn.k"]
    expected = formula(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))
    torch.testing.assert_close(seen["h.0.attn.scores"], expected)
    assert attn_score in GPTConfig.__dataclass_fields__["attn_score"].type.__args__


# ---------------------------------------------------------------------------------------------
# past block_size


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope", "none"])
def test_generation_runs_past_block_size_for_every_encoding(pos_encoding, use_cache):
    model = make_model(pos_encoding=pos_encoding).eval()
    out = model.generate(tokens((1, 3)), 40, use_cache=use_cache, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 43)  # block_size is 16


def test_learned_positions_say_clearly_that_they_stop_at_block_size():
    with pytest.raises(ValueError) as e:
        make_model(pos_encoding="learned")(tokens((1, 17)))
    assert "block_size=16" in str(e.value) and "sinusoidal or rope" in str(e.value)


@pytest.mark.parametrize("pos_encoding", ["sinusoidal", "rope", "none"])
def test_other_encodings_run_a_forward_longer_than_block_size(pos_encoding):
    logits = logits_of(make_model(pos_encoding=pos_encoding).eval(), tokens((1, 40)))
    assert logits.shape == (1, 40, VOCAB) and torch.isfinite(logits).all()


def char_checkpoint(out_dir, text="The pizza came out of the oven and it tasted good.\nROMEO:", **overrides):
    """A randomly initialised char-level checkpoint in out_dir/best.pt, as train.py would write it."""
    tokenizer = CharTokenizer.from_text(text)
    model = make_model(**{"vocab_size": tokenizer.vocab_size, "block_size": 32, **overrides})
    save_checkpoint(Path(out_dir) / "best.pt", model, iter_num=0, meta=tokenizer.meta())
    return tokenizer


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope", "none"])
def test_sample_py_samples_more_tokens_than_block_size(pos_encoding, tmp_path, capsys):
    char_checkpoint(tmp_path, pos_encoding=pos_encoding)
    sample.main([f"--out_dir={tmp_path}", "--max_new_tokens=80", "--num_samples=1", "--device=cpu", "--start=ROMEO:"])
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) >= len("ROMEO:") + 80  # block_size is 32


# ---------------------------------------------------------------------------------------------
# the shape trace

TRACED = ["idx", "tok_emb", "pos_emb", "h.0.attn.q", "h.0.attn.k", "h.0.attn.v", "h.0.attn.scores",
          "h.0.attn.mask", "h.0.attn.softmax", "h.0.attn.merged", "h.0.mlp", "logits", "loss"]


def test_train_py_trace_shapes_names_every_step_with_a_description(tiny_train_args, tmp_path, capsys):
    train.main([*tiny_train_args, "--trace_shapes=True", f"--out_dir={tmp_path}"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in TRACED:
        assert name in lines, f"{name} missing from the trace:\n{out}"
        assert len(lines[name].split()) > 3, f"{name} has no description: {lines[name]}"
    assert "(8, 32, 32)" not in out  # batch of 2 in the trace
    assert "(2, 2, 32, 16)" in lines["h.0.attn.q"]  # (B, nh, T, hs)
    assert "(2, 2, 32, 32)" in lines["h.0.attn.softmax"]  # (B, nh, T, S)
    assert "the same steps and shapes as h.0" in out  # layer 1 is summarised
    assert not (tmp_path / "ckpt.pt").exists()  # it only traces


def test_sample_py_trace_shapes(tmp_path, capsys):
    char_checkpoint(tmp_path)
    sample.main([f"--out_dir={tmp_path}", "--trace_shapes=True", "--start=ROMEO:", "--num_samples=1", "--device=cpu"])
    out = capsys.readouterr().out
    assert "h.0.attn.softmax" in out and "(1, 2, 6, 6)" in out and "logits" in out


# ---------------------------------------------------------------------------------------------
# pictures

mpl = pytest.importorskip  # matplotlib is optional for users, not for these tests


def test_plot_attention_writes_a_png_of_the_asked_size(tmp_path):
    mpl("matplotlib")
    maps = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
    out = visualize.plot_attention(maps, list("abcde"), tmp_path / "a.png", title="t", width=640, height=480, dpi=80)
    assert png_size(out) == (640, 480)


def test_plot_loss_writes_a_png_of_the_asked_size(tmp_path):
    mpl("matplotlib")
    log = [{"iter": i, "train_loss": 4 - i / 10, "val_loss": 4.1 - i / 11} for i in range(0, 30, 10)]
    out = visualize.plot_loss([("a=1", log), ("a=2", log[:2])], tmp_path / "sub" / "l.png", width=500, height=300)
    assert png_size(out) == (500, 300)


def test_visualize_attention_char_level(tmp_path, capsys):
    mpl("matplotlib")
    char_checkpoint(tmp_path)
    visualize.main(["attention", f"--out_dir={tmp_path}", "--width=900", "--height=700"])
    assert png_size(tmp_path / "attention.png") == (900, 700)
    visualize.main(["attention", f"--out_dir={tmp_path}", "--text=ROMEO:", f"--out={tmp_path / 'r.png'}"])
    assert png_size(tmp_path / "r.png")[0] > 200  # sized automatically
    assert "2 layers x 2 heads, 6 tokens" in capsys.readouterr().out


def test_attention_maps_grey_out_what_the_mask_hides(tmp_path):
    tokenizer = char_checkpoint(tmp_path)
    from checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt"))
    maps = visualize.attention_maps(model, tokenizer.encode("The pizza"))
    assert maps.shape == (2, 2, 9, 9)
    hidden = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
    assert maps[:, :, hidden].isnan().all() and not maps[:, :, ~hidden].isnan().any()
    assert visualize.token_labels(tokenizer, tokenizer.encode("a \n")) == ["'a'", "' '", "'\\n'"]


def test_visualize_attention_bpe(tmp_path):
    mpl("matplotlib")
    try:
        tokenizer = load_tokenizer({"tokenizer": "gpt2", "vocab_size": 50257})
    except UserError:
        pytest.skip("GPT-2 BPE files unavailable")
    model = make_model(vocab_size=50304, n_embd=8, n_layer=1, n_head=2, block_size=32)
    save_checkpoint(tmp_path / "ckpt.pt", model, iter_num=0, meta=tokenizer.meta())
    visualize.main(["attention", f"--out_dir={tmp_path}", "--ckpt=latest", "--width=600", "--height=400"])
    assert png_size(tmp_path / "attention.png") == (600, 400)
    labels = visualize.token_labels(tokenizer, tokenizer.encode(visualize.PIZZA))
    assert labels[:3] == ["'The'", "' pizza'", "' came'"]


def test_plots_without_matplotlib_are_one_error_line_and_the_core_imports(tmp_path):
    blocker = "import sys; sys.modules['matplotlib'] = None\n"
    core = subprocess.run([sys.executable, "-c", blocker + "import train, sample, model, experiment, visualize"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert core.returncode == 0, core.stderr
    plot = subprocess.run(
        [sys.executable, "-c", blocker + "import runpy; sys.argv = ['visualize.py', 'loss', 'x']; "
                                         "runpy.run_path('visualize.py', run_name='__main__')"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert plot.returncode == 2
    assert plot.stderr.startswith("error: ") and "pip install matplotlib" in plot.stderr
    assert len(plot.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# experiment.py


def test_plan_reads_vary_grids_sweep_configs_and_checks_every_run(tmp_path):
    _, keys, runs = experiment.plan(["config/lab_char_cpu.py", "--vary", "n_head=1,8",
                                     "--vary=mask=causal,none", "--max_iters=6", "--out_root=o"])
    assert keys == ["n_head", "mask"] and len(runs) == 4
    assert runs[1]["name"] == "n_head=1,mask=none"
    assert runs[1]["args"] == ["config/lab_char_cpu.py", "--max_iters=6", "--n_head=1", "--mask=none",
                               f"--out_dir={Path('o') / 'n_head=1,mask=none'}", "--overwrite=True"]
    assert runs[1]["model_cfg"].n_layer == 4  # from the config file
    sweep = tmp_path / "sweep.py"
    sweep.write_text("config = 'config/lab_char_cpu.py'\nvary = 'residual=True,False'\nmax_iters = 5\n")
    exp, keys, runs = experiment.plan([str(sweep), "--out_root=x"])
    assert keys == ["residual"] and [r["train_cfg"].max_iters for r in runs] == [5, 5]
    assert [r["model_cfg"].residual for r in runs] == [True, False]
    with pytest.raises(UserError, match="did you mean 'pos_encoding'"):
        experiment.plan(["--vary", "pos_encodng=learned,rope"])
    with pytest.raises(UserError, match="pos_encoding='sinusoid'"):
        experiment.plan(["--vary", "pos_encoding=learned,sinusoid"])
    with pytest.raises(UserError, match="nothing to vary"):
        experiment.plan(["config/lab_char_cpu.py"])


def test_experiment_py_end_to_end(tmp_path, char_data_dir, capsys, monkeypatch):
    mpl("matplotlib")
    config = tmp_path / "tiny.py"
    config.write_text(f"dataset = 'shakespeare_char'\ndata_dir = {str(char_data_dir)!r}\ndevice = 'cpu'\n"
                      "n_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\nbatch_size = 4\nmax_iters = 4\n"
                      "eval_interval = 2\neval_iters = 2\nwarmup_iters = 1\nthreads = 1\n")
    root = tmp_path / "exp"
    argv = [str(config), "--vary", "pos_encoding=learned,rope", f"--out_root={root}", "--learning_rate=0.01"]
    experiment.main([*argv, "--jobs=2"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| learned") or line.startswith("| rope")]
    assert len(rows) == 2 and "train loss | val loss" in out
    for value in ("learned", "rope"):
        run = root / f"pos_encoding={value}"
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert [r["iter"] for r in log] == [0, 2, 4]
        record = json.loads((run / "experiment.json").read_text())
        assert record["status"] == "ok" and "--learning_rate=0.01" in record["args"]
    assert png_size(root / "pos_encoding.png") == (1200, 480)
    assert (root / "pos_encoding.md").read_text().count("\n") == 4

    # again with --reuse: nothing retrains, the table is the same; and without matplotlib, a warning
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(experiment.Training, "__init__", lambda *a: pytest.fail("retrained a finished run"))
    experiment.main([*argv, "--reuse=True", "--plot=" + str(tmp_path / "none.png")])
    captured = capsys.readouterr()
    assert [line for line in captured.out.splitlines() if line.startswith(("| learned", "| rope"))] == rows
    assert "reusing the finished run" in captured.err and "pip install matplotlib" in captured.err
    assert not (tmp_path / "none.png").exists()
    monkeypatch.undo()

    # the loss plot of any runs, labelled by the setting that differs
    assert visualize.run_labels([root / "pos_encoding=learned", root / "pos_encoding=rope"]) == (
        ["pos_encoding=learned", "pos_encoding=rope"], ["pos_encoding"])
    visualize.main(["loss", str(root / "pos_encoding=learned"), str(root / "pos_encoding=rope"),
                    f"--out={tmp_path / 'loss.png'}", "--width=800", "--height=300"])
    assert png_size(tmp_path / "loss.png") == (800, 300)
    assert "labelled by pos_encoding" in capsys.readouterr().out


def test_a_failing_run_is_reported_and_the_others_still_run(tmp_path, char_data_dir, capsys):
    argv = [f"--data_dir={char_data_dir}", "--device=cpu", "--threads=1", "--n_layer=1", "--n_head=2", "--n_embd=16",
            "--block_size=16", "--batch_size=2", "--max_iters=2", "--eval_interval=2", "--eval_iters=1",
            "--vary", "dataset=shakespeare_char,missing", f"--out_root={tmp_path}", f"--plot={tmp_path / 'p.png'}"]
    with pytest.raises(SystemExit) as e:
        experiment.main(argv)
    assert e.value.code == 1
    captured = capsys.readouterr()
    assert "1 run(s) failed: dataset=missing" in captured.err
    assert "dataset 'missing' not found" in captured.err  # train.py's own error line
    assert "| shakespeare_char | " in captured.out and "| missing | failed |" in captured.out
