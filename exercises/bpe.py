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


def train(text, vocab_size):
    """Learn vocab_size - 256 merges from text (fewer if the text runs out of pairs).

    Returns merges: a dict {(a, b): new_id} in the order learned, new_id = 256, 257, ...
    """
    raise NotImplementedError


def encode(text, merges):
    """text (str) -> list of token ids, using merges as train returns them."""
    raise NotImplementedError


def decode(ids, merges):
    """list of token ids -> str: the bytes of the tokens, joined, decoded as UTF-8 (errors="replace")."""
    raise NotImplementedError
