"""Token datasets written by prepare.py, and the one function that makes batches from them.

A dataset is a folder data/<name>/ with train.bin and val.bin (uint16 token ids) and meta.json
(the tokenizer). Splits small enough to hold in memory are loaded once, onto the training device
(no host-to-device copy per step); larger ones are read by memmap, opened afresh for each batch
so its pages are not kept (nanoGPT issue #287).
"""

import json
from pathlib import Path

import numpy as np
import torch

from config import UserError

IN_MEMORY_LIMIT = 1 << 30  # bytes per split; above this, read batches by memmap


def load_meta(dataset_dir):
    """The dataset's meta.json as a dict; a clear error if the dataset was never prepared."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "meta.json"
    if not path.is_file():
        raise UserError(f"dataset '{dataset_dir.name}' not found in {dataset_dir.parent}/; "
                        f"create it with: python prepare.py {dataset_dir.name}")
    return json.loads(path.read_text())


class TokenData:
    """The train and val splits of one dataset, ready to cut into (input, target) batches."""

    def __init__(self, dataset_dir, block_size, device="cpu"):
        self.dir, self.block_size, self.device = Path(dataset_dir), block_size, torch.device(device)
        self.meta = load_meta(self.dir)
        self.splits = {split: self._open(split) for split in ("train", "val")}

    def _open(self, split):
        path = self.dir / f"{split}.bin"
        if not path.is_file():
            raise UserError(f"{path} is missing; prepare the dataset again with: python prepare.py {self.dir.name}")
        n_tokens = path.stat().st_size // 2
        if n_tokens < self.block_size + 1:
            raise UserError(f"{split} split of '{self.dir.name}' has {n_tokens} tokens, fewer than "
                            f"block_size + 1 = {self.block_size + 1}; lower block_size or use more text")
        if path.stat().st_size > IN_MEMORY_LIMIT:
            return path
        tokens = torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64))
        return tokens.to(self.device)

    def tokens(self, split):
        data = self.splits[split]
        return torch.from_numpy(np.memmap(data, dtype=np.uint16, mode="r")) if isinstance(data, Path) else data

    def num_tokens(self, split):
        data = self.splits[split]
        return data.stat().st_size // 2 if isinstance(data, Path) else len(data)

    def random_starts(self, split, shape, generator):
        """Random window offsets of the given shape, drawn from `generator`."""
        return torch.randint(self.num_tokens(split) - self.block_size, shape, generator=generator)

    def get_batch(self, split, batch_size, generator, starts=None):
        """x, y: (B, T) token ids on the device, y being x shifted one to the left.

        Windows start at random offsets drawn from `generator` (so the data order is part of the
        saved training state), or at the given `starts`.
        """
        T = self.block_size
        if starts is None:
            starts = self.random_starts(split, (batch_size,), generator)
        data = self.tokens(split)
        offsets = starts[:, None] + torch.arange(T + 1)  # (B, T+1)
        if data.device != offsets.device:
            offsets = offsets.to(data.device)
        window = data[offsets].long()  # (B, T+1), one gather for the whole batch
        x, y = window[:, :-1], window[:, 1:]
        if x.device != self.device:
            pin = self.device.type == "cuda"
            x, y = (t.pin_memory().to(self.device, non_blocking=True) if pin else t.to(self.device) for t in (x, y))
        return x, y

    def sequential_batches(self, split, batch_size):
        """Non-overlapping windows covering the whole split once, for an exact, repeatable loss."""
        T = self.block_size
        starts = torch.arange(0, self.num_tokens(split) - T, T)
        for chunk in starts.split(batch_size):
            yield self.get_batch(split, len(chunk), None, starts=chunk)
