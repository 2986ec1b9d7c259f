"""Plots as PNG files, drawn by matplotlib's Agg backend (files only, no window, no display).

matplotlib is in requirements.txt; where it is missing anyway, the first plot is one line of error
(pip install matplotlib). visualize.py and experiment.py draw with these.
"""

import math
import textwrap
import warnings
from pathlib import Path

from gptkit.errors import UserError
from gptkit.tokenizer import visible


def matplotlib_figure():
    """(new_figure, matplotlib): plots need matplotlib, nothing else in the repository does."""
    try:
        import matplotlib
        import matplotlib.colors
        import matplotlib.patches
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


def wrapped(text, inches, points=10):
    """The text broken into lines that fit `inches` at about `points` size, so no title is cut off."""
    return "\n".join(textwrap.fill(line, width=max(20, int(inches * 144 / points))) for line in text.splitlines())


LINE_STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


LEAK = "leak: saw the future"


def plot_loss(runs, out, title="", width=0, height=0, dpi=100, x="iter", target=0.0, leaks=(),
              unit="cross-entropy loss", scores=False, speed=False):
    """Write loss_figure(...) to `out` as PNG; returns the path."""
    return save(loss_figure(runs, title, width, height, dpi, x, target, leaks, unit, scores, speed), out, dpi)


def loss_figure(runs, title="", width=0, height=0, dpi=100, x="iter", target=0.0, leaks=(),
                unit="cross-entropy loss", scores=False, speed=False):
    """The curves of runs [(label, log records)]: train loss, val loss, and val loss again from a
    quarter of the way in, on its own y-axis, where runs that start alike come apart. Each run has
    its own colour, line style and marker, so a run drawn over another still shows. The runs whose index is in
    `leaks` saw the tokens they predict (mask=none, anticausal): their low loss is marked as the leak it is,
    on the curve and in the legend. scores: a panel of held-out exact match too, where the records carry it
    (gptkit/translation.py's). speed: a bar for each run's training tokens/s at its last evaluation.
    width, height: 0 sizes the figure to its panels (400 x 480 pixels each; five in two rows)."""
    new_figure, _ = matplotlib_figure()
    x_name = {"iter": "iteration", "elapsed_s": "seconds from process start", "tokens": "tokens"}[x]
    logged = sorted({r[x] for _, records in runs for r in records if x in r})
    zoom_from = next((v for v in logged if v >= logged[-1] / 4), 0) if logged else 0  # the first point shown
    zoom_name = f"val loss from {x_name} {zoom_from:,g} on, zoomed"
    panels = [("train_loss", "train loss", 0), ("val_loss", "val loss", 0), ("val_loss", zoom_name, zoom_from)]
    if scores and any("exact_match" in r for _, records in runs for r in records):
        panels.append(("exact_match", "held-out exact match", 0))
    speeds = [(label, records[-1].get("tokens_per_s")) for label, records in runs if records] if speed else []
    bars = any(tokens_per_s for _, tokens_per_s in speeds)
    n = len(panels) + bars
    rows = 1 if n <= 4 else 2
    cols = math.ceil(n / rows)
    fig = new_figure(width or 400 * cols, height or 480 * rows, dpi)
    axes = list(fig.subplots(rows, cols).flat)
    for ax, (key, name, x_from) in zip(axes, panels):
        shown = []
        for i, (label, records) in enumerate(runs):
            points = [(r[x], r[key]) for r in records if r.get(key) is not None and x in r and r[x] >= x_from]
            if not points:
                continue
            leak = i in leaks
            ax.plot(*zip(*points), color=f"C{i % 10}", linestyle=":" if leak else LINE_STYLES[i % 4],
                    marker="x" if leak else MARKERS[i % 8], markersize=3.5, linewidth=1.4, alpha=0.85,
                    label=f"{label} ({LEAK})" if leak else label)
            if leak:
                ax.annotate(LEAK, points[-1], xytext=(-4, 6), textcoords="offset points", ha="right", fontsize=8,
                            color=f"C{i % 10}")
            shown += [y for _, y in points]
        if target and key == "val_loss":
            ax.axhline(target, color="0.4", linestyle=(0, (4, 3)), linewidth=1, label=f"target {target}")
            shown.append(target)
        if shown and x_from:  # the zoom: fit both axes to what is drawn
            low, high = min(shown), max(shown)
            margin = 0.08 * (high - low) or 0.01
            ax.set_ylim(low - margin, high + margin)
            if logged[-1] > x_from:
                ax.set_xlim(x_from - 0.03 * (logged[-1] - x_from), logged[-1] + 0.03 * (logged[-1] - x_from))
        if key == "exact_match":
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(x_name)
        ax.grid(alpha=0.3)
    if bars:
        speed_bars(axes[len(panels)], speeds)
    for ax in axes[n:]:
        ax.set_axis_off()
    axes[0].set_ylabel(unit)
    handles, labels = axes[1].get_legend_handles_labels()
    if axes[n:]:  # a panel left empty holds the legend
        axes[n].legend(handles, labels, loc="center")
    else:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small")
    if title:
        fig.suptitle(wrapped(title, fig.get_figwidth(), 11), fontsize=11)
    return fig


def speed_bars(ax, speeds):
    """One horizontal bar per run [(label, tokens/s or None)], in the run's colour, first on top, named inside;
    a run that logged no speed keeps its row, empty."""
    values = [tokens_per_s or 0 for _, tokens_per_s in speeds]
    ax.barh(range(len(speeds)), values, height=0.6, color=[f"C{i % 10}" for i in range(len(speeds))], alpha=0.45)
    for i, ((label, _), value) in enumerate(zip(speeds, values)):
        ax.annotate(f"{label}: {value:,.0f}" if value else f"{label}: not logged", (0, i), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks([])
    ax.invert_yaxis()  # the first run on top, as in the legend
    ax.locator_params(axis="x", nbins=4)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:,.0f}")
    ax.set_title("training tokens/s (last evaluation)", fontsize=10)
    ax.set_xlabel("tokens/s")
    ax.grid(alpha=0.3, axis="x")


def plot_tokens(rows, out, title="", table="", width=1400, dpi=100):
    """Draw one text as each tokenizer cuts it: rows [(name, [(token text, id)])], each token a box in its own
    colour with its id under it, wrapped to the width; `table` (monospaced text) under them."""
    new_figure, matplotlib = matplotlib_figure()
    font, char_w, line_h = 11, 8.0, 46  # points, and pixels per character and per line of boxes (at dpi 100)
    scale = dpi / 100
    colours = matplotlib.colormaps["Pastel1"].colors + matplotlib.colormaps["Pastel2"].colors
    boxes, y = [], 34.0
    for name, tokens in rows:
        y += 10
        boxes.append(("title", 8, y, f"{name}: {len(tokens)} tokens"))
        x, y = 8.0, y + 22
        for n, (piece, token_id) in enumerate(tokens):
            label = visible(piece)
            w = char_w * max(len(label), len(str(token_id))) + 8
            if x + w > width / scale - 8 and x > 8:
                x, y = 8.0, y + line_h
            boxes.append(("token", x, y, (label, token_id, w, colours[n % len(colours)])))
            x += w + 3
        y += line_h
    table_lines = table.splitlines()
    height = round((y + 18 * len(table_lines) + 20) * scale)
    fig = new_figure(width, height, dpi)
    fig.set_layout_engine("none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width / scale)
    ax.set_ylim(height / scale, 0)
    ax.axis("off")
    if title:
        ax.text(8, 18, title, fontsize=font + 1, va="center", parse_math=False)
    for kind, x, top, what in boxes:
        if kind == "title":
            ax.text(x, top, what, fontsize=font, weight="bold", va="center", parse_math=False)
            continue
        label, token_id, w, colour = what
        ax.add_patch(matplotlib.patches.FancyBboxPatch((x, top - 12), w, 38, boxstyle="round,pad=0,rounding_size=4",
                                                       facecolor=colour, edgecolor="0.6", linewidth=0.6))
        ax.text(x + w / 2, top, label, fontsize=font, family="monospace", ha="center", va="center", parse_math=False)
        ax.text(x + w / 2, top + 17, str(token_id), fontsize=font - 3, family="monospace", ha="center", va="center",
                color="0.35")
    for n, line in enumerate(table_lines):
        ax.text(8, y + 18 * n, line, fontsize=font - 1, family="monospace", va="center", parse_math=False)
    with warnings.catch_warnings():  # an emoji the font lacks is drawn as a box; its id says what it is
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        return save(fig, out, dpi)

