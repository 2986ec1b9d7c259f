"""The machine and the process: device, precision, threads and compile; random states; signals.

Shared by every script, so train.py, sample.py and bench.py set up torch the same way.
"""

import functools
import os
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from gptkit.errors import UserError, first_line


def pick_device(name):
    """auto, cpu, cuda, cuda:N or mps, checked to exist here; torch's own errors for others are tracebacks."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            raise UserError(f"device={name!r} is not one of auto, cpu, cuda, cuda:N, mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available here; use --device=cpu (or auto)")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise UserError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA devices; "
                            f"use --device=cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError("device=mps but MPS is not available here; use --device=cpu (or auto)")
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(name, device, int8=False):
    """auto: bf16 where the GPU has it, else fp16 with a grad scaler; on a CPU, bf16 where it has bfloat16
    units (cpu_has_bf16), else float32; float32 on MPS (nanoGPT #8, #28). int8: int8 weights will run,
    which compute in float32 (gptkit/quantize.py), so auto is float32 on a CPU."""
    if name == "auto":
        if device.startswith("cuda"):
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device.startswith("cpu") and cpu_has_bf16() and not int8:
            name = "bfloat16"
        else:
            name = "float32"
    if name == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bfloat16; use --dtype=float16 (or auto)")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# x86 flags of bfloat16 arithmetic: AMX tiles (Sapphire Rapids and later) or AVX-512 BF16 (Cooper Lake,
# AMD Zen 4). Without them torch emulates bfloat16 matmuls in float32 with conversions: slower, not faster.
X86_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


def native_bf16(platform, cpuinfo="", sysctl=""):
    """Whether a CPU computes bfloat16 natively, from what the OS says about it: on Linux /proc/cpuinfo's
    text (x86 "flags" with amx_bf16 or avx512_bf16; aarch64 "Features" with bf16, Armv8.6 FEAT_BF16), on
    macOS the output of `sysctl -n hw.optional.arm.FEAT_BF16` ("1" on Apple M2 and later)."""
    if platform == "darwin":
        return sysctl.strip() == "1"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        words = value.split()
        if (key.strip() == "flags" and any(flag in words for flag in X86_BF16_FLAGS)
                or key.strip() == "Features" and "bf16" in words):
            return True
    return False


@functools.cache
def cpu_has_bf16():
    """native_bf16 for this machine (detected, never assumed: anything unreadable counts as no)."""
    if sys.platform == "darwin":
        try:
            sysctl = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                    timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return native_bf16("darwin", sysctl=sysctl)
    try:
        cpuinfo = CPUINFO.read_text(errors="replace")
    except OSError:  # Windows, or a sandbox without /proc
        return False
    return native_bf16(sys.platform, cpuinfo=cpuinfo)


# dense bf16 peak FLOP/s by device name, for MFU (nanoGPT measured against the A100 always: #182)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def peak_flops(device_name):
    """The GPU's dense bf16 peak FLOP/s, from its name (torch.cuda.get_device_name()); 0.0 when unknown."""
    return next((flops for key, flops in PEAK_FLOPS.items() if key in device_name), 0.0)


def flops_per_token(model, T=None):
    """A GPT's training FLOPs per token: 6N for the matmuls, attention's 12*L*C*T (PaLM, appendix B)."""
    c = model.config
    return 6 * model.num_params() + 12 * c.n_layer * c.n_embd * (T or c.block_size)


def estimate_mfu(model, tokens_per_s, peak, T=None):
    """Model FLOPs utilisation: the FLOP/s the model's training does, over the device's peak FLOP/s."""
    return flops_per_token(model, T) * tokens_per_s / peak


def device_memory(device):
    """Bytes of memory on the device (the host's RAM for cpu and mps); None where it cannot be told."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf on Windows
        return None


def autocast(device, dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def setup_torch(device, dtype, threads=0):
    """Thread count and TF32 matmuls (free speed on Ampere and newer, as nanoGPT); returns the autocast
    context for `dtype`. device: a name from pick_device; dtype: a torch dtype from pick_dtype."""
    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return autocast(device, dtype)


def maybe_compile(model, enabled, **options):
    """torch.compile(model, **options) where it can work; elsewhere one warning and eager mode (nanoGPT PR #242)."""
    if not enabled:
        return model
    if sys.platform == "win32":
        print("warning: torch.compile is not supported on Windows; running without it", file=sys.stderr)
        return model
    return torch.compile(model, **options)


# ----------------------------------------------------------------------------------------------
# random states: what a checkpoint keeps so that a resumed run continues exactly


def rng_state(generator, device):
    """Every random state a run depends on: torch's (dropout), the data order's, and CUDA's."""
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state, generator, device):
    try:
        torch.set_rng_state(state["torch"])
        generator.set_state(state["data"])
        if "cuda" in state and device.startswith("cuda"):
            torch.cuda.set_rng_state(state["cuda"])
    except (RuntimeError, ValueError, TypeError) as e:  # a state of the wrong size
        raise UserError(f"the checkpoint's random state is damaged ({first_line(e)[:120]}); it cannot be "
                        f"resumed exactly") from None


# ----------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step and save ckpt.pt.

    The handler only records the signal (the loop acts on it between steps) and gives the signals
    back to their previous handlers, so a second Ctrl-C stops at once, without saving: even during
    a checkpoint write, which is atomic, so the previous checkpoint stays whole.
    Used as `with StopRequest() as stop:`; the handlers are restored on leaving.
    """

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        self.restore()

    def _handle(self, signum, frame):
        self.signum = signum
        self.restore()
        # os.write, not print: a handler may run in the middle of another write to stderr
        name = signal.Signals(signum).name
        again = "Ctrl-C again" if signum == signal.SIGINT else f"another {name}"
        os.write(2, f"\n{name}: stopping after this step to save a checkpoint ({again}: quit now without "
                    f"saving)\n".encode())

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
