"""Several processes under torchrun: joining the process group, and deciding together."""

import os
from dataclasses import dataclass

import torch


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
