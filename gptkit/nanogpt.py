"""nanoGPT's files, read as ours: its checkpoints, its char-level meta.pkl, and its optimizer state.

nanoGPT's checkpoints are {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"},
with no tokenizer (that is the dataset's meta.pkl) and model_args holding only the GPT-2 shape.
"""

import pickle
from pathlib import Path

from gptkit.config import is_count
from gptkit.errors import UserError


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

    def by_group(names):  # gptkit.optim.optimizer_groups: 2-D weights first, then biases and norm gains
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
