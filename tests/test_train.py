"""train.py, gptkit/data.py and gptkit/checkpoint.py: the lr schedule, gradient accumulation, batches
from the real data, and train.py end to end (logs, checkpoints, exact resume, shape trace, refusals)."""

import contextlib
import dataclasses
import json
import math
import re
import shutil
import types

import numpy as np
import pytest
import torch

from conftest import main_error_line, make_model, one_error_line, random_tokens
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint
from gptkit.data import TokenData
from gptkit.errors import UserError
from gptkit.runlog import read_log
from gptkit.tokenizer import load_tokenizer
from model import GPT, GPTConfig
import prepare
import train
from train import TrainConfig, train_step

pytestmark = pytest.mark.usefixtures("one_thread")

LOG_KEYS = {"iter", "train_loss", "val_loss", "lr", "tokens", "tokens_per_s", "elapsed_s"}


def arg_value(args, key):
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{key}="))




@pytest.fixture(scope="module")
def data(char_data_dir):
    return TokenData(char_data_dir / "shakespeare_char", block_size=32)


# ---------------------------------------------------------------------------------------------
# learning-rate schedule


def test_lr_warmup_then_cosine_then_min_lr():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=100, max_iters=200)
    lrs = [train.lr_at(it, cfg, 64) for it in range(150)]
    assert 0 < lrs[0] < cfg.learning_rate  # never 0 at the first step
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # rising through warmup
    assert lrs[10] == pytest.approx(cfg.learning_rate)  # the peak at warmup's end
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:101]))  # cosine decay
    mid = (10 + 100) / 2
    assert train.lr_at(int(mid), cfg, 64) == pytest.approx((cfg.learning_rate + cfg.min_lr) / 2, rel=1e-9)
    for it in (25, 77):
        progress = (it - 10) / 90
        assert lrs[it] == pytest.approx(cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (1e-3 - 1e-4))
    assert lrs[100] == pytest.approx(cfg.min_lr)
    assert all(lr == cfg.min_lr for lr in lrs[100:])
    assert min(lrs[10:]) >= cfg.min_lr


def test_lr_decays_over_max_iters_by_default_and_is_constant_without_decay():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=0, lr_decay_iters=0, max_iters=50)
    assert train.lr_at(0, cfg, 64) == pytest.approx(1e-3)
    assert train.lr_at(50, cfg, 64) == pytest.approx(1e-4)
    assert train.lr_at(49, cfg, 64) > 1e-4
    flat = TrainConfig(learning_rate=1e-3, decay_lr=False, warmup_iters=10)
    assert {train.lr_at(it, flat, 64) for it in (0, 5, 10, 5000, 10**6)} == {1e-3}


def test_noam_schedule_is_the_transformer_papers_equation_3():
    """lr = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), steps counted from 1 (Vaswani et al. 5.3)."""
    cfg = TrainConfig(lr_schedule="noam", warmup_iters=4000, max_iters=100_000)
    lrs = {it: train.lr_at(it, cfg, 512) for it in (0, 1999, 3999, 4000, 15999, 99_999)}
    assert lrs[0] == pytest.approx(512 ** -0.5 * 1 * 4000 ** -1.5) and lrs[0] > 0
    assert lrs[1999] == pytest.approx(lrs[3999] / 2)  # linear warmup: half the steps, half the rate
    assert lrs[3999] == pytest.approx(512 ** -0.5 * 4000 ** -0.5)  # the peak, 6.99e-4, at step = warmup
    assert lrs[3999] == pytest.approx(6.9877e-4, rel=1e-4)
    assert lrs[15999] == pytest.approx(lrs[3999] / 2)  # then 1/sqrt(step): 4x the steps, half the rate
    assert max(lrs.values()) == lrs[3999]
    doubled = TrainConfig(lr_schedule="noam", warmup_iters=4000, noam_factor=2.0)
    assert train.lr_at(77, doubled, 512) == pytest.approx(2 * train.lr_at(77, cfg, 512))


def test_label_smoothing_is_szegedys_mixture_and_evaluation_stays_plain_cross_entropy(one_thread):
    """(1 - e) * -log p(target) + e * mean over the vocabulary of -log p(v), Szegedy et al. 2016, eq. in 7."""
    model = make_model().eval()
    x, y = random_tokens((2, 16)), random_tokens((2, 16), seed=1)
    logits, plain = model(x, y)
    _, smoothed = model(x, y, label_smoothing=0.1)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, vocab)
    nll = -logp.gather(-1, y[..., None]).mean()
    uniform = -logp.mean()
    torch.testing.assert_close(smoothed, 0.9 * nll + 0.1 * uniform)
    torch.testing.assert_close(plain, nll)
    # a step on the smoothed objective is a different step; evaluation reports the plain loss either way
    cfg = TrainConfig(batch_size=2, label_smoothing=0.1, grad_clip=0.0)
    data = types.SimpleNamespace(random_starts=lambda split, shape, g: torch.zeros(shape, dtype=torch.long),
                                 get_batch=lambda split, n, g, starts=None: (x, y))
    grads = {}
    for e in (0.0, 0.1):
        m = make_model()
        optimizer = RecordGrads(m)
        train.train_step(m, optimizer, torch.amp.GradScaler(enabled=False), data,
                         dataclasses.replace(cfg, label_smoothing=e), contextlib.nullcontext(), None)
        grads[e] = optimizer.grads["transformer.wte.weight"]  # the head, tied to the embedding
    assert not torch.allclose(grads[0.0], grads[0.1])
    losses = train.evaluate(model, data, dataclasses.replace(cfg, eval_iters=1), contextlib.nullcontext())
    assert losses == {"train": pytest.approx(nll.item()), "val": pytest.approx(nll.item())}


# ---------------------------------------------------------------------------------------------
# gradient accumulation


class RecordGrads:
    """Stands in for the optimizer in train.train_step: remembers the gradients it was given."""

    def __init__(self, model):
        self.named = list(model.named_parameters())
        self.param_groups = [{"params": [p for _, p in self.named]}]
        self.grads = None

    def step(self):
        self.grads = {name: p.grad.detach().clone() for name, p in self.named}

    def zero_grad(self, set_to_none=True):
        for _, p in self.named:
            p.grad = None


def accumulated_grads(data, steps, batch_size):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=2, n_embd=32))
    optimizer = RecordGrads(model)
    cfg = TrainConfig(batch_size=batch_size, gradient_accumulation_steps=steps, grad_clip=0.0)
    scaler = torch.amp.GradScaler(enabled=False)
    generator = torch.Generator().manual_seed(42)
    loss = train_step(model, optimizer, scaler, data, cfg, contextlib.nullcontext(), generator)
    assert torch.isfinite(loss)
    return optimizer.grads


def test_k_micro_batches_give_the_gradient_of_one_k_times_larger_batch(data):
    k, b = 4, 3
    # both draw the same k*b windows from the same seed, grouped differently
    starts_k = data.random_starts("train", (k, b), torch.Generator().manual_seed(42))
    starts_1 = data.random_starts("train", (1, k * b), torch.Generator().manual_seed(42))
    assert torch.equal(starts_k.flatten(), starts_1.flatten())
    assert len(set(starts_k.flatten().tolist())) == k * b

    grads_k = accumulated_grads(data, steps=k, batch_size=b)
    grads_1 = accumulated_grads(data, steps=1, batch_size=k * b)
    assert grads_k.keys() == grads_1.keys()
    for name in grads_k:
        assert grads_1[name].abs().max() > 0, name
        torch.testing.assert_close(grads_k[name], grads_1[name], rtol=0, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------
# batches from the real data


def test_get_batch_windows_of_the_real_text(data, char_data_dir, shakespeare_text_session):
    meta = json.loads((char_data_dir / "shakespeare_char" / "meta.json").read_text())
    tokenizer = load_tokenizer(meta)
    train_tokens = np.fromfile(char_data_dir / "shakespeare_char" / "train.bin", dtype=np.uint16)
    x, y = data.get_batch("train", 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 32) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    assert 0 <= int(x.min()) and int(torch.maximum(x, y).max()) < meta["vocab_size"]
    for row_x, row_y in zip(x, y):
        text = tokenizer.decode(row_x.tolist() + row_y[-1:].tolist())
        start = shakespeare_text_session.find(text)
        assert start >= 0  # a real window of the text
        np.testing.assert_array_equal(train_tokens[start:start + 33], row_x.tolist() + row_y[-1:].tolist())


def test_get_batch_at_given_starts_and_at_the_split_end(data, char_data_dir):
    val_tokens = np.fromfile(char_data_dir / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64)
    last = len(val_tokens) - 33
    x, y = data.get_batch("val", 2, None, starts=torch.tensor([0, last]))
    np.testing.assert_array_equal(x.numpy(), [val_tokens[:32], val_tokens[last:last + 32]])
    np.testing.assert_array_equal(y.numpy(), [val_tokens[1:33], val_tokens[last + 1:]])


def test_same_seed_same_batch_different_seed_different(data):
    a = data.get_batch("train", 8, torch.Generator().manual_seed(5))
    b = data.get_batch("train", 8, torch.Generator().manual_seed(5))
    c = data.get_batch("train", 8, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_random_windows_stay_inside_the_split(data):
    starts = data.random_starts("val", (20000,), torch.Generator().manual_seed(0))
    n = data.num_tokens("val")
    assert int(starts.min()) >= 0 and int(starts.max()) + 32 + 1 <= n
    assert int(starts.max()) > n - 32 - 1 - n // 100  # reaches the end of the split


def test_sequential_batches_cover_the_split_once(data, char_data_dir):
    val_tokens = torch.from_numpy(np.fromfile(char_data_dir / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64))
    batches = list(data.sequential_batches("val", 64))
    assert all(x.shape[0] <= 64 for x, _ in batches) and all(x.shape[0] == 64 for x, _ in batches[:-1])
    xs = torch.cat([x for x, _ in batches]).flatten()
    ys = torch.cat([y for _, y in batches]).flatten()
    n = len(xs)
    assert torch.equal(xs, val_tokens[:n])  # consecutive, non-overlapping windows from the start
    assert torch.equal(ys, val_tokens[1:n + 1])
    assert len(val_tokens) - n <= 32  # only a tail shorter than one window is left out


def test_missing_split_and_short_split_are_clear_errors(tmp_path, char_data_dir):
    with pytest.raises(UserError, match="prepare.py"):
        TokenData(tmp_path / "nothing_here", block_size=8)
    copy = tmp_path / "copy"
    shutil.copytree(char_data_dir / "shakespeare_char", copy)
    with pytest.raises(UserError, match="block_size"):
        TokenData(copy, block_size=10**6)
    (copy / "val.bin").unlink()
    with pytest.raises(UserError, match="prepare.py"):
        TokenData(copy, block_size=8)


@pytest.fixture
def char_copy(tmp_path, char_data_dir):
    """A copy of the prepared char dataset to damage: (folder, its meta)."""
    copy = tmp_path / "data" / "shakespeare_char"
    shutil.copytree(char_data_dir / "shakespeare_char", copy)
    return copy, json.loads((copy / "meta.json").read_text())


def set_token(path, index, value):
    tokens = np.fromfile(path, dtype=np.uint16)
    tokens[index] = value
    tokens.tofile(path)


def test_data_that_does_not_fit_its_meta_is_refused_before_training(char_copy, monkeypatch):
    """Each message names the file, what is wrong, and the prepare.py command that rebuilds it."""
    copy, meta = char_copy
    rebuild = "rebuild it with: python3 prepare.py shakespeare_char --data_dir="
    vocab = meta["vocab_size"]
    original = {name: (copy / name).read_bytes() for name in ("train.bin", "val.bin")}
    damages = [  # (file, damage, phrase of the error)
        ("val.bin", lambda p: set_token(p, 1234, vocab), f"holds token id {vocab} (token 1,234) but meta.json's "
                                                          f"vocabulary has {vocab} ids (0 to {vocab - 1})"),
        ("train.bin", lambda p: p.write_bytes(p.read_bytes() + b"x"), "bytes, not a whole number of 2-byte token ids"),
        ("val.bin", lambda p: p.write_bytes(b""), "is empty"),
        ("train.bin", lambda p: p.write_bytes(p.read_bytes()[:-20]),
         f"holds {meta['train_tokens'] - 10:,} tokens but meta.json records {meta['train_tokens']:,}"),
    ]
    for name, damage, phrase in damages:
        damage(copy / name)
        with pytest.raises(UserError) as e:
            TokenData(copy, block_size=32)
        assert str(copy / name) in str(e.value) and phrase in str(e.value) and rebuild in str(e.value), str(e.value)
        (copy / name).write_bytes(original[name])
    TokenData(copy, block_size=32)  # whole again

    # a split too large for memory is memmapped, not scanned: prepare.py's recorded largest id is checked
    monkeypatch.setattr("gptkit.data.IN_MEMORY_LIMIT", 0)
    (copy / "meta.json").write_text(json.dumps({**meta, "train_max_id": vocab + 5}))
    with pytest.raises(UserError, match=f"meta.json records {vocab + 5} as the largest token id in train.bin"):
        TokenData(copy, block_size=32)


def test_a_memmapped_split_without_a_recorded_largest_id_is_checked_batch_by_batch(char_copy, monkeypatch):
    """A nanoGPT-prepared folder records nothing: an id beyond the vocabulary stops at the batch holding
    it, with one line, instead of an embedding error (on CUDA, a device-side assert)."""
    copy, meta = char_copy
    monkeypatch.setattr("gptkit.data.IN_MEMORY_LIMIT", 0)
    (copy / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if not k.endswith("_max_id")}))
    tokens = np.full(np.fromfile(copy / "train.bin", dtype=np.uint16).shape, meta["vocab_size"], dtype=np.uint16)
    tokens.tofile(copy / "train.bin")
    data = TokenData(copy, block_size=32)
    with pytest.raises(UserError, match=f"train.bin holds token id {meta['vocab_size']} but .* has {meta['vocab_size']} ids"):
        data.get_batch("train", 4, torch.Generator().manual_seed(0))
    data.get_batch("val", 4, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("meta_edit, phrase", [
    (dict(vocab_size=0), "vocab_size=0; expected a whole number from 1 to 65536"),
    (dict(vocab_size=True), "vocab_size=True; expected a whole number from 1 to 65536"),
    (dict(vocab_size=70000), "vocab_size=70000; expected a whole number from 1 to 65536"),
    (dict(chars="abc"), "'chars' holds 3 characters but vocab_size is"),
    (dict(vocab_size=3, chars="aba", train_max_id=2, val_max_id=2), "'chars' lists a character twice"),
    (dict(train_tokens="many"), "train_tokens='many'; expected a count"),
    (dict(vocab_size=0, source="1" * 400), "vocab_size=0; expected"),  # the rebuild command stats source
    (dict(shards={"train": ["../../etc/passwd"], "val": []}), "shards must list .bin file names in its folder"),
], ids=["zero-vocab", "bool-vocab", "vocab-past-uint16", "chars-vs-vocab", "chars-twice", "count-not-a-number",
        "source-too-long-a-name", "shard-outside"])
def test_meta_json_that_cannot_describe_the_data_is_refused(char_copy, meta_edit, phrase):
    copy, meta = char_copy
    (copy / "meta.json").write_text(json.dumps({**meta, **meta_edit}))
    with pytest.raises(UserError, match="rebuild it with: python3 prepare.py shakespeare_char") as e:
        TokenData(copy, block_size=32)
    assert phrase in str(e.value) and str(copy / "meta.json") in str(e.value)


# ---------------------------------------------------------------------------------------------
# train.py end to end (the tiny run from conftest)


def test_train_writes_checkpoints_and_a_log(tiny_run, tiny_train_args):
    out = tiny_run.out_dir
    assert tiny_run.result.returncode == 0
    assert (out / "ckpt.pt").is_file() and (out / "best.pt").is_file()
    assert "Traceback" not in tiny_run.result.stderr
    log = read_log(out)
    interval, max_iters = int(arg_value(tiny_train_args, "eval_interval")), int(arg_value(tiny_train_args, "max_iters"))
    assert [r["iter"] for r in log] == list(range(0, max_iters + 1, interval))
    for record in log:
        assert set(record) == LOG_KEYS
        assert all(math.isfinite(record[k]) for k in ("train_loss", "val_loss", "lr"))
    tokens_per_iter = int(arg_value(tiny_train_args, "batch_size")) * int(arg_value(tiny_train_args, "block_size"))
    assert [r["tokens"] for r in log] == [r["iter"] * tokens_per_iter for r in log]
    assert log[0]["tokens_per_s"] is None  # nothing timed before the first step
    assert all(r["tokens_per_s"] > 0 for r in log[1:])
    assert log[0]["val_loss"] == pytest.approx(math.log(65), abs=0.3)  # starts near uniform
    assert all(r["val_loss"] < log[0]["val_loss"] for r in log[1:])  # and learns
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3
    assert log[-1]["val_loss"] == min(r["val_loss"] for r in log)


def test_checkpoint_is_plain_data_and_reproduces_the_logged_loss(tiny_run, tiny_train_args, char_data_dir):
    ckpt = torch.load(tiny_run.out_dir / "ckpt.pt", map_location="cpu", weights_only=True)
    assert ckpt["iter_num"] == int(arg_value(tiny_train_args, "max_iters"))
    assert {"model", "model_args", "optimizer", "meta", "rng", "best_val_loss", "train_config"} <= set(ckpt)
    assert ckpt["meta"]["tokenizer"] == "char" and ckpt["meta"]["vocab_size"] == 65
    model = model_from_checkpoint(ckpt)
    assert model.lm_head.weight is model.transformer.wte.weight  # tying survives the round trip
    assert model.config.n_layer == 2 and model.config.vocab_size == 65

    # evaluating the checkpoint as train.py does gives exactly the val loss logged at its iteration
    cfg = TrainConfig(**ckpt["train_config"])
    losses = train.evaluate(model, TokenData(char_data_dir / "shakespeare_char", 32), cfg, contextlib.nullcontext())
    log = {r["iter"]: r for r in read_log(tiny_run.out_dir)}
    assert losses["val"] == log[ckpt["iter_num"]]["val_loss"]
    assert losses["train"] == log[ckpt["iter_num"]]["train_loss"]

    best = load_checkpoint(tiny_run.out_dir / "best.pt")
    assert best["best_val_loss"] == min(r["val_loss"] for r in log.values())
    assert log[best["iter_num"]]["val_loss"] == best["best_val_loss"]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_is_exactly_an_uninterrupted_run(optimizer, tmp_path, tiny_train_args, cli):
    """20 iterations, then resume to 40 in a fresh process, equals 40 straight: same logged losses, same weights."""
    args = [a for a in tiny_train_args if not a.startswith("--max_iters=")]
    args += [f"--optimizer={optimizer}", "--dropout=0.1", "--gradient_accumulation_steps=2", "--lr_decay_iters=40",
             "--eval_sample_tokens=30"]  # RNG, schedule and the samples in play
    split, straight = tmp_path / "split", tmp_path / "straight"
    train.main([*args, "--max_iters=20", f"--out_dir={split}"])  # in-process: only the resume needs a fresh one
    assert load_checkpoint(split / "ckpt.pt")["iter_num"] == 20
    resumed = cli("train.py", *args, "--max_iters=40", f"--out_dir={split}", "--init_from=resume")
    assert resumed.returncode == 0, resumed.stderr
    train.main([*args, "--max_iters=40", f"--out_dir={straight}"])

    log_split, log_whole = read_log(split), read_log(straight)
    assert [r["iter"] for r in log_split] == [r["iter"] for r in log_whole] == [0, 10, 20, 30, 40]
    for a, b in zip(log_split, log_whole):
        assert (a["iter"], a["train_loss"], a["val_loss"], a["lr"]) == (b["iter"], b["train_loss"], b["val_loss"], b["lr"])
    state_split = load_checkpoint(split / "ckpt.pt")["model"]
    state_whole = load_checkpoint(straight / "ckpt.pt")["model"]
    assert all(torch.equal(state_split[k], state_whole[k]) for k in state_whole)
    # the samples of the resumed run: those past the checkpoint were dropped and made again, identically
    assert (split / "samples.txt").read_text() == (straight / "samples.txt").read_text()


def test_a_sample_at_each_evaluation_shows_the_text_and_changes_no_loss(tmp_path, tiny_train_args, capsys):
    args = [a for a in tiny_train_args if not a.startswith("--max_iters=")] + ["--max_iters=20"]
    train.main([*args, f"--out_dir={tmp_path / 'plain'}"])
    train.main([*args, f"--out_dir={tmp_path / 'sampled'}", "--eval_sample_tokens=40", "--eval_sample_start=ROMEO:"])
    assert "=== iter 20, val loss" in capsys.readouterr().out  # printed as training goes
    timing = ("elapsed_s", "tokens_per_s")
    same = [[{k: v for k, v in r.items() if k not in timing} for r in read_log(tmp_path / run)]
            for run in ("plain", "sampled")]
    assert same[0] == same[1]
    text = (tmp_path / "sampled" / "samples.txt").read_text()
    parts = re.split(r"^=== iter (\d+), val loss ([\d.]+) ===\n", text, flags=re.M)[1:]
    blocks = [(i, v, body.removesuffix("\n\n")) for i, v, body in zip(parts[0::3], parts[1::3], parts[2::3])]
    log = read_log(tmp_path / "sampled")
    assert [(int(i), float(v)) for i, v, _ in blocks] == [(r["iter"], round(r["val_loss"], 4)) for r in log]
    assert all(sample.startswith("ROMEO:") and len(sample) == len("ROMEO:") + 40 for *_, sample in blocks)
    assert len({sample for *_, sample in blocks}) == len(blocks)  # the model changed between evaluations


def test_eval_first_false_skips_only_the_evaluation_before_training(tmp_path, tiny_train_args):
    args = [a for a in tiny_train_args if not a.startswith(("--max_iters=", "--eval_interval="))]
    train.main([*args, "--max_iters=6", "--eval_interval=3", "--eval_first=False", f"--out_dir={tmp_path}"])
    assert [r["iter"] for r in read_log(tmp_path)] == [3, 6]
    assert load_checkpoint(tmp_path / "best.pt")["iter_num"] in (3, 6)


def test_trace_shapes_prints_the_forward_pass_and_writes_nothing(capsys, tmp_path, tiny_train_args):
    out_dir = tmp_path / "never"
    assert train.main([*tiny_train_args, f"--out_dir={out_dir}", "--trace_shapes=True"]) is None  # exit 0
    stdout = capsys.readouterr().out
    shapes = dict(re.findall(r"^(\S+)\s+(\([\d, ]*\))", stdout, flags=re.MULTILINE))
    B, T, C, nh, V = 2, 32, 32, 2, 65
    expected = {
        "idx": (B, T), "tok_emb": (B, T, C), "h.0.attn.q": (B, nh, T, C // nh),
        "h.0.attn.scores": (B, nh, T, T), "h.0.attn.softmax": (B, nh, T, T),
        "logits": (B, T, V), "loss": (),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == str(shape), (name, stdout)
    assert not out_dir.exists()


def test_scratch_run_refuses_to_replace_a_checkpoint(tmp_path, tiny_run, tiny_train_args, cli):
    out_dir = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out_dir)
    before = (out_dir / "ckpt.pt").read_bytes()
    args = [a for a in tiny_train_args if not a.startswith("--max_iters=")]
    refused = cli("train.py", *args, "--max_iters=2", f"--out_dir={out_dir}")
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert "--overwrite=True" in line and "resume" in line
    assert (out_dir / "ckpt.pt").read_bytes() == before
    assert read_log(out_dir) == read_log(tiny_run.out_dir)

    train.main([*args, "--max_iters=2", "--eval_interval=2", f"--out_dir={out_dir}", "--overwrite=True"])
    assert load_checkpoint(out_dir / "ckpt.pt")["iter_num"] == 2
    assert [r["iter"] for r in read_log(out_dir)] == [0, 2]


def test_missing_dataset_says_how_to_prepare_it(capsys, tmp_path, tiny_train_args):
    line = main_error_line(capsys, train, [*tiny_train_args, f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'o'}"])
    assert "prepare.py" in line and "shakespeare_char" in line


def test_unknown_config_file_and_bad_overrides_are_one_line_errors(capsys, tmp_path, tiny_train_args):
    line = main_error_line(capsys, train, [str(tmp_path / "config" / "nope.py"), f"--out_dir={tmp_path}"])
    assert "nope.py" in line and "not found" in line
    line = main_error_line(capsys, train, [*tiny_train_args, "--n_layr=3", f"--out_dir={tmp_path}"])
    assert "did you mean 'n_layer'" in line
    line = main_error_line(capsys, train, [*tiny_train_args, "--max_iters=ten", f"--out_dir={tmp_path}"])
    assert "max_iters" in line and "int" in line
    line = main_error_line(capsys, train, [*tiny_train_args, "max_iters=10", f"--out_dir={tmp_path}"])
    assert "--key=value" in line
    assert not any(tmp_path.iterdir())  # nothing was written


def damage_optimizer_shapes(ckpt):
    ckpt["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3, 3)


def state_not_a_dict(ckpt):
    ckpt["optimizer"]["state"][0] = torch.zeros(0)  # empty: torch itself loads it


def state_of_no_parameter(ckpt):
    ckpt["optimizer"]["state"]["lm_head"] = {"exp_avg": torch.zeros(2)}


def scramble_rng(ckpt):
    ckpt["rng"]["data"] = torch.zeros(7, dtype=torch.uint8)


@pytest.mark.parametrize("damage, extra, phrase", [
    (None, "--optimizer=muon", "optimizer=muon, but the checkpoint was trained with optimizer=adamw, whose state "
                               "does not fit it; resume with --optimizer=adamw"),
    (damage_optimizer_shapes, None, "the checkpoint's optimizer state does not fit the model (its exp_avg for a "),
    (state_not_a_dict, None, "does not fit the model (its state for a (65, 32) parameter is a Tensor, not a dict)"),
    (state_of_no_parameter, None, "does not fit the model (it holds state for parameters the model does not have)"),
    (lambda ckpt: ckpt.pop("optimizer"), None, "has no optimizer: it can be sampled from, not resumed"),
    (lambda ckpt: ckpt.pop("best_val_loss"), None, "has no best_val_loss: it can be sampled from, not resumed"),
    (scramble_rng, None, "the checkpoint's random state is damaged"),
], ids=["other-optimizer", "misshapen-state", "state-not-a-dict", "state-of-no-parameter", "no-optimizer",
        "no-best-val-loss", "bad-rng"])
def test_resume_from_a_checkpoint_it_cannot_continue_is_one_line_and_changes_nothing(capsys, tmp_path, tiny_run,
                                                                                    tiny_train_args, damage, extra,
                                                                                    phrase):
    out_dir = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out_dir)
    if damage is not None:
        ckpt = torch.load(out_dir / "ckpt.pt", weights_only=True)
        damage(ckpt)
        torch.save(ckpt, out_dir / "ckpt.pt")
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    args = [*tiny_train_args, f"--out_dir={out_dir}", "--init_from=resume", "--max_iters=40", *filter(None, [extra])]
    assert phrase in main_error_line(capsys, train, args)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before


@pytest.fixture
def resumable(tmp_path, tiny_run, tiny_train_args):
    """A copy of the tiny run to resume, and train.py arguments for it: (out_dir, args)."""
    out_dir = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out_dir)
    return out_dir, [*tiny_train_args, f"--out_dir={out_dir}", "--init_from=resume", "--max_iters=40"]


def test_resume_refuses_model_settings_that_contradict_the_checkpoint(capsys, tmp_path, resumable):
    """From the command line or from the config file: both say what the user asked for."""
    out_dir, args = resumable
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    line = main_error_line(capsys, train, [*args, "--n_layer=3"])
    assert "n_layer=3 contradicts the checkpoint, whose model has n_layer=2; a resumed run keeps its " \
           "checkpoint's model" in line
    config = tmp_path / "rope.py"
    config.write_text("pos_encoding = 'rope'\nlearning_rate = 1e-3\n")
    line = main_error_line(capsys, train, [str(config), *args])
    assert "pos_encoding='rope' contradicts the checkpoint, whose model has pos_encoding='learned'" in line
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    train.main([*args, "--n_layer=2", "--max_iters=31"])  # agreeing with the checkpoint is fine


def test_resume_applies_a_new_dropout_and_says_so(capsys, resumable):
    """dropout (and explicit_attention) change how the run trains, not the weights: as in nanoGPT, a
    resumed run takes the new value, and says so on stderr."""
    out_dir, args = resumable
    capsys.readouterr()
    best = load_checkpoint(out_dir / "ckpt.pt")["best_val_loss"]
    train.main([*args, "--dropout=0.1", "--explicit_attention=True"])
    captured = capsys.readouterr()
    assert "resuming with dropout=0.1 (the checkpoint had 0.0), explicit_attention=True (the checkpoint had False)" \
        in captured.err
    # where it starts, and, at the end, wall time beside the overall rate, the training-only rate named as such
    assert f"resuming from iter 30 of {out_dir / 'ckpt.pt'} (best val loss {best:.4f})" in captured.err
    assert re.fullmatch(r"done: iter 40, best val loss \d\.\d{4}, \d+\.\d s wall, [\d,]+ tokens/s overall; "
                        r"[\d,]+ tokens/s while training; checkpoints in .+/", captured.out.splitlines()[-1])
    saved = load_checkpoint(out_dir / "ckpt.pt")["model_args"]
    assert saved["dropout"] == 0.1 and saved["explicit_attention"] is True and saved["n_layer"] == 2


def test_resume_without_a_checkpoint_is_a_clear_error(capsys, tmp_path, tiny_train_args):
    line = main_error_line(capsys, train, [*tiny_train_args, f"--out_dir={tmp_path}", "--init_from=resume"])
    assert "no checkpoint" in line and str(tmp_path) in line


def test_the_progress_bar_times_steps_only_not_evaluations(tiny_train_args, tmp_path, monkeypatch):
    """Its ETA once counted the iteration-0 evaluation as a step (`1/800 [00:12<2:47:53, 12.61s/it]`). On a
    clock where a step takes 1 s and an evaluation 100 s, the bar's time is the steps' alone."""
    import tqdm.std

    clock = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    bars = []

    class Recorded(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    step, evaluate = train.train_step, train.evaluate

    def one_second_step(*args, **kwargs):
        clock[0] += 1.0
        return step(*args, **kwargs)

    def long_evaluation(*args, **kwargs):
        clock[0] += 100.0
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "tqdm", Recorded)
    monkeypatch.setattr(train, "train_step", one_second_step)
    monkeypatch.setattr(train, "evaluate", long_evaluation)
    train.main([*tiny_train_args, f"--out_dir={tmp_path}"])  # 30 steps, 4 evaluations
    (bar,) = [b for b in bars if b.total == 30]
    assert bar.n == 30
    assert 29 <= bar.last_print_t - bar.start_t <= 31  # 30 s of steps; the 400 s of evaluations left out


# a text of our own with no capital O, so config/shakespeare_char_cpu.py's eval_sample_start 'ROMEO:\n' cannot be
# written in its char-level vocabulary
GERMAN = """Am Morgen lag Nebel über dem Fluss, und die Fähre wartete still am Steg.
Der Fährmann trank seinen Kaffee und zählte die Möwen, die über den Booten kreisten.
Gegen neun kamen die ersten Leute: eine Bäckerin mit zwei Körben, ein Junge mit seinem Fahrrad.
Sie sprachen vom Wetter, vom Markt und von der Brücke, die man seit Jahren bauen wollte.
"Nächstes Jahr", sagte der Fährmann, und alle lachten, weil er das jedes Jahr sagte.
Erst am Abend kam Regen auf. Er sagte: "Morgen wieder."
"""


def test_own_text_without_the_configs_sample_start_trains_with_the_texts_own_start(tmp_path, capsys):
    """docs/data.md's recipe `train.py config/shakespeare_char_cpu.py --dataset=mydata` on anyone's text: the
    config's eval_sample_start is replaced by the start of the text, in one line naming the setting."""
    assert set("ROMEO:\n") - set(GERMAN) == {"O"}
    (tmp_path / "mein.txt").write_text(GERMAN * 6, encoding="utf-8")
    prepare.main(["text", f"--input={tmp_path / 'mein.txt'}", "--name=meintext", f"--data_dir={tmp_path / 'data'}"])
    out_dir = tmp_path / "out"
    train.main(["config/shakespeare_char_cpu.py", "--dataset=meintext", f"--data_dir={tmp_path / 'data'}",
                f"--out_dir={out_dir}", "--max_iters=2", "--eval_interval=2", "--eval_sample_tokens=8", "--n_layer=1",
                "--threads=1"])
    notes = [line for line in capsys.readouterr().err.splitlines() if "eval_sample_start" in line]
    assert notes == ["note: eval_sample_start='ROMEO:\\n' cannot be encoded in dataset 'meintext' (1 character(s) "
                     "not in the char-level vocabulary: 'O'); the evaluation samples start as its training text does "
                     "instead: 'Am Morgen lag Nebel über dem '"]
    samples = (out_dir / "samples.txt").read_text(encoding="utf-8")
    assert samples.startswith("=== iter 0, val loss ") and "\nAm Morgen lag Nebel über dem " in samples
