"""int8 weights for sampling on a CPU (sample.py --quantize=int8)."""

import platform
import warnings

import torch

from gptkit.errors import UserError


def quantize(model, kind, device, dtype):
    """kind="int8": run every Linear layer (lm_head too) with int8 weights on the CPU; returns the model,
    changed in place. A sampling speed-up: at batch 1 each token reads every weight once, and int8
    weights are a quarter of float32's bytes.

    The kernels are PyTorch's dynamic int8 Linear (fbgemm on x86, qnnpack on ARM): weights int8 per
    output channel, activations quantized on the fly per call. torchao is the maintained successor,
    but its 0.18 wheel has no x86 CPU kernel: its int8 weight-only Linear casts the weight to float
    on every call and its dynamic one runs torch._int_mm, both slower than float32 here (bench.py
    int8 measures all three). Embeddings stay float32 (a lookup reads one row per token).
    """
    if kind == "none":
        return model
    if not device.startswith("cpu"):
        raise UserError(f"--quantize={kind} runs on the CPU only (PyTorch's int8 Linear kernels are CPU kernels); "
                        f"add --device=cpu, or drop --quantize to sample on {device}")
    if dtype != torch.float32:
        raise UserError(f"--quantize={kind} computes in float32 around its int8 weights; drop --dtype "
                        f"(or use --dtype=float32)")
    engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines), None)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao: see above
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*are deprecated")
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:
            engine = None
        if engine is None:
            raise UserError(f"--quantize={kind}: this torch {torch.__version__} has no int8 Linear kernels for this "
                            f"CPU ({platform.machine()}); sample without --quantize")
        torch.backends.quantized.engine = engine
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
