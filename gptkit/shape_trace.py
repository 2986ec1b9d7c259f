"""The shape trace: one forward pass, each named tensor with its shape and what it holds.

train.py and sample.py print it with --trace_shapes=True; the walkthrough notebook calls it too.
The names and their descriptions are gptkit/tracing.py's STEPS (h.0.attn.q, h.0.attn.softmax, ...).
"""

import textwrap

import torch

from gptkit.errors import UserError
from gptkit.tokenizer import token_text
from gptkit.tracing import describe_step, step_of, tracing


def attention_path(config):
    """How training and sampling run attention, in words (model.CausalSelfAttention.__init__ picks the path)."""
    if config.explicit_attention:
        return "run it step by step too, as explicit_attention=True asks"
    if not config.fused_attention:
        what = f"attn_score={config.attn_score}" if config.attn_score != "dot" else f"mask={config.mask}"
        return (f"run it step by step too: the fused kernel knows only the dot-product score under the causal mask "
                f"or none, and this model has {what}")
    return "use the fused kernel F.scaled_dot_product_attention: the same numbers in one step, the weights never stored"


def print_shape_trace(model, idx, targets=None, tokenizer=None, values=False, layer=None, source=""):
    """Run one forward pass and print each named tensor: name, shape, what it holds (and with values,
    the numbers of the first sequence and, in 4-D tensors, its first head, each row labelled with its token).

    Layers after the first that repeat its shapes are summarised in one line; `layer` shows that layer's steps
    only (with the embedding before and the logits after). source: which weights these are, in words.
    """
    cfg = model.config
    if layer is not None and not 0 <= layer < cfg.n_layer:
        raise UserError(f"trace_layer={layer} is not a layer of this model: 0 to {cfg.n_layer - 1}")
    steps = []
    with torch.no_grad(), tracing(model, lambda name, t: steps.append((name, t.detach().clone() if values else t.shape))):
        model(idx, targets)
    B, T = idx.shape
    print(f"B={B} sequences of T={T} tokens" + (" (two: enough to show the batch dimension; training takes "
                                               "batch_size of them)" if B == 2 else ""))
    labels = None
    if tokenizer is not None:
        print(f"sequence 0: {tokenizer.decode(idx[0].tolist())!r}")
        labels = [token_text(tokenizer, i) for i in idx[0].tolist()]
    print(f"C={cfg.n_embd} channels, nh={cfg.n_head} heads of hs={cfg.n_embd // cfg.n_head}, {cfg.n_layer} layers, "
          f"vocab {cfg.vocab_size}")
    if source:
        print(f"weights: {source}")
    print(f"attention: this trace runs it step by step (CausalSelfAttention.step_by_step) to show each step; "
          f"training and sampling {attention_path(cfg)}")
    if values:
        print("values: of sequence 0, and of head 0 where there are heads; each row is a position, labelled with "
              "its token")
    print(f"{'step':<20} {'shape':<18} what it holds")
    layer_of = lambda name: int(name.split(".")[1]) if name.startswith("h.") else None  # noqa: E731
    shape_of = lambda x: tuple(x.shape if isinstance(x, torch.Tensor) else x)  # noqa: E731
    first = [(step_of(n), shape_of(t)) for n, t in steps if layer_of(n) == (layer or 0)]
    done = set()
    for name, tensor in steps:
        step_layer = layer_of(name)
        if layer is not None and step_layer not in (None, layer):
            first_hidden, last_hidden = (layer + 1, cfg.n_layer - 1) if step_layer > layer else (0, layer - 1)
            if first_hidden not in done:  # one line for the layers before, one for those after
                done.add(first_hidden)
                hidden = f"h.{first_hidden}" + (f" .. h.{last_hidden}" if last_hidden > first_hidden else "")
                print(f"{hidden:<20} {'':<18} (not shown: --trace_layer={layer})")
            continue
        if layer is None and step_layer is not None and step_layer > 0:
            if step_layer in done:
                continue
            mine = [(step_of(n), shape_of(t)) for n, t in steps if layer_of(n) == step_layer]
            if mine == first and not values:
                done.add(step_layer)
                if step_layer == 1:
                    print(f"{f'h.1 .. h.{cfg.n_layer - 1}':<20} {'':<18} the same steps and shapes as h.0")
                continue
        print(f"{name:<20} {str(shape_of(tensor)):<18} {describe_step(name, cfg)}")
        if values:
            print(textwrap.indent(format_values(name, tensor, labels), " " * 4))


def format_values(name, t, labels=None):
    """The numbers of a traced tensor: of sequence 0, and of head 0 in (B, nh, T, ...) tensors; with labels (one
    per position), each row of a (T, ...) tensor starts with its token, and a (T, T) one names its keys above."""
    if name.split(".", 2)[-1] not in ("pos_emb", "attn.mask") and t.dim() >= 2:  # those have no batch dimension
        t = t[0]
    if t.dim() == 3:  # (nh, T, ...)
        t = t[0]
    t = t.float() if t.is_floating_point() else t.long() if t.dtype != torch.bool else t.int()
    rows = t.tolist() if t.dim() == 2 else [t.tolist()] if t.dim() == 1 else [[t.item()]]
    if labels is None or t.dim() != 2 or len(rows) != len(labels):
        labels = [""] * len(rows)
    width = max(len(label) for label in labels)
    keys = t.dim() == 2 and t.size(1) == len(labels) and any(labels)
    lines = [" " * (width + 1) + " ".join(f"{label:>6}" for label in shorten(labels))] if keys else []
    for label, row in zip(shorten(labels), shorten(rows)):
        if row == "...":  # rows left out
            lines.append(f"{'':>{width}} {'...':>6}")
            continue
        cells = " ".join(f"{v:>6.3f}" if isinstance(v, float) else f"{v:>6}" for v in shorten(row))
        lines.append(f"{label:>{width}} {cells}".rstrip() if any(labels) else cells)
    return "\n".join(lines)


def shorten(items, edge=4):
    """At most 2 * edge + 1 items: the first and last `edge`, and "..." between (as torch prints)."""
    return items if len(items) <= 2 * edge + 1 else [*items[:edge], "...", *items[-edge:]]
