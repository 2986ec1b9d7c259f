"""Coming from nanoGPT: its config files run unchanged, and its checkpoints (ckpt.pt, meta.pkl) load
for sample.py, --init_from=resume and export.py, without executing pickled code.

The checkpoint comes from a small copy of nanoGPT's model (same module names, nn.GELU, optional
biases, AdamW groups from configure_optimizers), trained a few steps and saved exactly as nanoGPT's
train.py saves it, with `_orig_mod.` prefixes (torch.compile) and a tensor best_val_loss.
"""

import math
import os
import pickle
import random
import shutil
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import REPO_ROOT, run_script as run
from gptkit.checkpoint import checkpoint_meta, load_checkpoint, load_trained, model_from_checkpoint
from gptkit.config import parse_args
from gptkit.data import TokenData
from gptkit.errors import UserError
from gptkit.nanogpt import read_meta_pkl
from gptkit.training import build
from model import GPTConfig
from train import TrainConfig

NANOGPT_CONFIGS = REPO_ROOT / "tests" / "fixtures" / "nanogpt_config"
DATASET = "nano_char"
BLOCK_SIZE = 16
NANO_ARGS = dict(n_layer=2, n_head=2, n_embd=32, block_size=BLOCK_SIZE, bias=False, vocab_size=None, dropout=0.0)


def make_text(n_words=4000, seed=0):
    words = "to be or not that is the question whether tis nobler in mind suffer slings arrows".split()
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(words) for _ in range(8)).capitalize() + rng.choice(".,;!?") for _ in range(n_words // 8)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# a small copy of nanoGPT's model.py: the layout and names its checkpoints have


class NanoLayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class NanoAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head = c.n_head

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class NanoMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class NanoBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = NanoLayerNorm(c.n_embd, c.bias)
        self.attn = NanoAttention(c)
        self.ln_2 = NanoLayerNorm(c.n_embd, c.bias)
        self.mlp = NanoMLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd),
            wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout),
            h=nn.ModuleList([NanoBlock(c) for _ in range(c.n_layer)]),
            ln_f=NanoLayerNorm(c.n_embd, c.bias),
        ))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        for p in self.parameters():  # random LayerNorm gains too, so a mix-up of parameters shows
            nn.init.normal_(p, mean=0.0 if p.dim() >= 2 else 1.0, std=0.02 if p.dim() >= 2 else 0.1)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1))
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)


def nano_greedy(model, ids, n):
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(ids[:, -BLOCK_SIZE:])
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    """A nanoGPT data folder (train.bin, val.bin, meta.pkl) and out_dir (ckpt.pt), and the live model."""
    root = tmp_path_factory.mktemp("nanogpt")
    text = make_text()
    # nanoGPT's data/shakespeare_char/prepare.py
    chars = sorted(set(text))
    stoi, itos = {ch: i for i, ch in enumerate(chars)}, {i: ch for i, ch in enumerate(chars)}
    n = len(text)
    data_dir = root / "data"
    (data_dir / DATASET).mkdir(parents=True)
    np.array([stoi[c] for c in text[:int(n * 0.9)]], dtype=np.uint16).tofile(data_dir / DATASET / "train.bin")
    np.array([stoi[c] for c in text[int(n * 0.9):]], dtype=np.uint16).tofile(data_dir / DATASET / "val.bin")
    with open(data_dir / DATASET / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)

    # nanoGPT's train.py: a few AdamW steps, then its checkpoint dict
    torch.manual_seed(0)
    model_args = {**NANO_ARGS, "vocab_size": len(chars)}
    model = NanoGPT(types.SimpleNamespace(**model_args))
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    tokens = torch.from_numpy(np.fromfile(data_dir / DATASET / "train.bin", dtype=np.uint16).astype(np.int64))
    for _ in range(3):
        ix = torch.randint(len(tokens) - BLOCK_SIZE, (4,))
        x = torch.stack([tokens[i:i + BLOCK_SIZE] for i in ix])
        y = torch.stack([tokens[i + 1:i + 1 + BLOCK_SIZE] for i in ix])
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    config = {"out_dir": "out-nano", "dataset": DATASET, "batch_size": 4, "block_size": BLOCK_SIZE,
              "learning_rate": 1e-3, "compile": True, "wandb_log": False, "init_from": "scratch", "bias": False}
    out_dir = root / "out"
    out_dir.mkdir()
    torch.save({
        "model": {"_orig_mod." + k: v for k, v in model.state_dict().items()},  # compiled with torch.compile
        "optimizer": optimizer.state_dict(),
        "model_args": model_args,
        "iter_num": 3,
        "best_val_loss": torch.tensor(3.5),  # nanoGPT's estimate_loss returns tensors
        "config": config,
    }, out_dir / "ckpt.pt")
    return types.SimpleNamespace(data_dir=data_dir, out_dir=out_dir, model=model, optimizer=optimizer, itos=itos,
                                 stoi=stoi)


# ----------------------------------------------------------------------------------------------
# config files


@pytest.mark.parametrize("name", ["train_shakespeare_char.py", "train_gpt2.py", "finetune_shakespeare.py",
                                  "eval_gpt2.py", "eval_gpt2_medium.py", "eval_gpt2_large.py", "eval_gpt2_xl.py"])
def test_nanogpt_config_files_parse_unchanged(name):
    model_cfg, cfg = parse_args([GPTConfig, TrainConfig], [str(NANOGPT_CONFIGS / name)], config_file=True)
    if name == "train_gpt2.py":
        assert cfg.gradient_accumulation_steps == 40 and model_cfg.block_size == 1024
        assert cfg.wandb_log and cfg.wandb_project == "owt" and cfg.wandb_run_name == "gpt2-124M"
    if name.startswith("eval_"):
        assert cfg.eval_only and cfg.init_from == name.removeprefix("eval_").removesuffix(".py").replace("_", "-")
    if name == "finetune_shakespeare.py":
        assert cfg.init_from == "gpt2-xl" and not cfg.decay_lr and not cfg.always_save_checkpoint
        # its run name is `'ft-' + str(time.time())`, code that a config file cannot run: the default stays
        assert cfg.wandb_project == "shakespeare" and cfg.wandb_run_name == TrainConfig.wandb_run_name


def test_our_finetune_config_parses():
    model_cfg, cfg = parse_args([GPTConfig, TrainConfig], [str(REPO_ROOT / "config" / "finetune_shakespeare.py")],
                                config_file=True)
    assert cfg.init_from == "gpt2" and cfg.dataset == "shakespeare"


def test_init_from_rejects_unknown_values():
    with pytest.raises(UserError, match="init_from='gpt3'.*did you mean 'gpt2'"):
        parse_args([GPTConfig, TrainConfig], ["--init_from=gpt3"])


def test_train_runs_nanogpts_shakespeare_char_config(tmp_path):
    import prepare

    prepare.prepare_text(make_text(), tmp_path / "data" / "shakespeare_char", "char", "generated")
    result = run("train.py", NANOGPT_CONFIGS / "train_shakespeare_char.py", "--device=cpu", "--compile=False",
                 "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--max_iters=3",
                 "--eval_interval=3", "--eval_iters=2", "--threads=1", "--dropout=0.0",
                 f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "best.pt").is_file()  # always_save_checkpoint=False: best.pt only


# ----------------------------------------------------------------------------------------------
# checkpoints


def test_nanogpt_checkpoint_loads_with_identical_logits(nano):
    ckpt = load_checkpoint(nano.out_dir / "ckpt.pt")  # weights_only=True: its config dict is plain data
    model = model_from_checkpoint(ckpt).eval()
    assert model.config.activation == "gelu_exact" and not model.config.bias
    ids = torch.randint(0, model.config.vocab_size, (2, BLOCK_SIZE))
    with torch.no_grad():
        ours, _ = model(ids)
        theirs, _ = nano.model(ids)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_meta_pkl_read_as_char_vocabulary(nano):
    meta = checkpoint_meta(load_checkpoint(nano.out_dir / "ckpt.pt"), nano.data_dir)
    assert meta == {"tokenizer": "char", "vocab_size": len(nano.itos), "chars": "".join(nano.itos.values())}


def test_nanogpt_data_folder_trains_without_meta_json(nano):
    data = TokenData(nano.data_dir / DATASET, BLOCK_SIZE)
    assert data.meta["tokenizer"] == "char" and data.meta["vocab_size"] == len(nano.itos)


def test_checkpoint_without_meta_pkl_is_gpt2_or_a_clear_error(nano, tmp_path):
    ckpt = load_checkpoint(nano.out_dir / "ckpt.pt")
    with pytest.raises(UserError, match="meta.pkl is missing"):
        checkpoint_meta(ckpt, tmp_path)
    ckpt["model_args"] = {**ckpt["model_args"], "vocab_size": 50304}
    assert checkpoint_meta(ckpt, tmp_path)["tokenizer"] == "gpt2"  # nanoGPT's sample.py does the same


@pytest.mark.parametrize("vocab_size, itos", [(0, {0: "a"}), (-3, {0: "a"}), (True, {0: "a"}), (2**16 + 1, {0: "a"}),
                                              ("65", {0: "a"}), (2, {0: "a", 1: "a"})])
def test_meta_pkl_with_an_impossible_vocabulary_is_refused(tmp_path, vocab_size, itos):
    """Found by tests/test_fuzz.py: vocab_size=0 gave an empty vocabulary; a character listed twice was
    trained on, and refused only by sample.py."""
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"vocab_size": vocab_size, "itos": itos, "stoi": {"a": 0}}))
    with pytest.raises(UserError, match="is not a nanoGPT char-level meta.pkl"):
        read_meta_pkl(path)


def test_meta_pkl_claiming_terabytes_is_refused(tmp_path):
    """Found by tests/test_fuzz.py: a protocol 4 frame header announcing 2**40 bytes was a MemoryError."""
    path = tmp_path / "meta.pkl"
    path.write_bytes(b"\x80\x04\x95" + (2**40 + 50).to_bytes(8, "little") + pickle.dumps({"vocab_size": 1}, 4)[11:])
    with pytest.raises(UserError, match="refused to read"):
        read_meta_pkl(path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_meta_pkl_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "x": Exploit()}))
    with pytest.raises(UserError, match="refused"):
        read_meta_pkl(path)
    assert not (tmp_path / "pwned").exists()


def test_sample_py_continues_like_nanogpt(nano):
    prompt = "To be"
    result = run("sample.py", f"--out_dir={nano.out_dir}", f"--data_dir={nano.data_dir}", f"--start={prompt}",
                 "--num_samples=1", "--max_new_tokens=12", "--temperature=0", "--device=cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    ids = torch.tensor([[nano.stoi[c] for c in prompt]])
    expected = "".join(nano.itos[i] for i in nano_greedy(nano.model, ids, 12)[0].tolist())
    assert result.stdout.rstrip("\n") == expected.rstrip("\n")


def test_resume_maps_nanogpts_optimizer_state(nano, tmp_path):
    out_dir = tmp_path / "out"
    shutil.copytree(nano.out_dir, out_dir)
    model_cfg, cfg = parse_args([GPTConfig, TrainConfig], [
        "--init_from=resume", f"--out_dir={out_dir}", f"--data_dir={nano.data_dir}", f"--dataset={DATASET}",
        f"--block_size={BLOCK_SIZE}"])
    data = TokenData(nano.data_dir / DATASET, BLOCK_SIZE)
    model, optimizer, state = build(model_cfg, cfg, data, "cpu")
    assert state.iter_num == 3 and state.best_val_loss == pytest.approx(3.5) and state.rng is None
    ours = dict(model.named_parameters())
    for name, p in nano.model.named_parameters():
        theirs = nano.optimizer.state[p]
        mine = optimizer.state[ours[name]]
        assert torch.equal(mine["exp_avg"], theirs["exp_avg"]), name
        assert torch.equal(mine["exp_avg_sq"], theirs["exp_avg_sq"]), name

    result = run("train.py", "--init_from=resume", f"--out_dir={out_dir}", f"--data_dir={nano.data_dir}",
                 f"--dataset={DATASET}", f"--block_size={BLOCK_SIZE}", "--batch_size=4", "--max_iters=5",
                 "--eval_interval=5", "--eval_iters=2", "--device=cpu", "--threads=1")
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = load_checkpoint(out_dir / "ckpt.pt")
    assert resumed["iter_num"] == 5 and resumed["meta"]["tokenizer"] == "char"
    assert math.isfinite(resumed["best_val_loss"])


def test_export_of_a_nanogpt_checkpoint(nano, tmp_path):
    transformers = pytest.importorskip("transformers", reason="export needs transformers (CI installs it)")
    import export

    dest = tmp_path / "hf"
    export.main([f"--out_dir={nano.out_dir}", f"--data_dir={nano.data_dir}", "--to=hf", str(dest)])
    hf = transformers.GPT2LMHeadModel.from_pretrained(dest).eval()
    assert hf.config.activation_function == "gelu"  # exact GELU, as nanoGPT's nn.GELU
    ids = torch.randint(0, len(nano.itos), (2, BLOCK_SIZE))
    with torch.no_grad():
        diff = (hf(ids).logits - nano.model(ids)[0]).abs().max().item()
    assert diff < 1e-4


def test_visualize_attention_draws_a_nanogpt_checkpoint(nano, tmp_path):
    """sample.py, export.py and visualize.py load a trained model through one function
    (checkpoint.load_trained), so all three take the same checkpoints, nanoGPT's included."""
    pytest.importorskip("matplotlib")
    import visualize
    from conftest import png_size

    out = tmp_path / "nano.png"
    visualize.main(["attention", f"--out_dir={nano.out_dir}", f"--data_dir={nano.data_dir}", "--text=To be",
                    f"--out={out}", "--width=500", "--height=400"])
    assert png_size(out) == (500, 400)
    maps = visualize.attention_maps(load_trained(nano.out_dir, data_dir=nano.data_dir).model,
                                    [nano.stoi[c] for c in "To be"])
    assert maps.shape == (NANO_ARGS["n_layer"], NANO_ARGS["n_head"], 5, 5)
