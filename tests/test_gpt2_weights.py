"""GPT-2 weights in and out through Hugging Face transformers, tested offline on random-weight models.

Hugging Face GPT2LMHeadModel -> our GPT: identical logits; our GPT -> export.py -> GPT2LMHeadModel:
identical logits; --init_from=DIR fine-tunes a local GPT-2 directory; offline with nothing cached is
one clear line; without transformers, the core still imports and the feature says how to install it.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

import export
from conftest import REPO_ROOT
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from gptkit.errors import UserError
from gptkit.gpt2_weights import check_exportable, export_hf, load_hf_gpt2, model_from_hf
from model import GPT, GPTConfig

TINY = dict(n_positions=64, n_embd=32, n_layer=2, n_head=2)


def run(*args, env=None, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def random_hf_gpt2(transformers, vocab_size=50257, **kwargs):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab_size, **{**TINY, **kwargs})
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random LayerNorm gains and biases too, so that every tensor matters
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("ln_1.weight") else 0.0))
    return model


def max_logit_diff(hf, ours, vocab_size, T=16):
    ids = torch.randint(0, vocab_size, (2, T))
    with torch.no_grad():
        theirs = hf(ids).logits
        mine, _ = ours.eval()(ids)
    return (theirs - mine[..., :theirs.size(-1)]).abs().max().item()


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_hf_gpt2_to_ours_gives_identical_logits(transformers, activation):
    hf = random_hf_gpt2(transformers, activation_function=activation)
    ours = model_from_hf(hf)
    assert ours.config.vocab_size == 50257 and ours.config.block_size == 64
    assert ours.config.activation == {"gelu_new": "gelu", "gelu": "gelu_exact"}[activation]
    assert ours.lm_head.weight is ours.transformer.wte.weight  # still tied
    assert max_logit_diff(hf, ours, 50257) < 1e-4


def test_local_directory_with_safetensors_or_bin(transformers, tmp_path):
    hf = random_hf_gpt2(transformers)
    hf.save_pretrained(tmp_path / "st")
    assert (tmp_path / "st" / "model.safetensors").is_file()
    assert max_logit_diff(hf, load_hf_gpt2(str(tmp_path / "st")), 50257) < 1e-4
    (tmp_path / "bin").mkdir()
    hf.config.save_pretrained(tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    assert max_logit_diff(hf, load_hf_gpt2(str(tmp_path / "bin")), 50257) < 1e-4


@pytest.mark.parametrize("variant, meta", [
    (dict(vocab_size=65), {"tokenizer": "char", "vocab_size": 65}),
    (dict(vocab_size=50304), {"tokenizer": "gpt2", "vocab_size": 50257}),  # padded: exported as 50257
    (dict(vocab_size=65, bias=False), {"tokenizer": "char", "vocab_size": 65}),  # zero biases
    (dict(vocab_size=65, tie_weights=False), {"tokenizer": "char", "vocab_size": 65}),
    (dict(vocab_size=65, activation="gelu_exact"), {"tokenizer": "char", "vocab_size": 65}),
])
def test_export_round_trip_gives_identical_logits(transformers, tmp_path, variant, meta):
    torch.manual_seed(0)
    ours = GPT(GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32, **variant))
    with torch.no_grad():
        for p in ours.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    files = export_hf(ours, tmp_path / "hf", meta)
    assert {"config.json", "model.safetensors"} <= set(files)
    # n_ctx as in OpenAI's configs: llama.cpp's convert_hf_to_gguf.py stops with KeyError: 'n_ctx' without it
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["n_ctx"] == 32
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.vocab_size == meta["vocab_size"] and hf.config.n_positions == 32
    assert max_logit_diff(hf, ours, meta["vocab_size"]) < 1e-4
    if meta["tokenizer"] == "gpt2" and "vocab.json" in files:  # tokenizer files, when the BPE files are local
        tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
        assert tok.encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("variant", [dict(pos_encoding="rope"), dict(norm="rmsnorm"), dict(activation="relu2"),
                                     dict(qk_norm=True), dict(mask="none"), dict(attn_score="dot_then_square"),
                                     dict(residual=False), dict(mlp="swiglu"), dict(n_kv_head=3),
                                     dict(mlp_hidden=100), dict(norm_eps=1e-6)])
def test_export_refuses_what_gpt2_cannot_express(variant):
    key = next(iter(variant))
    with pytest.raises(UserError, match=f"cannot be exported as GPT-2.*{key}="):
        check_exportable(GPTConfig(**variant))


def test_export_cli_refusal_is_one_line(transformers, tmp_path, capsys):
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8, pos_encoding="rope"))
    save_checkpoint(tmp_path / "out" / "ckpt.pt", model, meta={"tokenizer": "char", "vocab_size": 11,
                                                               "chars": "abcdefghijk"})
    with pytest.raises(SystemExit) as exit_info:
        export.main([f"--out_dir={tmp_path / 'out'}", "--to=hf", str(tmp_path / "hf")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: this model cannot be exported as GPT-2") and "rope" in err[0]
    assert not (tmp_path / "hf").exists()


def test_offline_with_nothing_cached_is_one_clear_line(transformers, bpe_data_dir, tmp_path):
    result = run("train.py", "--init_from=gpt2", "--dataset=bpe", f"--data_dir={bpe_data_dir}", "--block_size=32",
                 "--device=cpu", f"--out_dir={tmp_path / 'out'}", env={"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: GPT-2 weights 'gpt2' are not in the local Hugging Face cache and cannot be downloaded "
                     "(offline); download them once online, or pass --init_from=/path/to/local/gpt2-dir"], lines


def train_in_process(*args):
    """train.py's main in this process (no second interpreter importing transformers: faster)."""
    import train

    threads = torch.get_num_threads()
    try:
        train.main([*args, "--threads=1"])
    finally:
        torch.set_num_threads(threads)


def test_finetune_from_a_local_gpt2_directory(transformers, bpe_data_dir, tmp_path):
    hf = random_hf_gpt2(transformers)
    hf.save_pretrained(tmp_path / "gpt2-local")
    out_dir = tmp_path / "out"
    common = ["--dataset=bpe", f"--data_dir={bpe_data_dir}", "--device=cpu", f"--out_dir={out_dir}",
              "--block_size=32", "--batch_size=2", "--eval_interval=2", "--eval_iters=1", "--learning_rate=1e-4"]
    # max_iters=0: evaluate and checkpoint the loaded weights as they are (block_size cropped 64 -> 32)
    train_in_process(f"--init_from={tmp_path / 'gpt2-local'}", "--max_iters=0", *common)
    ckpt = load_checkpoint(out_dir / "ckpt.pt")
    assert ckpt["model_args"]["vocab_size"] == 50257 and ckpt["model_args"]["block_size"] == 32
    assert ckpt["meta"]["tokenizer"] == "gpt2"
    assert max_logit_diff(hf, model_from_checkpoint(ckpt), 50257, T=32) < 1e-4

    train_in_process("--init_from=resume", "--max_iters=2", *common)  # the unpadded 50257 resumes
    ckpt = load_checkpoint(out_dir / "ckpt.pt")
    assert ckpt["iter_num"] == 2
    export.main([f"--out_dir={out_dir}", "--ckpt=latest", "--to=hf", f"--dest={tmp_path / 'exported'}"])
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "exported").eval()
    assert max_logit_diff(exported, model_from_checkpoint(ckpt), 50257, T=32) < 1e-4


def test_gpt2_init_refuses_a_char_dataset(tmp_path, capsys):
    import prepare
    import train

    prepare.prepare_text("hello world, " * 50, tmp_path / "data" / "chars", "char", "generated")
    with pytest.raises(SystemExit):
        train.main(["--init_from=gpt2", "--dataset=chars", f"--data_dir={tmp_path / 'data'}", "--device=cpu",
                    "--block_size=8", f"--out_dir={tmp_path / 'out'}"])
    assert "needs a GPT-2 BPE dataset" in capsys.readouterr().err


def test_core_works_without_transformers(tmp_path):
    """With transformers and safetensors unimportable, the scripts import, and the GPT-2 features say
    how to install what they need."""
    code = f"""
import sys
sys.modules["transformers"] = sys.modules["safetensors"] = None  # import fails as if not installed
import train, sample, export, prepare
from gptkit import checkpoint, data, gpt2_weights
from gptkit.errors import UserError
try:
    gpt2_weights.load_hf_gpt2("gpt2")
except UserError as e:
    print(e)
export.main(["--out_dir={tmp_path}", "--to=hf", "{tmp_path / 'dest'}"])
"""
    result = run("-c", code)
    assert result.returncode == 2
    assert result.stdout.strip() == "init_from=gpt2 needs transformers: pip install transformers"
    assert result.stderr.strip() == "error: export --to=hf needs transformers: pip install transformers"
