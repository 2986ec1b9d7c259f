"""The GPT-2 recipes: config/train_gpt2.py holds nanoGPT's published settings, and it and the four
config/eval_gpt2*.py run a couple of steps at a tiny size (the real sizes need GPUs and OpenWebText;
the eval ones load a local random GPT-2 directory instead of OpenAI's weights, which are offline here)."""

import pytest

import train
from conftest import REPO_ROOT, snapshot
from gptkit.checkpoint import load_checkpoint
from gptkit.config import parse_args, read_config_file
from gptkit.runlog import read_log
from model import GPTConfig
from test_gpt2_weights import random_hf_gpt2
from test_nanogpt import NANOGPT_CONFIGS
from train import TrainConfig

# nanoGPT's train.py defaults (karpathy/nanoGPT, train.py), on which its config/train_gpt2.py applies
NANOGPT_TRAIN_DEFAULTS = dict(
    dataset="openwebtext", gradient_accumulation_steps=40, batch_size=12, block_size=1024, n_layer=12, n_head=12,
    n_embd=768, dropout=0.0, bias=False, learning_rate=6e-4, max_iters=600000, weight_decay=1e-1, beta1=0.9,
    beta2=0.95, grad_clip=1.0, decay_lr=True, warmup_iters=2000, lr_decay_iters=600000, min_lr=6e-5,
    eval_interval=2000, eval_iters=200, log_interval=1, always_save_checkpoint=True, compile=True)
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=2", "--eval_iters=1",
        "--device=cpu", "--threads=1"]


def settings(path):
    model_cfg, cfg = parse_args([GPTConfig, TrainConfig], [str(path)], config_file=True)
    return {**vars(model_cfg), **vars(cfg)}


def test_train_gpt2_is_nanogpts_recipe():
    """Every setting nanoGPT's train_gpt2.py run has (its train.py defaults, then its config file) is ours,
    but W&B logging, which needs a package and an account (off; the config says how to turn it on)."""
    ours = settings(REPO_ROOT / "config" / "train_gpt2.py")
    theirs = {**NANOGPT_TRAIN_DEFAULTS, **read_config_file(NANOGPT_CONFIGS / "train_gpt2.py")}
    assert {k: (ours[k], v) for k, v in theirs.items() if ours[k] != v} == {"wandb_log": (False, True)}
    assert ours["parallel"] == "ddp"  # the baseline as published; --parallel=fsdp is the user's choice


def test_train_gpt2_runs_two_steps_at_a_tiny_size(tiny_train_args, tmp_path):
    data = [a for a in tiny_train_args if a.startswith(("--data_dir=", "--dataset="))]
    out_dir = tmp_path / "out"
    train.main([str(REPO_ROOT / "config" / "train_gpt2.py"), *TINY, *data, "--gradient_accumulation_steps=2",
                "--max_iters=2", "--eval_interval=2", "--warmup_iters=1", "--compile=False", f"--out_dir={out_dir}"])
    assert [r["iter"] for r in read_log(out_dir)] == [0, 2]
    ckpt = load_checkpoint(out_dir / "ckpt.pt")
    assert ckpt["iter_num"] == 2 and ckpt["model_args"]["bias"] is False
    assert ckpt["train_config"]["weight_decay"] == 0.1 and ckpt["train_config"]["lr_decay_iters"] == 600000


@pytest.fixture(scope="module")
def local_gpt2(tmp_path_factory, transformers):
    """A small random GPT-2 directory as save_pretrained writes it (OpenAI's weights are offline here). Read only."""
    path = tmp_path_factory.mktemp("gpt2-local")
    random_hf_gpt2(transformers).save_pretrained(path)
    return path


@pytest.mark.parametrize("name, weights", [("eval_gpt2.py", "gpt2"), ("eval_gpt2_medium.py", "gpt2-medium"),
                                           ("eval_gpt2_large.py", "gpt2-large"), ("eval_gpt2_xl.py", "gpt2-xl")])
def test_eval_gpt2_recipes_evaluate_a_gpt2_on_the_val_split(name, weights, local_gpt2, bpe_data_dir, tmp_path):
    config = REPO_ROOT / "config" / name
    nanogpt = settings(NANOGPT_CONFIGS / name)
    ours = settings(config)
    assert ours["init_from"] == nanogpt["init_from"] == weights and ours["eval_only"]
    assert (ours["batch_size"], ours["eval_iters"]) == (nanogpt["batch_size"], nanogpt["eval_iters"]) == (8, 500)
    assert ours["dataset"] == "openwebtext"

    before = snapshot(local_gpt2)
    out_dir = tmp_path / "out"
    train.main([str(config), f"--init_from={local_gpt2}", "--dataset=bpe", f"--data_dir={bpe_data_dir}",
                "--block_size=32", "--batch_size=2", "--eval_iters=1", "--device=cpu", "--threads=1",
                f"--out_dir={out_dir}"])
    (record,) = read_log(out_dir)
    assert record["iter"] == 0 and 0 < record["val_loss"] < 20
    assert not (out_dir / "ckpt.pt").exists()  # eval_only evaluates, never trains or saves
    assert snapshot(local_gpt2) == before  # the weights are read, never written
