"""Exercise 12, bpe: train a byte-level BPE tokenizer, then encode and decode with it.

Byte-pair encoding (Sennrich et al. 2016; GPT-2's byte-level variant, Radford et al. 2019) starts from
the 256 byte values and repeats one step: count every adjacent pair of tokens in the text, and merge
the most frequent pair into a new token, 256, 257, ... The merges, in order, are the tokenizer.

    text "aaabdaaabac" (bytes 97 97 97 98 100 ...)   pair (97, 97) is the most frequent: it becomes 256
    [256, 97, 98, 100, 256, 97, 98, 97, 99]           then (256, 97) -> 257, and so on

The rules, so that a correct answer is unique:
- Split first: cut the text into chunks with SPLIT_PATTERN (GPT-2's: words, numbers, punctuation,
  whitespace) and count pairs inside each chunk only, so no token crosses a word boundary.
- Count every adjacent pair, overlapping ones too: "aaa" holds the pair (a, a) twice.
- Ties: of pairs with the same count, merge the one with the smaller ids, (a, b) < (c, d) as Python
  compares tuples (rustbpe's rule, which prepare.py --tokenizer=bpe trains with).
- Merge from left to right without overlap: merging (a, a) in "aaa" gives [aa, a], never [aa, aa].
- Stop after vocab_size - 256 merges, or sooner when the chunks hold no pair at all (a pair seen
  once is still merged when it is the most frequent).
- encode: split into chunks the same way; in each, merge the pair of lowest rank (earliest merge)
  first, again and again, until no pair of the chunk is a merge.
- decode: join the tokens' bytes, then decode the whole as UTF-8 (errors="replace"): one token may
  hold only part of a character ("ü" is two bytes).

Source: Karpathy, "Let's build the GPT Tokenizer" and minbpe (RegexTokenizer); the repository trains
with rustbpe and encodes with tiktoken (gptkit/tokenizer.py); its Python reference, which these
checks compare against, is in gptkit/exercises/bpe.py: read it after, not before.

Hint: work on each distinct chunk once, with its count (a dict chunk -> count), not on the whole text.

Check it: python3 learn.py check bpe      Train with it: python3 learn.py train bpe
"""

import regex  # the `regex` package (tiktoken needs it too): Python's re knows no \p{L}

# GPT-2's, as tiktoken writes it: contractions, letters, digits, other symbols, whitespace
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def get_stats(ids, n, stats):
    for pair in zip(ids, ids[1:]):
        stats[pair] = stats.get(pair, 0) + n


def merge(ids, pair, idx):
    out, i = [], 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train(text, vocab_size):
    counts = {}
    for chunk in regex.findall(SPLIT_PATTERN, text):
        counts[chunk] = counts.get(chunk, 0) + 1
    words = [(list(c.encode("utf-8")), n) for c, n in counts.items()]
    merges = {}
    for idx in range(256, vocab_size):
        stats = {}
        for ids, n in words:
            get_stats(ids, n, stats)
        if not stats:
            break
        pair = max(stats, key=lambda p: (stats[p], -p[0], -p[1]))
        merges[pair] = idx
        words = [(merge(ids, pair, idx), n) for ids, n in words]
    return merges


def encode(text, merges):
    out = []
    for chunk in regex.findall(SPLIT_PATTERN, text):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            ids = merge(ids, pair, merges[pair])
        out.extend(ids)
    return out


def decode(ids, merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), idx in merges.items():
        vocab[idx] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
