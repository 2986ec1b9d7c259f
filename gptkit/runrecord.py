"""A finished run's record, out_dir/experiment.json: its status, seconds, parameter count, arguments and
resolved settings. experiment.py writes one for each run it trains and learn.py for each reference run;
both reuse a finished run whose settings are exactly the same (experiment.py --reuse=True, learn.py's
reference) instead of training it again.
"""

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

from gptkit.data import model_vocab_size
from gptkit.memory import estimated_params
from gptkit.runlog import read_log
from model import GPTConfig

NOT_COMPARED = {"out_dir", "overwrite"}  # settings that may differ between two runs of the same experiment


def as_override(key, value):
    """A --key=value that train.py reads back as exactly `value` (strings quoted)."""
    return f"--{key}={value!r}" if isinstance(value, str) else f"--{key}={value}"


def compared_settings(model_cfg, train_cfg):
    """What identifies a run: every resolved setting but those that only name it (NOT_COMPARED)."""
    resolved = {**asdict(train_cfg), **asdict(model_cfg)}
    return {k: v for k, v in resolved.items() if k not in NOT_COMPARED}


def count_params(model_cfg, data_meta):
    """All parameters of the model a run will build, counted from its settings (nothing is built), with its
    dataset's vocabulary and, for the encoder-decoder, its special tokens, as train.py sets them. None for an
    encoder-decoder on a dataset of running text: that run stops with train.py's error (it needs pairs)."""
    dataset = {"vocab_size": model_vocab_size(data_meta)}
    if not isinstance(model_cfg, GPTConfig):
        if "specials" not in data_meta:
            return None
        dataset.update({f"{name}_id": i for name, i in data_meta["specials"].items()})
    return estimated_params(dataclasses.replace(model_cfg, **dataset))


def write_record(out_dir, status, seconds, params, args, settings, vary=None):
    """out_dir/experiment.json, the record of a run that `finished` reads back; -> the record. seconds are
    rounded as the table prints them, so a --reuse table prints the same."""
    record = {"status": status, "seconds": round(seconds, 1), "params": params, "vary": vary or {}, "args": args,
              "settings": settings}
    (Path(out_dir) / "experiment.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def finished(out_dir, settings):
    """The record of a finished run in out_dir with exactly these settings, else None."""
    try:
        record = json.loads((Path(out_dir) / "experiment.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    log = read_log(out_dir)
    if record.get("status") != "ok" or record.get("settings") != json.loads(json.dumps(settings)):
        return None
    if not log or log[-1]["iter"] != settings["max_iters"]:
        return None
    return record


def find_reusable(out_root, run):
    """A finished run in out_root (under any name) with the same settings as `run`."""
    candidates = [run["out_dir"], *sorted(p.parent for p in Path(out_root).glob("*/experiment.json"))]
    for out_dir in candidates:
        record = finished(out_dir, run["settings"])
        if record is not None:
            return Path(out_dir), record
    return None, None
