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

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from checkpoint import load_checkpoint, load_trained
from model import tracing
from runlog import read_log
from settings import UserError, command_args, parse_args, run_main
from tokenizer import read_prompt

PIZZA = "The pizza came out of the oven and it tasted good."
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


def print_shape_trace(model, idx, targets=None):
    """Run one forward pass and print each named tensor: name, shape, what it holds.

    Layers after the first that repeat its shapes are summarised in one line.
    """
    steps = []
    with torch.no_grad(), tracing(lambda name, t: steps.append((name, tuple(t.shape)))):
        model(idx, targets)
    cfg = model.config
    print(f"B={idx.size(0)} batch, T={idx.size(1)} positions, C={cfg.n_embd} channels, nh={cfg.n_head} heads "
          f"of hs={cfg.n_embd // cfg.n_head}, {cfg.n_layer} layers, vocab {cfg.vocab_size}")
    print(f"{'step':<20} {'shape':<18} what it holds")
    layer_of = lambda name: int(name.split(".")[1]) if name.startswith("h.") else None  # noqa: E731
    first = [(n.split(".", 2)[2], s) for n, s in steps if layer_of(n) == 0]
    done = set()
    for name, shape in steps:
        layer = layer_of(name)
        if layer is not None and layer > 0:
            if layer in done:
                continue
            mine = [(n.split(".", 2)[2], s) for n, s in steps if layer_of(n) == layer]
            if mine == first:
                done.add(layer)
                if layer == 1:
                    print(f"{f'h.1 .. h.{cfg.n_layer - 1}':<20} {'':<18} the same steps and shapes as h.0")
                continue
        print(f"{name:<20} {str(shape):<18} {describe_step(name, cfg)}")


# ----------------------------------------------------------------------------------------------
# attention maps


@dataclass
class AttentionConfig:
    out_dir: str = "out"
    ckpt: str = "best"  # best (best.pt), latest (ckpt.pt), or a path to a .pt file
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl
    text: str = PIZZA  # the text to run through the model; FILE:path reads it from a file
    out: str = ""  # the PNG to write; empty: out_dir/attention.png
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
        model(torch.tensor([ids], dtype=torch.long))
    return torch.stack([maps[i].masked_fill(~masks[i], float("nan")) for i in sorted(maps)])


def token_labels(tokenizer, ids):
    """Each token as its own text, repr-escaped so spaces, newlines and BPE's leading spaces show."""
    return [repr(tokenizer.decode([i])) for i in ids]


def plot_attention(maps, labels, out, title="", width=0, height=0, dpi=100):
    """Write maps (n_layer, nh, T, T) as a grid of heat maps, layers down and heads across; return the path."""
    new_figure, matplotlib = matplotlib_figure()
    n_layer, n_head, T, S = maps.shape
    cell = min(max(2.0, 0.09 * T + 0.6), 40.0 / max(n_layer, n_head))  # inches per map, within 40 x 40 overall
    width = width or round((n_head * cell + 1.2) * dpi)
    height = height or round((n_layer * cell + 0.8) * dpi)
    fig = new_figure(width, height, dpi)
    axes = fig.subplots(n_layer, n_head, squeeze=False, sharex=True, sharey=True)
    # cell size in points over the number of labels, so the labels never overlap
    font = max(3.0, min(9.0, 0.8 * 72 * min(width / n_head, height / n_layer) / dpi / max(T, S)))
    # a square-root colour scale: weights spread over many tokens stay visible next to peaked ones
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # NaN, hidden by the mask: light grey
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer][head]
            image = ax.imshow(maps[layer, head].numpy(), cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_xticks(range(S))
            ax.set_yticks(range(T))
            ax.tick_params(length=0, labelsize=font)
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=max(font, 8))
            if head == 0:
                ax.set_ylabel(f"layer {layer}\nquery", fontsize=max(font, 8))
                ax.set_yticklabels(labels[:T], parse_math=False)
            if layer == n_layer - 1:
                ax.set_xlabel("key", fontsize=max(font, 8))
                ax.set_xticklabels(labels[:S], rotation=90, parse_math=False)
    colorbar = fig.colorbar(image, ax=axes, shrink=0.6, pad=0.01)
    colorbar.set_label("attention weight (square-root scale); grey: hidden by the mask")
    if title:
        fig.suptitle(title, parse_math=False)
    return save(fig, out, dpi)


def attention_command(argv):
    (cfg,) = parse_args([AttentionConfig], argv)
    matplotlib_figure()  # fail before loading anything when matplotlib is missing
    trained = load_trained(cfg.out_dir, cfg.ckpt, cfg.data_dir)
    model, tokenizer = trained.model, trained.tokenizer
    ids = tokenizer.encode(read_prompt(cfg.text))
    if not ids:
        raise UserError("the text is empty; pass some with --text")
    block_size = model.config.block_size
    if len(ids) > block_size:
        print(f"note: the text is {len(ids)} tokens; showing the first block_size={block_size}", file=sys.stderr)
        ids = ids[:block_size]
    maps = attention_maps(model, ids)
    settings = ", ".join(f"{k}={getattr(model.config, k)}" for k in ("pos_encoding", "attn_score", "mask"))
    title = (f"attention weights of {trained.path} (iter {trained.iter_num}; {settings}): "
             f"row = query, column = key")
    out = plot_attention(maps, token_labels(tokenizer, ids), cfg.out or Path(cfg.out_dir) / "attention.png",
                         title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi)
    print(f"wrote {out}: {maps.shape[0]} layers x {maps.shape[1]} heads, {len(ids)} tokens")


# ----------------------------------------------------------------------------------------------
# loss curves


@dataclass
class LossConfig:
    runs: list[str] = field(default_factory=list)  # the out_dirs to compare (positional arguments)
    out: str = "loss.png"
    title: str = ""  # empty: names the settings that differ
    x: Literal["iter", "elapsed_s", "tokens"] = "iter"  # elapsed_s: wall seconds, for time-to-loss
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
    """A label per run: the settings that differ (`pos_encoding=rope`), else the folder name."""
    settings = [run_settings(d) for d in run_dirs]
    if len(run_dirs) < 2 or any(s is None for s in settings):
        return [str(d) for d in run_dirs], []
    keys = differing_keys(settings)
    if not keys:
        return [str(d) for d in run_dirs], []
    return [", ".join(f"{k}={s.get(k)}" for k in keys) for s in settings], keys


def plot_loss(runs, out, title="", width=1200, height=480, dpi=100, x="iter"):
    """Write the train and val curves of runs [(label, log records)] side by side; return the path."""
    new_figure, _ = matplotlib_figure()
    fig = new_figure(width, height, dpi)
    axes = fig.subplots(1, 2, sharey=True)
    for split, ax in zip(("train", "val"), axes):
        for i, (label, records) in enumerate(runs):
            points = [(r[x], r[f"{split}_loss"]) for r in records if r.get(f"{split}_loss") is not None]
            if points:
                ax.plot(*zip(*points), marker=".", color=f"C{i % 10}", label=label)
        ax.set_title(f"{split} loss")
        ax.set_xlabel({"iter": "iteration", "elapsed_s": "seconds from process start", "tokens": "tokens"}[x])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy loss")
    axes[1].legend(fontsize="small")
    if title:
        fig.suptitle(title, parse_math=False)
    return save(fig, out, dpi)


def loss_command(argv):
    (cfg,) = parse_args([LossConfig], argv, positional="runs")
    run_dirs = cfg.runs
    matplotlib_figure()
    logs = [logged_evaluations(d) for d in run_dirs]
    labels, keys = run_labels(run_dirs)
    title = cfg.title or (f"by {', '.join(keys)}, all else equal" if keys else "")
    out = plot_loss(list(zip(labels, logs)), cfg.out, title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi,
                    x=cfg.x)
    print(f"wrote {out}: {len(run_dirs)} runs" + (f", labelled by {', '.join(keys)}" if keys else ""))


@run_main
def main(argv):
    command, rest = command_args(argv, {"attention": [AttentionConfig], "loss": [LossConfig]})
    {"attention": attention_command, "loss": loss_command}[command](rest)


if __name__ == "__main__":
    main(sys.argv[1:])
