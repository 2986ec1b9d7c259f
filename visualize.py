"""Pictures of a model and of its training, as PNG files.

    python visualize.py attention --out_dir=out-shakespeare-char --text="The pizza came out of the oven and it tasted good."
    python visualize.py loss out-a out-b ... [--out=loss.png]

attention: one forward pass over the text, with model.tracing collecting every layer's attention
weights softmax(score + mask), shape (1, nh, T, T). They are drawn as a grid, one row per layer and
one column per head: the query (the token that looks) down the side, the key (the token looked at)
along the bottom. Under the causal mask the upper-right triangle is empty: nobody sees the future.

loss: the train and val curves of each run, read from its out_dir/log.jsonl, each run labelled by
the settings that differ between the runs (read from the runs' checkpoints).

matplotlib is optional: only these pictures need it (pip install matplotlib).
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint
from config import UserError, parse_args, run_main

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
# attention maps


@dataclass
class AttentionConfig:
    out_dir: str = "out"
    ckpt: str = "best"  # best (best.pt), latest (ckpt.pt), or a path to a .pt file
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
    from model import tracing

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
    from sample import read_prompt
    from tokenizer import load_tokenizer

    (cfg,) = parse_args([AttentionConfig], argv)
    matplotlib_figure()  # fail before loading anything when matplotlib is missing
    path = checkpoint_path(cfg.out_dir, cfg.ckpt)
    ckpt = load_checkpoint(path)
    if "meta" not in ckpt:
        raise UserError(f"{path} has no tokenizer metadata; it was not written by train.py")
    tokenizer = load_tokenizer(ckpt["meta"])
    model = model_from_checkpoint(ckpt)
    ids = tokenizer.encode(read_prompt(cfg.text))
    if not ids:
        raise UserError("the text is empty; pass some with --text")
    block_size = model.config.block_size
    if len(ids) > block_size:
        print(f"note: the text is {len(ids)} tokens; showing the first block_size={block_size}", file=sys.stderr)
        ids = ids[:block_size]
    maps = attention_maps(model, ids)
    settings = ", ".join(f"{k}={getattr(model.config, k)}" for k in ("pos_encoding", "attn_score", "mask"))
    title = f"attention weights of {path} (iter {ckpt.get('iter_num', '?')}; {settings}): row = query, column = key"
    out = plot_attention(maps, token_labels(tokenizer, ids), cfg.out or Path(cfg.out_dir) / "attention.png",
                         title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi)
    print(f"wrote {out}: {maps.shape[0]} layers x {maps.shape[1]} heads, {len(ids)} tokens")


# ----------------------------------------------------------------------------------------------
# loss curves


@dataclass
class LossConfig:
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


def read_log(run_dir):
    """The records of run_dir/log.jsonl, one dict per evaluation."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise UserError(f"no log at {path}; is {run_dir} an out_dir written by train.py?")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now by a running train.py
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
    run_dirs = [a for a in argv if not a.startswith("--")]
    if not run_dirs:
        raise UserError("name the runs to compare: python visualize.py loss OUT_DIR [OUT_DIR ...] [--out=loss.png]")
    (cfg,) = parse_args([LossConfig], [a for a in argv if a.startswith("--")])
    matplotlib_figure()
    logs = [read_log(d) for d in run_dirs]
    labels, keys = run_labels(run_dirs)
    title = cfg.title or (f"by {', '.join(keys)}, all else equal" if keys else "")
    out = plot_loss(list(zip(labels, logs)), cfg.out, title=title, width=cfg.width, height=cfg.height, dpi=cfg.dpi,
                    x=cfg.x)
    print(f"wrote {out}: {len(run_dirs)} runs" + (f", labelled by {', '.join(keys)}" if keys else ""))


COMMANDS = {"attention": attention_command, "loss": loss_command}


@run_main
def main(argv):
    if not argv or argv[0] not in COMMANDS:
        raise UserError("usage: python visualize.py attention --out_dir=DIR [--text=...] [--out=FILE.png] | "
                        "python visualize.py loss OUT_DIR [OUT_DIR ...] [--out=FILE.png]")
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
