"""Token datasets written by prepare.py, and the one function that makes batches from them.

A dataset is a folder data/<name>/ with train.bin and val.bin (uint16 token ids) and meta.json
(the tokenizer). Splits small enough to hold in memory are loaded once, onto the training device
(no host-to-device copy per step); larger ones are read by memmap, opened afresh for each batch
so its pages are not kept (nanoGPT issue #287).

Web-scale datasets (prepare.py openwebtext, fineweb_edu) are split into shards instead,
train_000000.bin, ... and val_000000.bin, ..., listed in meta.json under "shards"; they are always
read by memmap (see Shards), so a dataset larger than memory trains.
"""

import json
from pathlib import Path

import numpy as np
import torch

from settings import UserError

IN_MEMORY_LIMIT = 1 << 30  # bytes per split; above this, read batches by memmap


def model_vocab_size(meta):
    """The model's vocabulary for a dataset's: padded to a multiple of 64 when large (50257 -> 50304),
    which makes the embedding and head matmuls faster; the padding ids never occur in the data."""
    n = meta["vocab_size"]
    return n if n < 1024 else (n + 63) // 64 * 64


def load_meta(dataset_dir):
    """The dataset's meta.json as a dict; a clear error if the dataset was never prepared."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "meta.json"
    if not path.is_file() and (dataset_dir / "train.bin").is_file():
        # a folder prepared by nanoGPT: its meta.pkl for a char-level vocabulary, else GPT-2's BPE
        from checkpoint import read_meta_pkl

        pkl = dataset_dir / "meta.pkl"
        return read_meta_pkl(pkl) if pkl.is_file() else {"tokenizer": "gpt2", "vocab_size": 50257}
    if not path.is_file():
        raise UserError(f"dataset '{dataset_dir.name}' not found in {dataset_dir.parent}/; "
                        f"create it with: python prepare.py {dataset_dir.name}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is unreadable ({type(e).__name__}); prepare the dataset again with: "
                        f"python prepare.py {dataset_dir.name}") from None
    if not isinstance(meta, dict) or "vocab_size" not in meta:
        raise UserError(f"{path} has no vocab_size; prepare the dataset again with: python prepare.py {dataset_dir.name}")
    return meta


class Shards:
    """One split stored as several uint16 .bin files, read by memmap, never loaded whole.

    Windows are numbered across the shards: window w is offset w - first[s] in shard s, and no
    window crosses a shard boundary (documents from two shards are never glued together). So
    drawing w uniformly draws each shard in proportion to its size, and a window is exactly one
    of those a single concatenated file would have had, bar the few at the seams.
    """

    def __init__(self, paths, block_size):
        self.paths = paths
        self.sizes = [p.stat().st_size // 2 for p in paths]
        counts = torch.tensor([max(n - block_size, 0) for n in self.sizes])  # window starts per shard
        self.ends = counts.cumsum(0)  # (n_shards,) the first window number past each shard
        self.first = self.ends - counts
        self.num_windows, self.num_tokens = int(self.ends[-1]), sum(self.sizes)

    def gather(self, starts, length):
        """Windows (B, length) of int64 token ids starting at window numbers `starts` (B,)."""
        shard = torch.searchsorted(self.ends, starts, right=True)  # (B,)
        offsets = (starts - self.first[shard])[:, None] + torch.arange(length)  # (B, length)
        out = torch.empty(offsets.shape, dtype=torch.long)
        for s in shard.unique().tolist():
            rows = shard == s
            tokens = np.memmap(self.paths[s], dtype=np.uint16, mode="r")  # opened afresh: pages not kept
            out[rows] = torch.from_numpy(tokens[offsets[rows].numpy()].astype(np.int64))
        return out

    def sequential_starts(self, block_size):
        """Window numbers of non-overlapping windows covering every shard once."""
        return torch.cat([torch.arange(0, n - block_size, block_size) + first
                          for n, first in zip(self.sizes, self.first.tolist())])


class TokenData:
    """The train and val splits of one dataset, ready to cut into (input, target) batches."""

    def __init__(self, dataset_dir, block_size, device="cpu"):
        self.dir, self.block_size, self.device = Path(dataset_dir), block_size, torch.device(device)
        self.meta = load_meta(self.dir)
        self.splits = {split: self._open(split) for split in ("train", "val")}

    def _open(self, split):
        if "shards" in self.meta:
            return self._open_shards(split)
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

    def _open_shards(self, split):
        paths = [self.dir / name for name in self.meta["shards"][split]]
        for path in paths:
            if not path.is_file():
                raise UserError(f"{path} is missing; prepare the dataset again with: python prepare.py {self.dir.name}")
        shards = Shards(paths, self.block_size) if paths else None
        if shards is None or shards.num_windows == 0:
            raise UserError(f"{split} split of '{self.dir.name}' has no shard longer than block_size + 1 = "
                            f"{self.block_size + 1} tokens; lower block_size or use more text")
        return shards

    def tokens(self, split):
        data = self.splits[split]
        return torch.from_numpy(np.memmap(data, dtype=np.uint16, mode="r")) if isinstance(data, Path) else data

    def num_tokens(self, split):
        data = self.splits[split]
        if isinstance(data, Shards):
            return data.num_tokens
        return data.stat().st_size // 2 if isinstance(data, Path) else len(data)

    def random_starts(self, split, shape, generator):
        """Random window offsets of the given shape, drawn from `generator`."""
        data = self.splits[split]
        n = data.num_windows if isinstance(data, Shards) else self.num_tokens(split) - self.block_size
        return torch.randint(n, shape, generator=generator)

    def get_batch(self, split, batch_size, generator, starts=None):
        """x, y: (B, T) token ids on the device, y being x shifted one to the left.

        Windows start at random offsets drawn from `generator` (so the data order is part of the
        saved training state), or at the given `starts`.
        """
        T = self.block_size
        if starts is None:
            starts = self.random_starts(split, (batch_size,), generator)
        if isinstance(self.splits[split], Shards):
            window = self.splits[split].gather(starts, T + 1)  # (B, T+1)
        else:
            data = self.tokens(split)
            offsets = starts[:, None] + torch.arange(T + 1)  # (B, T+1)
            if data.device != offsets.device:
                # from pinned memory the copy is asynchronous; from pageable memory it would stall
                # the host until the GPU finished all queued work, every step
                offsets = offsets.pin_memory().to(data.device, non_blocking=True)
            window = data[offsets].long()  # (B, T+1), one gather for the whole batch
        x, y = window[:, :-1], window[:, 1:]
        if x.device.type != self.device.type:  # split held on the host: copy the batch over
            pin = self.device.type == "cuda"
            x, y = (t.pin_memory().to(self.device, non_blocking=True) if pin else t.to(self.device) for t in (x, y))
        return x, y

    def sequential_batches(self, split, batch_size):
        """Non-overlapping windows covering the whole split once, for an exact, repeatable loss."""
        T = self.block_size
        data = self.splits[split]
        starts = data.sequential_starts(T) if isinstance(data, Shards) else torch.arange(0, self.num_tokens(split) - T, T)
        for chunk in starts.split(batch_size):
            yield self.get_batch(split, len(chunk), None, starts=chunk)
