"""The machine: device, precision (int8 weights for sampling too), threads and compile; several
processes under torchrun; signals.

Shared by every script, so train.py, sample.py and bench.py set up torch the same way.
"""

import os
import platform
import signal
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from settings import UserError


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


def device_memory(device):
    """Bytes of memory on the device (the host's RAM for cpu and mps); None where it cannot be told."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf on Windows
        return None


def estimated_params(config):
    """Parameters of the GPT a config describes, without building it: 12 C^2 per block (q, k, v and the
    output projection 4 C^2, the MLP 8 C^2), the token embedding (and a separate head), positions."""
    C = config.n_embd
    positions = config.block_size if config.pos_encoding == "learned" else 0
    return config.n_layer * 12 * C * C + (config.vocab_size * (1 if config.tie_weights else 2) + positions) * C


def check_memory(config, device):
    """Refuse, before allocating anything, a model whose weights, gradients and AdamW moments (16 bytes per
    parameter in float32) exceed the device's memory: --n_layer=100000 would otherwise allocate block
    after block until the machine runs out."""
    params, have = estimated_params(config), device_memory(device)
    if have is not None and 16 * params > have:
        raise UserError(f"a model of {params / 1e6:,.0f}M parameters needs about {16 * params / 2**30:,.0f} GiB for "
                        f"its weights, gradients and optimizer state, more than this {device}'s {have / 2**30:,.0f} "
                        f"GiB; lower n_layer or n_embd")


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


def maybe_compile(model, enabled):
    """torch.compile where it can work; elsewhere one warning and eager mode (nanoGPT PR #242)."""
    if not enabled:
        return model
    if sys.platform == "win32":
        print("warning: torch.compile is not supported on Windows; running without it", file=sys.stderr)
        return model
    return torch.compile(model)


# ----------------------------------------------------------------------------------------------
# distributed data parallel (torchrun)


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self):
        return self.rank == 0


def setup_distributed(device, backend=""):
    """Under torchrun (it sets RANK), join the process group: NCCL on CUDA, gloo on CPU.

    Returns (Dist, device): each process on a GPU takes the one its LOCAL_RANK names.
    """
    if "RANK" not in os.environ:
        return Dist(), device
    dist = Dist(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend or ("nccl" if device.startswith("cuda") else "gloo"))
    return dist, device


def teardown_distributed(dist):
    if dist.world_size > 1:
        torch.distributed.destroy_process_group()


def broadcast_flag(flag, dist, device):
    """Rank 0 decides (e.g. to stop); every rank follows, so none waits forever for the others."""
    if dist.world_size == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


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
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
                    f"(Ctrl-C again: quit now without saving)\n".encode())

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
