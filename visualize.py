"""Pictures of a model and of its training: attention maps and loss curves as PNG, attention as a page to explore.

    python3 visualize.py attention --out_dir=out-shakespeare-char [--text="..."] [--query=it] [--compare="..."]
    python3 visualize.py attention --out_dir=out-translate-numbers-de --start="twenty-three"
    python3 visualize.py explore --out_dir=out-shakespeare-char [--text="..."] [--query=it] [--compare="..."]
    python3 visualize.py explore --out_dir=out-translate-numbers-de --start="twenty-three"
    python3 visualize.py next --out_dir=out-shakespeare-char --text="ROMEO:"
    python3 visualize.py loss out-a out-b ... [--out=loss.png]
    python3 visualize.py tokens --text="Der Ofen ist heiß." [--dataset=mine] [--out=tokens.png]

attention: one forward pass over the text, with gptkit/tracing.py collecting every layer's attention
weights softmax(score + mask), shape (1, nh, T, T). They are drawn as a grid, one row per layer and
one column per head: the query (the token that looks) down the side, the key (the token looked at)
along the bottom. Under the causal mask the upper-right triangle is empty: nobody sees the future.
For a translation model (transformer.py) --start is the sentence to translate: it is translated
greedily, and its cross-attention (each target token, down the side, reading the source tokens along
the bottom) and its encoder's self-attention are drawn, every layer and head.

explore: the same weights as one HTML page to explore in a browser, offline (gptkit/explore.py):
point at a token to see where it looks, layer by layer and head by head, and what the model expects
next; beside it a second text (--compare) or a second model (--compare_out_dir). It opens on --query
(the last token by default) at the head whose attention from it is most concentrated, or at --layer and --head.
For a translation model --start is the sentence to translate (as for attention; --text is taken when it alone
is given): the page shows its cross-attention, the tokens written above the source with lines to the source
tokens each one reads, and switches to the encoder's and the decoder's self-attention.

next: the most likely next tokens after a prompt, with their probabilities.

loss: the train and val curves of each run, read from its out_dir/log.jsonl, each run labelled by
the settings that differ between the runs (read from the runs' checkpoints).

tokens: how the model reads a text: the same text cut by characters, GPT-2's BPE and a dataset's own
tokenizer (prepare.py --tokenizer=bpe), each token in its colour with its id, printed and drawn; and
a table of tokens per word and bytes per token on the text and on corpus/samples' German and English.

What the pictures read from the model is in gptkit/attention_maps.py; how they are drawn, here and in
gptkit/plots.py. The PNG pictures need matplotlib (in requirements.txt).
"""

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gptkit import explore
from gptkit.attention_maps import (ModelSource, attention_maps, default_out, load_model, next_token_probabilities,
                                   translation_attention, word_weights)
from gptkit.checkpoint import load_checkpoint
from gptkit.config import command_args, parse_args
from gptkit.errors import UserError, run_main
from gptkit.data import load_meta
from gptkit.plots import check_size, matplotlib_figure, plot_loss, plot_tokens, save, wrapped
from gptkit.runlog import read_log
from gptkit.tokenizer import (SAMPLES, comparison_tokenizers, encode_text, find_query, load_tokenizer, prompt_ids,
                              read_prompt, split_tokens, token_text, tokens_per_word, visible, word_tokens)
from gptkit.translation import source_ids
from transformer import Transformer, until_eos

PIZZA = "The pizza came out of the oven and it tasted good."
PIZZA_SWAPPED = "The oven came out of the pizza and it tasted good."  # the same sentence, the nouns swapped
# settings that name or manage a run rather than change what it learns: never used as labels
NOT_A_SETTING = {"out_dir", "overwrite", "init_from", "eval_only", "trace_shapes"}


# ----------------------------------------------------------------------------------------------
# attention maps


@dataclass
class AttentionConfig(ModelSource):
    text: str = PIZZA  # the text to run through the model; FILE:path reads it from a file
    start: str = ""  # a translation model (transformer.py): the sentence to translate, as sample.py's --start
    query: str = ""  # draw only what this token attends to: a word of the text (its last token) or a position
    compare: str = ""  # a second text drawn beside the first, e.g. with two words swapped
    out: str = ""  # the PNG to write; empty: out_dir/attention.png (attention_query.png with --query)
    width: int = 0  # pixels; 0: sized to the text and the grid
    height: int = 0  # pixels; 0: sized to the text and the grid
    dpi: int = 100  # pixels per inch: the scale of the text in the picture

    def validate(self):
        check_size(self.width, self.height, self.dpi)


@dataclass
class Panel:
    """One text's attention, to draw: maps (n_layer, nh, T, S), token labels, and the query position or None."""

    maps: torch.Tensor
    labels: list  # the queries' (down the side), and the keys' unless key_labels
    query: int | None
    caption: str
    words: list  # [(word, [token positions])], to name the words under a row of single characters
    key_labels: list | None = None  # another sequence's keys (cross-attention: the source's)


def attention_colours(matplotlib):
    # a square-root colour scale: weights spread over many tokens stay visible next to peaked ones
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # NaN, hidden by the mask: light grey
    return norm, cmap


def plot_attention(panels, out, title="", width=0, height=0, dpi=100):
    """Draw each panel's every layer and head as a grid of heat maps (layers down, heads across,
    query down the side, key along the bottom), panels side by side; return the path written."""
    new_figure, matplotlib = matplotlib_figure()
    n_layer, n_head, T, S = panels[0].maps.shape
    # about 0.12 inch per token, so each label gets ~7 points; within 40 inches overall
    cell = min(max(2.2, 0.12 * max(T, S) + 0.6), 40.0 / max(n_layer, n_head * len(panels)))
    width = width or round((len(panels) * (n_head * cell + 1.0) + 1.4) * dpi)
    height = height or round((n_layer * cell + 1.4) * dpi)
    fig = new_figure(width, height, dpi)
    cell_inches = min(width / (n_head * len(panels)), height / n_layer) / dpi
    font = max(5.0, min(10.0, 0.9 * 72 * cell_inches / max(T, S)))  # token labels: as large as fits
    text_font = max(9.0, min(18.0, 1.6 * cell_inches + 5))  # titles and axis names grow with the maps
    norm, cmap = attention_colours(matplotlib)
    for subfig, panel in zip(np.atleast_1d(fig.subfigures(1, len(panels))), panels):
        axes = subfig.subplots(n_layer, n_head, squeeze=False, sharex=True, sharey=True)
        keys = panel.key_labels or panel.labels
        rotation = 0 if max(len(label) for label in keys) == 1 else 90
        for layer in range(n_layer):
            for head in range(n_head):
                ax = axes[layer][head]
                image = ax.imshow(panel.maps[layer, head].numpy(), cmap=cmap, norm=norm, interpolation="nearest")
                ax.set_xticks(range(len(keys)), keys, rotation=rotation, fontsize=font, parse_math=False)
                ax.set_yticks(range(len(panel.labels)), panel.labels, fontsize=font, parse_math=False)
                ax.tick_params(length=0, labelleft=head == 0, labelbottom=layer == n_layer - 1)
                if layer == 0:
                    ax.set_title(f"head {head}", fontsize=text_font)
                if head == 0:
                    ax.set_ylabel(f"layer {layer}: query", fontsize=text_font)
                if layer == n_layer - 1:
                    ax.set_xlabel("key", fontsize=text_font)
        subfig.suptitle(wrapped(panel.caption, width / dpi / len(panels), text_font), fontsize=text_font)
    colorbar = subfig.colorbar(image, ax=axes, shrink=0.5, pad=0.01, aspect=40)  # beside the last panel
    colorbar.set_label("weight (sqrt scale); grey: masked", fontsize=text_font)
    colorbar.ax.tick_params(labelsize=text_font * 0.8)
    if title:
        fig.suptitle(wrapped(title, width / dpi, text_font * 1.1), fontsize=text_font * 1.1)
    return save(fig, out, dpi)


def plot_query(panels, out, title="", width=0, height=0, dpi=100):
    """Draw what one query token attends to: per panel, a row per (layer, head) and a column per key up to
    the query, each cell its weight (written in where it is large); panels side by side."""
    new_figure, matplotlib = matplotlib_figure()
    n_layer, n_head = panels[0].maps.shape[:2]
    columns = max(p.query + 1 for p in panels)
    label_inches = max(0.28, 0.085 * max(len(label) for p in panels for label in p.labels) + 0.1)
    width = width or round((len(panels) * (columns * label_inches + 1.1) + 1.2) * dpi)
    height = height or round((n_layer * n_head * 0.3 + 2.0) * dpi)
    fig = new_figure(max(width, 6 * dpi), max(height, 3 * dpi), dpi)
    norm, cmap = attention_colours(matplotlib)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, panel in zip(axes, panels):
        q = panel.query
        rows = panel.maps[:, :, q, :q + 1].reshape(n_layer * n_head, q + 1)  # (L * nh, q + 1): the query's row
        image = ax.imshow(rows.numpy(), cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        for r, c in zip(*torch.nonzero(rows >= 0.1, as_tuple=True)):
            value = rows[r, c].item()
            ax.text(c.item(), r.item(), f"{value:.2f}"[1:] if value < 1 else "1", ha="center", va="center",
                    fontsize=6.5, color="black" if value > 0.45 else "white")
        ax.set_xticks(range(q + 1), panel.labels[:q + 1], rotation=0 if label_inches < 0.3 else 90,
                      fontsize=9, parse_math=False)
        ax.get_xticklabels()[q].set_color("red")  # the query looks at itself too
        if max(len(label) for label in panel.labels) == 1:  # characters: name the words they spell
            for word, tokens in panel.words:
                if tokens[0] <= q:
                    ax.annotate(word, xy=((tokens[0] + min(tokens[-1], q)) / 2, 0), xycoords=("data", "axes fraction"),
                                xytext=(0, -24), textcoords="offset points", ha="center", fontsize=9, color="0.3")
        ax.set_yticks(range(n_layer * n_head), [f"layer {r // n_head} head {r % n_head}" for r in range(len(rows))],
                      fontsize=7)
        for layer in range(1, n_layer):
            ax.axhline(layer * n_head - 0.5, color="white", linewidth=2)
        ax.tick_params(length=0)
        ax.set_title(wrapped(panel.caption, ax.get_position().width * width / dpi), fontsize=10)
    colorbar = fig.colorbar(image, ax=list(axes), shrink=0.8, pad=0.01, aspect=40)
    colorbar.set_label("attention weight (sqrt scale)", fontsize=9)
    if title:
        fig.suptitle(wrapped(title, width / dpi), fontsize=11)
    return save(fig, out, dpi)


def print_query_summary(tokenizer, ids, maps, query, caption, words):
    """Per layer: each head's most-attended tokens; then the words by the weight they get.
    words: {word: (n_layer, nh)}, the query's weight on each word before it (word_weights)."""
    weights = maps[:, :, query, :query + 1]  # (n_layer, nh, query + 1)
    print(f"{caption}: from {token_text(tokenizer, ids[query])!r} (position {query})")
    for layer in range(weights.size(0)):
        heads = []
        for head in range(weights.size(1)):
            top = weights[layer, head].topk(min(2, query + 1))
            heads.append(f"h{head} " + " ".join(f"{token_text(tokenizer, ids[i])}:{w:.2f}"
                                                for w, i in zip(top.values.tolist(), top.indices.tolist())))
        print(f"  layer {layer}: " + " | ".join(heads))
    ranked = sorted(words.items(), key=lambda kv: -kv[1].mean().item())
    print("  words, by the weight they get (mean over layers and heads; the best head):")
    for word, w in ranked[:8]:
        layer, head = divmod(int(w.argmax()), w.size(1))
        print(f"    {word:<14} {w.mean().item():.3f}   (layer {layer} head {head}: {w.max().item():.3f})")


def attention_command(cfg):
    matplotlib_figure()  # fail before loading anything when matplotlib is missing
    model, tokenizer, name = load_model(cfg)
    if isinstance(model, Transformer):
        return translation_attention_command(cfg, model, tokenizer, name)
    panels, rankings = [], []
    for text in [cfg.text] + ([cfg.compare] if cfg.compare else []):
        ids = encode_text(tokenizer, text, model.config.block_size)
        query = find_query(tokenizer, ids, cfg.query) if cfg.query else None
        maps = attention_maps(model, ids)
        shown = repr(tokenizer.decode(ids))
        caption = shown
        if query is not None:
            words = word_weights(tokenizer, ids[:query + 1], maps[:, :, query, :query + 1])  # {word: (n_layer, nh)}
            print_query_summary(tokenizer, ids, maps, query, shown, words)
            ranking = ranked_words(tokenizer, ids, words, query)
            rankings.append(ranking)
            top = ", ".join(f"{word} {weight:.2f}" for word, weight in ranking[:3])
            caption = f"{shown}: what {token_text(tokenizer, ids[query])!r} attends to; most weight: {top}"
        panels.append(Panel(maps, [token_text(tokenizer, i) for i in ids], query, caption,
                            word_tokens(tokenizer, ids)))
    settings = ", ".join(f"{k}={getattr(model.config, k)}" for k in ("pos_encoding", "attn_score", "mask"))
    title = f"attention of {name}; {settings}"
    reading = swap_reading([cfg.text, cfg.compare], rankings) if len(rankings) == 2 else None
    if reading:
        print(reading)
        title += f"\n{reading}"
    default = "attention.png" if cfg.query == "" else "attention_query.png"  # the two views side by side
    out = cfg.out or default_out(cfg, default)
    draw = plot_attention if cfg.query == "" else plot_query
    out = draw(panels, out, title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi)
    n_layer, n_head, T, _ = panels[0].maps.shape
    print(f"wrote {out}: {n_layer} layers x {n_head} heads, {T} tokens" + (" and the comparison" if cfg.compare else ""))


def translation_attention_command(cfg, model, tokenizer, name):
    """--start translated, and two pictures in out_dir: cross_attention.png, each target token (down the side)
    reading the source (along the bottom), and encoder_attention.png, the source reading itself."""
    if not cfg.start:
        raise UserError("this model translates: name the sentence to translate with --start (as sample.py's)")
    ids = source_ids(model, tokenizer, read_prompt(cfg.start))
    translation, maps, _ = translation_attention(model, ids)
    source = [token_text(tokenizer, i) for i in ids]
    written = [token_text(tokenizer, i) if i != model.config.eos_id else "EOS" for i in translation]
    text = tokenizer.decode(until_eos(translation, model.config.eos_id))
    words = word_tokens(tokenizer, ids)
    pictures = {"cross_attention.png": Panel(maps["cross"], written, None, f"cross-attention: {cfg.start!r} -> "
                                             f"{text!r}, each written token (down) reading the source (across)",
                                             words, key_labels=source),
                "encoder_attention.png": Panel(maps["encoder"], source, None, f"encoder self-attention over "
                                               f"{cfg.start!r}: no mask, every source token reads every other", words)}
    for file, panel in pictures.items():
        out = cfg.out if cfg.out and file == "cross_attention.png" else default_out(cfg, file)
        out = plot_attention([panel], out, title=name, width=cfg.width, height=cfg.height, dpi=cfg.dpi)
        print(f"wrote {out}: {panel.maps.size(0)} layers x {panel.maps.size(1)} heads, {panel.maps.size(2)} x "
              f"{panel.maps.size(3)} tokens")
    print(f"{cfg.start!r} -> {text!r}")


def ranked_words(tokenizer, ids, words, query):
    """[(word, weight)] of the words before the query (the query's own word left out), by the weight the query
    gives them, averaged over layers and heads. words: {word: (n_layer, nh)} from word_weights."""
    own = next((w for w, tokens in word_tokens(tokenizer, ids) if query in tokens), None)
    return sorted(((w, v.mean().item()) for w, v in words.items() if w != own), key=lambda wv: -wv[1])


def swap_reading(texts, rankings):
    """For two texts that swap two words (pizza and oven), one line saying what the weight follows: the same word
    in both (the meaning, perhaps), or the word in the same place (the position). None for other pairs."""
    first, second = (re.findall(r"\w+", text) for text in texts)
    moved = [i for i, (a, b) in enumerate(zip(first, second)) if a != b]
    if len(first) != len(second) or len(moved) != 2 or sorted(first) != sorted(second):
        return None
    near, far = first[moved[1]], first[moved[0]]  # in the first text, the later one is nearer the query
    scores = [dict(ranking) for ranking in rankings]
    if not all(near in s and far in s for s in scores):
        return None
    winners = [max((near, far), key=s.get) for s in scores]
    detail = "; ".join(f"text {n + 1}: {near} {s[near]:.2f}, {far} {s[far]:.2f}" for n, s in enumerate(scores))
    if winners[0] == winners[1]:
        return f"the weight follows the word: '{winners[0]}' gets more in both texts ({detail})"
    return f"the weight follows the position: the nearer of '{near}' and '{far}' gets more in both texts ({detail})"


# ----------------------------------------------------------------------------------------------
# the page to explore


@dataclass
class ExploreConfig(ModelSource):
    text: str = PIZZA  # the text to explore, up to block_size tokens; FILE:path reads it from a file
    start: str = ""  # a translation model (transformer.py): the sentence to translate, as sample.py's --start
    # the token the page opens on: a word of the text (its last token) or a position; empty: the last (for a
    # translation: a word or position of the translation; empty: the first token written)
    query: str = ""
    layer: int = -1  # the layer it opens on; -1: where the query's attention is most concentrated on one other token
    head: int = -1  # the head it opens on; -1: likewise
    compare: str = ""  # a second text shown under the first, same layer, head and position (e.g. two words swapped)
    compare_out_dir: str = ""  # a second run's out_dir, shown under the first on the same text (or on --compare)
    out: str = ""  # the HTML file to write; empty: out_dir/attention.html (./attention.html for GPT-2)


def sentence_to_translate(cfg):
    """A translation model's sentence: --start, as sample.py's (or --text, when only it is given)."""
    text = cfg.text if cfg.text != PIZZA else ""
    if cfg.start and text and text != cfg.start:
        raise UserError("this model translates one sentence: give it once, with --start (--text is the same setting)")
    if not (cfg.start or text):
        raise UserError("this model translates: name the sentence to translate with --start (as sample.py's)")
    return cfg.start or text


def explore_command(cfg):
    model, tokenizer, name = load_model(cfg)
    translating = isinstance(model, Transformer)
    make = explore.translation_panel if translating else explore.panel  # the page's data for one text and model
    text = sentence_to_translate(cfg) if translating else cfg.text
    panels = [make(model, tokenizer, text, name, cfg.query, cfg.layer, cfg.head)]
    if cfg.compare_out_dir:
        second = ModelSource(out_dir=cfg.compare_out_dir, ckpt=cfg.ckpt, data_dir=cfg.data_dir)
        model, tokenizer, name = load_model(second)
        if isinstance(model, Transformer) != translating:
            kinds = {True: "a translation model", False: "a GPT"}
            raise UserError(f"--out_dir={cfg.out_dir} holds {kinds[translating]} and --compare_out_dir="
                            f"{cfg.compare_out_dir} {kinds[not translating]}: the page compares two models of "
                            f"one kind")
    if cfg.compare or cfg.compare_out_dir:
        panels.append(make(model, tokenizer, cfg.compare or text, name))
    page = explore.page_html(panels, title=f"attention of {panels[0]['name']}")
    out = explore.write_page(page, cfg.out or default_out(cfg, "attention.html"))
    shape, size = panels[0]["shape"], out.stat().st_size
    if translating:
        tokens = " and ".join(f"{len(p['source'])} -> {len(p['tokens'])}" for p in panels)
        tokens = f"{tokens} tokens (source -> written)"
    else:
        tokens = " and ".join(str(len(p["tokens"])) for p in panels) + " tokens"
    print(f"wrote {out} ({size / 1e3:,.0f} kB): {len(panels)} panel(s), {shape['n_layer']} layers x "
          f"{shape['n_head']} heads, {tokens}; open it in a browser (it needs no network)")
    start, tokens = panels[0]["start"], panels[0]["tokens"]
    if translating:
        print(f"{panels[0]['text']!r} -> {panels[0]['translation']!r}")
        print(f"it opens on cross-attention from the written {tokens[start['query']]['label']!r} (position "
              f"{start['query']}), layer {start['layer']}, head {start['head']}: {start['weight']:.2f} of its "
              f"attention on the source's {panels[0]['source'][start['key']]['label']!r} (position {start['key']})")
    else:
        print(f"it opens on {tokens[start['query']]['label']!r} (position {start['query']}), layer {start['layer']}, "
              f"head {start['head']}: {start['weight']:.2f} of its attention on {tokens[start['key']]['label']!r} "
              f"(position {start['key']})")
    if size > 20e6:  # the weights grow as layers x heads x tokens^2 / 2
        print(f"note: the page is {size / 1e6:.0f} MB; a shorter {'--start' if translating else '--text'} makes it "
              f"smaller and quicker to open", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# the next token


@dataclass
class NextConfig(ModelSource):
    text: str = "ROMEO:"  # the prompt; FILE:path reads it from a file
    top: int = 10  # how many of the most likely next tokens to show
    temperature: float = 1.0  # divides the logits before the softmax, as in sampling
    out: str = ""  # the PNG to write; empty: out_dir/next.png
    dpi: int = 100  # pixels per inch: the scale of the text in the picture

    def validate(self):
        if self.top < 1 or self.temperature <= 0:
            raise UserError("top must be at least 1 and temperature positive")


def next_command(cfg):
    new_figure, _ = matplotlib_figure()  # before loading: a missing matplotlib fails fast
    model, tokenizer, name = load_model(cfg)
    ids = prompt_ids(tokenizer, read_prompt(cfg.text))
    probs = next_token_probabilities(model, ids, cfg.temperature, tokenizer.vocab_size)
    top = probs.topk(min(cfg.top, len(probs)))
    labels = [token_text(tokenizer, i) for i in top.indices.tolist()]
    print(f"after {tokenizer.decode(ids)!r}, {name} expects:")
    print(f"{'rank':>4}  {'token':<16} {'p':>7}  {'cumulative':>10}")
    for rank, (label, p, cum) in enumerate(zip(labels, top.values.tolist(), top.values.cumsum(0).tolist()), 1):
        print(f"{rank:>4}  {label:<16} {p:>7.4f}  {cum:>10.4f}")
    fig = new_figure(800, round((0.34 * len(labels) + 1.4) * cfg.dpi), cfg.dpi)
    fig.get_layout_engine().set(w_pad=0.12)  # room for glyphs wider than their font metrics (⏎)
    ax = fig.subplots()
    ax.barh(range(len(labels)), top.values.numpy(), color="C0")
    names = {"\u23ce": "⏎ newline", "\u2423": "␣ space", "\u21e5": "⇥ tab"}
    ax.set_yticks(range(len(labels)), [names.get(label, label) for label in labels], fontsize=12, parse_math=False)
    ax.invert_yaxis()  # the most likely on top
    for i, p in enumerate(top.values.tolist()):
        inside = p > 0.6 * top.values[0].item() and p > 0.5  # a long bar holds its own number
        ax.text(p, i, f" {100 * p:.2g}% " if inside else f" {100 * p:.2g}%", va="center", fontsize=9,
                ha="right" if inside else "left", color="white" if inside else "black")
    ax.set_xlim(0, min(1.0, top.values[0].item() * 1.25))
    ax.set_xlabel("probability of the next token")
    fig.suptitle(wrapped(f"after {tokenizer.decode(ids)!r}: {name}", 800 / cfg.dpi), fontsize=10)
    out = save(fig, cfg.out or default_out(cfg, "next.png"), cfg.dpi)
    print(f"wrote {out}")


# ----------------------------------------------------------------------------------------------
# loss curves


@dataclass
class LossConfig:
    runs: list[str] = field(default_factory=list)  # the out_dirs to compare (positional arguments)
    out: str = "loss.png"  # the PNG to write
    title: str = ""  # empty: names the settings that differ
    x: Literal["iter", "elapsed_s", "tokens"] = "iter"  # elapsed_s: wall seconds, for time-to-loss
    target: float = 0.0  # a loss to draw as a dashed line, e.g. a time-to-loss target; 0: none
    width: int = 1200  # pixels
    height: int = 480  # pixels
    dpi: int = 100  # pixels per inch: the scale of the text in the picture

    def validate(self):
        check_size(self.width, self.height, self.dpi)
        if not self.width or not self.height:
            raise UserError("give the loss plot a positive --width and --height")
        if not self.runs:
            raise UserError("name the runs to compare: python3 visualize.py loss OUT_DIR [OUT_DIR ...] [--out=loss.png]")


def logged_evaluations(run_dir):
    """read_log, but an error when the run has logged nothing yet."""
    records = read_log(run_dir)
    if not records:
        raise UserError(f"no evaluations logged in {Path(run_dir) / 'log.jsonl'}; is {run_dir} an out_dir "
                        f"written by train.py, and has it evaluated yet?")
    return records


def run_settings(run_dir):
    """Every setting a run was trained with ({key: value}), from its checkpoint; None without one."""
    for name in ("ckpt.pt", "best.pt"):
        try:  # mmap: read the settings without reading the weights
            ckpt = load_checkpoint(Path(run_dir) / name, mmap=True)
        except UserError:  # missing or unreadable: it only costs the label
            continue
        return {**ckpt.get("train_config", {}), **ckpt.get("model_args", {})}
    return None


def differing_keys(settings):
    """The keys whose values are not the same in every run (all runs must have settings)."""
    keys = sorted(set().union(*settings) - NOT_A_SETTING)
    return [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]


def run_labels(run_dirs, settings):
    """(label per run, the keys that differ): the differing settings (`pos_encoding=rope`) when there are
    at most three of them, else the folder names (a label of 17 settings helps nobody).
    settings: run_settings of each run."""
    names = [Path(d).name or str(d) for d in run_dirs]
    if len(run_dirs) < 2 or any(s is None for s in settings):
        return names, []
    keys = differing_keys(settings)
    if not keys or len(keys) > 3:
        return names, keys
    return [", ".join(f"{k}={s.get(k)}" for k in keys) for s in settings], keys


def loss_command(cfg):
    run_dirs = cfg.runs
    matplotlib_figure()
    logs = [logged_evaluations(d) for d in run_dirs]
    settings = [run_settings(d) for d in run_dirs]
    labels, keys = run_labels(run_dirs, settings)
    if len(keys) > 3:
        default_title = f"{len(keys)} settings differ: {', '.join(keys)}"
    else:
        default_title = f"by {', '.join(keys)}, all else equal" if keys else ""
    title = cfg.title or default_title
    leaks = {i for i, s in enumerate(settings) if (s or {}).get("mask", "causal") != "causal"}
    out = plot_loss(list(zip(labels, logs)), cfg.out, title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi,
                    x=cfg.x, target=cfg.target, leaks=leaks)
    labelled = f", labelled by {', '.join(keys)}" if 0 < len(keys) <= 3 else ", labelled by folder"
    print(f"wrote {out}: {len(run_dirs)} runs{labelled}")


# ----------------------------------------------------------------------------------------------
# how tokenizers cut a text


@dataclass
class TokensConfig:
    text: str = "Der Ofen ist heiß, die Pizza schmeckt gut."  # the text to cut; FILE:path reads it from a file
    dataset: str = ""  # also show this dataset's own tokenizer (data_dir/dataset/meta.json), e.g. a trained bpe
    data_dir: str = "data"  # where --dataset is
    out: str = "tokens.png"  # the PNG to write
    width: int = 1400  # pixels
    dpi: int = 100  # pixels per inch: the scale of the text in the picture

    def validate(self):
        check_size(self.width, 0, self.dpi)
        if self.width < 400:
            raise UserError("--width must be at least 400 pixels")


def tokens_table(tokenizers, texts):
    """Tokens per word and bytes per token of each tokenizer (rows) on each text (columns), as lines."""
    lines = [f"{'tokens per word / bytes per token':<44}" + "".join(f"{name[:22]:>24}" for name in texts)]
    for name, tokenizer in tokenizers:
        cells = [tokens_per_word(tokenizer, text) for text in texts.values()]
        lines.append(f"{name[:44]:<44}" + "".join(f"{f'{per_word:.2f} / {per_token:.2f}':>24}"
                                                 for per_word, per_token in cells))
    return lines


def tokens_command(cfg):
    matplotlib_figure()  # before the work: a missing matplotlib fails fast
    text = read_prompt(cfg.text)
    if not text:
        raise UserError("the text is empty; pass some with --text")
    tokenizer = load_tokenizer(load_meta(Path(cfg.data_dir) / cfg.dataset)) if cfg.dataset else None
    tokenizers = comparison_tokenizers(tokenizer, cfg.dataset)
    rows = [(name, split_tokens(tok, text)) for name, tok in tokenizers]
    for name, tokens in rows:
        print(f"{name}: {len(tokens)} tokens")
        print("  " + " ".join(f"[{visible(piece)}|{i}]" for piece, i in tokens))
    texts = {"your text": text, **{f"{path.name} ({language})": path.read_text(encoding="utf-8")
                                   for path, language in ((SAMPLES / "de.txt", "German"), (SAMPLES / "en.txt", "English"))}}
    table = tokens_table(tokenizers, texts)
    print("\n".join(table))
    out = plot_tokens(rows, cfg.out, title=f"how the model reads {text[:80]!r}", table="\n".join(table),
                      width=cfg.width, dpi=cfg.dpi)
    print(f"wrote {out}")


@run_main
def main(argv):
    command, cfg = parse(argv)
    COMMANDS[command][2](cfg)


# command: (its settings, the setting its positional arguments fill, what it runs)
COMMANDS = {"attention": (AttentionConfig, None, attention_command), "explore": (ExploreConfig, None, explore_command),
            "next": (NextConfig, None, next_command), "loss": (LossConfig, "runs", loss_command),
            "tokens": (TokensConfig, None, tokens_command)}


def parse(argv):
    """(command, its validated settings) of a command line, without running anything."""
    command, rest = command_args(argv, {name: [settings] for name, (settings, _, _) in COMMANDS.items()})
    settings, positional, _ = COMMANDS[command]
    (cfg,) = parse_args([settings], rest, positional=positional)
    return command, cfg


if __name__ == "__main__":
    main(sys.argv[1:])
