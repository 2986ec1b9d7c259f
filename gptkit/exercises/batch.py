"""batch: get_batch(data, starts, block_size) -> x, y, checked against TokenData.get_batch (gptkit/data.py)
on a small dataset written to a temporary folder."""

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from gptkit.data import TokenData
from gptkit.exercises.harness import Result, as_tuple, check_shape, compare, first_match

TITLE = "x and y: windows of the text, y shifted by one"
WRITES = "get_batch"
N, VOCAB = 60, 50
# (block_size, starts): the last case has the first window and the last there is (its target the split's last token)
CASES = [(8, [3, 17, 30, 41]), (1, [5]), (16, [0, 20, N - 16 - 1])]


def reference_batches(data, starts, block_size):
    """TokenData.get_batch, the batches train.py trains on, from `data` written as a dataset folder."""
    with tempfile.TemporaryDirectory() as folder:
        for split in ("train", "val"):
            data.numpy().astype(np.uint16).tofile(Path(folder) / f"{split}.bin")
        (Path(folder) / "meta.json").write_text(json.dumps({"vocab_size": VOCAB, "tokenizer": "gpt2"}))
        return TokenData(folder, block_size).get_batch("train", len(starts), None, starts=starts)


def windows(data, starts, length):
    return torch.stack([data[s:s + length] for s in starts.tolist()])  # (B, length)


SWAPPED = "x and y are swapped: x starts at starts[b], y one token later"


def too_long(t, T):
    if isinstance(t, torch.Tensor) and t.shape[-1:] == (T + 1,):
        return f"it has block_size + 1 = {T + 1} positions: a window of T + 1 tokens gives x its first T, y its last T"
    return ""


def x_causes(x, y, data, starts, T):
    if first_match(y, [(SWAPPED, windows(data, starts, T))]) and first_match(x, [(SWAPPED, windows(data, starts + 1, T))]):
        return SWAPPED
    return first_match(x, [
        ("x starts one token late: x[b] = data[starts[b] : starts[b] + block_size]", windows(data, starts + 1, T)),
    ]) or too_long(x, T)


def y_causes(x, y, data, starts, T):
    if x_causes(x, y, data, starts, T) == SWAPPED:
        return SWAPPED
    return first_match(y, [
        ("y equals x: the target at position t is the next token, data[starts[b] + t + 1]", windows(data, starts, T)),
        ("y is x shifted to the right (the previous token); shift it left: data[starts[b] + 1 : starts[b] + 1 + "
         "block_size]", lambda: windows(data, starts - 1, T) if starts.min() > 0 else None),
        ("y is shifted by two: y[b, t] = data[starts[b] + t + 1], one after x[b, t]",
         lambda: windows(data, starts + 2, T) if starts.max() + T + 2 <= len(data) else None),
    ]) or too_long(y, T)


def get_batch_matches_token_data(mine):
    data = torch.randint(VOCAB, (N,), generator=torch.Generator().manual_seed(0))
    for T, starts in CASES:
        starts, B = torch.tensor(starts), len(starts)
        out = mine.call(mine.get_batch, data.clone(), starts.clone(), T)
        wrong = as_tuple(out, ("x", "y"))
        if wrong:
            yield wrong
            return
        x, y = out
        ref_x, ref_y = reference_batches(data, starts, T)
        where = f"B={B}, block_size={T}, starts={starts.tolist()}"
        yield check_shape(f"x is (B, T) int64 ({where})", x, (B, T), torch.int64)
        yield check_shape(f"y is (B, T) int64 ({where})", y, (B, T), torch.int64)
        yield compare(f"x equals TokenData.get_batch's ({where})", x, ref_x, lambda: x_causes(x, y, data, starts, T))
        yield compare(f"y equals TokenData.get_batch's ({where})", y, ref_y, lambda: y_causes(x, y, data, starts, T))
        if T > 1 and x.shape == y.shape == (B, T):
            shifted = torch.equal(y[:, :-1], x[:, 1:])
            yield Result(f"y[:, t] is x[:, t + 1]: one window, shifted by one ({where})", shifted,
                         "y[:, :-1] == x[:, 1:]", "they differ" if not shifted else "")


GROUPS = [get_batch_matches_token_data]
TRAIN = None
