"""Reading attention out of a model: which model, its tokens as text, and the weights of each layer
and head for one text. visualize.py draws what these return."""

import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from gptkit.checkpoint import load_trained
from gptkit.errors import UserError
from gptkit.tokenizer import load_tokenizer, read_prompt, token_piece, token_texts, visible
from model import tracing


@dataclass
class ModelSource:
    out_dir: str = "out"  # the run whose checkpoint to draw
    ckpt: str = "best"  # best (best.pt), latest (ckpt.pt), or a path to a .pt file
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl
    init_from: str = ""  # gpt2 (or -medium, -large, -xl) or a GPT-2 directory: draw OpenAI's GPT-2 instead


def load_model(cfg):
    """(model, tokenizer, name) to draw: a trained checkpoint, or GPT-2 itself (init_from)."""
    if cfg.init_from:
        from gptkit.gpt2_weights import load_hf_gpt2

        model = load_hf_gpt2(cfg.init_from).eval()
        return model, load_tokenizer({"tokenizer": "gpt2"}), f"GPT-2 ({cfg.init_from})"
    trained = load_trained(cfg.out_dir, cfg.ckpt, cfg.data_dir)
    return trained.model, trained.tokenizer, f"{trained.path} (iter {trained.iter_num})"


def default_out(cfg, name):
    """Where a picture goes without --out: into the run's folder, or here for GPT-2 itself."""
    return Path(cfg.out_dir if not cfg.init_from else ".") / name


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


def word_weights(tokenizer, ids, weights):
    """{word: weight}, summing the weights (..., S) of each word's tokens (a repeated word: `the@2`)."""
    words = {}
    for n, (word, tokens) in enumerate(word_tokens(tokenizer, ids[:weights.size(-1)])):
        words[word if word not in words else f"{word}@{n}"] = weights[..., tokens].sum(-1)
    return words


def attention_maps(model, ids):
    """Attention weights of every layer and head for one sequence: (n_layer, nh, T, T).

    Positions the mask hides are NaN (drawn grey), so a weight of almost 0 and "not allowed to
    look" stay distinguishable.
    """
    return attention_and_logits(model, ids)[0]


def attention_and_logits(model, ids):
    """One forward pass over one sequence: attention_maps (n_layer, nh, T, T), and the logits at every
    position (T, vocab), position t's predicting token t + 1."""
    maps, masks, logits = {}, {}, []

    def grab(name, t):
        layer = name.split(".")[1] if name.startswith("h.") else None
        if name.endswith(".attn.softmax"):
            maps[int(layer)] = t[0].detach().float().cpu()  # (nh, T, S)
        elif name.endswith(".attn.mask"):
            masks[int(layer)] = t.detach().cpu()  # (T, S), True where allowed
        elif name == "logits":
            logits.append(t[0].detach().float().cpu())  # (T, vocab)

    model.eval()
    with torch.no_grad(), tracing(model, grab):
        model(torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device))
    return torch.stack([maps[i].masked_fill(~masks[i], float("nan")) for i in sorted(maps)]), logits[0]


def next_token_probabilities(model, ids, temperature=1.0, vocab_size=None):
    """p(next token | ids) over the tokenizer's vocabulary: (vocab,)."""
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[-model.config.block_size:]]), last_only=True)
    return torch.softmax(logits[0, -1, :vocab_size].float() / temperature, dim=-1)
