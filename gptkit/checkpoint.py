"""Checkpoints: the one format every script writes and reads.

A checkpoint is written in one function (save_checkpoint) and read in one (load_checkpoint); the
model it holds is built in one (model_from_checkpoint), and made ready to generate, with its
tokenizer, in one (load_trained), which sample.py, export.py and visualize.py all use. A model is
one of MODELS: model.py's GPT, or transformer.py's encoder-decoder (the checkpoint's "model_kind"
says which; new_model builds either).

A checkpoint is data, never code: tensors, numbers, strings, lists and dicts, loaded with
`torch.load(weights_only=True)`, which refuses anything else (a malicious pickle included).
Writes are atomic (rundir.write_atomically): a crash at any instant leaves either the old
checkpoint or the new one, never a broken file. nanoGPT's checkpoints are read too (nanogpt.py).
"""

import pickle
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gptkit.config import build_configs, is_count
from gptkit.errors import UserError, first_line
from gptkit.nanogpt import is_nanogpt_checkpoint, read_meta_pkl
from gptkit.rundir import write_atomically
from gptkit.tokenizer import load_tokenizer
from model import GPT, GPTConfig
from transformer import Transformer, TransformerConfig

# The kinds of model (train.py's `model` setting; a checkpoint's "model_kind", a GPT when absent): class, settings
MODELS = {"gpt": (GPT, GPTConfig), "transformer": (Transformer, TransformerConfig)}


def unwrap(model):
    """The plain GPT inside torch.compile and DistributedDataParallel wrappers.

    Saving the wrapper's state dict would prefix every key with `_orig_mod.` or `module.`,
    which broke resuming in nanoGPT (issues #325, #351).
    """
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def kind_of(config):
    """The MODELS kind whose settings `config` is: "gpt" or "transformer"."""
    return next(kind for kind, (_, settings) in MODELS.items() if type(config) is settings)


def settings_class(values):
    """The settings class of the model that a run's settings [(key, value)] name with `model`: GPTConfig, or
    TransformerConfig for model='transformer' (an unknown model falls to GPTConfig; TrainConfig's check names it)."""
    kind = dict(values).get("model", "gpt")
    return MODELS[kind][1] if isinstance(kind, str) and kind in MODELS else GPTConfig


def new_model(config):
    """A freshly initialised model of the kind its settings describe: the one place a model is built."""
    return MODELS[kind_of(config)][0](config)


def save_checkpoint(path, model, optimizer=None, **state):
    """Atomically write the model (and optimizer, and any plain `state`) to `path`."""
    path = Path(path)
    raw = unwrap(model)
    ckpt = {"model": raw.state_dict(), "model_args": asdict(raw.config), "model_kind": kind_of(raw.config), **state}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    try:
        save_atomically(path, ckpt)
    except OSError as e:  # disk full, a read-only disk, out_dir removed
        raise write_error(path, e) from None


def save_atomically(path, obj):
    """torch.save(obj) to path through write_atomically, into a Python file: a full disk is then an OSError
    (given a path, torch's own writer raises a RuntimeError that names no cause)."""
    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    write_atomically(path, write)


def write_error(path, e):
    """The one-line error of a checkpoint (file or sharded folder) that could not be written."""
    kept = "the previous checkpoint is kept" if path.exists() else "nothing was saved"
    return UserError(f"could not write checkpoint {path} ({getattr(e, 'strerror', None) or first_line(e)}); "
                     f"{kept}. Free some disk space or choose another --out_dir")


def checkpoint_path(out_dir, ckpt="best"):
    """The file to read: best.pt, ckpt.pt ("latest"), or a path. A nanoGPT-style out_dir has only
    ckpt.pt, so "best" falls back to it."""
    if ckpt in ("best", "latest"):
        best, latest = Path(out_dir) / "best.pt", Path(out_dir) / "ckpt.pt"
        return best if ckpt == "best" and best.exists() else latest
    return Path(ckpt)


def load_checkpoint(path, mmap=False):
    """Read a checkpoint onto the CPU (moving it to the GPU is the caller's choice: nanoGPT #158).

    Anything else is one UserError saying what was expected: a missing file, a directory, an empty
    or text file, another zip archive, a damaged one (every entry's CRC-32 is checked first, so a
    flipped bit in the weights is caught too), a pickle that is not plain data, and a dict whose
    entries have the wrong types. mmap=True maps the tensors instead of reading them (and skips the
    checksums): the settings of a large checkpoint, cheaply.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a checkpoint file; to read the checkpoints in it, "
                        f"pass --out_dir={path}")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; train one first (python3 train.py ...) or check --out_dir")
    damaged = f"checkpoint {path} is damaged or truncated"
    retry = "use another checkpoint (best.pt or ckpt.pt) or train again"
    try:
        with path.open("rb") as f:
            head = f.read(16)
        if not head:
            raise UserError(f"{path} is empty, not a checkpoint; {retry}")
        if head.startswith(b"PK"):  # a zip archive (what torch.save writes), perhaps cut short
            with zipfile.ZipFile(path) as archive:
                if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist()):
                    raise UserError(f"{path} is a zip archive but not a torch.save checkpoint (it has no data.pkl); "
                                    f"pass a ckpt.pt or best.pt written by train.py")
                bad = None if mmap else archive.testzip()
            if bad is not None:
                raise UserError(f"{damaged} (a checksum does not match in {bad}); {retry}")
        elif head[0] != 0x80:  # nor a pickle (protocol 2 and up), torch's legacy format
            raise UserError(f"{path} is not a checkpoint: torch.save writes zip archives, and this file starts "
                            f"with {head!r}; pass a ckpt.pt or best.pt written by train.py")
        with warnings.catch_warnings():  # a foreign pickle protocol warns before it is refused: noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UserError(f"refused to load {path}: it holds more than tensors and plain data ({_refusal_reason(e)}); "
                        f"only load checkpoints written by this repository or converted from a trusted source") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, IndexError,
            AttributeError, OverflowError, NotImplementedError, MemoryError, RecursionError) as e:
        # what torch's reader and unpickler raise on bytes that are not what they expect
        raise UserError(f"{damaged} ({type(e).__name__}); {retry}") from None
    problem = checkpoint_problem(ckpt)
    if problem:
        raise UserError(f"{path} is not a model checkpoint: {problem}; pass a ckpt.pt or best.pt written by train.py")
    return ckpt



def checkpoint_problem(ckpt):
    """What is wrong with the entries of a loaded checkpoint (None: nothing), before anything uses them."""
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("model_args"), dict)):
        return "it has no 'model' weights and 'model_args'"
    wrong = next(((k, v) for k, v in ckpt["model"].items() if not (isinstance(k, str) and torch.is_tensor(v))), None)
    if wrong is not None:
        return f"its 'model' must map names to tensors, found {wrong[0]!r}: {type(wrong[1]).__name__}"
    for key in ("meta", "optimizer", "train_config", "config", "rng"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            return f"its {key!r} must be a dict, found a {type(ckpt[key]).__name__}"
    if ckpt.get("model_kind", "gpt") not in MODELS:
        return f"its 'model_kind' must be one of {', '.join(MODELS)}, found {ckpt['model_kind']!r}"
    if "evaluated" in ckpt and not isinstance(ckpt["evaluated"], bool):
        return f"its 'evaluated' must be True or False, found {ckpt['evaluated']!r}"
    if "iter_num" in ckpt and not is_count(ckpt["iter_num"]):
        return f"its 'iter_num' must be a whole number >= 0, found {ckpt['iter_num']!r}"
    best = ckpt.get("best_val_loss", 0.0)  # nanoGPT stores a 0-d tensor
    if not (isinstance(best, (int, float)) or (torch.is_tensor(best) and best.numel() == 1)) or isinstance(best, bool):
        return f"its 'best_val_loss' must be a number, found a {type(best).__name__}"
    rng = ckpt.get("rng", {"torch": torch.zeros(0, dtype=torch.uint8), "data": torch.zeros(0, dtype=torch.uint8)})
    byte_tensors = all(torch.is_tensor(v) and v.dtype == torch.uint8 for v in rng.values())
    if not byte_tensors or not {"torch", "data"} <= rng.keys():
        return "its 'rng' must hold the random states as byte tensors ('torch', 'data')"
    return None


def _refusal_reason(error):
    """The line of torch's weights_only error that says what was refused (`unsupported GLOBAL posix.system`),
    not its boilerplate, which suggests retrying with weights_only=False: wrong advice for an unknown file."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(boilerplate)]
    return reasons[0] if reasons else type(error).__name__


def checkpoint_config(ckpt):
    """The settings (GPTConfig, TransformerConfig) a checkpoint describes (nanoGPT's too), their types and values
    checked as a config file's."""
    settings = MODELS[ckpt.get("model_kind", "gpt")][1]
    fields = set(settings.__dataclass_fields__)
    args = {k: v for k, v in ckpt["model_args"].items() if k in fields}
    if is_nanogpt_checkpoint(ckpt):
        args["activation"] = "gelu_exact"  # nanoGPT's MLP uses nn.GELU(), the exact (erf) GELU
    if "norm_eps" not in args and args.get("norm") == "rmsnorm":  # written before norm_eps: torch's default eps
        args["norm_eps"] = torch.finfo(torch.float32).eps
    try:
        (config,) = build_configs([settings], args)
    except UserError as e:
        raise UserError(f"the checkpoint describes an impossible model ({e}); it is damaged or not ours") from None
    return config


def model_from_checkpoint(ckpt, config=None):
    """Build the model a checkpoint describes (or `config`, of the same shape) and load its weights (nanoGPT's too)."""
    config = config or checkpoint_config(ckpt)
    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in ckpt["model"].items()}
    if is_nanogpt_checkpoint(ckpt):  # nanoGPT without flash attention keeps its causal mask as a buffer named attn.bias
        state = {k: v for k, v in state.items() if not k.endswith(".attn.bias")}
    mismatch = _args_against_weights(config, state)
    if mismatch:  # before building: model_args from a damaged file could ask for a billion layers
        raise UserError(f"the checkpoint's {mismatch}; it is damaged or was edited")
    model = new_model(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:  # missing, extra or misshapen weights
        raise UserError(f"the checkpoint's weights do not fit the model it describes ({first_line(e, last=True)}); "
                        f"it is damaged or was edited") from None
    return model


def _args_against_weights(config, state):
    """The model_args that the weights' own shapes contradict, as words (None: they agree)."""
    gpt = isinstance(config, GPTConfig)
    embedding, stack = ("transformer.wte.weight", "transformer.h.") if gpt else ("src_embed.weight", "encoder.")
    wte = state.get(embedding)
    if wte is None or wte.dim() != 2:
        return f"weights have no token embedding ({embedding})"
    numbers = [k[len(stack):].split(".")[0] for k in state if k.startswith(stack)]  # h.3.attn...: "3"
    layers = {int(n) for n in numbers if n.isdigit()}
    found = {"vocab_size": wte.shape[0], "n_embd": wte.shape[1], "n_layer": max(layers, default=-1) + 1}
    if gpt and config.pos_encoding == "learned" and "transformer.wpe.weight" in state:
        found["block_size"] = state["transformer.wpe.weight"].shape[0]
    for key, value in found.items():
        if getattr(config, key) != value:
            held = f"{value} layers" if key == "n_layer" else f"{key} {value}"
            return f"model_args say {key}={getattr(config, key)} but its weights hold {held}"
    return None


def checkpoint_meta(ckpt, data_dir="data"):
    """The tokenizer meta of a checkpoint: its own, or for nanoGPT's, as nanoGPT's sample.py finds it:
    data_dir/<dataset>/meta.pkl when there is one, else GPT-2's BPE."""
    if "meta" in ckpt:
        return ckpt["meta"]
    if not is_nanogpt_checkpoint(ckpt):
        raise UserError("the checkpoint has no tokenizer metadata; it was not written by train.py")
    dataset = (ckpt.get("config") or {}).get("dataset")
    pkl = Path(data_dir) / str(dataset) / "meta.pkl"
    if dataset and pkl.is_file():
        return read_meta_pkl(pkl)
    vocab_size = ckpt["model_args"].get("vocab_size", 0)
    if not (isinstance(vocab_size, int) and vocab_size >= 50257):
        raise UserError(f"this nanoGPT checkpoint has a {vocab_size}-token vocabulary but {pkl} is missing; "
                        f"point --data_dir at the folder holding {dataset}/meta.pkl")
    return {"tokenizer": "gpt2", "vocab_size": 50257}


@dataclass
class Trained:
    """A trained model ready to generate: eval mode, on its device, with the tokenizer it was trained on."""

    model: GPT | Transformer
    tokenizer: object
    path: Path  # the checkpoint it came from
    iter_num: int | None  # the training iteration it was saved at (None if it does not say)
    specials: dict | None = None  # trained on sentence pairs: their PAD, BOS and EOS ids (the model translates)


def load_trained(out_dir, ckpt="best", data_dir="data", device="cpu"):
    """checkpoint -> tokenizer -> model, for every script that uses a trained model.

    out_dir, ckpt: as checkpoint_path. data_dir: where a nanoGPT checkpoint's meta.pkl is.
    """
    path = checkpoint_path(out_dir, ckpt)
    if ckpt in ("best", "latest") and not path.exists():
        if (Path(out_dir) / "ckpt.dcp").is_dir():
            raise UserError(f"{out_dir}/ holds only the sharded checkpoints of an fsdp run that did not finish; "
                            f"make ckpt.pt and best.pt from them: python3 export.py --out_dir={out_dir} --to=pt")
        names = "best.pt nor ckpt.pt" if ckpt == "best" else "ckpt.pt"
        raise UserError(f"no checkpoint in {out_dir}/ (neither {names}); train one first with "
                        f"python3 train.py ... --out_dir={out_dir}, or check --out_dir")
    checkpoint = load_checkpoint(path)
    meta = checkpoint_meta(checkpoint, data_dir)
    tokenizer = load_tokenizer(meta)
    model = model_from_checkpoint(checkpoint).to(device).eval()
    if tokenizer.vocab_size > model.config.vocab_size:  # its ids would index past the embedding
        raise UserError(f"{path} does not hold together: the tokenizer has {tokenizer.vocab_size} tokens but the "
                        f"model only {model.config.vocab_size}; it is damaged or was edited")
    return Trained(model, tokenizer, path, checkpoint.get("iter_num"), meta.get("specials"))
