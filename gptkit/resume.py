"""Continuing a run from its checkpoint (train.py --init_from=resume): which model settings the user may
change, and the optimizer state (ours, nanoGPT's, or a sharded one) loaded into the optimizer, each
mismatch one line saying what to do."""

import sys
from dataclasses import fields, replace

from gptkit.errors import UserError
from gptkit.nanogpt import is_nanogpt_checkpoint, optimizer_state_from_nanogpt
from gptkit.optim import load_optimizer_state
from gptkit.sharded import load_sharded, load_whole_optimizer_state

# Model settings a resumed run takes from the user, not the checkpoint: they change how it trains, not
# the shape or meaning of its weights (nanoGPT's resume lets dropout differ too). Every other model
# setting is the checkpoint's; one given that contradicts it is an error.
RESUME_MAY_CHANGE = ("dropout", "explicit_attention", "activation_checkpointing")


def resume_config(saved, model_cfg, given):
    """The checkpoint's model config `saved`, with the settings of RESUME_MAY_CHANGE that the user gave
    (`given`: keys set in the config file or on the command line) in model_cfg."""
    changed = {}
    for key in sorted(given & {f.name for f in fields(saved)}):
        ours, theirs = getattr(model_cfg, key), getattr(saved, key)
        if ours == theirs:
            continue
        if key not in RESUME_MAY_CHANGE:
            raise UserError(f"{key}={ours!r} contradicts the checkpoint, whose model has {key}={theirs!r}; a resumed "
                            f"run keeps its checkpoint's model: drop {key} from the command line and config file, "
                            f"or start a new run with another --out_dir")
        changed[key] = ours
    if changed:
        print("resuming with " + ", ".join(f"{k}={v!r} (the checkpoint had {getattr(saved, k)!r})"
                                           for k, v in changed.items()), file=sys.stderr)
    return replace(saved, **changed)


def load_checkpoint_state(model, optimizer, ckpt, cfg):
    """The checkpoint's optimizer state into the optimizer (and a sharded checkpoint's weights into the
    model), or one error line saying why it does not fit."""
    trained_with = ckpt.get("train_config", {}).get("optimizer", "adamw")
    other_optimizer = UserError(f"optimizer={cfg.optimizer}, but the checkpoint was trained with "
                                f"optimizer={trained_with}, whose state does not fit it; resume with "
                                f"--optimizer={trained_with}")
    if "sharded" in ckpt:
        if trained_with != cfg.optimizer:
            raise other_optimizer
        # each process reads its slices, however many processes wrote them
        load_sharded(ckpt["sharded"], model, optimizer, ckpt.get("optimizer_empty", False))
        return
    if is_nanogpt_checkpoint(ckpt):  # nanoGPT numbers its AdamW's parameters in another order
        if cfg.optimizer != "adamw":
            raise UserError("a nanoGPT checkpoint holds AdamW's state; resume it with --optimizer=adamw")
        ckpt["optimizer"] = optimizer_state_from_nanogpt(ckpt["optimizer"], model)
    try:
        if cfg.parallel == "fsdp":
            load_whole_optimizer_state(model, optimizer, ckpt["optimizer"])  # each process keeps its slices
        else:
            load_optimizer_state(optimizer, ckpt["optimizer"])
    except ValueError as e:
        if trained_with != cfg.optimizer:
            raise other_optimizer from None
        raise UserError(f"the checkpoint's optimizer state does not fit the model ({e}); it is damaged") from None
