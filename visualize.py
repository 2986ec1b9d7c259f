"""Pictures of a model and of its training: attention maps and loss curves as PNG, the shape trace as text.

    python visualize.py attention --out_dir=out-shakespeare-char --text="The pizza came out of the oven and it tasted good."
    python visualize.py loss out-a out-b ... [--out=loss.png]

attention: one forward pass over the text, with model.tracing collecting every layer's attention
weights softmax(score + mask), shape (1, nh, T, T). They are drawn as a grid, one row per layer and
one column per head: the query (the token that looks) down the side, the key (the token looked at)
along the bottom. Under the causal mask the upper-right triangle is empty: nobody sees the future.

loss: the train and val curves of each run, read from its out_dir/log.jsonl, each run labelled by
the settings that differ between the runs (read from the runs' checkpoints).

The shape trace (train.py or sample.py --trace_shapes=True) is print_shape_trace below: one
forward pass, each named tensor with its shape and what it holds.

matplotlib is optional: only the PNG pictures need it (pip install matplotlib).
"""

import itertools
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from checkpoint import load_checkpoint, load_trained
from model import tracing
from runlog import read_log
from settings import UserError, command_args, parse_args, run_main
from tokenizer import load_tokenizer, prompt_ids, read_prompt

PIZZA = "The pizza came out of the oven and it tasted good."
PIZZA_SWAPPED = "The oven came out of the pizza and it tasted good."  # the same sentence, the nouns swapped
# settings that name or manage a run rather than change what it learns: never used as labels
NOT_A_SETTING = {"out_dir", "overwrite", "init_from", "eval_only", "trace_shapes"}


def matplotlib_figure():
    """(new_figure, matplotlib): plots need matplotlib, nothing else in the repository does."""
    try:
        import matplotlib
        import matplotlib.colors
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("matplotlib is not installed; the plots need it: pip install matplotlib") from None

    def new_figure(width, height, dpi):
        """A figure of exactly width x height pixels, drawn by Agg (files only, no window, no display)."""
        fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    return new_figure, matplotlib


def save(fig, out, dpi):
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi, format="png")  # never bbox_inches="tight": the size is what was asked
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or e})") from None
    return out


def check_size(width, height, dpi):
    if width < 0 or height < 0 or dpi <= 0:
        raise UserError("width and height must not be negative (0: automatic) and dpi must be positive")


# ----------------------------------------------------------------------------------------------
# the shape trace


def describe_step(name, config):
    """One line on what the traced tensor `name` holds (per-layer names lose their `h.N.` prefix)."""
    step = name.split(".", 2)[2] if name.startswith("h.") else name
    norm = {"layernorm": "LayerNorm: each position's C values to mean 0, variance 1, then a learned scale",
            "rmsnorm": "RMSNorm: each position's C values divided by their root mean square, then scaled",
            "none": "no normalisation (norm=none): the input unchanged"}[config.norm]
    scores = {"dot": "q.k/sqrt(hs)", "dot_then_square": "(q.k/sqrt(hs))^2",
              "square_then_dot": "sum_i q_i^2 k_i^2 / sqrt(hs)", "neg_dot": "-q.k/sqrt(hs)"}[config.attn_score]
    if config.qk_norm:
        scores += " (of the RMS-normalised q and k)"
    return {
        "idx": "token ids: the input, one integer per position",
        "tok_emb": "token embedding: the row of wte for each token id",
        "pos_emb": f"{config.pos_encoding} position encoding, added to tok_emb (broadcast over B)",
        "ln_1": f"{norm} (before attention)",
        "attn.q": "queries: what each position looks for, one set per head",
        "attn.k": "keys: what each position can be found by",
        "attn.v": "values: what each position passes on when attended to",
        "attn.q_norm": "queries RMS-normalised per head (qk_norm): the score can no longer grow with |q|",
        "attn.k_norm": "keys RMS-normalised per head (qk_norm)",
        "attn.q_rope": "queries rotated by their position (rope): each pair of channels by pos * theta_i",
        "attn.k_rope": "keys rotated by their position (rope): q.k now depends on the distance",
        "attn.scores": f"{scores} for every (query, key) pair",
        "attn.mask": {"causal": "True where the key is the query itself or in its past",
                      "none": "all True: every position sees every other",
                      "anticausal": "True where the key is the query itself or in its future"}[config.mask],
        "attn.softmax": "attention weights: softmax of the masked scores over keys; rows sum to 1",
        "attn.out": "per head, the attention-weighted sum of the values",
        "attn.merged": "the heads side by side again",
        "attn.c_proj": "c_proj: a Linear that mixes the heads' outputs (then dropout)",
        "attn_residual": "x + attention: the residual stream" if config.residual
                         else "the attention output alone (no residual connection)",
        "ln_2": f"{norm} (before the MLP)",
        "mlp": f"MLP: Linear to 4C, {config.activation}, Linear back to C",
        "out": "block output: x + MLP (the residual stream)" if config.residual
               else "block output: the MLP output alone (no residual connection)",
        "ln_f": f"final {norm}",
        "logits": "a score for every vocabulary entry as the next token",
        "loss": "cross-entropy: mean of -log p(target) over all B*T positions",
    }.get(step, "")


def attention_path(config):
    """Which attention path training and sampling take, in words (model.CausalSelfAttention.forward)."""
    if config.explicit_attention:
        return "explicit_attention, as here (explicit_attention=True)"
    if not config.fusable_attention:
        return (f"explicit_attention, as here: the fused kernel cannot compute "
                f"{'attn_score=' + config.attn_score if config.attn_score != 'dot' else 'mask=anticausal'}")
    return "the fused kernel F.scaled_dot_product_attention, which computes the same in one step"


def print_shape_trace(model, idx, targets=None, tokenizer=None, values=False):
    """Run one forward pass and print each named tensor: name, shape, what it holds (and with values,
    the numbers of the first sequence and, in 4-D tensors, its first head).

    Layers after the first that repeat its shapes are summarised in one line.
    """
    steps = []
    with torch.no_grad(), tracing(lambda name, t: steps.append((name, t.detach().clone() if values else t.shape))):
        model(idx, targets)
    cfg = model.config
    B, T = idx.shape
    print(f"B={B} sequences of T={T} tokens" + (" (two: enough to show the batch dimension; training takes "
                                               "batch_size of them)" if B == 2 else ""))
    if tokenizer is not None:
        print(f"sequence 0: {tokenizer.decode(idx[0].tolist())!r}")
    print(f"C={cfg.n_embd} channels, nh={cfg.n_head} heads of hs={cfg.n_embd // cfg.n_head}, {cfg.n_layer} layers, "
          f"vocab {cfg.vocab_size}")
    print(f"this trace runs explicit_attention to show its steps; training and sampling run {attention_path(cfg)}")
    if values:
        print("values: of sequence 0, and of head 0 where there are heads")
    print(f"{'step':<20} {'shape':<18} what it holds")
    layer_of = lambda name: int(name.split(".")[1]) if name.startswith("h.") else None  # noqa: E731
    shape_of = lambda x: tuple(x.shape if isinstance(x, torch.Tensor) else x)  # noqa: E731
    first = [(n.split(".", 2)[2], shape_of(t)) for n, t in steps if layer_of(n) == 0]
    done = set()
    for name, tensor in steps:
        layer = layer_of(name)
        if layer is not None and layer > 0:
            if layer in done:
                continue
            mine = [(n.split(".", 2)[2], shape_of(t)) for n, t in steps if layer_of(n) == layer]
            if mine == first and not values:
                done.add(layer)
                if layer == 1:
                    print(f"{f'h.1 .. h.{cfg.n_layer - 1}':<20} {'':<18} the same steps and shapes as h.0")
                continue
        print(f"{name:<20} {str(shape_of(tensor)):<18} {describe_step(name, cfg)}")
        if values:
            print(textwrap.indent(format_values(name, tensor), " " * 4))


def format_values(name, t):
    """The numbers of a traced tensor: of sequence 0, and of head 0 in (B, nh, T, ...) tensors."""
    if name.split(".", 2)[-1] not in ("pos_emb", "attn.mask") and t.dim() >= 2:  # those have no batch dimension
        t = t[0]
    if t.dim() == 3:  # (nh, T, ...)
        t = t[0]
    torch.set_printoptions(precision=3, sci_mode=False, linewidth=110, edgeitems=4, threshold=256)
    try:
        text = str(t.float() if t.is_floating_point() else t)
    finally:
        torch.set_printoptions(profile="default")
    return text.removeprefix("tensor(").removesuffix(")").replace("\n" + " " * len("tensor("), "\n")


# ----------------------------------------------------------------------------------------------
# which model to draw, and its tokens as text


@dataclass
class ModelSource:
    out_dir: str = "out"  # the run whose checkpoint to draw
    ckpt: str = "best"  # best (best.pt), latest (ckpt.pt), or a path to a .pt file
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl
    init_from: str = ""  # gpt2 (or -medium, -large, -xl) or a GPT-2 directory: draw OpenAI's GPT-2 instead


def load_model(cfg):
    """(model, tokenizer, name) to draw: a trained checkpoint, or GPT-2 itself (init_from)."""
    if cfg.init_from:
        from gpt2_weights import load_hf_gpt2

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


def word_weights(tokenizer, ids, weights):
    """{word: weight}, summing the weights (..., S) of each word's tokens (a repeated word: `the@2`)."""
    words = {}
    for n, (word, tokens) in enumerate(word_tokens(tokenizer, ids[:weights.size(-1)])):
        words[word if word not in words else f"{word}@{n}"] = weights[..., tokens].sum(-1)
    return words


# ----------------------------------------------------------------------------------------------
# attention maps


@dataclass
class AttentionConfig(ModelSource):
    text: str = PIZZA  # the text to run through the model; FILE:path reads it from a file
    query: str = ""  # draw only what this token attends to: a word of the text (its last token) or a position
    compare: str = ""  # a second text drawn beside the first, e.g. with two words swapped
    out: str = ""  # the PNG to write; empty: out_dir/attention.png (attention_query.png with --query)
    width: int = 0  # pixels; 0: sized to the text and the grid
    height: int = 0
    dpi: int = 100

    def validate(self):
        check_size(self.width, self.height, self.dpi)


def attention_maps(model, ids):
    """Attention weights of every layer and head for one sequence: (n_layer, nh, T, T).

    Positions the mask hides are NaN (drawn grey), so a weight of almost 0 and "not allowed to
    look" stay distinguishable.
    """
    maps, masks = {}, {}

    def grab(name, t):
        layer = name.split(".")[1] if name.startswith("h.") else None
        if name.endswith(".attn.softmax"):
            maps[int(layer)] = t[0].detach().float().cpu()  # (nh, T, S)
        elif name.endswith(".attn.mask"):
            masks[int(layer)] = t.detach().cpu()  # (T, S), True where allowed

    model.eval()
    with torch.no_grad(), tracing(grab):
        model(torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device))
    return torch.stack([maps[i].masked_fill(~masks[i], float("nan")) for i in sorted(maps)])


@dataclass
class Panel:
    """One text's attention, to draw: maps (n_layer, nh, T, T), token labels, and the query position or None."""

    maps: torch.Tensor
    labels: list
    query: int | None
    caption: str
    words: list  # [(word, [token positions])], to name the words under a row of single characters


def attention_colours(matplotlib):
    # a square-root colour scale: weights spread over many tokens stay visible next to peaked ones
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # NaN, hidden by the mask: light grey
    return norm, cmap


def plot_attention(panels, out, title="", width=0, height=0, dpi=100):
    """Draw each panel's every layer and head as a grid of heat maps (layers down, heads across,
    query down the side, key along the bottom), panels side by side; return the path written."""
    new_figure, matplotlib = matplotlib_figure()
    n_layer, n_head, T, _ = panels[0].maps.shape
    # about 0.12 inch per token, so each label gets ~7 points; within 40 inches overall
    cell = min(max(2.2, 0.12 * T + 0.6), 40.0 / max(n_layer, n_head * len(panels)))
    width = width or round((len(panels) * (n_head * cell + 1.0) + 1.4) * dpi)
    height = height or round((n_layer * cell + 1.4) * dpi)
    fig = new_figure(width, height, dpi)
    cell_inches = min(width / (n_head * len(panels)), height / n_layer) / dpi
    font = max(5.0, min(10.0, 0.9 * 72 * cell_inches / T))  # token labels: as large as fits
    text_font = max(9.0, min(18.0, 1.6 * cell_inches + 5))  # titles and axis names grow with the maps
    norm, cmap = attention_colours(matplotlib)
    for subfig, panel in zip(np.atleast_1d(fig.subfigures(1, len(panels))), panels):
        axes = subfig.subplots(n_layer, n_head, squeeze=False, sharex=True, sharey=True)
        rotation = 0 if max(len(label) for label in panel.labels) == 1 else 90
        for layer in range(n_layer):
            for head in range(n_head):
                ax = axes[layer][head]
                image = ax.imshow(panel.maps[layer, head].numpy(), cmap=cmap, norm=norm, interpolation="nearest")
                ax.set_xticks(range(T), panel.labels, rotation=rotation, fontsize=font, parse_math=False)
                ax.set_yticks(range(T), panel.labels, fontsize=font, parse_math=False)
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


def wrapped(text, inches, points=10):
    """The text broken into lines that fit `inches` at about `points` size, so no title is cut off."""
    return textwrap.fill(text, width=max(20, int(inches * 144 / points)))


def print_query_summary(tokenizer, ids, maps, query, caption):
    """Per layer: each head's most-attended tokens; then the words by the weight they get."""
    weights = maps[:, :, query, :query + 1]  # (n_layer, nh, query + 1)
    print(f"{caption}: from {token_text(tokenizer, ids[query])!r} (position {query})")
    for layer in range(weights.size(0)):
        heads = []
        for head in range(weights.size(1)):
            top = weights[layer, head].topk(min(2, query + 1))
            heads.append(f"h{head} " + " ".join(f"{token_text(tokenizer, ids[i])}:{w:.2f}"
                                                for w, i in zip(top.values.tolist(), top.indices.tolist())))
        print(f"  layer {layer}: " + " | ".join(heads))
    words = word_weights(tokenizer, ids[:query + 1], weights)
    ranked = sorted(words.items(), key=lambda kv: -kv[1].mean().item())
    print("  words, by the weight they get (mean over layers and heads; the best head):")
    for word, w in ranked[:8]:
        layer, head = divmod(int(w.argmax()), w.size(1))
        print(f"    {word:<14} {w.mean().item():.3f}   (layer {layer} head {head}: {w.max().item():.3f})")


def attention_command(argv):
    (cfg,) = parse_args([AttentionConfig], argv)
    matplotlib_figure()  # fail before loading anything when matplotlib is missing
    model, tokenizer, name = load_model(cfg)
    panels = []
    for text in [cfg.text] + ([cfg.compare] if cfg.compare else []):
        ids = encode_text(tokenizer, text, model.config.block_size)
        query = find_query(tokenizer, ids, cfg.query) if cfg.query else None
        maps = attention_maps(model, ids)
        shown = repr(tokenizer.decode(ids))
        caption = shown if query is None else f"{shown}: what {token_text(tokenizer, ids[query])!r} attends to"
        panels.append(Panel(maps, [token_text(tokenizer, i) for i in ids], query, caption,
                            word_tokens(tokenizer, ids)))
        if query is not None:
            print_query_summary(tokenizer, ids, maps, query, shown)
    settings = ", ".join(f"{k}={getattr(model.config, k)}" for k in ("pos_encoding", "attn_score", "mask"))
    title = f"attention of {name}; {settings}"
    default = "attention.png" if cfg.query == "" else "attention_query.png"  # the two views side by side
    out = cfg.out or default_out(cfg, default)
    draw = plot_attention if cfg.query == "" else plot_query
    out = draw(panels, out, title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi)
    n_layer, n_head, T, _ = panels[0].maps.shape
    print(f"wrote {out}: {n_layer} layers x {n_head} heads, {T} tokens" + (" and the comparison" if cfg.compare else ""))


# ----------------------------------------------------------------------------------------------
# the next token


@dataclass
class NextConfig(ModelSource):
    text: str = "ROMEO:"  # the prompt; FILE:path reads it from a file
    top: int = 10  # how many of the most likely next tokens to show
    temperature: float = 1.0  # divides the logits before the softmax, as in sampling
    out: str = ""  # the PNG to write; empty: out_dir/next.png
    dpi: int = 100

    def validate(self):
        if self.top < 1 or self.temperature <= 0:
            raise UserError("top must be at least 1 and temperature positive")


def next_token_probabilities(model, ids, temperature=1.0, vocab_size=None):
    """p(next token | ids) over the tokenizer's vocabulary: (vocab,)."""
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[-model.config.block_size:]]), last_only=True)
    return torch.softmax(logits[0, -1, :vocab_size].float() / temperature, dim=-1)


def next_command(argv):
    (cfg,) = parse_args([NextConfig], argv)
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
    fig = new_figure(800, round((0.3 * len(labels) + 1.4) * cfg.dpi), cfg.dpi)
    ax = fig.subplots()
    ax.barh(range(len(labels)), top.values.numpy(), color="C0")
    ax.set_yticks(range(len(labels)), labels, parse_math=False)
    ax.invert_yaxis()  # the most likely on top
    for i, p in enumerate(top.values.tolist()):
        ax.text(p, i, f" {p:.3f}", va="center", fontsize=8)
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
    out: str = "loss.png"
    title: str = ""  # empty: names the settings that differ
    x: Literal["iter", "elapsed_s", "tokens"] = "iter"  # elapsed_s: wall seconds, for time-to-loss
    target: float = 0.0  # a loss to draw as a dashed line, e.g. a time-to-loss target; 0: none
    width: int = 1200  # pixels
    height: int = 480
    dpi: int = 100

    def validate(self):
        check_size(self.width, self.height, self.dpi)
        if not self.width or not self.height:
            raise UserError("give the loss plot a positive --width and --height")
        if not self.runs:
            raise UserError("name the runs to compare: python visualize.py loss OUT_DIR [OUT_DIR ...] [--out=loss.png]")


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


def run_labels(run_dirs):
    """(label per run, the keys that differ): the differing settings (`pos_encoding=rope`) when there are
    at most three of them, else the folder names (a label of 17 settings helps nobody)."""
    settings = [run_settings(d) for d in run_dirs]
    names = [Path(d).name or str(d) for d in run_dirs]
    if len(run_dirs) < 2 or any(s is None for s in settings):
        return names, []
    keys = differing_keys(settings)
    if not keys or len(keys) > 3:
        return names, keys
    return [", ".join(f"{k}={s.get(k)}" for k in keys) for s in settings], keys


LINE_STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def plot_loss(runs, out, title="", width=1200, height=480, dpi=100, x="iter", target=0.0):
    """Write the curves of runs [(label, log records)]: train loss, val loss, and val loss again past the
    first quarter with its own y-axis, where runs that start alike come apart. Each run has
    its own colour, line style and marker, so a run drawn over another still shows. Returns the path."""
    new_figure, _ = matplotlib_figure()
    fig = new_figure(width, height, dpi)
    axes = fig.subplots(1, 3)
    x_name = {"iter": "iteration", "elapsed_s": "seconds from process start", "tokens": "tokens"}[x]
    x_end = max((r[x] for _, records in runs for r in records if x in r), default=0)
    panels = [("train", "train loss", 0), ("val", "val loss", 0), ("val", "val loss, zoomed: the last 3/4", x_end / 4)]
    for ax, (split, name, x_from) in zip(axes, panels):
        shown = []
        for i, (label, records) in enumerate(runs):
            points = [(r[x], r[f"{split}_loss"]) for r in records
                      if r.get(f"{split}_loss") is not None and x in r and r[x] >= x_from]
            if points:
                ax.plot(*zip(*points), color=f"C{i % 10}", linestyle=LINE_STYLES[i % 4], marker=MARKERS[i % 8],
                        markersize=3.5, linewidth=1.4, alpha=0.85, label=label)
                shown += [y for _, y in points]
        if target and split == "val":
            ax.axhline(target, color="0.4", linestyle=(0, (4, 3)), linewidth=1, label=f"target {target}")
            shown.append(target)
        if shown and x_from:  # the zoom: fit the y-axis to what is drawn
            low, high = min(shown), max(shown)
            margin = 0.08 * (high - low) or 0.01
            ax.set_ylim(low - margin, high + margin)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(x_name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy loss")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small")
    if title:
        fig.suptitle(wrapped(title, width / dpi, 11), fontsize=11)
    return save(fig, out, dpi)


def loss_command(argv):
    (cfg,) = parse_args([LossConfig], argv, positional="runs")
    run_dirs = cfg.runs
    matplotlib_figure()
    logs = [logged_evaluations(d) for d in run_dirs]
    labels, keys = run_labels(run_dirs)
    if len(keys) > 3:
        default_title = f"{len(keys)} settings differ: {', '.join(keys)}"
    else:
        default_title = f"by {', '.join(keys)}, all else equal" if keys else ""
    title = cfg.title or default_title
    out = plot_loss(list(zip(labels, logs)), cfg.out, title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi,
                    x=cfg.x, target=cfg.target)
    labelled = f", labelled by {', '.join(keys)}" if 0 < len(keys) <= 3 else ", labelled by folder"
    print(f"wrote {out}: {len(run_dirs)} runs{labelled}")


@run_main
def main(argv):
    command, rest = command_args(argv, {"attention": [AttentionConfig], "next": [NextConfig], "loss": [LossConfig]})
    {"attention": attention_command, "next": next_command, "loss": loss_command}[command](rest)


if __name__ == "__main__":
    main(sys.argv[1:])
