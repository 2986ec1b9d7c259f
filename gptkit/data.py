"""Token datasets written by prepare.py, and the one function that makes batches from them.

A dataset is a folder data/<name>/ with train.bin and val.bin (uint16 token ids) and meta.json
(the tokenizer). Splits small enough to hold in memory are loaded once, onto the training device
(no host-to-device copy per step); larger ones are read by memmap, opened afresh for each batch
so its pages are not kept (nanoGPT issue #287).

Web-scale datasets (prepare.py openwebtext, fineweb_edu) are split into shards instead,
train_000000.bin, ... and val_000000.bin, ..., listed in meta.json under "shards"; they are always
read by memmap (see Shards), so a dataset larger than memory trains.

The data is checked before it is trusted, where it is cheap (check_meta, TokenData): every file a
whole number of tokens, no split empty, the token counts meta.json records, and no id past the
vocabulary: by a scan of each split held in memory, by the largest id prepare.py records for one
too large for memory. A nanoGPT-prepared folder records neither: its splits are scanned when they
fit in memory, else each batch read from disk is checked as it is made. Errors name the file and
the prepare.py command that rebuilds the dataset.
"""

import json
from pathlib import Path

import numpy as np
import torch

from gptkit.config import is_count
from gptkit.errors import UserError
from gptkit.nanogpt import read_meta_pkl
from gptkit.tokenizer import read_tokenizer_file

# The datasets prepare.py makes, by name, and their tokenizer (text: the one --tokenizer names)
DATASETS = {"shakespeare_char": "char", "shakespeare": "gpt2", "text": None, "numbers_de": "char",
            "translation": None, "openwebtext": "gpt2", "fineweb_edu": "gpt2"}
# A pair dataset's special tokens, given the ids after the tokenizer's own (meta.json's "specials"); EOS first, so
# that the ids below PAD (vocab_limit=eos+1) are all a translation may hold: text, and the EOS that ends it
PAIR_SPECIALS = ("eos", "pad", "bos")
IN_MEMORY_LIMIT = 1 << 30  # bytes per split; above this, read batches by memmap


def model_vocab_size(meta):
    """The model's vocabulary for a dataset's: the tokenizer's, then a pair dataset's special tokens, padded to a
    multiple of 64 when large (50257 -> 50304), which makes the embedding and head matmuls faster; the padding
    ids never occur in the data."""
    n = meta["vocab_size"] + len(meta.get("specials", {}))
    return n if n < 1024 else (n + 63) // 64 * 64


def load_meta(dataset_dir):
    """The dataset's meta.json as a dict; a clear error if the dataset was never prepared."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "meta.json"
    if not path.is_file() and (dataset_dir / "train.bin").is_file():
        # a folder prepared by nanoGPT: its meta.pkl for a char-level vocabulary, else GPT-2's BPE
        pkl = dataset_dir / "meta.pkl"
        return read_meta_pkl(pkl) if pkl.is_file() else {"tokenizer": "gpt2", "vocab_size": 50257}
    if not path.is_file():
        raise UserError(f"dataset '{dataset_dir.name}' not found in {dataset_dir.parent}/; "
                        f"create it with: {rebuild_command(dataset_dir)}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is unreadable ({type(e).__name__}); rebuild it with: "
                        f"{rebuild_command(dataset_dir)}") from None
    if not isinstance(meta, dict) or "vocab_size" not in meta:
        raise UserError(f"{path} has no vocab_size; rebuild it with: {rebuild_command(dataset_dir)}")
    problem = check_meta(meta)
    if problem:
        raise UserError(f"{path}: {problem}; rebuild it with: {rebuild_command(dataset_dir, meta)}")
    return read_tokenizer_file(meta, dataset_dir)  # a trained BPE's tokens, from the file beside meta.json


def check_meta(meta):
    """What is wrong with a meta.json's description of its data, or None. Token ids are uint16."""
    n = meta["vocab_size"]
    if not (is_count(n) and 1 <= n <= 2**16):
        return f"vocab_size={n!r}; expected a whole number from 1 to 65536 (the .bin files hold uint16 ids)"
    if meta.get("tokenizer") == "char":
        chars = meta.get("chars")
        if not isinstance(chars, str) or len(chars) != n:
            shown = f"{len(chars)} characters" if isinstance(chars, str) else f"a {type(chars).__name__}"
            return f"'chars' holds {shown} but vocab_size is {n}"
        if len(set(chars)) != n:
            return "'chars' lists a character twice"
    for key in ("train_tokens", "val_tokens", "train_max_id", "val_max_id", "train_bytes", "val_bytes"):
        if key in meta and not is_count(meta[key]):
            return f"{key}={meta[key]!r}; expected a count"
    if "shards" in meta:
        shards = meta["shards"]
        names = [shards.get(split) for split in ("train", "val")] if isinstance(shards, dict) else [None]
        if not all(isinstance(split, list) and all(isinstance(name, str) and Path(name).name == name
                                                   and name.endswith(".bin") and not name.startswith(".")
                                                   for name in split) for split in names):
            return "shards must list .bin file names in its folder for train and val"
    return None


def rebuild_command(dataset_dir, meta=None):
    """The prepare.py command that writes the dataset at dataset_dir (again, from its recorded source): a name
    prepare.py does not know is the text dataset of the learner's own FILE."""
    dataset_dir, meta = Path(dataset_dir), meta or {}
    name, source = dataset_dir.name, meta.get("source")
    try:  # the text it was prepared from, if it is still there (meta.json may hold anything here)
        args = [f"--input={source}"] if isinstance(source, str) and source and Path(source).exists() else []
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        args = []
    if name not in DATASETS or name == "text":
        tokenizer = [f"--tokenizer={meta['tokenizer']}"] if meta.get("tokenizer") else []  # else char, the default
        args = [*(args or ["--input=FILE"]), f"--name={name}", *tokenizer]
        if meta.get("tokenizer") == "bpe":
            args.append(f"--vocab_size={meta.get('vocab_size')}")
        name = "text"
    if dataset_dir.parent != Path("data"):
        args.append(f"--data_dir={dataset_dir.parent}")
    return " ".join(["python3 prepare.py", name, *args])


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
        self.vocab_size = self.meta["vocab_size"]
        self.splits = {split: self._open(split) for split in ("train", "val")}

    def _error(self, problem):
        return UserError(f"{problem}; rebuild it with: {rebuild_command(self.dir, self.meta)}")

    def _count_tokens(self, paths, split, what):
        """Tokens in the split's files, each checked to be whole 2-byte ids, the sum against meta.json's count."""
        n_tokens = 0
        for path in paths:
            if not path.is_file():
                raise self._error(f"{path} is missing")
            size = path.stat().st_size
            if size % 2:
                raise self._error(f"{path} is {size:,} bytes, not a whole number of 2-byte token ids: it is "
                                  f"damaged or was not written by prepare.py")
            n_tokens += size // 2
        one = len(paths) == 1
        if n_tokens == 0:
            raise self._error(f"{what} {'is' if one else 'are'} empty")
        recorded = self.meta.get(f"{split}_tokens")
        if recorded is not None and n_tokens != recorded:
            raise self._error(f"{what} hold{'s' * one} {n_tokens:,} tokens but meta.json records "
                              f"{recorded:,}: incomplete, or from another preparation")
        return n_tokens

    def _check_recorded_max_id(self, split, what):
        largest = self.meta.get(f"{split}_max_id")
        if largest is not None and largest >= self.vocab_size:
            raise self._error(f"meta.json records {largest} as the largest token id in {what}, but its "
                              f"vocabulary has {self.vocab_size} ids")

    def _open(self, split):
        if "shards" in self.meta:
            return self._open_shards(split)
        path = self.dir / f"{split}.bin"
        n_tokens = self._count_tokens([path], split, str(path))
        if n_tokens < self.block_size + 1:
            raise UserError(f"{split} split of '{self.dir.name}' has {n_tokens} tokens, fewer than "
                            f"block_size + 1 = {self.block_size + 1}; lower block_size or use more text")
        if path.stat().st_size > IN_MEMORY_LIMIT:
            self._check_recorded_max_id(split, path.name)
            return path
        tokens = np.fromfile(path, dtype=np.uint16)
        if tokens.max() >= self.vocab_size:  # one pass over memory: cheap next to training
            at = int(np.argmax(tokens >= self.vocab_size))
            raise self._error(f"{path} holds token id {tokens[at]} (token {at:,}) but meta.json's vocabulary has "
                              f"{self.vocab_size} ids (0 to {self.vocab_size - 1}): the data and meta.json come "
                              f"from different preparations")
        return torch.from_numpy(tokens.astype(np.int64)).to(self.device)

    def _open_shards(self, split):
        paths = [self.dir / name for name in self.meta["shards"][split]]
        if not paths:
            raise self._error(f"the {split} split of '{self.dir.name}' is empty: meta.json lists no shards")
        self._count_tokens(paths, split, f"the {split} shards")
        self._check_recorded_max_id(split, f"the {split} shards")
        shards = Shards(paths, self.block_size)
        if shards.num_windows == 0:
            raise UserError(f"{split} split of '{self.dir.name}' has no shard longer than block_size + 1 = "
                            f"{self.block_size + 1} tokens; lower block_size or use more text")
        return shards

    def _check_ids(self, split, window):
        """A batch read from a split too large to scan must not reach past the vocabulary (a CUDA
        embedding would fail with a device-side assert, far from the cause)."""
        largest = int(window.max())
        if largest >= self.vocab_size:
            data = self.splits[split]
            where = f"the {split} shards hold" if isinstance(data, Shards) else f"{data} holds"
            raise self._error(f"{where} token id {largest} but meta.json's vocabulary has {self.vocab_size} ids "
                              f"(0 to {self.vocab_size - 1})")

    def tokens(self, split):
        data = self.splits[split]
        if isinstance(data, Path):  # copy-on-write: a writable array for torch, and the file is never changed
            return torch.from_numpy(np.memmap(data, dtype=np.uint16, mode="c"))
        return data

    @property
    def tokens_per_row(self):
        """The tokens one batch row trains on: block_size (train.py's tokens/s)."""
        return self.block_size

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
        if isinstance(self.splits[split], (Shards, Path)):  # read from disk, on the host: never scanned whole
            self._check_ids(split, window)
        x, y = window[:, :-1], window[:, 1:]
        if x.device.type != self.device.type:  # split held on the host: copy the batch over
            pin = self.device.type == "cuda"
            x, y = (t.pin_memory().to(self.device, non_blocking=True) if pin else t.to(self.device) for t in (x, y))
        return x, y

    def sequential_starts(self, split):
        """The starts of non-overlapping windows covering the whole split once (each shard once)."""
        T = self.block_size
        data = self.splits[split]
        return data.sequential_starts(T) if isinstance(data, Shards) else torch.arange(0, self.num_tokens(split) - T, T)

    def sequential_batches(self, split, batch_size):
        """Non-overlapping windows covering the whole split once, for an exact, repeatable loss."""
        for chunk in self.sequential_starts(split).split(batch_size):
            yield self.get_batch(split, len(chunk), None, starts=chunk)


def model_inputs(x):
    """A batch's inputs as the model's positional arguments: (x,) for a GPT, (src, tgt) for the encoder-decoder."""
    return x if isinstance(x, tuple) else (x,)


def open_data(dataset_dir, block_size, device, model="gpt"):
    """A dataset ready to make batches: PairData when prepare.py wrote sentence pairs (laid out for the encoder-
    decoder, or for a GPT as source, BOS, target), else TokenData. model: train.py's `model` setting."""
    if model == "transformer" or "specials" in load_meta(dataset_dir):
        layout = "encoder_decoder" if model == "transformer" else "decoder_only"
        return PairData(dataset_dir, block_size, device, layout)
    return TokenData(dataset_dir, block_size, device)


class PairData:
    """The train and val splits of a sentence-pair dataset (prepare.py numbers_de, translation), ready to cut
    into padded batches, in one of two layouts chosen when the data is opened:

    encoder_decoder (transformer.py): inputs (src, tgt), src (B, S) the sources, tgt (B, T) = BOS + target;
        targets (B, T) = target + EOS. Sources and tgt are padded with PAD to the batch's longest, targets
        with -1, which the loss ignores.
    decoder_only (a GPT on the same pairs): inputs (x,), x (B, L) = source, BOS, target (BOS as the separator);
        targets (B, L) = x shifted one to the left with EOS last, -1 on the source and the padding: the loss
        is on the target alone, as the encoder-decoder's.

    Each split's file holds pair after pair: source ids, BOS, target ids, EOS. The pairs are kept as padded
    tables on the device, so a batch is one gather of rows, trimmed to its longest pair.
    """

    LAYOUTS = ("encoder_decoder", "decoder_only")

    def __init__(self, dataset_dir, block_size, device="cpu", layout="encoder_decoder"):
        self.dir, self.block_size, self.device = Path(dataset_dir), block_size, torch.device(device)
        self.layout = layout
        self.meta = load_meta(self.dir)
        if "specials" not in self.meta:
            raise UserError(f"dataset '{self.dir.name}' holds running text, not sentence pairs; a translation model "
                            f"trains on pairs: python3 prepare.py numbers_de, or python3 prepare.py translation "
                            f"--src=FILE --tgt=FILE")
        self.specials = self.meta["specials"]
        self.pairs = {split: self._read(split) for split in ("train", "val")}  # [(source ids, target ids)]
        self.tables = {split: self._tables(pairs) for split, pairs in self.pairs.items()}

    def _error(self, problem):
        return UserError(f"{problem}; rebuild it with: {rebuild_command(self.dir, self.meta)}")

    def _read(self, split):
        """The split's pairs [(source ids, target ids)], each checked to be source, BOS, target, EOS."""
        path = self.dir / f"{split}.bin"
        if not path.is_file() or path.stat().st_size % 2:
            raise self._error(f"{path} is missing, or not a whole number of 2-byte token ids")
        tokens = np.fromfile(path, dtype=np.uint16).astype(np.int64)
        bos, eos = self.specials["bos"], self.specials["eos"]
        if not len(tokens) or tokens[-1] != eos or tokens.max() > max(self.specials.values()):
            raise self._error(f"{path} is not pairs of source, BOS, target, EOS within the vocabulary")
        ends = np.flatnonzero(tokens == eos)  # (N,) where each pair ends
        starts = np.concatenate([[0], ends[:-1] + 1])
        seps = np.flatnonzero(tokens == bos)  # (N,) each pair's BOS, if every pair has exactly one
        if len(seps) != len(ends) or not ((starts < seps) & (seps < ends - 1)).all():
            raise self._error(f"{path} is not pairs of a source, BOS, a target, EOS: a pair has no source, no target, "
                              f"or not one BOS")
        pairs = [(tokens[a:b].tolist(), tokens[b + 1:e].tolist()) for a, b, e in zip(starts, seps, ends)]
        if len(pairs) != self.meta.get(f"{split}_pairs", len(pairs)):
            raise self._error(f"{path} holds {len(pairs):,} pairs but meta.json records "
                              f"{self.meta[f'{split}_pairs']:,}")
        self._check_length(pairs, split)
        return pairs

    def _check_length(self, pairs, split):
        """Every pair must fit the model's positions: block_size for the source, and for BOS + target (or, decoder-
        only, for source, BOS and target together)."""
        if self.layout == "encoder_decoder":
            lengths = {"source": max(len(s) for s, _ in pairs), "target + BOS": max(len(t) + 1 for _, t in pairs)}
        else:
            lengths = {"source + BOS + target": max(len(s) + len(t) + 1 for s, t in pairs)}
        for what, n in lengths.items():
            if n > self.block_size:
                raise UserError(f"the longest {what} in the {split} split of '{self.dir.name}' has {n} tokens, more "
                                f"than the model's block_size={self.block_size} positions; set --block_size={n} or "
                                f"more, or leave the longest pairs out of the dataset")

    def _tables(self, pairs):
        """Padded (N, L) tables of the split's pairs in this layout, and each pair's length (N,)."""
        pad, bos, eos = self.specials["pad"], self.specials["bos"], self.specials["eos"]
        if self.layout == "encoder_decoder":
            rows = {"src": [s for s, _ in pairs], "tgt": [[bos, *t] for _, t in pairs],
                    "targets": [[*t, eos] for _, t in pairs]}
            fill = {"src": pad, "tgt": pad, "targets": -1}
        else:
            rows = {"x": [[*s, bos, *t] for s, t in pairs],
                    "targets": [[-1] * len(s) + [*t, eos] for s, t in pairs]}
            fill = {"x": pad, "targets": -1}
        tables = {}
        for name, seqs in rows.items():
            table = np.full((len(seqs), max(map(len, seqs))), fill[name], dtype=np.int64)
            for i, seq in enumerate(seqs):
                table[i, :len(seq)] = seq
            tables[name] = torch.from_numpy(table).to(self.device)
            tables[name + "_len"] = torch.tensor([len(seq) for seq in seqs], device=self.device)
        return tables

    def num_pairs(self, split):
        return len(self.pairs[split])

    def random_starts(self, split, shape, generator):
        """Random pair numbers of the given shape, drawn from `generator` (TokenData's windows, for pairs)."""
        return torch.randint(self.num_pairs(split), shape, generator=generator)

    @property
    def tokens_per_row(self):
        """The tokens a pair's loss counts (its target and EOS), on average over the train split: what train.py's
        tokens/s counts, the same for both layouts."""
        return float((self.tables["train"]["targets"] != -1).sum(dim=1).float().mean())

    def get_batch(self, split, batch_size, generator, starts=None):
        """(inputs, targets) of batch_size random pairs drawn from `generator`, or of the pairs `starts`:
        inputs (src, tgt) (encoder_decoder) or x (decoder_only), each (B, L) cut to the batch's longest row."""
        rows = self.random_starts(split, (batch_size,), generator) if starts is None else starts
        tables = self.tables[split]
        rows = rows.to(self.device)
        names = ("src", "tgt") if self.layout == "encoder_decoder" else ("x",)
        cut = {name: int(tables[name + "_len"][rows].max()) for name in names}  # one sync per batch: small data
        inputs = tuple(tables[name][rows, :cut[name]] for name in names)
        targets = tables["targets"][rows, :cut[names[-1]]]  # as long as tgt (or x)
        return (inputs if len(inputs) > 1 else inputs[0]), targets

    def sequential_starts(self, split):
        """Every pair of the split, in order."""
        return torch.arange(self.num_pairs(split))

    def sequential_batches(self, split, batch_size):
        """Every pair of the split once, in order, for an exact, repeatable loss."""
        for chunk in self.sequential_starts(split).split(batch_size):
            yield self.get_batch(split, len(chunk), None, starts=chunk)
