"""prepare.py openwebtext / fineweb_edu on local files shaped like the real sources (Parquet with a
"text" column, or JSON lines), the shards they write, batches read from shards by memmap, and
train.py on the result. Offline: the hub is never contacted.
"""

import json
import os
import random
import shutil

import numpy as np
import pytest
import torch

from conftest import run_script as run
from gptkit.data import Shards, TokenData
from gptkit.errors import UserError
from gptkit.tokenizer import GPT2_EOT, GPT2Tokenizer

N_DOCS = 40


@pytest.fixture(scope="module")
def documents():
    rng = random.Random(0)
    words = "the of and to in is that for it as was with be by on not he this are or his from at which".split()
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 120))) + "." for _ in range(N_DOCS)]
    docs[0] = "An unusual first document, long enough for validation windows. " * 8  # document 0 goes to val
    docs[5] = "Ünïcode, emoji 🙂 and <|endoftext|> as plain text."
    return docs


@pytest.fixture(scope="module")
def bpe():
    try:
        return GPT2Tokenizer()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"GPT-2 BPE unavailable offline: {e}")


def expected_ids(bpe, docs):
    return [i for d in docs for i in (*bpe.encode(d), GPT2_EOT)]


def read_split(folder, meta, split):
    return np.concatenate([np.fromfile(folder / name, dtype=np.uint16) for name in meta["shards"][split]]).tolist()


@pytest.fixture(scope="module")
def jsonl_dataset(tmp_path_factory, documents, bpe):
    root = tmp_path_factory.mktemp("web")
    (root / "src").mkdir()
    half = N_DOCS // 2  # two files, read in name order, as the hub's train-0000x-of-0000n files
    for i, part in enumerate((documents[:half], documents[half:])):
        with open(root / "src" / f"train-{i:05d}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": d, "id": str(j)}) + "\n" for j, d in enumerate(part))
    result = run("prepare.py", "openwebtext", f"--input={root / 'src'}", f"--data_dir={root / 'data'}",
                 "--num_proc=2", "--shard_tokens=300")
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "data" / "openwebtext"


def test_shards_hold_every_document_followed_by_eot(jsonl_dataset, documents, bpe):
    meta = json.loads((jsonl_dataset / "meta.json").read_text())
    assert meta["tokenizer"] == "gpt2" and meta["documents"] == N_DOCS
    assert len(meta["shards"]["train"]) > 3  # several shards of 300 tokens
    assert all(os.path.getsize(jsonl_dataset / n) == 600 for n in meta["shards"]["train"][:-1])
    assert read_split(jsonl_dataset, meta, "val") == expected_ids(bpe, documents[:1])
    assert read_split(jsonl_dataset, meta, "train") == expected_ids(bpe, documents[1:])
    assert meta["train_tokens"] + meta["val_tokens"] == len(expected_ids(bpe, documents))


def test_parquet_input_gives_the_same_shards(tmp_path, jsonl_dataset, documents):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (optional; CI installs it)")
    import pyarrow.parquet as pq

    (tmp_path / "src").mkdir()
    pq.write_table(pa.table({"text": documents, "id": [str(i) for i in range(N_DOCS)]}),
                   tmp_path / "src" / "train-00000-of-00001.parquet", row_group_size=7)
    result = run("prepare.py", "fineweb_edu", f"--input={tmp_path / 'src'}", f"--data_dir={tmp_path / 'data'}",
                 "--num_proc=2", "--shard_tokens=300")
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / "data" / "fineweb_edu" / "meta.json").read_text())
    reference = json.loads((jsonl_dataset / "meta.json").read_text())
    assert meta["shards"] == reference["shards"]
    for name in meta["shards"]["train"] + meta["shards"]["val"]:
        assert (tmp_path / "data" / "fineweb_edu" / name).read_bytes() == (jsonl_dataset / name).read_bytes()


def test_batches_from_shards_are_read_by_memmap_and_never_cross_a_shard(jsonl_dataset):
    data = TokenData(jsonl_dataset, block_size=32)
    shards = data.splits["train"]
    assert isinstance(shards, Shards)  # not loaded into memory
    files = [np.fromfile(p, dtype=np.uint16) for p in shards.paths]
    windows = {tuple(f[i:i + 33].tolist()) for f in files for i in range(len(f) - 32)}
    generator = torch.Generator().manual_seed(0)
    x, y = data.get_batch("train", 256, generator)
    assert x.shape == y.shape == (256, 32) and torch.equal(x[:, 1:], y[:, :-1])
    rows = torch.cat([x, y[:, -1:]], dim=1).tolist()
    assert all(tuple(r) in windows for r in rows)  # each window lies inside one shard
    assert len({tuple(r) for r in rows}) > 100  # and they are drawn from all over
    sequential = list(data.sequential_batches("train", 8))
    assert sum(len(bx) for bx, _ in sequential) == sum((len(f) - 32 + 31) // 32 for f in files)


def test_shards_record_their_count_and_largest_id_and_are_checked_against_them(jsonl_dataset, documents, bpe,
                                                                               tmp_path):
    """A split larger than memory cannot be scanned before training: prepare.py records what it knows."""
    meta = json.loads((jsonl_dataset / "meta.json").read_text())
    for split, docs in (("val", documents[:1]), ("train", documents[1:])):
        assert meta[f"{split}_max_id"] == max(expected_ids(bpe, docs))
    copy = tmp_path / "openwebtext"
    shutil.copytree(jsonl_dataset, copy)
    first = copy / meta["shards"]["train"][0]
    rebuild = "rebuild it with: python3 prepare.py openwebtext"
    for damage, phrase in [
        (lambda: first.write_bytes(first.read_bytes() + b"x"), f"{first} is 601 bytes, not a whole number"),
        (lambda: first.write_bytes(first.read_bytes()[:-2]),
         f"train shards hold {meta['train_tokens'] - 1:,} tokens but meta.json records {meta['train_tokens']:,}"),
        (lambda: (copy / "meta.json").write_text(json.dumps({**meta, "val_max_id": 60000})),
         "meta.json records 60000 as the largest token id in the val shards, but its vocabulary has 50257 ids"),
        (lambda: (copy / "meta.json").write_text(json.dumps({**meta, "shards": {"train": [], "val": []}})),
         "the train split of 'openwebtext' is empty: meta.json lists no shards"),
    ]:
        damage()
        with pytest.raises(UserError) as e:
            TokenData(copy, block_size=32)
        assert phrase in str(e.value) and rebuild in str(e.value), str(e.value)
        shutil.rmtree(copy)
        shutil.copytree(jsonl_dataset, copy)


def test_train_on_shards(jsonl_dataset, tmp_path):
    result = run("train.py", "--dataset=openwebtext", f"--data_dir={jsonl_dataset.parent}", "--n_layer=1",
                 "--n_head=2", "--n_embd=16", "--block_size=32", "--batch_size=4", "--max_iters=3",
                 "--eval_interval=3", "--eval_iters=2", "--device=cpu", "--threads=1", "--eval_full_val=True",
                 f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 3] and all(np.isfinite(r["val_loss"]) for r in log)


def test_a_rerun_replaces_old_shards(tmp_path, documents):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents), encoding="utf-8")
    args = ["prepare.py", "openwebtext", f"--input={src}", f"--data_dir={tmp_path / 'data'}", "--num_proc=1"]
    assert run(*args, "--shard_tokens=200").returncode == 0
    assert run(*args, "--shard_tokens=100000", "--max_docs=10").returncode == 0
    folder = tmp_path / "data" / "openwebtext"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["documents"] == 10 and meta["shards"] == {"train": ["train_000000.bin"], "val": ["val_000000.bin"]}
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "train_000000.bin", "val_000000.bin"]


def test_bad_input_and_missing_datasets_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"content": "no text field"}\n', encoding="utf-8")
    result = run("prepare.py", "openwebtext", f"--input={bad}", f"--data_dir={tmp_path / 'data'}", "--num_proc=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {bad}:2: expected a JSON object with a 'text' field"
    assert not (tmp_path / "data" / "openwebtext").exists()  # nothing half-written

    # no --input: stream from the hub, which needs `datasets` (not installed here) and a network (none)
    result = run("prepare.py", "fineweb_edu", f"--data_dir={tmp_path / 'data'}", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and ("pip install datasets" in last or "cannot stream" in last), last
