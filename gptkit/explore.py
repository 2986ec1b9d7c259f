"""One HTML page to explore a model's attention in a browser: `python3 visualize.py explore` writes it,
and a notebook shows the same page inline (`inline`).

The page is gptkit/explore.html (its HTML, CSS and JavaScript) with the data put in where it says
__EXPLORE_DATA__: one file that loads nothing from anywhere (no CDN, no server, no web font), so it
works from disk and offline. The data is a list of panels; a panel is one text run through one model: its
tokens, its settings, its attention weights, every layer and head, and at every position the model's most
likely next tokens, all from one forward pass. A GPT's panel (`panel`) has one attention, "self", its text
reading itself; a translation's (`translation_panel`, transformer.py's encoder-decoder) has three: "cross",
each token the decoder writes reading the source, and the encoder's and the decoder's self-attention.

The weights are most of the file, so they are stored compactly: of each query's row only the keys the
mask allows (a contiguous run: under the causal mask, row t has keys 0..t; in cross-attention every row
has all the source's), one byte per weight, round(255 * sqrt(w)) (the square-root scale the PNG pictures
draw with, so small weights keep their resolution), the bytes of all layers, heads and rows in that order
deflated (zlib) and base64'd. The page inflates them with the browser's own DecompressionStream and reads
w = (byte / 255)^2, within sqrt(w) / 255 + 1 / (4 * 255^2) of the model's weight.
"""

import base64
import html
import json
import zlib
from pathlib import Path

import torch

from gptkit.attention_maps import attention_and_logits, translation_attention
from gptkit.errors import UserError
from gptkit.rundir import write_atomically
from gptkit.tokenizer import (comparison_tokenizers, encode_text, find_query, read_prompt, split_tokens, token_piece,
                              token_text, visible, word_tokens)
from gptkit.translation import source_ids
from transformer import until_eos

LEVELS = 255  # a weight w is stored as the byte round(LEVELS * sqrt(w))
TOP_NEXT = 5  # the most likely next tokens kept for each position
SETTINGS = ("pos_encoding", "attn_score", "mask", "norm", "activation", "qk_norm", "residual")  # shown as chips
TRANSLATION_SETTINGS = ("norm_position", "norm", "activation", "shared_embeddings")  # transformer.py's, as chips
SHAPE = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
TEMPLATE = Path(__file__).with_name("explore.html")


def future_warning(config):
    """What the page says above a model whose mask lets it see the future (None for a causal one)."""
    if not config.sees_the_future:
        return None
    return (f"This model was trained with mask={config.mask}: each position also sees the tokens after it, the "
            f"very token it has to predict included. It learned to copy that token, so its attention looks at the "
            f"future and its next-token guesses are copies; generating, with no future to copy, it writes "
            f"garbage (docs/experiments.md, the mask).")


def key_ranges(maps):
    """[(first, last)] for each query: the keys its row may attend to, a contiguous run under every mask
    (causal: 0..t, anticausal: t..T-1, none: all; cross-attention over one unpadded sentence: all S).
    maps: (n_layer, nh, T, S), NaN where hidden."""
    allowed = ~maps[0, 0].isnan()  # (T, S): the same mask in every layer and head
    ranges = []
    for row in allowed:
        keys = row.nonzero().flatten().tolist()
        if keys[-1] - keys[0] + 1 != len(keys):
            raise ValueError(f"the keys a query may attend to are not one run: {keys}")
        ranges.append((keys[0], keys[-1]))
    return ranges


def attention_view(maps, queries, keys):
    """One attention, as the page reads it: maps (n_layer, nh, T, S), NaN where hidden, whose query rows are the
    panel's token list named `queries` and whose keys are the list named `keys`."""
    ranges = key_ranges(maps)
    return {"queries": queries, "keys": keys, "ranges": ranges, "weights": packed_weights(maps, ranges)}


def packed_weights(maps, ranges):
    """The allowed weights of every layer, head and query row, in that order, one byte each
    (round(LEVELS * sqrt(w))), deflated and base64'd: what the page's inflate() reads back."""
    rows = [maps[:, :, t, first:last + 1] for t, (first, last) in enumerate(ranges)]  # (n_layer, nh, keys) each
    allowed = torch.cat(rows, dim=-1)  # (n_layer, nh, sum of the rows' lengths)
    levels = (allowed.clamp(0, 1).sqrt() * LEVELS).round().to(torch.uint8)
    return base64.b64encode(zlib.compress(levels.numpy().tobytes(), 9)).decode("ascii")


def next_tokens(label, probs, actual, top=TOP_NEXT):
    """For each position t: the `top` most likely next tokens as [[label, p]] (probs: (T, vocab)), and the token
    that really came next, actual[t], as [label, p, its rank among the guesses] (None where nothing came).
    label(id) names a token."""
    best = probs.topk(min(top, probs.size(-1)))
    rows = []
    for t, real in enumerate(actual):
        guesses = [[label(i), round(p, 4)] for i, p in zip(best.indices[t].tolist(), best.values[t].tolist())]
        if real is not None:
            p = probs[t, real]
            real = [label(real), round(p.item(), 4), int((probs[t] > p).sum()) + 1]
        rows.append({"top": guesses, "actual": real})
    return rows


def token_cells(tokenizer, ids, specials=None):
    """The page's entry for each token: its label, its text, its id and the word it is part of. specials:
    {id: name} of tokens outside the tokenizer's vocabulary (a translation's BOS and EOS)."""
    specials = specials or {}
    plain = [t for t, i in enumerate(ids) if i not in specials]  # the positions of the text's own tokens
    word_of = {plain[n]: word for word, positions in word_tokens(tokenizer, [ids[t] for t in plain]) for n in positions}
    return [{"label": specials[i], "text": specials[i], "id": i, "word": "", "special": True} if i in specials else
            {"label": token_text(tokenizer, i), "text": token_piece(tokenizer, i), "id": i, "word": word_of.get(t, "")}
            for t, i in enumerate(ids)]


def opening(maps, query, layer=-1, head=-1, itself=True):
    """Where the page opens for the token at position `query`: the layer and head given (-1: choose), chosen
    where there is something to see: the head whose attention from the query is most concentrated on one
    other token (its largest weight on a key that is not the query itself; a head looking at the token
    itself, or spread thin, as many are in layer 0, shows nothing). maps: (n_layer, nh, T, S), NaN where hidden;
    itself: whether key `query` is the query's own token (self-attention) or another sequence's (cross)."""
    n_layer, n_head = maps.shape[:2]
    for what, value, count in (("layer", layer, n_layer), ("head", head, n_head)):
        if not -1 <= value < count:
            raise UserError(f"--{what}={value} is not one of the model's {count} {what}s (0..{count - 1}); "
                            f"-1 picks the most concentrated")
    weights = maps[:, :, query].nan_to_num(0.0).clone()  # (n_layer, nh, S)
    if itself:
        weights[..., query] = 0.0
    best, key = weights.max(-1)  # (n_layer, nh): each head's largest weight on another token, and where
    allowed = torch.ones_like(best, dtype=torch.bool)
    if layer >= 0:
        allowed[torch.arange(n_layer) != layer] = False
    if head >= 0:
        allowed[:, torch.arange(n_head) != head] = False
    layer, head = divmod(int(best.masked_fill(~allowed, -1.0).argmax()), n_head)
    return {"query": query, "layer": layer, "head": head, "key": int(key[layer, head]),
            "weight": round(best[layer, head].item(), 4)}


def panel(model, tokenizer, text, name, query="", layer=-1, head=-1):
    """One text (at most block_size tokens; FILE:path reads a file) through one model, as the page's data;
    `start`, where the page opens: the token `query` (a word of the text or a position; empty: the last
    token, as if the model had just read the text), at `layer` and `head` (-1: the most concentrated)."""
    ids = encode_text(tokenizer, text, model.config.block_size)
    maps, logits = attention_and_logits(model, ids)  # (n_layer, nh, T, T), (T, vocab)
    start = opening(maps, find_query(tokenizer, ids, query) if query else len(ids) - 1, layer, head)
    config = model.config
    text = tokenizer.decode(ids)
    probs = torch.softmax(logits[:, :tokenizer.vocab_size], dim=-1)  # (T, vocab)
    return {
        "name": name,
        "text": text,
        "tokens": token_cells(tokenizer, ids),
        "shape": {k: getattr(config, k) for k in SHAPE},
        "settings": {k: getattr(config, k) for k in SETTINGS},
        "warning": future_warning(config),
        "views": {"self": attention_view(maps, "tokens", "tokens")},
        "next": next_tokens(lambda i: token_text(tokenizer, i), probs, ids[1:] + [None]),
        "tokenizations": tokenizations(tokenizer, text),
        # a token asked for stays chosen (pinned) when the mouse moves
        "start": {**start, "pinned": bool(query), "view": "self"},
    }


def translation_panel(model, tokenizer, sentence, name, query="", layer=-1, head=-1):
    """A sentence (FILE:path reads a file) translated greedily by transformer.py's encoder-decoder, as the page's
    data: the source's tokens, the tokens the decoder writes ("tokens", EOS last unless cut at block_size) and
    those it reads in ("inputs": BOS, then each token written but the last), and three attentions: "cross" (row t:
    decoder position t, writing token t, reading the source), "encoder" (the source reading itself, no mask) and
    "decoder" (the decoder's causal self-attention over its inputs); at each decoder position its most likely next
    tokens. `start`: it opens on cross-attention from the written token `query` (a word of the translation or a
    position; empty: the first)."""
    ids = source_ids(model, tokenizer, read_prompt(sentence))
    translation, maps, logits = translation_attention(model, ids)  # (T,), {kind: (n_layer, nh, rows, keys)}, (T, vocab)
    config = model.config
    specials = {config.bos_id: "BOS", config.eos_id: "EOS"}
    text = tokenizer.decode(ids)
    words = until_eos(translation, config.eos_id)  # the translation's text, without its EOS
    at = find_query(tokenizer, words, query) if query else 0
    start = opening(maps["cross"], at, layer, head, itself=False)
    # what the decoder could write: the tokenizer's tokens and EOS (it never writes PAD or BOS)
    writable = torch.full((logits.size(-1),), float("-inf"))
    writable[:tokenizer.vocab_size] = writable[config.eos_id] = 0.0
    probs = torch.softmax(logits + writable, dim=-1)  # (T, vocab)
    return {
        "name": name,
        "text": text,
        "translation": tokenizer.decode(words),
        "tokens": token_cells(tokenizer, translation, specials),
        "inputs": token_cells(tokenizer, [config.bos_id] + translation[:-1], specials),
        "source": token_cells(tokenizer, ids),
        "shape": {k: getattr(config, k) for k in SHAPE},
        "settings": {k: getattr(config, k) for k in TRANSLATION_SETTINGS},
        "warning": None,
        "views": {"cross": attention_view(maps["cross"], "tokens", "source"),
                  "encoder": attention_view(maps["encoder"], "source", "source"),
                  "decoder": attention_view(maps["decoder"], "inputs", "inputs")},
        "next": next_tokens(lambda i: specials.get(i) or token_text(tokenizer, i), probs, translation),
        "tokenizations": tokenizations(tokenizer, text),
        "start": {**start, "pinned": bool(query), "view": "cross"},
    }


def tokenizations(tokenizer, text):
    """The text cut by characters, GPT-2's BPE and the model's own tokenizer: [{name, tokens: [[piece, id]]}]."""
    return [{"name": kind, "tokens": [[visible(piece), i] for piece, i in split_tokens(tok, text)]}
            for kind, tok in comparison_tokenizers(tokenizer, "this model's")]


def page_html(panels, title="attention"):
    """The page, as one string of HTML, showing `panels` (from `panel`) one above the other."""
    data = json.dumps({"title": title, "levels": LEVELS, "panels": panels}, ensure_ascii=False)
    # inside <script> only "</script" could end the data early: JSON may write "<" as \u003c everywhere
    return TEMPLATE.read_text(encoding="utf-8").replace("__EXPLORE_DATA__", data.replace("<", "\\u003c"))


def write_page(page, out):
    """Write the page atomically (a failed write keeps the old file); return the path."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out={out} is a folder; name the HTML file to write, e.g. --out={out / 'attention.html'}")
    try:
        def write(tmp):
            tmp.write_text(page, encoding="utf-8")
            tmp.chmod(0o644)  # a page to share and open, not private like the temporary file it was
        write_atomically(out, write)
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or e})") from None
    return out


def inline(page, height=760):
    """The page inside an <iframe srcdoc>, for Jupyter: IPython.display.HTML(inline(page)) shows it in the
    notebook, its scripts running in the frame (sandboxed: they cannot touch the notebook). In a <div>:
    IPython warns about a bare <iframe>."""
    return (f'<div><iframe srcdoc="{html.escape(page, quote=True)}" sandbox="allow-scripts" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ddd; border-radius: 6px"></iframe></div>')
