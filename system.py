"""The machine: which device and precision to run on, and whether to compile. Shared by every script."""

import sys
from contextlib import nullcontext

import torch

from config import UserError


def pick_device(name):
    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available here; use --device=cpu (or auto)")
        if name == "mps" and not torch.backends.mps.is_available():
            raise UserError("device=mps but MPS is not available here; use --device=cpu (or auto)")
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(name, device):
    """bf16 where the GPU has it, else fp16 with a grad scaler; float32 on CPU and MPS (nanoGPT #8, #28)."""
    if name == "auto":
        if device.startswith("cuda"):
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            name = "float32"
    if name == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bfloat16; use --dtype=float16 (or auto)")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def autocast(device, dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def maybe_compile(model, enabled):
    """torch.compile where it can work; elsewhere one warning and eager mode (nanoGPT PR #242)."""
    if not enabled:
        return model
    if sys.platform == "win32":
        print("warning: torch.compile is not supported on Windows; running without it", file=sys.stderr)
        return model
    return torch.compile(model)
