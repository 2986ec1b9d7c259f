"""Turn a text file into a dataset: data/<name>/train.bin, val.bin and meta.json.

    python3 prepare.py shakespeare_char             # Tiny Shakespeare, one token per character
    python3 prepare.py shakespeare                  # Tiny Shakespeare, GPT-2 BPE
    python3 prepare.py text --input=my.txt --name=mydata --tokenizer=char|gpt2
    python3 prepare.py text --input=my.txt --name=mine --tokenizer=bpe --vocab_size=4096   # your own BPE
    python3 prepare.py openwebtext                  # OpenWebText, GPT-2 BPE, 9B tokens in shards
    python3 prepare.py fineweb_edu                  # FineWeb-Edu's 10B-token sample, likewise
    python3 prepare.py numbers_de                   # English number words -> German, for transformer.py
    python3 prepare.py translation --src=en.txt --tgt=de.txt --name=NAME --tokenizer=char|gpt2

Tiny Shakespeare ships with the repository (corpus/tinyshakespeare.txt.xz, checked against its
sha256), so it needs no download; --input=PATH uses another copy.
The web datasets are streamed from the Hugging Face hub (needs `pip install datasets`), or read
from --input=DIR, a folder of the same .parquet files (or .jsonl lines of {"text": ...}); their
documents are tokenized in parallel, each followed by <|endoftext|> as in nanoGPT, into shards
of --shard_tokens tokens (train_000000.bin, ..., val_000000.bin, ...) listed in meta.json.

train.bin and val.bin hold token ids as np.uint16. As in nanoGPT, the text is split at 90% of its
characters and each part is encoded on its own, so val starts where a character starts (with BPE
the tokens at the seam can differ from those of the unsplit text). meta.json is JSON, not a
pickle: the tokenizer (`gptkit.tokenizer.load_tokenizer(meta)` rebuilds it), the token counts,
and the source and sha256 of the text. The new files are written to a temporary folder first, so
a failed run leaves an existing dataset as it was.

`text` with a byte-level tokenizer (gpt2, or bpe: a BPE trained on the text itself, saved beside
meta.json as tokenizer.tiktoken) streams the file in blocks, so it may be larger than memory: one
pass counts its characters and trains the BPE, a second encodes and writes the ids. Bytes that are
not UTF-8 are kept as byte tokens, so the dataset decodes back to the file exactly.
--doc_separator=TEXT: each occurrence of TEXT in the file ends a document and becomes the single
token <|endoftext|> (TinyStories-style files use `--doc_separator='<|endoftext|>'`).

The translation datasets (numbers_de, translation) hold sentence pairs instead of running text, in
the same train.bin and val.bin, pair after pair: source ids, BOS, target ids, EOS (gptkit/data.py's
PairData reads them). numbers_de is made offline by num2words: "four thousand, seven hundred and
eleven" -> "viertausendsiebenhundertelf" for every number below NUMBERS_DE_LIMIT. translation reads
two line-aligned files, line i of --src translated by line i of --tgt. A pair is held out for val by
a hash of its source (held_out), so a source in val never occurs in train.
"""

import codecs
import hashlib
import itertools
import zlib
import json
import lzma
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from concurrent.futures import ThreadPoolExecutor
from tqdm import tqdm

from gptkit.config import closest_key_hint, parse_args
from gptkit.data import DATASETS, PAIR_SPECIALS
from gptkit.errors import UserError, first_line, run_main
from gptkit.tokenizer import BPE_FILE, EOT_NAME, NOT_UTF8, CharTokenizer, GPT2Tokenizer, train_bpe

REPO = Path(__file__).resolve().parent
# Tiny Shakespeare (public domain; karpathy/char-rnn's data/tinyshakespeare/input.txt), xz-compressed
SHIPPED_SHAKESPEARE = REPO / "corpus" / "tinyshakespeare.txt.xz"
SHAKESPEARE_SOURCE = "corpus/tinyshakespeare.txt.xz (karpathy/char-rnn data/tinyshakespeare/input.txt)"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# The web datasets on the Hugging Face hub: (repository, configuration); streamed, never downloaded whole
WEB_DATASETS = {
    "openwebtext": ("Skylion007/openwebtext", None),
    "fineweb_edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT"),
}
SHARD_TOKENS = 100_000_000  # tokens per shard (200 MB), as build-nanogpt's fineweb.py
VAL_EVERY = 2000  # document i goes to val when i % VAL_EVERY == 0: 0.05% of them, as nanoGPT's openwebtext
VAL_FRACTION = 0.1
MIN_SPLIT_TOKENS = 2  # in each of train and val; below this there is nothing to learn or measure
BPE_CHUNK_CHARS = 1 << 16  # only sets how often the progress bar moves
READ_BLOCK = 1 << 22  # bytes of a text file read at a time when streaming it
MAX_VOCAB = 2**16  # uint16 token ids


def split_point(n_chars):
    """Characters that go to train; the rest go to val."""
    return int(n_chars * (1 - VAL_FRACTION))


# The shortest text whose train and val parts both get MIN_SPLIT_TOKENS characters.
MIN_CHARS = next(
    n for n in itertools.count(1)
    if min(split_point(n), n - split_point(n)) >= MIN_SPLIT_TOKENS
)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def check_input(path):
    """A UserError if the input file is missing, unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    try:
        with path.open("rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise UserError(f"cannot read input file {path}: {e.strerror}") from None
    if empty:
        raise UserError(f"input file {path} is empty")


def read_text(path):
    """The file's text; a UserError if it is missing, unreadable, empty or not UTF-8."""
    path = Path(path)
    check_input(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read input file {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"input file {path} is not UTF-8 text: byte 0x{data[e.start]:02x} at byte offset "
            f"{e.start:,} is invalid; fix: convert the file to UTF-8, or use --tokenizer=bpe or gpt2 (they keep "
            f"such bytes)"
        ) from None


def shakespeare_text(input_path=None):
    """Tiny Shakespeare and where it came from: --input if given, else the copy this repository ships."""
    if input_path is not None:
        text = read_text(input_path)
        if sha256(text.encode("utf-8")) != SHAKESPEARE_SHA256:
            print(
                f"warning: {input_path} is not the standard Tiny Shakespeare (sha256 differs); "
                "using it anyway",
                file=sys.stderr,
            )
        return text, str(Path(input_path).resolve())
    try:
        data = lzma.decompress(SHIPPED_SHAKESPEARE.read_bytes())
    except (OSError, lzma.LZMAError) as e:
        data, reason = b"", getattr(e, "strerror", None) or e
    else:
        reason = "its sha256 differs"
    if sha256(data) != SHAKESPEARE_SHA256:
        raise UserError(f"the shipped {SHIPPED_SHAKESPEARE.relative_to(REPO)} is damaged ({reason}); "
                        f"restore it with `git checkout -- {SHIPPED_SHAKESPEARE.relative_to(REPO)}`, "
                        f"or pass another copy with --input=PATH")
    return data.decode("utf-8"), SHAKESPEARE_SOURCE


def make_tokenizer(name, text):
    if name == "char":
        return CharTokenizer.from_text(text)
    if name == "gpt2":
        return GPT2Tokenizer()
    raise UserError(f"unknown tokenizer {name!r}; expected 'char' or 'gpt2'")


# A cut just before a newline that follows a non-space character: no GPT-2 pre-token (see
# r50k_pat_str) joins a non-space character to the whitespace after it, and the pattern never
# looks behind, so encoding the pieces one by one gives exactly the ids of the whole text. (At a
# cut inside a run of whitespace it would not: "a\n\n" ends in one token, "a\n\nb" has two.)
_BPE_CUT = re.compile(r"(?<=\S)\n")


def bpe_chunks(text, size=BPE_CHUNK_CHARS):
    """Pieces of about `size` characters that BPE-encode exactly like the whole text."""
    start = 0
    while start < len(text):
        cut = _BPE_CUT.search(text, start + size)
        end = cut.start() if cut else len(text)
        yield text[start:end]
        start = end


def encode(tokenizer, text, desc):
    if tokenizer.name == "char":  # a dict lookup per character: fast enough without a bar
        return tokenizer.encode(text)
    ids = []
    with tqdm(total=len(text), desc=desc, unit="char", unit_scale=True, disable=None) as bar:
        for chunk in bpe_chunks(text):
            ids.extend(tokenizer.encode(chunk))
            bar.update(len(chunk))
    return ids


# ---------------------------------------------------------------------------------------------
# text with a byte-level tokenizer (gpt2, bpe): streamed, so the file may be larger than memory


def last_cut(text, end):
    """The last position before `end` where _BPE_CUT allows a cut (a newline after a non-space), or 0."""
    i = text.rfind("\n", 0, end)
    while i > 0 and text[i - 1].isspace():  # isspace covers every character the pattern's \s matches
        i = text.rfind("\n", 0, i)
    return max(i, 0)


def text_pieces(path, separator="", bar=None):
    """(text, ends_document) pieces of a file read READ_BLOCK bytes at a time. Each piece BPE-encodes as
    it would inside the whole file (cut as bpe_chunks cuts, never inside a separator); a separator ends
    a document and is dropped. Bytes that are not UTF-8 come as surrogateescape characters."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    carry = ""
    with open(path, "rb") as f:
        while True:
            data = f.read(READ_BLOCK)
            if bar is not None:
                bar.update(len(data))
            carry += decoder.decode(data, final=not data)
            if separator:
                *documents, carry = carry.split(separator)
                yield from ((document, True) for document in documents)
            if not data:
                if carry:
                    yield carry, False
                return
            # a separator straddling the cut would start after len(carry) - len(separator): keep those
            cut = last_cut(carry, len(carry) - len(separator) + 1)
            if cut:
                yield carry[:cut], False
                carry = carry[cut:]


def read_file_pass(path, separator, bpe_vocab_size, special_tokens):
    """The first pass over a text file: its characters, bytes that are not UTF-8, sha256 and, for bpe,
    the tokenizer trained on it (None for gpt2)."""
    stats = {"chars": 0, "not_utf8": 0, "sha256": hashlib.sha256()}

    def texts():  # what the trainer sees: the documents, cut at the bytes that are not UTF-8
        with tqdm(total=Path(path).stat().st_size, unit="B", unit_scale=True, disable=None,
                  desc="training BPE" if bpe_vocab_size else "reading") as bar:
            for piece, _ in text_pieces(path, separator, bar):
                stats["chars"] += len(piece)
                pieces = NOT_UTF8.split(piece)  # text, bytes that are not UTF-8, text, ...
                stats["not_utf8"] += sum(map(len, pieces[1::2]))
                yield from filter(None, pieces[::2])
        with open(path, "rb") as f:  # the file as it is, separators included
            for block in iter(lambda: f.read(READ_BLOCK), b""):
                stats["sha256"].update(block)

    if bpe_vocab_size:
        tokenizer = train_bpe(texts(), bpe_vocab_size, (EOT_NAME, *special_tokens))
    else:
        tokenizer = None
        for _ in texts():
            pass
    return tokenizer, stats["chars"], stats["not_utf8"], stats["sha256"].hexdigest()


class SplitWriter:
    """Token ids appended to train.bin, then val.bin once the first `train_chars` characters are encoded."""

    def __init__(self, folder, train_chars):
        self.files = {split: open(folder / f"{split}.bin", "wb") for split in ("train", "val")}
        self.tokens, self.max_id, self.bytes = ({"train": 0, "val": 0} for _ in range(3))
        self.chars_left = train_chars

    def split(self):
        return "train" if self.chars_left > 0 else "val"

    def add(self, split, ids, n_bytes):
        self.files[split].write(np.array(ids, dtype=np.uint16).tobytes())
        self.tokens[split] += len(ids)
        self.max_id[split] = max(self.max_id[split], max(ids, default=0))
        self.bytes[split] += n_bytes

    def close(self):
        for f in self.files.values():
            f.close()


def encode_pieces(tokenizer, pieces, writer, threads):
    """Encode (text, ends_document) pieces into the writer, in order, `threads` chunks at a time (tiktoken
    releases the GIL). The piece holding the last train character is split there; <|endoftext|> follows
    each document."""

    def chunks():  # (text, split), text None for <|endoftext|>
        for text, ends_document in pieces:
            while text:
                n = min(len(text), writer.chars_left) if writer.chars_left > 0 else len(text)
                split = writer.split()
                for chunk in bpe_chunks(text[:n]):
                    yield chunk, split
                writer.chars_left -= n
                text = text[n:]
            if ends_document:
                yield None, writer.split()

    items = chunks()
    with ThreadPoolExecutor(threads) as pool:
        for batch in iter(lambda: list(itertools.islice(items, 4 * threads)), []):
            encoded = pool.map(lambda item: [tokenizer.eot] if item[0] is None else tokenizer.encode(item[0]), batch)
            for (chunk, split), ids in zip(batch, encoded):
                writer.add(split, ids, len(chunk.encode("utf-8", "surrogateescape")) if chunk is not None else 0)


def prepare_file(path, out_dir, tokenizer_name, source, vocab_size=4096, special_tokens=(), separator="",
                 threads=1):
    """Tokenize a text file with gpt2, or with a BPE trained on it (bpe), streaming it twice (train the
    BPE and count; encode), into out_dir/{train.bin,val.bin,meta.json} (+ tokenizer.tiktoken); the meta."""
    out_dir = Path(out_dir)
    bpe = tokenizer_name == "bpe"
    tokenizer, n_chars, not_utf8, digest = read_file_pass(path, separator, vocab_size if bpe else 0, special_tokens)
    tokenizer = tokenizer or GPT2Tokenizer()
    if bpe and tokenizer.vocab_size < vocab_size:
        print(f"note: the text has only {tokenizer.vocab_size - 256 - 1 - len(special_tokens):,} pairs to merge: "
              f"the vocabulary is {tokenizer.vocab_size:,} tokens, not {vocab_size:,}", file=sys.stderr)
    if not_utf8:
        print(f"note: {not_utf8:,} bytes of {path} are not UTF-8; each is kept as its own byte token",
              file=sys.stderr)
    with staging_folder(out_dir) as tmp_dir:
        writer = SplitWriter(tmp_dir, split_point(n_chars))
        try:
            with tqdm(total=Path(path).stat().st_size, unit="B", unit_scale=True, disable=None,
                      desc="encoding") as bar:
                encode_pieces(tokenizer, text_pieces(path, separator, bar), writer, threads)
        finally:
            writer.close()
        check_split(n_chars, writer.tokens["train"], writer.tokens["val"])
        meta = {**tokenizer.meta(),
                "train_tokens": writer.tokens["train"], "val_tokens": writer.tokens["val"],
                "train_max_id": writer.max_id["train"], "val_max_id": writer.max_id["val"],
                "train_bytes": writer.bytes["train"], "val_bytes": writer.bytes["val"],
                "source": source, "sha256": digest}
        names = ["train.bin", "val.bin"]
        if bpe:
            meta.pop("ranks")  # they are in the tokenizer file, which load_meta reads back in
            (tmp_dir / BPE_FILE).write_text(tokenizer.file_text(), encoding="utf-8")
            names.append(BPE_FILE)
        if separator:
            meta["doc_separator"] = separator
        try:
            publish(tmp_dir, out_dir, names, meta)
        except OSError as e:
            raise UserError(f"cannot write dataset {out_dir}: {e}") from None
    return meta


def check_split(n_chars, n_train, n_val):
    if min(n_train, n_val) < MIN_SPLIT_TOKENS:
        raise UserError(
            f"the text is too short to split into train and val: its {n_chars:,} characters give "
            f"{n_train} train + {n_val} val tokens; need at least "
            f"{MIN_SPLIT_TOKENS} tokens in each (at least {MIN_CHARS} characters, more with BPE)"
        )


@contextmanager
def staging_folder(out_dir):
    """A temporary folder beside out_dir to write a new dataset into, removed afterwards whatever happens:
    until publish() moves the files into out_dir, an error (disk full, Ctrl-C) leaves the old dataset intact."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp_dir
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def publish(tmp_dir, out_dir, names, meta):
    """Write meta.json into tmp_dir, then move the files `names` and meta.json into out_dir: meta.json last,
    since it describes them."""
    (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    out_dir.mkdir(exist_ok=True)
    for name in [*names, "meta.json"]:
        os.replace(tmp_dir / name, out_dir / name)


def write_dataset(out_dir, arrays, meta):
    """Write arrays (file name -> np.ndarray) and meta.json into out_dir, all or nothing."""
    with staging_folder(out_dir) as tmp_dir:
        for name, array in arrays.items():
            array.tofile(tmp_dir / name)
        publish(tmp_dir, out_dir, arrays, meta)


def prepare_text(text, out_dir, tokenizer_name, source):
    """Tokenize text into out_dir/{train.bin,val.bin,meta.json}; returns the meta dict."""
    out_dir = Path(out_dir)
    tokenizer = make_tokenizer(tokenizer_name, text)
    if tokenizer.vocab_size > 2**16:
        raise UserError(
            f"the text has {tokenizer.vocab_size:,} distinct characters, more than the 65,536 "
            "token ids that uint16 .bin files hold; fix: use --tokenizer gpt2"
        )
    split = split_point(len(text))
    train_ids = encode(tokenizer, text[:split], "encoding train")
    val_ids = encode(tokenizer, text[split:], "encoding val")
    check_split(len(text), len(train_ids), len(val_ids))
    arrays = {
        "train.bin": np.array(train_ids, dtype=np.uint16),
        "val.bin": np.array(val_ids, dtype=np.uint16),
    }
    meta = {
        **tokenizer.meta(),
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "train_max_id": int(arrays["train.bin"].max()),  # what gptkit/data.py checks against the vocabulary
        "val_max_id": int(arrays["val.bin"].max()),
        # bytes of text per split: loss per byte compares datasets of different tokenizers (experiment.py)
        "train_bytes": len(text[:split].encode("utf-8")),
        "val_bytes": len(text[split:].encode("utf-8")),
        "source": source,
        "sha256": sha256(text.encode("utf-8")),
    }
    try:
        write_dataset(out_dir, arrays, meta)
    except OSError as e:
        raise UserError(f"cannot write dataset {out_dir}: {e}") from None
    return meta


# ---------------------------------------------------------------------------------------------
# sentence pairs, for the encoder-decoder (transformer.py)

NUMBERS_DE_LIMIT = 10_000  # numbers_de translates 0, 1, ..., 9999
VAL_BUCKETS = 10  # a pair is held out when its source's crc32 is 0 modulo this: about 1 pair in 10


def held_out(source):
    """Whether a pair goes to val, decided by its source text alone: a source held out for val never occurs
    in train (numbers_de's held-out numbers are never seen in training, so val measures the rule learned)."""
    return zlib.crc32(source.encode("utf-8")) % VAL_BUCKETS == 0


def numbers_de_pairs():
    """(English, German) number words for 0 to NUMBERS_DE_LIMIT - 1, by num2words: its German grammar puts
    units before tens ("dreiundzwanzig") and writes each number as one word."""
    try:
        from num2words import num2words
    except ImportError:
        raise UserError("numbers_de is made by the num2words package: pip install num2words") from None
    return [(num2words(n), num2words(n, lang="de")) for n in range(NUMBERS_DE_LIMIT)]


def read_parallel(src_path, tgt_path):
    """The (source, target) pairs of two line-aligned UTF-8 files, line i of src_path translated by line i of
    tgt_path, each line stripped of surrounding spaces; a UserError for unequal line counts or an empty line."""
    src_lines, tgt_lines = ([line.strip() for line in read_text(path).splitlines()] for path in (src_path, tgt_path))
    if len(src_lines) != len(tgt_lines):
        raise UserError(f"--src {src_path} has {len(src_lines):,} lines but --tgt {tgt_path} has {len(tgt_lines):,}; "
                        f"line i of one must translate line i of the other: make the files pair up line by line")
    for path, lines in ((src_path, src_lines), (tgt_path, tgt_lines)):
        empty = next((n for n, line in enumerate(lines, 1) if not line), None)
        if empty is not None:
            raise UserError(f"line {empty} of {path} is empty, and every line must hold a sentence: remove line "
                            f"{empty} from both files, or put its translation there")
    return list(zip(src_lines, tgt_lines))


def prepare_pairs(pairs, out_dir, tokenizer_name, source):
    """Tokenize (source, target) pairs into out_dir/{train.bin,val.bin,meta.json}, each pair as source ids,
    BOS, target ids, EOS; the special tokens get the ids after the tokenizer's own. Returns the meta dict."""
    out_dir = Path(out_dir)
    tokenizer = make_tokenizer(tokenizer_name, "".join(src + tgt for src, tgt in pairs))
    specials = {name: tokenizer.vocab_size + i for i, name in enumerate(PAIR_SPECIALS)}
    if max(specials.values()) >= 2**16:
        raise UserError(f"the pairs have {tokenizer.vocab_size:,} distinct characters: with the special tokens, "
                        "more than the 65,536 token ids that uint16 .bin files hold; fix: use --tokenizer=gpt2")
    ids = {"train": [], "val": []}
    longest = {"source": 0, "target": 0}
    for src, tgt in tqdm(pairs, desc="encoding pairs", unit="pair", disable=None):
        src_ids, tgt_ids = tokenizer.encode(src), tokenizer.encode(tgt)
        ids["val" if held_out(src) else "train"] += [*src_ids, specials["bos"], *tgt_ids, specials["eos"]]
        longest = {"source": max(longest["source"], len(src_ids)), "target": max(longest["target"], len(tgt_ids))}
    counts = {split: tokens.count(specials["eos"]) for split, tokens in ids.items()}
    if min(counts.values()) < 1:
        raise UserError(f"{len(pairs)} pairs gave {counts['train']} train and {counts['val']} val pairs; need at "
                        f"least one in each (about 1 pair in {VAL_BUCKETS} is held out for val): use more pairs")
    arrays = {f"{split}.bin": np.array(tokens, dtype=np.uint16) for split, tokens in ids.items()}
    meta = {
        **tokenizer.meta(),
        "specials": specials,
        **{f"{split}_pairs": n for split, n in counts.items()},
        **{f"{split}_tokens": len(tokens) for split, tokens in ids.items()},
        "longest_source": longest["source"],  # in tokens: what block_size must hold (gptkit/data.py checks)
        "longest_target": longest["target"],
        "source": source,
        "sha256": sha256("\n".join(f"{src}\t{tgt}" for src, tgt in pairs).encode("utf-8")),
    }
    try:
        write_dataset(out_dir, arrays, meta)
    except OSError as e:
        raise UserError(f"cannot write dataset {out_dir}: {e}") from None
    return meta


# ---------------------------------------------------------------------------------------------
# web-scale datasets: documents streamed in, tokenized in parallel, written out in shards


def local_documents(path):
    """The "text" of each row of the .parquet (needs pyarrow) or .jsonl files at path (a file or folder)."""
    path = Path(path)
    files = sorted(f for f in path.iterdir() if f.suffix in (".parquet", ".jsonl")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise UserError(f"--input {path}: expected a .parquet or .jsonl file, or a folder of them")
    for f in files:
        if f.suffix == ".parquet":
            try:
                import pyarrow.parquet
            except ImportError:
                raise UserError("reading .parquet files needs pyarrow: pip install pyarrow") from None
            parquet = pyarrow.parquet.ParquetFile(f)
            if "text" not in parquet.schema_arrow.names:
                raise UserError(f"{f} has no 'text' column (columns: {', '.join(parquet.schema_arrow.names)})")
            for batch in parquet.iter_batches(columns=["text"], batch_size=1024):
                yield from batch.column(0).to_pylist()
        elif f.suffix == ".jsonl":
            with f.open(encoding="utf-8") as lines:
                for n, line in enumerate(lines, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)["text"]
                        except (ValueError, KeyError, TypeError):
                            raise UserError(f"{f}:{n}: expected a JSON object with a 'text' field") from None
        else:
            raise UserError(f"--input {f}: expected a .parquet or .jsonl file")


def hub_documents(dataset):
    """The "text" of each document of a web dataset, streamed from the Hugging Face hub."""
    repo, config = WEB_DATASETS[dataset]
    try:
        import datasets
    except ImportError:
        raise UserError(f"streaming {dataset} needs the datasets package: pip install datasets "
                        f"(or pass --input=DIR with its .parquet files)") from None
    try:
        try:
            rows = datasets.load_dataset(repo, name=config, split="train", streaming=True)
        except RuntimeError as e:  # datasets >= 4 runs no loading scripts: use the hub's Parquet conversion
            if "script" not in str(e):
                raise
            rows = datasets.load_dataset(repo, name=config, split="train", streaming=True,
                                         revision="refs/convert/parquet")
        for row in rows:
            yield row["text"]
    except (OSError, ValueError, RuntimeError) as e:  # offline: the hub cannot be reached
        raise UserError(f"cannot stream {repo} from the Hugging Face hub ({first_line(e)}); "
                        f"are you online? Or pass --input=DIR with its .parquet files") from None


_worker_tokenizer = None


def _init_worker():
    global _worker_tokenizer
    _worker_tokenizer = GPT2Tokenizer()


def tokenize_document(text):
    """One document's GPT-2 token ids followed by <|endoftext|>, as uint16 (nanoGPT's openwebtext)."""
    ids = _worker_tokenizer.encode(text or "")
    ids.append(_worker_tokenizer.eot)
    return np.array(ids, dtype=np.uint16)


class ShardWriter:
    """Token ids appended to split_000000.bin, split_000001.bin, ... of shard_tokens tokens each."""

    def __init__(self, folder, split, shard_tokens):
        self.folder, self.split = folder, split
        self.buffer, self.filled = np.empty(shard_tokens, dtype=np.uint16), 0
        self.names, self.tokens, self.max_id = [], 0, 0

    def add(self, ids):
        self.tokens += len(ids)
        self.max_id = max(self.max_id, int(ids.max(initial=0)))
        while len(ids):
            n = min(len(ids), len(self.buffer) - self.filled)
            self.buffer[self.filled:self.filled + n] = ids[:n]
            self.filled, ids = self.filled + n, ids[n:]
            if self.filled == len(self.buffer):
                self.flush()

    def flush(self):
        if self.filled:
            name = f"{self.split}_{len(self.names):06d}.bin"
            self.buffer[:self.filled].tofile(self.folder / name)
            self.names.append(name)
            self.filled = 0


def prepare_web(documents, out_dir, source, num_proc=1, shard_tokens=SHARD_TOKENS, max_docs=0):
    """Tokenize documents (an iterable of strings) in parallel into uint16 shards in out_dir.

    Document i goes to val when i % VAL_EVERY == 0, else to train. Everything is written into a
    temporary folder first and moved into place at the end; meta.json, written last, lists the shards.
    """
    out_dir = Path(out_dir)
    tokenizer = GPT2Tokenizer()  # here first: a missing BPE file is one clear error, not one per worker
    if max_docs:
        documents = itertools.islice(documents, max_docs)
    with staging_folder(out_dir) as tmp_dir:
        writers = {split: ShardWriter(tmp_dir, split, shard_tokens) for split in ("train", "val")}
        try:
            n_docs = tokenize_into(writers, documents, num_proc, max_docs)
            counts = {split: w.tokens for split, w in writers.items()}
            if min(counts.values()) < MIN_SPLIT_TOKENS:
                raise UserError(f"{n_docs} documents gave {counts['train']} train + {counts['val']} val tokens; "
                                f"need at least {MIN_SPLIT_TOKENS} in each (document 0 goes to val, then every "
                                f"{VAL_EVERY}th)")
            meta = {
                **tokenizer.meta(),
                "train_tokens": counts["train"],
                "val_tokens": counts["val"],
                # gptkit/data.py checks these without reading the shards, which may not fit in memory
                "train_max_id": writers["train"].max_id,
                "val_max_id": writers["val"].max_id,
                "documents": n_docs,
                "source": source,
                "shards": {split: w.names for split, w in writers.items()},
            }
            new = [*meta["shards"]["train"], *meta["shards"]["val"]]
            publish(tmp_dir, out_dir, new, meta)
            for split in ("train", "val"):  # then the shards of an earlier, longer run, which nothing lists now
                for stale in out_dir.glob(f"{split}_[0-9][0-9][0-9][0-9][0-9][0-9].bin"):
                    if stale.name not in new:
                        stale.unlink()
        except OSError as e:
            raise UserError(f"cannot write dataset {out_dir}: {e}") from None
    return meta


def tokenize_into(writers, documents, num_proc, max_docs):
    """Tokenize documents in num_proc processes into the train and val ShardWriters; returns how many."""
    n_docs = 0
    with multiprocessing.Pool(num_proc, initializer=_init_worker) as pool, \
            tqdm(desc="tokenizing", unit="doc", unit_scale=True, total=max_docs or None, disable=None) as bar:
        for i, ids in enumerate(pool.imap(tokenize_document, documents, chunksize=16)):
            writers["val" if i % VAL_EVERY == 0 else "train"].add(ids)
            n_docs = i + 1
            bar.update(1)
            if n_docs % 1000 == 0:
                bar.set_postfix(tokens=f"{writers['train'].tokens + writers['val'].tokens:,}")
    for writer in writers.values():
        writer.flush()
    return n_docs


def check_name(name):
    """The dataset name is one folder under --data_dir, never a path out of it."""
    if not name or name.startswith(".") or set(name) & {"/", "\\", os.sep}:
        raise UserError(
            f"--name {name!r} must be a plain folder name (no path separators, no leading '.')"
        )


@dataclass
class PrepareConfig:
    dataset: str = ""  # shakespeare_char, shakespeare, text, numbers_de, translation, openwebtext or fineweb_edu
    input: str = ""  # text: the file; Tiny Shakespeare: another copy; web datasets: a folder of .parquet/.jsonl
    src: str = ""  # translation: the source-language file, one sentence a line
    tgt: str = ""  # translation: the target-language file, line i translating line i of src
    name: str = ""  # the folder under data_dir; empty: the dataset's name
    tokenizer: str = ""  # char, gpt2 or bpe (trained on the text), for the text dataset; char or gpt2 for translation (empty: char)
    vocab_size: int = 4096  # bpe: tokens in all, the 256 bytes and the special tokens included
    special_tokens: str = ""  # bpe: more special tokens after <|endoftext|>, comma-separated: "<|user|>,<|bot|>"
    doc_separator: str = ""  # text (gpt2, bpe): this text in the file ends a document; it becomes <|endoftext|>
    data_dir: str = "data"  # the datasets go to data_dir/NAME
    num_proc: int = 0  # tokenizing processes for the web datasets; 0: one per core
    shard_tokens: int = SHARD_TOKENS  # tokens per shard of the web datasets
    max_docs: int = 0  # stop after this many documents of a web dataset; 0: all

    def validate(self):
        if not self.dataset:
            raise UserError(f"name a dataset: one of {', '.join(DATASETS)} (python3 prepare.py shakespeare_char)")
        if self.dataset not in DATASETS:
            raise UserError(f"unknown dataset '{self.dataset}'{closest_key_hint(self.dataset, list(DATASETS))}; "
                            f"the datasets are {', '.join(DATASETS)}")
        if self.dataset == "text" and not (self.input and self.name):
            raise UserError("the text dataset needs --input=PATH and --name=NAME")
        if self.dataset == "translation" and not (self.src and self.tgt):
            raise UserError("the translation dataset needs --src=FILE and --tgt=FILE, two files of the same number "
                            "of lines, line i of one translated by line i of the other")
        if (self.src or self.tgt) and self.dataset != "translation":
            raise UserError("--src and --tgt are for the translation dataset: python3 prepare.py translation "
                            "--src=FILE --tgt=FILE")
        if self.tokenizer not in ("", "char", "gpt2", "bpe"):
            raise UserError(f"tokenizer={self.tokenizer!r} is not one of 'char', 'gpt2', 'bpe'"
                            f"{closest_key_hint(self.tokenizer, ['char', 'gpt2', 'bpe'])}")
        specials = self.special_token_names()
        if self.tokenizer != "bpe" and (specials or self.vocab_size != PrepareConfig.vocab_size):
            raise UserError("--vocab_size and --special_tokens are for --tokenizer=bpe (a BPE trained on your text)")
        if self.doc_separator and self.tokenizer not in ("gpt2", "bpe"):
            raise UserError("--doc_separator ends documents with <|endoftext|>: use --tokenizer=bpe or gpt2")
        if len(set(specials)) != len(specials) or EOT_NAME in specials or "" in specials:
            raise UserError(f"--special_tokens must name distinct, non-empty tokens other than {EOT_NAME} "
                            f"(which is always there)")
        if not 256 + 1 + len(specials) <= self.vocab_size <= MAX_VOCAB:
            raise UserError(f"vocab_size={self.vocab_size} must be from {256 + 1 + len(specials)} (the 256 bytes "
                            f"and the special tokens) to {MAX_VOCAB:,} (uint16 token ids)")
        if self.dataset == "translation" and self.tokenizer == "bpe":
            raise UserError("translation takes --tokenizer=char or gpt2")
        if DATASETS[self.dataset] and self.tokenizer not in ("", DATASETS[self.dataset]):
            raise UserError(f"{self.dataset} is always {DATASETS[self.dataset]}; --tokenizer is for the text and "
                            f"translation datasets")
        if self.num_proc < 0 or self.shard_tokens < 1 or self.max_docs < 0:
            raise UserError("num_proc and max_docs must not be negative, shard_tokens must be positive")
        check_name(self.name or self.dataset)


    def special_token_names(self):
        return [name.strip() for name in self.special_tokens.split(",")] if self.special_tokens else []


def parse(argv):
    """The validated settings of a command line, without running anything."""
    (cfg,) = parse_args([PrepareConfig], argv, positional="dataset")
    return cfg


@run_main
def main(argv):
    start = time.time()
    cfg = parse(argv)
    out_dir = Path(cfg.data_dir) / (cfg.name or cfg.dataset)
    source_path = Path(cfg.input) if cfg.input else None
    if cfg.dataset in WEB_DATASETS:
        if source_path is not None:
            documents, source = local_documents(source_path), str(source_path.resolve())
        else:
            documents, source = hub_documents(cfg.dataset), "hf://datasets/" + WEB_DATASETS[cfg.dataset][0]
        meta = prepare_web(documents, out_dir, source, cfg.num_proc or os.cpu_count() or 1, cfg.shard_tokens,
                           cfg.max_docs)
        shards = sum(len(names) for names in meta["shards"].values())
        print(f"prepared {out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens from "
              f"{meta['documents']:,} documents in {shards} shards, vocab {meta['vocab_size']:,} (gpt2) "
              f"in {time.time() - start:.1f} s")
        return
    if cfg.dataset in ("numbers_de", "translation"):
        if cfg.dataset == "numbers_de":
            pairs, source = numbers_de_pairs(), f"num2words: 0 to {NUMBERS_DE_LIMIT - 1}, English -> German"
        else:
            pairs = read_parallel(cfg.src, cfg.tgt)
            source = f"{Path(cfg.src).resolve()} -> {Path(cfg.tgt).resolve()}"
        meta = prepare_pairs(pairs, out_dir, DATASETS[cfg.dataset] or cfg.tokenizer or "char", source)
        print(f"prepared {out_dir}: {meta['train_pairs']:,} train + {meta['val_pairs']:,} val pairs (longest: "
              f"{meta['longest_source']} source, {meta['longest_target']} target tokens), vocab {meta['vocab_size']:,} "
              f"({meta['tokenizer']}) + {len(meta['specials'])} special tokens in {time.time() - start:.1f} s")
        return
    if cfg.dataset == "text" and cfg.tokenizer in ("gpt2", "bpe"):  # byte-level: streamed, any size
        check_input(source_path)
        meta = prepare_file(source_path, out_dir, cfg.tokenizer, str(source_path.resolve()), cfg.vocab_size,
                            cfg.special_token_names(), cfg.doc_separator, cfg.num_proc or os.cpu_count() or 1)
    else:
        if cfg.dataset == "text":
            text, source = read_text(source_path), str(source_path.resolve())
        else:
            text, source = shakespeare_text(source_path)
        meta = prepare_text(text, out_dir, DATASETS[cfg.dataset] or cfg.tokenizer or "char", source)
    print(
        f"prepared {out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens, "
        f"vocab {meta['vocab_size']:,} ({meta['tokenizer']}) in {time.time() - start:.1f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
