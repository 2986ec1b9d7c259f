"""Several processes under torchrun: joining the process group, putting the model on them (DDP or
FSDP), skipping the gradient sync of micro-steps, and deciding together.

DDP (parallel=ddp) keeps a whole copy of the model, its gradients and optimizer state on every
process and averages the gradients in backward. FSDP (parallel=fsdp, PyTorch's FSDP2, Zhao et al.
2023 "PyTorch FSDP") splits every weight into one slice per process: before each Block runs, its
weights are gathered from all processes (all-gather), and after backward its gradients are summed
and split again (reduce-scatter), so each process keeps 1/N of the weights, gradients and optimizer
state. docs/memory.md says which to pick and what each costs.
"""

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from gptkit.errors import UserError
from gptkit.system import maybe_compile, pick_dtype


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    sharded: bool = False  # parallel=fsdp: each process holds a slice of every weight (shard_model)

    @property
    def master(self):
        return self.rank == 0

    @property
    def evaluates(self):
        """Whether this process evaluates, samples and saves: rank 0 alone, or every process when sharded
        (each forward pass gathers the slices of all of them, and each save writes each one's slices)."""
        return self.master or self.sharded


def setup_distributed(device, backend="", parallel="ddp"):
    """Under torchrun (it sets RANK), join the process group: NCCL on CUDA, gloo on CPU.

    Returns (Dist, device): each process on a GPU takes the one its LOCAL_RANK names.
    """
    if parallel == "fsdp" and "RANK" not in os.environ:
        raise UserError("parallel=fsdp shards the model across processes: launch it with torchrun, e.g. "
                        "torchrun --standalone --nproc_per_node=8 train.py ... --parallel=fsdp")
    if "RANK" not in os.environ:
        return Dist(), device
    dist = Dist(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]),
                sharded=parallel == "fsdp")
    if device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend or ("nccl" if device.startswith("cuda") else "gloo"))
    return dist, device


def check_parallel(cfg, dist, dtype):
    """What a run on these processes cannot take (cfg: train.py's settings; dtype: the one picked), one line each."""
    if cfg.gradient_accumulation_steps % dist.world_size:
        raise UserError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be a multiple of "
                        f"the number of processes ({dist.world_size}): each takes an equal share of the micro-batches")
    if dist.sharded and dtype == torch.float16:
        raise UserError("parallel=fsdp computes in bfloat16 or float32 here (float16's gradient scaler is not wired "
                        "to FSDP's sharded gradients); use --dtype=bfloat16 or float32")


def teardown_distributed():
    """Leave the process group, all processes together. What still refers to the group (an FSDP model
    does) must be gone first: a group destroyed only as the interpreter exits can abort it (gloo)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()  # the model's modules and hooks refer to one another: only the collector frees them
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def shard_model(model, cfg, dist, device):
    """FSDP2, in place: each Block becomes one group of weights gathered and freed together, then the
    rest (embeddings, final norm, head: the root). Each process keeps its slice on `device`.

    In bfloat16 the gathered weights are bfloat16 (half the traffic) and gradients are reduced in
    float32 (no rounding in the sum); the slices and the optimizer stay float32.
    fsdp_reshard_after_forward frees each Block's gathered weights after its forward (gathering them
    again for backward); the root's are kept, as backward needs them first.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.split(":")[0], (dist.world_size,))
    mp_policy = MixedPrecisionPolicy()  # float32: compute with the weights as they are
    if pick_dtype(cfg.dtype, device) == torch.bfloat16:
        mp_policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, reshard_after_forward=cfg.fsdp_reshard_after_forward, mp_policy=mp_policy)
    fully_shard(model, mesh=mesh, mp_policy=mp_policy)


def put_on_device(model, cfg, dist, device):
    """The model on this process's device: whole, or when sharded only this process's slices (in place)."""
    if dist.sharded:
        shard_model(model, cfg, dist, device)
    else:
        model.to(device)


def wrap_model(model, cfg, dist, device):
    """(the model to train, the model to evaluate): the model compiled when cfg.compile, and for
    training under torchrun with parallel=ddp, wrapped by DDP, which averages gradients in backward.
    (An fsdp model is already sharded, in place: shard_model.)"""
    compiled = maybe_compile(model, cfg.compile)
    if dist.world_size == 1 or dist.sharded:
        return compiled, compiled
    device_ids = [dist.local_rank] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(compiled, device_ids=device_ids), compiled


def is_sharded(model):
    """Whether the model (compiled or not) is an FSDP2 one, sharded by shard_model."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(model, "_orig_mod", model), FSDPModule)


@contextmanager
def no_sync(model):
    """A micro-step that does not step: its gradients are not averaged across processes yet; they add
    up locally and the last micro-step's backward averages the sum. DDP: model.no_sync(). FSDP2:
    gradient sync off, so each process accumulates whole (unsharded, float32) gradients meanwhile
    (sync_every_micro_step=True avoids that copy, for more traffic)."""
    if not is_sharded(model):
        with model.no_sync():
            yield
        return
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def broadcast_flag(flag, dist, device):
    """Rank 0 decides (e.g. to stop); every rank follows, so none waits forever for the others."""
    if dist.world_size == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


def broadcast_values(values, dist, device):
    """Rank 0's numbers ({name: float}) on every rank, so that all take the same decisions on them."""
    if dist.world_size == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=0)
    return dict(zip(values, t.tolist()))


def agreed(value, dist, device):
    """When sharded, rank 0's value (a flag, or {name: float}) on every process, as each evaluation batch needs
    them all; otherwise this process's own (it decides alone)."""
    if not dist.sharded:
        return value
    return broadcast_values(value, dist, device) if isinstance(value, dict) else broadcast_flag(value, dist, device)


def barrier(dist):
    if dist.world_size > 1:
        torch.distributed.barrier()
