"""Checkpoints and the run folder they live in, shared by every script.

A checkpoint is written in one function (save_checkpoint) and read in one (load_checkpoint); the
model it holds is built in one (model_from_checkpoint), and made ready to generate, with its
tokenizer, in one (load_trained), which sample.py, export.py and visualize.py all use.

A checkpoint is data, never code: tensors, numbers, strings, lists and dicts, loaded with
`torch.load(weights_only=True)`, which refuses anything else (a malicious pickle included).
Writes go to a temporary file that is flushed, fsync'ed and renamed over the old one, so a crash
at any instant leaves either the old checkpoint or the new one, never a broken file.

The run folder (out_dir) also holds the run's log (runlog.py: log.jsonl and, when asked, TensorBoard
and W&B); train.py checks the folder before training (claim_out_dir, check_free_space) so a run fails
at its start, not after an hour, and holds it for its whole life (OutDirLock): one writer per folder,
any number of readers. nanoGPT's checkpoints and meta.pkl files are read too (last section).
"""

import os
import pickle
import shlex
import shutil
import sys
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from model import GPT, GPTConfig
from settings import UserError, build_configs, is_count
from tokenizer import load_tokenizer


def unwrap(model):
    """The plain GPT inside torch.compile and DistributedDataParallel wrappers.

    Saving the wrapper's state dict would prefix every key with `_orig_mod.` or `module.`,
    which broke resuming in nanoGPT (issues #325, #351).
    """
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path, model, optimizer=None, **state):
    """Atomically write the model (and optimizer, and any plain `state`) to `path`."""
    path = Path(path)
    raw = unwrap(model)
    ckpt = {"model": raw.state_dict(), "model_args": asdict(raw.config), **state}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)

    try:
        write_atomically(path, write)
    except OSError as e:  # disk full, a read-only disk, out_dir removed
        raise _write_error(path, e) from None


def write_atomically(path, write):
    """write(tmp) fills a temporary file beside `path`, which is then fsync'ed and renamed over it: a crash
    at any instant leaves the old file or the new one, never a broken one. On any failure the temporary
    file is removed and the exception (OSError: disk full, read-only) goes on; `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data on disk before the rename points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def remove_partial_writes(folder):
    """Delete the temporary files of checkpoint writes that a crash (SIGKILL, power loss) cut short."""
    for tmp in Path(folder).glob(".*.pt.*.tmp"):
        tmp.unlink(missing_ok=True)


def _write_error(path, e):
    kept = "the previous checkpoint is kept" if path.exists() else "nothing was saved"
    return UserError(f"could not write checkpoint {path} ({e.strerror or e}); {kept}. "
                     f"Free some disk space or choose another --out_dir")


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
        raise UserError(f"no checkpoint at {path}; train one first (python train.py ...) or check --out_dir")
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
    """The GPTConfig a checkpoint describes (nanoGPT's too), its types and values checked as a config file's."""
    fields = set(GPTConfig.__dataclass_fields__)
    args = {k: v for k, v in ckpt["model_args"].items() if k in fields}
    if is_nanogpt_checkpoint(ckpt):
        args["activation"] = "gelu_exact"  # nanoGPT's MLP uses nn.GELU(), the exact (erf) GELU
    try:
        (config,) = build_configs([GPTConfig], args)
    except UserError as e:
        raise UserError(f"the checkpoint describes an impossible model ({e}); it is damaged or not ours") from None
    return config


def model_from_checkpoint(ckpt, config=None):
    """Build the GPT a checkpoint describes (or `config`, of the same shape) and load its weights (nanoGPT's too)."""
    config = config or checkpoint_config(ckpt)
    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in ckpt["model"].items()}
    if is_nanogpt_checkpoint(ckpt):  # nanoGPT without flash attention keeps its causal mask as a buffer named attn.bias
        state = {k: v for k, v in state.items() if not k.endswith(".attn.bias")}
    mismatch = _args_against_weights(config, state)
    if mismatch:  # before building: model_args from a damaged file could ask for a billion layers
        raise UserError(f"the checkpoint's {mismatch}; it is damaged or was edited")
    model = GPT(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:  # missing, extra or misshapen weights
        first = str(e).strip().splitlines()[-1].strip()[:200] if str(e).strip() else type(e).__name__
        raise UserError(f"the checkpoint's weights do not fit the model it describes ({first}); "
                        f"it is damaged or was edited") from None
    return model


def _args_against_weights(config, state):
    """The model_args that the weights' own shapes contradict, as words (None: they agree)."""
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.dim() != 2:
        return "weights have no token embedding (transformer.wte.weight)"
    layers = {int(k.split(".")[2]) for k in state if k.startswith("transformer.h.") and k.split(".")[2].isdigit()}
    found = {"vocab_size": wte.shape[0], "n_embd": wte.shape[1], "n_layer": max(layers, default=-1) + 1}
    if config.pos_encoding == "learned" and "transformer.wpe.weight" in state:
        found["block_size"] = state["transformer.wpe.weight"].shape[0]
    for key, value in found.items():
        if getattr(config, key) != value:
            held = f"{value} layers" if key == "n_layer" else f"{key} {value}"
            return f"model_args say {key}={getattr(config, key)} but its weights hold {held}"
    return None


@dataclass
class Trained:
    """A trained model ready to generate: eval mode, on its device, with the tokenizer it was trained on."""

    model: GPT
    tokenizer: object
    path: Path  # the checkpoint it came from
    iter_num: int | None  # the training iteration it was saved at (None if it does not say)


def load_trained(out_dir, ckpt="best", data_dir="data", device="cpu"):
    """checkpoint -> tokenizer -> model, for every script that uses a trained model.

    out_dir, ckpt: as checkpoint_path. data_dir: where a nanoGPT checkpoint's meta.pkl is.
    """
    path = checkpoint_path(out_dir, ckpt)
    if ckpt in ("best", "latest") and not path.exists():
        names = "best.pt nor ckpt.pt" if ckpt == "best" else "ckpt.pt"
        raise UserError(f"no checkpoint in {out_dir}/ (neither {names}); train one first with "
                        f"python train.py ... --out_dir={out_dir}, or check --out_dir")
    checkpoint = load_checkpoint(path)
    tokenizer = load_tokenizer(checkpoint_meta(checkpoint, data_dir))
    model = model_from_checkpoint(checkpoint).to(device).eval()
    if tokenizer.vocab_size > model.config.vocab_size:  # its ids would index past the embedding
        raise UserError(f"{path} does not hold together: the tokenizer has {tokenizer.vocab_size} tokens but the "
                        f"model only {model.config.vocab_size}; it is damaged or was edited")
    return Trained(model, tokenizer, path, checkpoint.get("iter_num"))


# ----------------------------------------------------------------------------------------------
# The run folder: checked before training; the RNG state a checkpoint carries


try:
    import fcntl
except ImportError:  # Windows has no flock: runs there are not protected from a second writer
    fcntl = None


class OutDirLock:
    """out_dir's one writer: an exclusive flock on out_dir/train.lock, which holds the holder's pid and
    command line for the error a second writer gets. The kernel drops a flock when its process dies,
    however it dies, so a killed run leaves no stale lock: its file may stay, unlocked, and the next
    run takes it. Readers (sample.py, visualize.py, export.py, bench.py) never lock.
    Used as `with OutDirLock(out_dir):`; leaving removes the file, and after a failure the folders in
    `created` (deepest first) that are still empty: a failed run changes nothing.
    """

    def __init__(self, out_dir, created=()):
        self.path, self.fd, self.created = Path(out_dir) / "train.lock", None, list(created)

    def __enter__(self):
        if fcntl is None:
            return self
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: held by a live process
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "not yet recorded"
                os.close(fd)
                raise UserError(f"{self.path.parent} is in use by a live training run (pid {holder}); wait for it "
                                f"to end or stop it, or choose another --out_dir") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed the file as we opened it: lock the one at the path now
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}: {shlex.join(sys.argv)[:300]}\n".encode("utf-8", "replace"))
            self.fd = fd
        return self

    def __exit__(self, exc_type=None, *exc):
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: whoever opened it meanwhile sees a removed file
            os.close(self.fd)  # the lock goes with the last descriptor
            self.fd = None
        if exc_type is not None:
            for folder in self.created:
                try:
                    folder.rmdir()  # only if empty
                except OSError:
                    break


def claim_out_dir(out_dir, protect_checkpoints):
    """Fail before training, not after: an unwritable out_dir, a live run in it, or (protect_checkpoints)
    checkpoints a new run would replace. Then remove what a crash mid-write left behind.

    Returns the held OutDirLock (`with claim_out_dir(...):`), taken before anything is removed: the
    temporary file of a live run's checkpoint write is not a crash's leftover.
    """
    out = Path(out_dir)
    created = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create out_dir {out} ({e.strerror}); choose another --out_dir") from None
    try:  # really write, not os.access: root passes permission checks but not a read-only disk
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"out_dir {out} is not writable ({e.strerror}); choose another --out_dir") from None
    lock = OutDirLock(out, created).__enter__()
    if protect_checkpoints and (out / "ckpt.pt").exists():
        lock.__exit__()
        raise UserError(f"{out} already holds a checkpoint; continue it with --init_from=resume, "
                        f"start over with --overwrite=True, or pick another --out_dir")
    remove_partial_writes(out)
    return lock


def check_free_space(out_dir, model):
    """Fail before training when out_dir's disk cannot hold the checkpoints it will write.

    A checkpoint holds the weights and AdamW's two moments (about 3x the parameters). Each write
    needs room for the new file beside the old one until the rename; best.pt and ckpt.pt both.
    """
    size = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    missing = sum(not (Path(out_dir) / name).exists() for name in ("best.pt", "ckpt.pt"))
    need, free = size * max(1, missing), shutil.disk_usage(out_dir).free
    if free < need:
        raise UserError(f"out_dir {out_dir} has {free / 2**20:,.1f} MiB free but checkpoints need about "
                        f"{need / 2**20:,.1f} MiB; free some disk space or choose another --out_dir")


def rng_state(generator, device):
    """Every random state a run depends on: torch's (dropout), the data order's, and CUDA's."""
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state, generator, device):
    try:
        torch.set_rng_state(state["torch"])
        generator.set_state(state["data"])
        if "cuda" in state and device.startswith("cuda"):
            torch.cuda.set_rng_state(state["cuda"])
    except (RuntimeError, ValueError, TypeError) as e:  # a state of the wrong size
        raise UserError(f"the checkpoint's random state is damaged ({str(e).strip()[:120]}); it cannot be "
                        f"resumed exactly") from None


# ----------------------------------------------------------------------------------------------
# nanoGPT's checkpoints: {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"},
# with no tokenizer (that is the dataset's meta.pkl) and model_args holding only the GPT-2 shape.


def is_nanogpt_checkpoint(ckpt):
    """A checkpoint written by karpathy/nanoGPT's train.py (ours always record the activation)."""
    return "meta" not in ckpt and "activation" not in ckpt.get("model_args", {})


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings, numbers, booleans and None; refuses everything else.

    Those need no class lookup, so any pickle that asks for one (to build an object or call a
    function: the way a malicious pickle runs code) is refused.
    """

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it asks for {module}.{name}")


def read_meta_pkl(path):
    """nanoGPT's char-level meta.pkl ({vocab_size, itos, stoi}) as our meta: {"tokenizer": "char", "chars"}."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            meta = _PlainDataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError) as e:  # MemoryError: a frame header claiming terabytes
        raise UserError(f"refused to read {path}: only plain dicts, lists, strings and numbers are "
                        f"accepted ({e or type(e).__name__})") from None
    try:
        itos, n = meta["itos"], meta["vocab_size"]
        if not (is_count(n) and 1 <= n <= 2**16):  # uint16 token ids
            raise TypeError
        chars = [itos[i] for i in range(n)]
        if not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != n:
            raise TypeError
    except (KeyError, TypeError, IndexError):
        raise UserError(f"{path} is not a nanoGPT char-level meta.pkl (vocab_size, and itos mapping 0 .. "
                        f"vocab_size - 1 to distinct characters)") from None
    return {"tokenizer": "char", "vocab_size": n, "chars": "".join(chars)}


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


def nanogpt_param_names(model):
    """Our parameter names in the order nanoGPT's optimizer lists them (it declares wpe after wte)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if "transformer.wpe.weight" in names:
        names.remove("transformer.wpe.weight")
        names.insert(names.index("transformer.wte.weight") + 1, "transformer.wpe.weight")
    return names


def optimizer_state_from_nanogpt(opt_state, model):
    """nanoGPT's AdamW state dict, renumbered for our optimizer's parameter order.

    Both have two groups (2-D weights with weight decay, then the rest), but the parameters are
    numbered in module order, and ours declares wpe after the blocks.
    """
    params = dict(model.named_parameters())

    def by_group(names):  # GPT.optimizer_groups: 2-D weights first, then biases and norm gains
        return [n for decay in (True, False) for n in names if (params[n].dim() >= 2) == decay]

    theirs = by_group(nanogpt_param_names(model))
    ours = by_group([n for n, p in params.items() if p.requires_grad])
    index = {name: i for i, name in enumerate(ours)}
    saved_ids = [i for g in opt_state["param_groups"] for i in g["params"]]
    if len(saved_ids) != len(theirs):
        raise UserError(f"the nanoGPT optimizer state has {len(saved_ids)} parameters, the model {len(theirs)}")
    name_of = dict(zip(saved_ids, theirs))
    state = {}
    for i, s in opt_state["state"].items():
        name = name_of[i]
        if "exp_avg" in s and s["exp_avg"].shape != params[name].shape:
            raise UserError(f"the nanoGPT optimizer state does not fit the model ({name})")
        state[index[name]] = s
    groups, start = [], 0
    for g in opt_state["param_groups"]:
        groups.append({**g, "params": list(range(start, start + len(g["params"])))})
        start += len(g["params"])
    return {"state": state, "param_groups": groups}
