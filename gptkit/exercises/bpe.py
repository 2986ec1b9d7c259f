"""bpe: train(text, vocab_size) -> merges, encode(text, merges) -> ids, decode(ids, merges) -> text, checked
against the Python reference below (the rules of exercises/bpe.py) on the shipped Tiny Shakespeare and the
German sample; the reference itself gives rustbpe's merges and tiktoken's ids (tests/test_learn_bpe.py).

The classic mistakes are named by computing them: each is the reference with one rule broken (no split,
pairs counted at every other position, a merge that does not skip the pair's second token, merging from
the right, another tie-break; at encode, merges in another order; at decode, each token decoded alone).
"""

import contextlib
import functools
import json
import sys
from pathlib import Path

import numpy as np
import regex

from gptkit.errors import UserError
from gptkit.exercises.harness import Result, Training
from gptkit.tokenizer import BPE_PATTERN, SAMPLES, BPETokenizer

TITLE = "a BPE tokenizer: count pairs, merge the most frequent, repeat; encode, decode"
WRITES = "train, encode, decode"
REPO = Path(__file__).resolve().parents[2]
TRAIN_VOCAB = 512  # learn.py train bpe: Tiny Shakespeare in 512 tokens (256 merges)
TRAIN_CHARS = None  # learn.py train bpe: all of Tiny Shakespeare (the tests take less)


# ----------------------------------------------------------------------------------------------
# the reference, with switches for the classic mistakes


def count_pairs(ids, n, stats, step=1):
    """Add n to each adjacent pair's count (step=2: the mistake of counting every other position only)."""
    for i in range(0, len(ids) - 1, step):
        pair = (ids[i], ids[i + 1])
        stats[pair] = stats.get(pair, 0) + n


def merge(ids, pair, new_id, mistake=""):
    """ids with each occurrence of pair replaced by new_id, from the left, without overlap ("aaa" -> [aa, a])."""
    if mistake == "from the right":
        return merge(ids[::-1], pair[::-1], new_id)[::-1]
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 1 if mistake == "no skip" else 2
        else:
            out.append(ids[i])
            i += 1
    return out


def chunks(text, split=True):
    return regex.findall(BPE_PATTERN, text) if split else [text]


TIES = {
    "smaller pair": lambda stats: max(stats, key=lambda p: (stats[p], -p[0], -p[1])),
    "first seen": lambda stats: max(stats, key=stats.get),  # minbpe's: the first counted of the most frequent
    "larger pair": lambda stats: max(stats, key=lambda p: (stats[p], p)),
}


def train_reference(text, vocab_size, split=True, step=1, merge_mistake="", tie="smaller pair"):
    """{(a, b): new_id} in the order learned. Each distinct chunk is worked on once, weighted by its count."""
    counts = {}
    for chunk in chunks(text, split):
        counts[chunk] = counts.get(chunk, 0) + 1
    words = [(list(chunk.encode("utf-8")), n) for chunk, n in counts.items()]
    merges = {}
    for new_id in range(256, vocab_size):
        stats = {}
        for ids, n in words:
            count_pairs(ids, n, stats, step)
        if not stats:
            break
        pair = TIES[tie](stats)
        merges[pair] = new_id
        words = [(merge(ids, pair, new_id, merge_mistake), n) for ids, n in words]
    return merges


def encode_chunk(ids, merges, order="lowest rank"):
    while len(ids) >= 2:
        pairs = [p for p in zip(ids, ids[1:]) if p in merges]
        if not pairs:
            break
        pair = {"lowest rank": lambda: min(pairs, key=merges.get), "leftmost": lambda: pairs[0],
                "highest rank": lambda: max(pairs, key=merges.get)}[order]()
        ids = merge(ids, pair, merges[pair])
    return ids


def encode_reference(text, merges, split=True, order="lowest rank"):
    return [i for chunk in chunks(text, split) for i in encode_chunk(list(chunk.encode("utf-8")), merges, order)]


def vocab_of(merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def decode_reference(ids, merges, per_token=False):
    vocab = vocab_of(merges)
    if per_token:  # the mistake: a token holding half of "ü" becomes U+FFFD
        return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


TRAIN_MISTAKES = [
    ("the split pattern is forgotten: pairs are counted across the whole text, so merges cross word boundaries "
     "(cut the text with regex.findall(SPLIT_PATTERN, text) and count inside each chunk)", {"split": False}),
    ("a merge does not skip the pair's second token (i += 1 instead of i += 2): \"aaa\" with (a, a) becomes "
     "[aa, aa, a], overlapping pairs merged twice", {"merge_mistake": "no skip"}),
    ("merges run from the right: \"aaa\" with (a, a) must become [aa, a] (left to right, no overlap), not [a, aa]",
     {"merge_mistake": "from the right"}),
    ("pairs are counted at every other position only (range(0, n - 1, 2)): \"aaa\" holds (a, a) twice, and "
     "\"abc\" holds (b, c) too", {"step": 2}),
    ("ties go to the pair counted first (max(stats, key=stats.get)); the rule is the smaller pair: "
     "max(stats, key=lambda p: (stats[p], -p[0], -p[1]))", {"tie": "first seen"}),
    ("ties go to the larger pair; the rule is the smaller pair: max(stats, key=lambda p: (stats[p], -p[0], -p[1]))",
     {"tie": "larger pair"}),
]
ENCODE_MISTAKES = [
    ("the split pattern is forgotten at encode: merges are applied across word boundaries", {"split": False}),
    ("merges applied out of rank order: the leftmost pair that is a merge first; merge the pair learned earliest "
     "(lowest new id) first", {"order": "leftmost"}),
    ("merges applied out of rank order: the latest learned first; merge the pair learned earliest (lowest new id) "
     "first", {"order": "highest rank"}),
]


# ----------------------------------------------------------------------------------------------
# the texts the checks use


@functools.lru_cache(maxsize=None)
def shakespeare(n_chars=None):
    """Tiny Shakespeare, from the copy the repository ships (prepare.py checks its sha256)."""
    import lzma

    text = lzma.decompress((REPO / "corpus" / "tinyshakespeare.txt.xz").read_bytes()).decode("utf-8")
    return text[:n_chars]


def german():
    return (SAMPLES / "de.txt").read_text(encoding="utf-8")


# (what, text, vocab_size): the last one makes the mistakes with "aaa" and ties show
TRAIN_CASES = [
    ("the first 6,000 characters of Tiny Shakespeare", lambda: shakespeare(6000), 256 + 60),
    ("the German sample (corpus/samples/de.txt)", german, 256 + 40),
    ("'aaaa xyxyxy aaa bcd' x 3", lambda: "aaaa xyxyxy aaa bcd\n" * 3, 256 + 6),
]
ROUND_TRIPS = ["Grüße aus Köln: die Straße, der Ofen, die Pizza. ", "emoji \U0001F600\U0001F44D, 中文字符, \r\n",
               "aaaaaaa, ROMEO: Wherefore art thou? 1234567"]


def first_difference(got, expected, what="merge"):
    """(expected, got) as text at the first index where two sequences differ."""
    got, expected = list(got), list(expected)
    n = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
    if n == len(got) == len(expected):
        return "", ""
    show = lambda seq: repr(seq[n]) if n < len(seq) else f"nothing (only {len(seq)})"  # noqa: E731
    return f"{what} #{n}: {show(expected)}", f"{what} #{n}: {show(got)}"


def as_merges(merges):
    if not isinstance(merges, dict):
        return None
    return list(merges.items())


def matching_mistake(got, variants, expected):
    """The cause of the first variant (cause, make) whose result equals got but not expected, or ''."""
    for cause, make in variants:
        value = make()
        if value != expected and value == got:
            return cause
    return ""


# ----------------------------------------------------------------------------------------------
# the checks


def train_matches_reference(mine):
    for what, text, vocab_size in TRAIN_CASES:
        text = text()
        got = mine.call(mine.train, text, vocab_size)
        expected = list(train_reference(text, vocab_size).items())
        name = f"train: the same merges in the same order as the reference ({what}, vocab_size={vocab_size})"
        if as_merges(got) is None:
            yield Result(name, False, "a dict {(a, b): new_id}", f"a {type(got).__name__}")
            return
        got = as_merges(got)
        want, came = first_difference(got, expected)
        cause = matching_mistake(got, [(c, lambda kw=kw: list(train_reference(text, vocab_size, **kw).items()))
                                       for c, kw in TRAIN_MISTAKES], expected) if want else ""
        yield Result(name, not want, want, came, cause)


def encode_matches_reference(mine):
    merges = train_reference(shakespeare(6000), 256 + 60)
    texts = [("Tiny Shakespeare's next 2,000 characters", shakespeare(8000)[6000:]),
             ("the German sample", german()), ("'aaaaaaa aaa'", "aaaaaaa aaa")]
    for what, text in texts:
        got = mine.call(mine.encode, text, dict(merges))
        expected = encode_reference(text, merges)
        name = f"encode equals the reference's ({what}, the reference's merges from Shakespeare)"
        if not isinstance(got, list):
            yield Result(name, False, "a list of ints", f"a {type(got).__name__}")
            return
        want, came = first_difference(got, expected, "token")
        cause = matching_mistake(got, [(c, lambda kw=kw: encode_reference(text, merges, **kw))
                                       for c, kw in ENCODE_MISTAKES], expected) if want else ""
        yield Result(name, not want, want, came, cause)


def decode_matches_reference(mine):
    merges = train_reference(shakespeare(6000), 256 + 60)
    for text in ROUND_TRIPS:
        ids = encode_reference(text, merges)
        got = mine.call(mine.decode, ids, dict(merges))
        cause = ("each token is decoded on its own, so a character split over two tokens becomes U+FFFD: join all "
                 "the bytes first, then decode once" if got == decode_reference(ids, merges, per_token=True)
                 else "")
        yield Result(f"decode gives back the text ({text[:30]!r}...)", got == text, repr(text[:60]),
                     repr(got)[:60] if isinstance(got, str) else f"a {type(got).__name__}", cause)


def round_trips(mine):
    merges = mine.call(mine.train, german(), 256 + 40)
    for text in ROUND_TRIPS:
        ids = mine.call(mine.encode, text, merges)
        back = mine.call(mine.decode, ids, merges)
        yield Result(f"decode(encode(text)) == text with your merges from the German sample ({text[:30]!r}...)",
                     back == text, repr(text[:60]), repr(back)[:60])


GROUPS = [train_matches_reference, encode_matches_reference, decode_matches_reference, round_trips]


# ----------------------------------------------------------------------------------------------
# learn.py train bpe: Tiny Shakespeare tokenized by the learner's BPE, and by the reference, to train on


def write_dataset(folder, text, encode, merges, name):
    """Tiny Shakespeare encoded by `encode` into folder/{train,val}.bin and meta.json, split at 90% of the
    characters as prepare.py splits; meta.json carries the merges' tokens, so sample.py decodes the model's."""
    tokens = list(vocab_of(merges).values())
    if len(set(tokens)) != len(tokens):
        raise UserError(f"{name}: two of the merges make the same token; python3 learn.py check bpe shows where")
    folder.mkdir(parents=True, exist_ok=True)
    split = int(len(text) * 0.9)
    meta = {**BPETokenizer(tokens, BPE_PATTERN, {}).meta(), "source": name}
    for part, piece in (("train", text[:split]), ("val", text[split:])):
        ids = np.array(encode(piece), dtype=np.uint16)
        ids.tofile(folder / f"{part}.bin")
        meta[f"{part}_tokens"], meta[f"{part}_max_id"] = len(ids), int(ids.max())
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def prepare_datasets(solution, data_dir):
    """(the learner's dataset, the reference's): Tiny Shakespeare in TRAIN_VOCAB tokens, by each tokenizer."""
    text = shakespeare(TRAIN_CHARS)
    names = {"mine": "learn-bpe", "reference": "learn-bpe-reference"}
    print(f"training your BPE on Tiny Shakespeare ({TRAIN_VOCAB} tokens), then the reference's", file=sys.stderr)
    merges = solution.call(solution.train, text, TRAIN_VOCAB)
    write_dataset(Path(data_dir) / names["mine"], text, lambda t: solution.call(solution.encode, t, merges),
                  merges, f"your BPE ({solution.path})")
    reference = train_reference(text, TRAIN_VOCAB)
    write_dataset(Path(data_dir) / names["reference"], text, lambda t: encode_reference(t, reference),
                  reference, "the reference BPE (gptkit/exercises/bpe.py)")
    return names["mine"], names["reference"]


TRAIN = Training("your BPE", lambda solution: contextlib.nullcontext(), datasets=prepare_datasets)
