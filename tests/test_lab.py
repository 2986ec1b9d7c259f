"""The lab: every variant a learner changes trains, a leaking mask learns to copy, and the tools to
watch what happens work: sampling past block_size, the shape trace, the pictures (valid PNGs of the
asked size), and experiment.py running a sweep end to end. (What each variant computes is tested
in test_model.py.)"""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, make_model, png_size, random_tokens
import experiment
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from gptkit.errors import UserError
from gptkit.runlog import read_log
from gptkit.shape_trace import print_shape_trace
from gptkit.tokenizer import CharTokenizer, load_tokenizer
from model import GPT, GPTConfig
import sample
import train
import visualize

pytestmark = pytest.mark.usefixtures("one_thread")

VARIANTS = [
    *[("pos_encoding", v) for v in ("learned", "sinusoidal", "rope", "none")],
    *[("attn_score", v) for v in ("dot", "dot_then_square", "square_then_dot", "neg_dot")],
    *[("mask", v) for v in ("causal", "none", "anticausal")],
    ("residual", False), ("norm", "none"), ("norm", "rmsnorm"), ("tie_weights", False),
    ("n_head", 1), ("n_head", 4), ("dropout", 0.2), ("activation", "relu2"), ("qk_norm", True),
]


# ---------------------------------------------------------------------------------------------
# every variant trains


@pytest.mark.parametrize("key, value", VARIANTS, ids=[f"{k}={v}" for k, v in VARIANTS])
def test_every_variant_trains_a_few_steps_without_nan(key, value):
    model = make_model(**{key: value}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seq = random_tokens((4, 17))
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
    log = read_log(tmp_path)
    assert log[-1]["iter"] == 10 and math.isfinite(log[-1]["train_loss"])


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
    # it says why B=2, shows the text, and which attention path training really takes
    assert "B=2 sequences of T=32 tokens (two: enough to show the batch dimension" in out
    assert re.search(r"^sequence 0: (['\"]).{10,}\1$", out, re.M)  # its text, as repr shows it
    assert "training and sampling use the fused kernel F.scaled_dot_product_attention" in out
    for step in ("h.0.ln_1", "h.0.attn.c_proj", "h.0.attn_residual", "h.0.ln_2", "ln_f"):
        assert step in lines and len(lines[step].split()) > 3, step


def test_the_trace_names_every_variants_steps_and_path(tiny_train_args, tmp_path, capsys):
    train.main([*tiny_train_args, "--trace_shapes=True", f"--out_dir={tmp_path}", "--qk_norm=True",
                "--pos_encoding=rope", "--attn_score=square_then_dot"])
    out = capsys.readouterr().out
    assert "sum_i q_i^2 k_i^2 / sqrt(hs) (of the RMS-normalised q and k) for every (query, key) pair" in out
    for step in ("h.0.attn.q_norm", "h.0.attn.k_norm", "h.0.attn.q_rope", "h.0.attn.k_rope"):
        assert step in out
    assert "training and sampling run it step by step too: the fused kernel knows only the dot-product score " \
           "under the causal mask or none, and this model has attn_score=square_then_dot" in out


def test_without_residuals_the_trace_names_the_attention_output_for_what_it_is(tiny_train_args, tmp_path, capsys):
    train.main([*tiny_train_args, "--trace_shapes=True", f"--out_dir={tmp_path}", "--residual=False"])
    out = capsys.readouterr().out
    assert "h.0.attn_output" in out and "attn_residual" not in out
    assert "nothing carries x past it" in out


def test_trace_values_prints_the_numbers_of_a_tiny_forward_pass(tiny_train_args, tmp_path, capsys):
    train.main([*tiny_train_args, "--trace_shapes=True", "--trace_values=True", "--block_size=4", "--n_layer=1",
                f"--out_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert "weights: untrained: the initial weights of seed 1337" in out  # which model the numbers come from
    text = re.search(r"^sequence 0: '(.{4})'$", out, re.M).group(1)
    softmax = out[out.index("h.0.attn.softmax"):out.index("h.0.attn.out")].splitlines()[1:]
    keys, rows = softmax[0].split(), [line.split() for line in softmax[1:]]
    labels = [c.replace(" ", "\u2423").replace("\n", "\u23ce") for c in text]
    assert keys == labels and [row[0] for row in rows] == labels  # rows and columns named by their tokens
    weights = [[float(v) for v in row[1:]] for row in rows]  # head 0's (T, T) weights of sequence 0
    assert all(abs(sum(row) - 1) < 0.01 for row in weights)  # rows sum to 1
    assert all(w == 0 for t, row in enumerate(weights) for w in row[t + 1:])  # the future gets no weight
    loss = float(out.split("loss")[-1].split()[-1])
    assert 3 < loss < 5  # about ln(65) for a fresh model


def test_trace_layer_shows_one_layer_and_says_what_it_left_out(tiny_train_args, tmp_path, capsys):
    args = [*tiny_train_args, "--trace_shapes=True", "--trace_values=True", "--block_size=8", "--n_layer=3",
            f"--out_dir={tmp_path}"]
    train.main(args)
    every_layer = capsys.readouterr().out
    train.main([*args, "--trace_layer=1"])
    one = capsys.readouterr().out
    assert "h.1.attn.softmax" in one and "h.0.attn.q" not in one and "h.2.mlp" not in one
    assert "h.0                                     (not shown: --trace_layer=1)" in one
    assert "h.2                                     (not shown: --trace_layer=1)" in one
    assert "tok_emb" in one and "logits" in one  # what comes before and after every layer
    assert len(one.splitlines()) < 0.5 * len(every_layer.splitlines())
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train.main([*args, "--trace_layer=3"])
    assert "trace_layer=3 is not a layer of this model: 0 to 2" in capsys.readouterr().err
    # refused before the forward pass, which would fail on this input: 17 learned positions in block 16
    with pytest.raises(UserError, match="trace_layer=2 is not a layer"):
        print_shape_trace(make_model(), random_tokens((1, 17)), layer=2)


def test_sample_py_trace_shapes(tmp_path, capsys):
    char_checkpoint(tmp_path)
    sample.main([f"--out_dir={tmp_path}", "--trace_shapes=True", "--start=ROMEO:", "--num_samples=1", "--device=cpu"])
    out = capsys.readouterr().out
    assert "h.0.attn.softmax" in out and "(1, 2, 6, 6)" in out and "logits" in out
    assert "sequence 0: 'ROMEO:'" in out


# ---------------------------------------------------------------------------------------------
# pictures

mpl = pytest.importorskip  # matplotlib is in requirements.txt; the tests also run where it is missing


def test_plot_attention_writes_a_png_of_the_asked_size(tmp_path):
    mpl("matplotlib")
    maps = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
    panel = visualize.Panel(maps, list("abcde"), None, "a caption", [])
    out = visualize.plot_attention([panel], tmp_path / "a.png", title="t", width=640, height=480, dpi=80)
    assert png_size(out) == (640, 480)
    out = visualize.plot_attention([panel, panel], tmp_path / "b.png", title="a long title " * 20)
    assert png_size(out)[0] > png_size(tmp_path / "a.png")[0]


def test_plot_loss_writes_a_png_of_the_asked_size(tmp_path):
    mpl("matplotlib")
    log = [{"iter": i, "train_loss": 4 - i / 10, "val_loss": 4.1 - i / 11} for i in range(0, 30, 10)]
    out = visualize.plot_loss([("a=1", log), ("a=2", log[:2])], tmp_path / "sub" / "l.png", width=500, height=300)
    assert png_size(out) == (500, 300)


def test_the_loss_plot_names_its_zoom_and_marks_a_leak_on_the_curve():
    """The zoom's title says where it starts (the first evaluation a quarter of the way in, as its axis shows),
    and a run that saw the future is marked on its curve and in the legend, not drawn as a better run."""
    mpl("matplotlib")
    from gptkit.plots import LEAK, loss_figure

    log = [{"iter": i, "train_loss": 4 - i / 100, "val_loss": 4.1 - i / 110} for i in range(0, 301, 50)]
    leak = [{**r, "train_loss": r["train_loss"] / 10, "val_loss": r["val_loss"] / 10} for r in log]
    fig = loss_figure([("mask=causal", log), ("mask=none", leak)], leaks={1})
    zoom = fig.axes[2]
    assert zoom.get_title() == "val loss from iteration 100 on, zoomed"  # 300 / 4 = 75: the first point past it
    assert 90 < zoom.get_xlim()[0] < 100 and zoom.get_xlim()[1] > 300  # a margin around iterations 100..300
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count(LEAK) == 3  # on the curve in each panel
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["mask=causal", f"mask=none ({LEAK})"]


def test_the_loss_plot_adds_held_out_exact_match_and_tokens_per_s_when_asked():
    mpl("matplotlib")
    from gptkit.plots import loss_figure

    log = [{"iter": i, "train_loss": 3 - i / 100, "val_loss": 3.1 - i / 110, "exact_match": i / 400,
            "tokens_per_s": 1000 + i} for i in range(0, 401, 100)]
    gpt = [{**r, "exact_match": r["exact_match"] / 2, "tokens_per_s": 700} for r in log]
    fig = loss_figure([("translator", log), ("gpt", gpt)], scores=True, speed=True)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[3:] == ["held-out exact match", "training tokens/s (last evaluation)", ""]  # the sixth left empty
    assert [list(line.get_ydata()) for line in fig.axes[3].lines] == [[0, 0.25, 0.5, 0.75, 1],
                                                                      [0, 0.125, 0.25, 0.375, 0.5]]
    assert [bar.get_width() for bar in fig.axes[4].patches] == [1400, 700]  # each run's speed at its last evaluation
    assert tuple(fig.get_size_inches() * fig.dpi) == (1200, 960)  # five panels in two rows
    plain = [{k: v for k, v in r.items() if k != "exact_match"} for r in log]
    assert len(loss_figure([("lab", plain)], scores=True).axes) == 3  # nothing to score: the loss panels alone
    assert len(loss_figure([("translator", log)]).axes) == 3


@pytest.mark.parametrize("weights, expected", [
    ({"oven": [0.17, 0.05], "pizza": [0.05, 0.18]}, "the weight follows the position: the nearer of 'oven' and 'pizza'"),
    ({"oven": [0.04, 0.05], "pizza": [0.2, 0.18]}, "the weight follows the word: 'pizza' gets more in both texts"),
])
def test_the_query_view_states_its_reading_for_two_texts_that_swap_two_words(weights, expected):
    rankings = [[(w, v[n]) for w, v in weights.items()] + [("The", 0.3)] for n in range(2)]
    reading = visualize.swap_reading([visualize.PIZZA, visualize.PIZZA_SWAPPED], rankings)
    assert reading.startswith(expected)
    assert visualize.swap_reading([visualize.PIZZA, "The pizza came out of the box and it tasted good."],
                                  rankings) is None  # not a swap: no reading


def test_the_query_view_puts_its_reading_on_the_picture(tmp_path, capsys):
    mpl("matplotlib")
    char_checkpoint(tmp_path, block_size=64)
    visualize.main(["attention", f"--out_dir={tmp_path}", "--query=it", f"--compare={visualize.PIZZA_SWAPPED}"])
    out = capsys.readouterr().out
    reading = next(line for line in out.splitlines() if line.startswith("the weight follows the "))
    assert "text 1: oven" in reading and "text 2: oven" in reading
    assert png_size(tmp_path / "attention_query.png")[0] > 0


def test_runs_that_differ_in_many_settings_are_labelled_by_folder(tmp_path):
    """17 differing settings in each legend entry helps nobody: more than three, and the folder names it."""
    for name, n_layer in (("small", 1), ("big", 2)):
        overrides = dict(n_layer=n_layer, n_embd=8 * n_layer, dropout=0.1 * n_layer, bias=n_layer == 1)
        save_checkpoint(tmp_path / name / "ckpt.pt", make_model(**overrides), iter_num=0)
    dirs = [tmp_path / "small", tmp_path / "big"]
    labels, keys = visualize.run_labels(dirs, [visualize.run_settings(d) for d in dirs])
    assert labels == ["small", "big"] and len(keys) == 4


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
    model = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt"))
    maps = visualize.attention_maps(model, tokenizer.encode("The pizza"))
    assert maps.shape == (2, 2, 9, 9)
    hidden = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
    assert maps[:, :, hidden].isnan().all() and not maps[:, :, ~hidden].isnan().any()
    assert [visualize.token_text(tokenizer, i) for i in tokenizer.encode("a \n")] == ["a", "\u2423", "\u23ce"]


@pytest.mark.parametrize("query, position", [("it", 36), ("pizza", 8), ("oven", 29), ("36", 36), ("-1", 49)])
def test_the_query_is_a_words_last_character_or_a_position(tmp_path, query, position):
    tokenizer = char_checkpoint(tmp_path, block_size=64)
    ids = tokenizer.encode(visualize.PIZZA)
    assert visualize.find_query(tokenizer, ids, query) == position
    with pytest.raises(UserError, match="'pasta' is not in the text"):
        visualize.find_query(tokenizer, ids, "pasta")


def test_the_query_view_and_the_grid_do_not_overwrite_each_other(tmp_path):
    """docs/lab.md runs both views of one run in a row: each keeps its own default file."""
    mpl("matplotlib")
    char_checkpoint(tmp_path, block_size=64)
    visualize.main(["attention", f"--out_dir={tmp_path}", "--query=it"])
    query_png = (tmp_path / "attention_query.png").read_bytes()
    visualize.main(["attention", f"--out_dir={tmp_path}", "--text=ROMEO:"])
    assert (tmp_path / "attention_query.png").read_bytes() == query_png
    assert png_size(tmp_path / "attention.png") != png_size(tmp_path / "attention_query.png")


def test_the_query_view_draws_and_prints_what_one_token_attends_to(tmp_path, capsys):
    mpl("matplotlib")
    tokenizer = char_checkpoint(tmp_path, block_size=64)
    visualize.main(["attention", f"--out_dir={tmp_path}", "--query=it", f"--compare={visualize.PIZZA_SWAPPED}",
                    f"--out={tmp_path / 'q.png'}"])
    out = capsys.readouterr().out
    assert png_size(tmp_path / "q.png")[0] > 1000  # two panels side by side
    assert out.count("from 't' (position 36)") == 2 and "layer 1: h0 " in out
    # the words' weights are the sums over their characters of the drawn weights, averaged over layers and heads
    model = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt"))
    maps = visualize.attention_maps(model, tokenizer.encode(visualize.PIZZA))
    expected = maps[:, :, 36, 4:9].sum(-1).mean().item()  # 'pizza' is characters 4..8
    printed = float(re.search(r"^\s+pizza\s+([\d.]+)", out, re.M).group(1))
    assert printed == pytest.approx(expected, abs=5e-4)


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
    ids = tokenizer.encode(visualize.PIZZA)
    assert [visualize.token_text(tokenizer, i) for i in ids[:3]] == ["The", "pizza", "came"]  # words, as they read
    assert visualize.find_query(tokenizer, ids, "it") == 8  # the token ' it'
    visualize.main(["attention", f"--out_dir={tmp_path}", "--ckpt=latest", "--query=it", f"--out={tmp_path / 'q.png'}"])
    assert png_size(tmp_path / "q.png")[0] > 0


def test_gpt2_itself_is_drawn_from_a_local_gpt2_directory(tmp_path, capsys):
    """--init_from works offline with a GPT-2 directory (here a small random one written by transformers)."""
    mpl("matplotlib")
    transformers = pytest.importorskip("transformers")
    try:
        load_tokenizer({"tokenizer": "gpt2", "vocab_size": 50257})
    except UserError:
        pytest.skip("GPT-2 BPE files unavailable")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2-tiny")
    visualize.main(["attention", f"--init_from={tmp_path / 'gpt2-tiny'}", "--query=it",
                    f"--compare={visualize.PIZZA_SWAPPED}", f"--out={tmp_path / 'q.png'}"])
    out = capsys.readouterr().out
    assert "from 'it' (position 8)" in out
    assert png_size(tmp_path / "q.png")[0] > 0
    visualize.main(["next", f"--init_from={tmp_path / 'gpt2-tiny'}", "--text=The pizza", f"--out={tmp_path / 'n.png'}"])
    assert "GPT-2" in capsys.readouterr().out


def test_next_prints_the_most_likely_next_tokens_with_their_probabilities(tmp_path, capsys):
    mpl("matplotlib")
    tokenizer = char_checkpoint(tmp_path)
    visualize.main(["next", f"--out_dir={tmp_path}", "--text=ROMEO:", "--top=5"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d)\s+(\S+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    model = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt")).eval()
    probs = torch.softmax(model(torch.tensor([tokenizer.encode("ROMEO:")]))[0][0, -1, :tokenizer.vocab_size], -1)
    top = probs.topk(5)
    assert [r[1] for r in rows] == [visualize.token_text(tokenizer, i) for i in top.indices.tolist()]
    assert [float(r[2]) for r in rows] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert png_size(tmp_path / "next.png")[0] == 800


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
    _, keys, runs = experiment.plan(["config/lab_char_cpu.py", "--vary=n_head=1,8",
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
        experiment.plan(["--vary=pos_encodng=learned,rope"])
    with pytest.raises(UserError, match="pos_encoding='sinusoid'"):
        experiment.plan(["--vary=pos_encoding=learned,sinusoid"])
    with pytest.raises(UserError, match="nothing to vary"):
        experiment.plan(["config/lab_char_cpu.py"])


def test_walk_plans_one_change_per_step_on_top_of_the_last():
    _, keys, runs = experiment.plan(["config/lab_char_cpu.py", "--walk=pos_encoding=rope; norm=rmsnorm",
                                     "--walk=mlp=swiglu mlp_hidden=341", "--walk=n_kv_head=2; n_kv_head=1"])
    assert keys == ["step", "change"]
    assert [r["name"] for r in runs] == ["0-baseline", "1-pos_encoding=rope", "2-norm=rmsnorm",
                                         "3-mlp=swiglu_mlp_hidden=341", "4-n_kv_head=2", "5-n_kv_head=1"]
    configs = [r["model_cfg"] for r in runs]
    assert [(c.pos_encoding, c.norm, c.mlp, c.n_kv_head) for c in configs] == [
        ("learned", "layernorm", "gelu", 0), ("rope", "layernorm", "gelu", 0), ("rope", "rmsnorm", "gelu", 0),
        ("rope", "rmsnorm", "swiglu", 0), ("rope", "rmsnorm", "swiglu", 2), ("rope", "rmsnorm", "swiglu", 1)]
    assert runs[3]["combo"] == (("step", "3"), ("change", "mlp=swiglu, mlp_hidden=341"))
    with pytest.raises(UserError, match="not both"):
        experiment.plan(["config/lab_char_cpu.py", "--vary=n_head=1,8", "--walk=norm=rmsnorm"])
    with pytest.raises(UserError, match="bad --walk step 'pos_encoding=rope,none'"):
        experiment.plan(["config/lab_char_cpu.py", "--walk=pos_encoding=rope,none"])
    # the table: training's tokens/s at the last evaluation, and the KV cache's float32 bytes per token
    rows = [{**run, "status": "ok", "seconds": 1.0, "params": 10, "source": "o",
             "records": [{"iter": 1, "train_loss": 2.0, "val_loss": 2.1, "tokens_per_s": 12345}]} for run in runs[4:]]
    table = experiment.results_table(keys, rows).splitlines()
    assert table[0].startswith("| step | change | train loss |") and "| tokens/s | params | KV bytes/token |" in table[0]
    assert "exact match" not in table[0] and "encoder-decoder" not in "\n".join(table)  # no translation, no scores
    # 2 (k, v) x 4 layers x n_kv_head x 32 (head size) x 4 bytes
    assert "| 12,345 | 10 | 2,048 |" in table[2] and "| 12,345 | 10 | 1,024 |" in table[3]


def test_experiment_py_end_to_end(tmp_path, char_data_dir, capsys, monkeypatch):
    mpl("matplotlib")
    config = tmp_path / "tiny.py"
    config.write_text(f"dataset = 'shakespeare_char'\ndata_dir = {str(char_data_dir)!r}\ndevice = 'cpu'\n"
                      "n_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\nbatch_size = 4\nmax_iters = 4\n"
                      "eval_interval = 2\neval_iters = 2\nwarmup_iters = 1\nthreads = 1\n")
    root = tmp_path / "exp"
    argv = [str(config), "--vary=pos_encoding=learned,rope", f"--out_root={root}", "--learning_rate=0.01"]
    experiment.main([*argv, "--jobs=2"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| learned") or line.startswith("| rope")]
    assert len(rows) == 2 and "train loss | val loss" in out
    for value in ("learned", "rope"):
        run = root / f"pos_encoding={value}"
        assert [r["iter"] for r in read_log(run)] == [0, 2, 4]
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
    dirs = [root / "pos_encoding=learned", root / "pos_encoding=rope"]
    assert visualize.run_labels(dirs, [visualize.run_settings(d) for d in dirs]) == (
        ["pos_encoding=learned", "pos_encoding=rope"], ["pos_encoding"])
    visualize.main(["loss", str(root / "pos_encoding=learned"), str(root / "pos_encoding=rope"),
                    f"--out={tmp_path / 'loss.png'}", "--width=800", "--height=300"])
    assert png_size(tmp_path / "loss.png") == (800, 300)
    assert "labelled by pos_encoding" in capsys.readouterr().out


def test_a_failing_run_is_reported_and_the_others_still_run(tmp_path, char_data_dir, capsys):
    argv = [f"--data_dir={char_data_dir}", "--device=cpu", "--threads=1", "--n_layer=1", "--n_head=2", "--n_embd=16",
            "--block_size=16", "--batch_size=2", "--max_iters=2", "--eval_interval=2", "--eval_iters=1",
            "--vary=dataset=shakespeare_char,missing", f"--out_root={tmp_path}", f"--plot={tmp_path / 'p.png'}"]
    with pytest.raises(SystemExit) as e:
        experiment.main(argv)
    assert e.value.code == 1
    captured = capsys.readouterr()
    assert "1 run(s) failed: dataset=missing" in captured.err
    assert "dataset 'missing' not found" in captured.err  # train.py's own error line
    assert "| shakespeare_char | " in captured.out and "| missing | failed |" in captured.out


def test_the_results_table_flags_a_run_that_saw_the_future(tmp_path):
    from model import GPTConfig

    rows = [{"combo": [("mask", mask)], "status": "ok", "seconds": 1.0, "params": 10, "source": tmp_path,
             "model_cfg": GPTConfig(mask=mask), "records": [{"iter": 1, "train_loss": loss, "val_loss": loss}]}
            for mask, loss in (("causal", 2.24), ("none", 0.06))]
    table = experiment.results_table(["mask"], rows)
    causal, leaky = table.splitlines()[2:4]
    assert "leak" not in causal and "0.0600 (leak: saw the future)" in leaky
    assert "cannot generate" in table.splitlines()[-1]
