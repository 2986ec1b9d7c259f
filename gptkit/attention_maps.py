"""Reading attention out of a model: which model, and the weights of each layer and head for one text
(seen through gptkit/tracing.py). visualize.py draws what these return; the text's tokens as words
are gptkit/tokenizer.py's."""

from dataclasses import dataclass
from pathlib import Path

import torch

from gptkit.checkpoint import load_trained
from gptkit.tokenizer import word_tokens
from gptkit.tracing import tracing
from transformer import translate


@dataclass
class ModelSource:
    out_dir: str = "out"  # the run whose checkpoint to draw
    ckpt: str = "best"  # best (best.pt), latest (ckpt.pt), or a path to a .pt file
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl
    init_from: str = ""  # gpt2 (or -medium, -large, -xl) or a GPT-2 or Llama directory: draw it instead


def load_model(cfg):
    """(model, tokenizer, name) to draw: a trained checkpoint, or a pretrained one (init_from)."""
    if cfg.init_from:
        from gptkit.hf_weights import trained_from_pretrained

        pretrained = trained_from_pretrained(cfg.init_from)
        kind = "GPT-2" if pretrained.model.config.pos_encoding == "learned" else "Llama"
        return pretrained.model, pretrained.tokenizer, f"{kind} ({cfg.init_from})"
    trained = load_trained(cfg.out_dir, cfg.ckpt, cfg.data_dir)
    return trained.model, trained.tokenizer, f"{trained.path} (iter {trained.iter_num})"


def default_out(cfg, name):
    """Where a picture goes without --out: into the run's folder, or here for GPT-2 itself."""
    return Path(cfg.out_dir if not cfg.init_from else ".") / name


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
        if name.endswith(".attn.softmax"):  # gptkit/tracing.py's STEPS
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


def translation_attention(model, ids):
    """transformer.py's encoder-decoder translating one source (a list of ids) greedily, and one forward pass over
    the translation: (the translation's ids, its EOS included when it wrote one, not when cut at block_size; its
    attention {"cross": (n_layer, nh, T, S), "encoder": (n_layer, nh, S, S), "decoder": (n_layer, nh, T, T)}; the
    logits (T, vocab)). Decoder position t reads BOS and the translation before token t and writes token t: row t
    of a cross map is which source tokens it reads, and logits[t] its choice. Weights a mask hides (the decoder's
    future) are NaN, as in attention_maps."""
    device = next(model.parameters()).device
    src = torch.tensor([ids], dtype=torch.long, device=device)  # (1, S)
    model.eval()
    translation = translate(model, src)[0]
    if len(translation) < model.config.block_size - 1:  # it stopped at its EOS, before the positions ran out
        translation.append(model.config.eos_id)
    tgt = torch.tensor([[model.config.bos_id] + translation[:-1]], device=device)  # (1, T): BOS, then each token
    kinds = {"encoder": [layer.attn.sublayer for layer in model.encoder],
             "cross": [layer.cross_attn.sublayer for layer in model.decoder],
             "decoder": [layer.self_attn.sublayer for layer in model.decoder]}  # model.py's CausalSelfAttention
    maps = {kind: [None] * len(modules) for kind, modules in kinds.items()}

    def keep(kind, i):
        def tap(**named):
            if "softmax" in named:
                hidden = ~named["mask"]  # (B, 1, 1, S): padding (none in one sentence); or (T, S): the causal mask
                hidden = hidden[0] if hidden.dim() == 4 else hidden
                weights = named["softmax"][0].float().cpu()  # (nh, rows, S)
                maps[kind][i] = weights.masked_fill(hidden.cpu(), float("nan"))
        return tap

    attentions = [(a, a.attend) for modules in kinds.values() for a in modules]
    for kind, modules in kinds.items():  # each runs step by step, its tap keeping the weights (as tracing does)
        for i, attention in enumerate(modules):
            attention.attend, attention.tap = attention.step_by_step, keep(kind, i)
    try:
        with torch.no_grad():
            logits, _ = model(src, tgt)  # (1, T, vocab)
    finally:
        for attention, attend in attentions:
            attention.attend = attend
            del attention.tap  # back to the class's, which does nothing
    return translation, {kind: torch.stack(layers) for kind, layers in maps.items()}, logits[0].float().cpu()
