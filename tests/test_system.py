"""Device, dtype, compile and MFU choices: the nanoGPT pitfalls that live outside the model."""

import types

import pytest
import torch

import bench
from gptkit import memory, system
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from gptkit.errors import UserError
from model import GPT, GPTConfig


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert system.pick_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert system.pick_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert system.pick_device("auto") == "cuda"


def test_asking_for_a_missing_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available.*--device=cpu"):
        system.pick_device("cuda:1")
    with pytest.raises(UserError, match="MPS is not available"):
        system.pick_device("mps")


def test_dtype_is_bf16_only_where_the_gpu_has_it(monkeypatch):
    monkeypatch.setattr(system, "cpu_has_bf16", lambda: False)
    assert system.pick_dtype("auto", "cpu") == torch.float32
    assert system.pick_dtype("auto", "mps") == torch.float32  # MPS half precision NaNs (nanoGPT #28)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert system.pick_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert system.pick_dtype("auto", "cuda") == torch.float16  # with a grad scaler in train.py
    with pytest.raises(UserError, match="no bfloat16; use --dtype=float16"):
        system.pick_dtype("bfloat16", "cuda")


# /proc/cpuinfo excerpts: one processor's lines, as the kernel prints them
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni
"""
ZEN4 = EPYC_AVX2.replace("sha_ni", "avx512f avx512bw avx512_vnni avx512_bf16 sha_ni")
SAPPHIRE_RAPIDS = """vendor_id\t: GenuineIntel
flags\t\t: fpu avx avx2 avx512f avx512_vnni avx512_fp16 amx_bf16 amx_tile amx_int8
"""
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid\n"
GRAVITON3 = GRAVITON2.replace("cpuid", "cpuid sve bf16 i8mm svebf16")


@pytest.mark.parametrize("cpuinfo, native", [(EPYC_AVX2, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True),
                                             (GRAVITON2, False), (GRAVITON3, True), ("", False),
                                             ("model name\t: a CPU named avx512_bf16\nflags\t: avx2\n", False)],
                         ids=["epyc-avx2", "zen4", "sapphire-rapids", "graviton2", "graviton3", "empty", "name-only"])
def test_native_bf16_is_read_from_cpuinfo(cpuinfo, native):
    assert system.native_bf16("linux", cpuinfo=cpuinfo) is native


@pytest.mark.parametrize("sysctl, native", [("1\n", True), ("0\n", False), ("", False)], ids=["m2", "m1", "unknown"])
def test_native_bf16_on_macos_is_read_from_sysctl(sysctl, native):
    # an M1 answers 0; older macOS versions know no such key and print nothing (on stderr: "unknown oid")
    assert system.native_bf16("darwin", sysctl=sysctl) is native
    assert system.native_bf16("darwin", cpuinfo=SAPPHIRE_RAPIDS, sysctl=sysctl) is native  # cpuinfo is Linux's


def test_auto_dtype_on_a_cpu_is_bf16_only_where_it_computes_bf16(monkeypatch):
    monkeypatch.setattr(system, "cpu_has_bf16", lambda: True)
    assert system.pick_dtype("auto", "cpu") == torch.bfloat16
    assert system.pick_dtype("auto", "cpu", int8=True) == torch.float32  # int8 weights compute in float32
    assert system.pick_dtype("float32", "cpu") == torch.float32  # asked for: kept
    assert system.pick_dtype("auto", "mps") == torch.float32
    monkeypatch.setattr(system, "cpu_has_bf16", lambda: False)
    assert system.pick_dtype("auto", "cpu") == torch.float32
    assert system.pick_dtype("bfloat16", "cpu") == torch.bfloat16  # emulated, slow, but what was asked


def test_the_machine_is_asked_not_assumed(monkeypatch, tmp_path):
    detect = system.cpu_has_bf16.__wrapped__  # uncached
    asked = []

    def sysctl(command, **kwargs):
        asked.append(command)
        return types.SimpleNamespace(stdout="1\n")

    monkeypatch.setattr(system.sys, "platform", "darwin")
    monkeypatch.setattr(system.subprocess, "run", sysctl)
    assert detect() is True and asked == [["sysctl", "-n", "hw.optional.arm.FEAT_BF16"]]
    monkeypatch.setattr(system.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("sysctl")))
    assert detect() is False
    monkeypatch.setattr(system.sys, "platform", "linux")
    for cpuinfo, native in ((SAPPHIRE_RAPIDS, True), (EPYC_AVX2, False)):
        (tmp_path / "cpuinfo").write_text(cpuinfo)
        monkeypatch.setattr(system, "CPUINFO", tmp_path / "cpuinfo")
        assert detect() is native
    monkeypatch.setattr(system, "CPUINFO", tmp_path / "missing")
    assert detect() is False


def test_compile_falls_back_to_eager_on_windows_with_one_warning(monkeypatch, capsys):
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=11))
    monkeypatch.setattr(system.sys, "platform", "win32")
    assert system.maybe_compile(model, True) is model
    assert capsys.readouterr().err.count("warning:") == 1
    assert system.maybe_compile(model, False) is model


def test_a_compiled_model_saves_plain_keys_that_resume_loads(tmp_path):
    """nanoGPT #325/#351: the compiled wrapper's `_orig_mod.` prefix broke resuming."""
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=11))
    compiled = torch.compile(model)  # wrapping alone; nothing is compiled until it runs
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_checkpoint(tmp_path / "ckpt.pt", compiled)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    restored = model_from_checkpoint(ckpt)
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name


def test_mfu_is_against_the_devices_own_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "NVIDIA H100 80GB HBM3")
    assert bench.device_peak_flops("cuda", 0) == 989e12  # not the A100's 312e12 (nanoGPT #182)
    assert bench.device_peak_flops("cuda", 1e12) == 1e12  # --peak_flops overrides
    assert bench.device_peak_flops("cpu", 0) == 0.0  # unknown: bench prints n/a, not a made-up figure
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    flops = system.flops_per_token(model)
    assert system.estimate_mfu(model, 1000.0, flops * 2000.0) == pytest.approx(0.5)


@pytest.mark.parametrize("changes", [{}, dict(tie_weights=False), dict(pos_encoding="rope"), dict(n_layer=6, n_embd=96),
                                     dict(bias=False), dict(norm="rmsnorm"), dict(norm="none", bias=False)])
def test_the_memory_check_estimates_the_parameters_it_would_allocate(changes):
    config = GPTConfig(**{**dict(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=65), **changes})
    actual = GPT(config).num_params(non_embedding=False)
    assert memory.estimated_params(config) == actual  # biases and norm gains included
