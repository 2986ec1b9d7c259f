"""Checkpoints: written in one function, read in one function, shared by every script.

A checkpoint is data, never code: tensors, numbers, strings, lists and dicts, loaded with
`torch.load(weights_only=True)`, which refuses anything else (a malicious pickle included).
Writes go to a temporary file that is flushed, fsync'ed and renamed over the old one, so a crash
at any instant leaves either the old checkpoint or the new one, never a broken file.
"""

import os
import pickle
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from config import UserError
from model import GPT, GPTConfig


def unwrap(model):
    """The plain GPT inside torch.compile and DistributedDataParallel wrappers.

    Saving the wrapper's state dict would prefix every key with `_orig_mod.` or `module.`,
    which broke resuming in nanoGPT (issues #325, #351).
    """
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path, model, optimizer=None, **state):
    """Atomically write the model (and optimizer, and any plain `state`) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = unwrap(model)
    ckpt = {"model": raw.state_dict(), "model_args": asdict(raw.config), **state}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path):
    """Read a checkpoint onto the CPU (moving it to the GPU is the caller's choice: nanoGPT #158)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; train one first (python train.py ...) or check --out_dir")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"refused to load {path}: it holds more than tensors and plain data ({first_line}); "
                        f"only load checkpoints written by this repository or converted from a trusted source") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"checkpoint {path} is unreadable or truncated ({type(e).__name__}); "
                        f"use another checkpoint (best.pt or ckpt.pt) or train again") from None


def model_from_checkpoint(ckpt):
    """Build the GPT a checkpoint describes and load its weights."""
    fields = set(GPTConfig.__dataclass_fields__)
    model = GPT(GPTConfig(**{k: v for k, v in ckpt["model_args"].items() if k in fields}))
    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model
