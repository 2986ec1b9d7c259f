"""Sharded checkpoints (parallel=fsdp): every process writes its own slices, with PyTorch's
Distributed Checkpoint (DCP), so no process ever holds the whole model.

    out_dir/ckpt.dcp/   .metadata             where every slice of every tensor is (written by rank 0)
                        __0_0.distcp ...      one file per process: its slices of the weights and AdamW state
                        state.pt              the rest, as in ckpt.pt: iter_num, best_val_loss, rng, settings,
                                              meta, model_args (torch.save, read with weights_only=True)
    out_dir/best.dcp/   the same, at the best val loss

A save is atomic as a whole: every process writes into .ckpt.dcp.tmp/ beside it, then rank 0 moves
the old folder aside, moves the new one in and deletes the old one; a crash at any instant leaves a
whole checkpoint (rundir.remove_partial_writes puts an old one moved aside back).

Reading reshards: the slices are put together by name and offset, so a checkpoint written by 8
processes is read by 2, by 1, or by a process that is not distributed at all (to_checkpoint_file, which
makes the ordinary ckpt.pt and best.pt that sample.py, export.py and visualize.py read).

DCP's .metadata is a pickle that is loaded as such: read sharded checkpoints you wrote, not strangers'
(a ckpt.pt is loaded with weights_only=True; share that instead).
"""

import os
import shutil
import types
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from gptkit.checkpoint import (checkpoint_config, checkpoint_problem, load_checkpoint, save_atomically, save_checkpoint,
                              write_error)
from gptkit.distributed import barrier, is_sharded
from gptkit.errors import UserError, first_line
from gptkit.optim import make_optimizer
from gptkit.rundir import replace_folder
from model import GPT


def sharded_path(path):
    """out/ckpt.pt -> out/ckpt.dcp: where the sharded form of a checkpoint file lives."""
    return Path(path).with_suffix(".dcp")


def _state_dicts(model, optimizer):
    """The model's and optimizer's tensors by parameter name, as DTensors (each process's slices) under
    FSDP and whole tensors otherwise: the layout DCP reads into and writes from.

    For an optimizer that has not stepped yet, torch makes AdamW's moments with a step at lr=0, which
    AdamW counts (its bias correction would then start at step 2): that state is dropped again, so the
    next real step is still the first (save_sharded records it as optimizer_empty).
    """
    from torch.distributed.checkpoint.state_dict import get_state_dict

    empty = not optimizer.state
    model_state, optimizer_state = get_state_dict(model, optimizer)
    if empty:
        optimizer.state.clear()
    return {"model": model_state, "optimizer": optimizer_state}


def save_sharded(path, model, optimizer, dist, **state):
    """Write the sharded checkpoint of `path` (out/ckpt.pt -> out/ckpt.dcp/): called by every process.

    state: the plain entries a ckpt.pt holds besides the weights (iter_num, best_val_loss, rng, ...).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    folder = sharded_path(path)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if dist.master:
        shutil.rmtree(tmp, ignore_errors=True)  # a save killed half-way
    barrier(dist)
    try:
        empty = not optimizer.state  # saved at iteration 0, before any step
        dcp.save(_state_dicts(model, optimizer), checkpoint_id=tmp)  # returns once every process has written
        if dist.master:
            check_all_shards(tmp, dist.world_size)
            save_atomically(tmp / "state.pt", {**state, "model_args": asdict(model.config), "optimizer_empty": empty})
            replace_folder(tmp, folder)
    except (OSError, CheckpointException) as e:  # disk full, read-only disk: on any process
        raise write_error(folder, e) from None
    barrier(dist)  # nobody reads it or goes on before it is in place


def save_checkpoint_or_shards(path, model, optimizer, dist, **state):
    """`path` (out/ckpt.pt) from rank 0 (save_checkpoint), or, when the model is sharded, its sharded form
    from every process (save_sharded), which the end of the run turns into the file (files_from_sharded)."""
    if dist.sharded:
        save_sharded(path, model, optimizer, dist, **state)
    else:
        save_checkpoint(path, model, optimizer, **state)


def check_all_shards(folder, world_size):
    """Every process's file must be in the folder rank 0 sees: on several nodes, out_dir must be one
    folder they all share (NFS, Lustre...), or each node's shards would land on its own disk."""
    missing = [rank for rank in range(world_size) if not (folder / f"__{rank}_0.distcp").is_file()]
    if missing:
        raise UserError(f"the shards of processes {missing} are not in {folder} as rank 0 sees it: under "
                        f"parallel=fsdp on several nodes, out_dir must be on a filesystem they all share")


def read_state(folder):
    """A sharded checkpoint's state.pt (every entry of a ckpt.pt but the weights and optimizer state),
    checked as load_checkpoint checks a ckpt.pt."""
    folder = Path(folder)
    if not (folder / ".metadata").is_file() or not (folder / "state.pt").is_file():
        raise UserError(f"{folder} is not a whole sharded checkpoint (it lacks .metadata or state.pt); "
                        f"resume from ckpt.pt, or train again")
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever torch's reader raises on bytes it does not expect
        raise UserError(f"{folder}/state.pt is damaged ({type(e).__name__}); resume from ckpt.pt, or train "
                        f"again") from None
    problem = checkpoint_problem({"model": {}, **state}) if isinstance(state, dict) else "it is not a dict"
    missing = [key for key in ("iter_num", "best_val_loss", "train_config") if key not in state]
    if problem or missing:
        raise UserError(f"{folder}/state.pt is not a checkpoint's state: "
                        f"{problem or 'it has no ' + ', '.join(missing)}")
    return {**state, "sharded": folder}


def load_sharded(folder, model, optimizer, optimizer_empty=False):
    """Read a sharded checkpoint into the model and its optimizer, whatever number of processes wrote it:
    FSDP-sharded ones (each process reads the slices it holds) or whole ones (no process group needed).
    optimizer_empty: the checkpoint's state.pt says its optimizer had not stepped (_state_dicts)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _state_dicts(model, optimizer)
    try:  # whole tensors are read by each process alone, slices by all together
        with warnings.catch_warnings():  # alone, DCP warns that it assumes so
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, checkpoint_id=folder, no_dist=not is_sharded(model))
    except Exception as e:  # noqa: BLE001 - a missing slice, a shape that differs: DCP's CheckpointException
        raise UserError(f"the sharded checkpoint {folder} does not fit the model ({first_line(e)}); "
                        f"it is damaged or from another model") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    if optimizer_empty:
        optimizer.state.clear()


def load_whole_optimizer_state(model, optimizer, saved):
    """A ckpt.pt's optimizer state (whole tensors, numbered as optimizer.state_dict numbers them) into the
    optimizer of an FSDP model: each process keeps its slices. Raises ValueError when it does not fit."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    try:
        by_name = {"state": {order[i]: s for i, s in saved["state"].items()},
                   "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]}
        for name, p in model.named_parameters():
            for key, value in by_name["state"].get(name, {}).items():
                # p.shape is the whole parameter's shape, even of a slice
                if torch.is_tensor(value) and value.dim() and value.shape != p.shape:
                    raise ValueError(f"its {key} for a {tuple(p.shape)} parameter is {tuple(value.shape)}")
        set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError) as e:
        raise ValueError(first_line(e)) from None


# ----------------------------------------------------------------------------------------------
# the newest checkpoint of a run, and sharded -> ckpt.pt


def newest_checkpoint(out_dir, sharded_first=False):
    """The checkpoint to resume: out_dir/ckpt.pt (load_checkpoint's dict) or the sharded ckpt.dcp/
    (read_state's dict, its "sharded" entry the folder), whichever was written last. The same moment
    means the same state (to_checkpoint_file copies the time): then sharded_first chooses."""
    path = Path(out_dir) / "ckpt.pt"
    folder = sharded_path(path)
    if not (folder / "state.pt").is_file():
        return load_checkpoint(path)
    if path.is_file():
        file_time, folder_time = path.stat().st_mtime_ns, (folder / "state.pt").stat().st_mtime_ns
        if file_time > folder_time or (file_time == folder_time and not sharded_first):
            return load_checkpoint(path)
    return read_state(folder)


def to_checkpoint_file(path):
    """Write `path` (out/ckpt.pt) from its sharded form (out/ckpt.dcp/), through save_checkpoint, in this
    process alone: the whole model and AdamW state are built in its memory. Returns False when the
    sharded form is not newer than the file (nothing to do)."""
    path, folder = Path(path), sharded_path(path)
    if not (folder / "state.pt").is_file():
        return False
    stamp = (folder / "state.pt").stat().st_mtime_ns
    if path.is_file() and path.stat().st_mtime_ns >= stamp:
        return False
    state = read_state(folder)
    model = GPT(checkpoint_config(state))
    optimizer = make_optimizer(model, types.SimpleNamespace(**state["train_config"]), "cpu")
    load_sharded(folder, model, optimizer, state.get("optimizer_empty", False))
    plain = {k: v for k, v in state.items() if k not in ("model_args", "sharded", "optimizer_empty")}
    save_checkpoint(path, model, optimizer, **plain)
    os.utime(path, ns=(stamp, stamp))  # the same moment as its source: newest_checkpoint sees them as one
    return True


def files_from_sharded(out_dir):
    """ckpt.pt and best.pt from the sharded checkpoints of out_dir that are newer; the names written."""
    return [name for name in ("best.pt", "ckpt.pt") if to_checkpoint_file(Path(out_dir) / name)]
