"""Watching a forward pass: `with tracing(model, fn):` calls fn(name, tensor) at each named step of the
model's forward passes. The shape trace (gptkit/shape_trace.py) prints them; the attention pictures
(gptkit/attention_maps.py) keep the softmax weights and the mask.

STEPS is the one table of those names and what each holds. Module outputs are seen through forward
hooks; the steps inside attention through its `tap`, which model.py leaves doing nothing, and which
tracing replaces for the duration (attention then runs step by step: the fused kernel has no steps
to see). Outside `tracing` nothing is hooked. tests/test_tracing.py holds model.py's `tap` names to STEPS.
"""

from contextlib import contextmanager

NORMS = {"layernorm": "LayerNorm: each position's C values to mean 0, variance 1, then a learned scale",
         "rmsnorm": "RMSNorm: each position's C values divided by their root mean square, then scaled",
         "none": "no normalisation (norm=none): the input unchanged"}
SCORES = {"dot": "q.k/sqrt(hs)", "dot_then_square": "(q.k/sqrt(hs))^2",
          "square_then_dot": "sum_i q_i^2 k_i^2 / sqrt(hs)", "neg_dot": "-q.k/sqrt(hs)"}
MASKS = {"causal": "True where the key is the query itself or in its past",
         "none": "all True: every position sees every other",
         "anticausal": "True where the key is the query itself or in its future"}


def mlp_words(c):
    if c.mlp == "swiglu":
        return f"SwiGLU MLP: c_proj(silu(c_fc x) * c_fc2 x), {c.mlp_width} wide inside"
    width = "4C" if c.mlp_width == 4 * c.n_embd else str(c.mlp_width)
    return f"MLP: Linear to {width}, {c.activation}, Linear back to C"


# Every name tracing hands out, in the order a forward pass reaches them; per-layer names are h.N.<name>.
# Each says what the tensor holds: a string, or a function of the GPTConfig.
STEPS = {
    "idx": "token ids: the input, one integer per position",
    "tok_emb": "token embedding: the row of wte for each token id",
    "pos_emb": lambda c: f"{c.pos_encoding} position encoding, added to tok_emb (broadcast over B)",
    "ln_1": lambda c: f"{NORMS[c.norm]} (before attention)",
    "attn.q": "queries: what each position looks for, one set per head",
    "attn.k": lambda c: "keys: what each position can be found by" + (f" ({c.kv_heads} heads, each shared by "
                        f"{c.n_head // c.kv_heads} query heads)" if c.kv_heads != c.n_head else ""),
    "attn.v": "values: what each position passes on when attended to",
    "attn.q_norm": "queries RMS-normalised per head (qk_norm): the score can no longer grow with |q|",
    "attn.k_norm": "keys RMS-normalised per head (qk_norm)",
    "attn.q_rope": "queries rotated by their position (rope): each pair of channels by pos * theta_i",
    "attn.k_rope": "keys rotated by their position (rope): q.k now depends on the distance",
    "attn.scores": lambda c: f"{SCORES[c.attn_score]}{' (of the RMS-normalised q and k)' if c.qk_norm else ''} "
                             f"for every (query, key) pair",
    "attn.mask": lambda c: MASKS[c.mask],
    "attn.softmax": "attention weights: softmax of the masked scores over keys; rows sum to 1",
    "attn.out": "per head, the attention-weighted sum of the values",
    "attn.merged": "the heads side by side again",
    "attn.c_proj": "c_proj: a Linear that mixes the heads' outputs (then dropout)",
    "attn_residual": "x + attention: the residual stream",
    "attn_output": "the attention output alone (residual=False: nothing carries x past it)",
    "ln_2": lambda c: f"{NORMS[c.norm]} (before the MLP)",
    "mlp": mlp_words,
    "out": lambda c: "block output: x + MLP (the residual stream)" if c.residual
                     else "block output: the MLP output alone (no residual connection)",
    "ln_f": lambda c: f"final {NORMS[c.norm]}",
    "logits": "a score for every vocabulary entry as the next token",
    "loss": "cross-entropy: mean of -log p(target) over all B*T positions",
}


def step_of(name):
    """A traced name without its layer: h.0.attn.q -> attn.q (STEPS' key)."""
    return name.split(".", 2)[2] if name.startswith("h.") else name


def describe_step(name, config):
    """One line on what the traced tensor `name` holds."""
    words = STEPS.get(step_of(name), "")
    return words(config) if callable(words) else words


@contextmanager
def tracing(model, fn):
    """Call fn(name, tensor) at each step of STEPS that model's forward passes reach (attention step by step)."""
    transformer = model.transformer
    inputs = [(model, "idx")]  # (module, name): the module's first input, seen as it comes in
    outputs = [(transformer.wte, "tok_emb")]  # (module, name): what the module returns
    if "wpe" in transformer:
        outputs.append((transformer.wpe, "pos_emb"))
    if hasattr(model, "sinusoidal_encoding"):
        outputs.append((model.sinusoidal_encoding, "pos_emb"))
    residual = "attn_residual" if model.config.residual else "attn_output"
    for i, block in enumerate(transformer.h):
        # what ln_2 normalises is the residual stream after attention: x + attn(ln_1(x))
        inputs += [(block.attn.c_proj, f"h.{i}.attn.merged"), (block.ln_2, f"h.{i}.{residual}")]
        outputs += [(block.ln_1, f"h.{i}.ln_1"), (block.attn.c_proj, f"h.{i}.attn.c_proj"),
                    (block.ln_2, f"h.{i}.ln_2"), (block.mlp, f"h.{i}.mlp"), (block, f"h.{i}.out")]
    outputs += [(transformer.ln_f, "ln_f"), (model.lm_head, "logits")]

    # the hooks return None whatever fn returns: a hook that returned something would replace the input or output
    def see_input(name):
        def hook(module, args):
            fn(name, args[0])
        return hook

    def see_output(name):
        def hook(module, args, out):
            fn(name, out)
        return hook

    def see_loss(module, args, out):
        if out[1] is not None:
            fn("loss", out[1])

    handles = [module.register_forward_pre_hook(see_input(name)) for module, name in inputs]
    handles += [module.register_forward_hook(see_output(name)) for module, name in outputs]
    handles.append(model.register_forward_hook(see_loss))
    attentions = [(i, block.attn, block.attn.attend) for i, block in enumerate(transformer.h)]
    for i, attn, _ in attentions:
        attn.attend = attn.step_by_step
        attn.tap = lambda prefix=f"h.{i}.attn", **named: [fn(f"{prefix}.{k}", t) for k, t in named.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for _, attn, attend in attentions:
            attn.attend = attend
            del attn.tap  # back to the class's tap, which does nothing
