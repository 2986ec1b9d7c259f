"""int8 sampling (sample.py --quantize=int8, gptkit/quantize.py) on the tiny checkpoint trained by train.py:
int8 weights really, close to float32 on real text, deterministic for a seed, and one line where it
cannot run."""

import copy

import pytest
import torch

from conftest import main_error_line, make_model
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint
from gptkit.data import TokenData
from gptkit.errors import UserError
from gptkit.quantize import quantize
from model import stream
import sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tiny_run):
    """(the tiny run's float32 model, the same quantized to int8, its dataset)."""
    ckpt = load_checkpoint(tiny_run.out_dir / "best.pt")
    model = model_from_checkpoint(ckpt).eval()
    settings = ckpt["train_config"]
    data = TokenData(f"{settings['data_dir']}/{settings['dataset']}", model.config.block_size)
    return model, quantize(copy.deepcopy(model), "int8", "cpu", torch.float32), data


def test_every_linear_layer_runs_with_int8_weights(trained):
    model, quantized, _ = trained
    linear_names = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear_names) == 4 * model.config.n_layer + 1  # c_attn, c_proj, c_fc, mlp.c_proj; lm_head
    modules = dict(quantized.named_modules())
    for name in linear_names:
        assert not isinstance(modules[name], torch.nn.Linear), name
        assert modules[name].weight().dtype == torch.qint8, name
    assert quantized.transformer.wte.weight.dtype == torch.float32  # the embedding lookup stays float32


@torch.no_grad()
def test_int8_stays_close_to_float32_on_real_text(trained):
    model, quantized, data = trained
    x, y = data.get_batch("val", 8, torch.Generator().manual_seed(0))
    logits, loss = model(x, y)
    logits_int8, loss_int8 = quantized(x, y)
    # stated tolerance: every logit within 5% of the logits' spread (measured: 1.4%), the loss within 1%
    assert (logits_int8 - logits).abs().max() < 0.05 * logits.std()
    assert abs(loss_int8.item() / loss.item() - 1) < 0.01

    prompt = x[:2, :8]  # (B, T) real text
    greedy = {(name, cache): torch.cat(list(stream(m, prompt, 40, temperature=0, use_cache=cache)), dim=1)
              for name, m in (("fp32", model), ("int8", quantized)) for cache in (True, False)}
    # the same greedy tokens as float32, with the KV cache (one position per call) and without it
    assert torch.equal(greedy["int8", True], greedy["fp32", True])
    assert torch.equal(greedy["int8", False], greedy["fp32", True])


@torch.no_grad()
def test_llama_pieces_run_with_int8_weights_and_the_same_cached_tokens():
    """Grouped-query attention (a narrower c_attn) and SwiGLU (a third Linear, c_fc2) quantize like the rest."""
    model = make_model(n_embd=32, n_head=4, n_kv_head=1, mlp="swiglu", mlp_hidden=64, norm="rmsnorm",
                       pos_encoding="rope").eval()
    quantized = quantize(copy.deepcopy(model), "int8", "cpu", torch.float32)
    assert isinstance(model.transformer.h[0].mlp.c_fc2, torch.nn.Linear)
    assert quantized.transformer.h[0].mlp.c_fc2.weight().dtype == torch.qint8
    assert quantized.transformer.h[0].attn.c_attn.weight().shape == ((4 + 2) * 8, 32)
    prompt = torch.randint(24, (2, 4), generator=torch.Generator().manual_seed(0))
    cached, uncached = (quantized.generate(prompt, 12, temperature=0, use_cache=c) for c in (True, False))
    assert torch.equal(cached, uncached)


def test_int8_sampling_is_deterministic_for_a_seed(tiny_run, cli):
    def run(seed):
        result = cli("sample.py", f"--out_dir={tiny_run.out_dir}", "--device=cpu", "--quantize=int8",
                     "--start=ROMEO:", "--num_samples=2", "--max_new_tokens=60", f"--seed={seed}")
        assert result.returncode == 0, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].endswith("tokens/s"), result.stderr  # no warnings from torch.ao
        return result.stdout

    first = run(1)
    assert first.startswith("ROMEO:") and len(first.split(sample.SEPARATOR)) == 2
    assert run(1) == first
    assert run(2) != first


def test_a_gpu_another_dtype_or_a_cpu_without_kernels_gets_one_line(capsys, monkeypatch, tiny_run):
    with pytest.raises(UserError, match=r"CPU only.*--device=cpu"):
        quantize(make_model(), "int8", "cuda", torch.float32)
    args = [f"--out_dir={tiny_run.out_dir}", "--device=cpu", "--quantize=int8", "--max_new_tokens=4"]
    assert "--dtype" in main_error_line(capsys, sample, [*args, "--dtype=bfloat16"])
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda self: ["none"]))
    line = main_error_line(capsys, sample, args)
    assert "no int8 Linear kernels" in line and "without --quantize" in line
    model = make_model()
    assert quantize(model, "none", "cuda", torch.bfloat16) is model  # none: nothing to refuse


def test_bench_sample_times_both_and_scores_a_trained_run_on_its_val_split(capsys, tiny_run, trained):
    import bench

    # the compiled rows compile four times (minutes); test_decode.py tests the compiled step itself
    bench.main(["sample", str(tiny_run.out_dir), "--new_tokens=4", "--batch_size=4", "--eval_iters=3",
                "--bench_compile=False"])
    out = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    assert [row[:3] for row in rows if row[0] in ("1", "8")] == [
        [batch, loop, weights] for batch in ("1", "8")
        for loop, weights in (("no cache (nanoGPT)", "fp32"), ("kv cache", "fp32"), ("kv cache", "int8"))]
    losses = {row[0]: float(row[1]) for row in rows if row[0] in ("fp32", "int8")}
    model, quantized, data = trained
    batches = list(data.sequential_batches("val", 4))[:3]  # the first 3 x 4 windows of the val split
    with torch.no_grad():
        for name, m in (("fp32", model), ("int8", quantized)):
            expected = sum(m(x, y)[1].item() * y.numel() for x, y in batches) / sum(y.numel() for _, y in batches)
            assert losses[name] == pytest.approx(expected, abs=1e-4)


def test_bench_int8_compares_the_implementations(capsys):
    import bench

    bench.main(["int8", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--vocab_size=11",
                "--new_tokens=4"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    names = [row.strip("|").split("|")[0].strip() for row in rows[1:]]
    assert names == list(bench.INT8_IMPLEMENTATIONS)
    assert all(float(row.split("|")[2]) > 0 for row in rows[1:3])  # fp32 and ours are always timed
