"""Export a trained model: python3 export.py --out_dir=out-shakespeare --to=hf DEST
                          python3 export.py --out_dir=out-shakespeare --to=gguf FILE.gguf
                          python3 export.py --out_dir=out-gpt2 --to=pt

--to=hf writes DEST as a Hugging Face GPT-2 directory (config.json, model.safetensors, and the tokenizer
files for GPT-2's BPE vocabulary) that `GPT2LMHeadModel.from_pretrained(DEST)` loads and that gives
the same logits. Needs `transformers` (pip install transformers).
--to=gguf writes one GGUF file, tokenizer included, that llama.cpp (llama-cli, llama-cpp-python,
Ollama) runs as its gpt2 architecture; --gguf_type=f16 (default), f32 or q8_0. Needs `gguf`
(pip install gguf); gptkit/gguf_export.py describes the format.

--to=pt writes ckpt.pt and best.pt in out_dir from the sharded checkpoints (ckpt.dcp/, best.dcp/) of a
parallel=fsdp run, in this one process; the end of an fsdp run does it too, so this is for a run that
was killed. The other scripts read those files.

Only the GPT-2 architecture can be exported: learned positions, dot-product causal attention,
residuals, LayerNorm, GELU, no QK-norm. A model without biases is exported with zero biases, which
is exact. Works on nanoGPT checkpoints too (their exact GELU becomes GPT-2's activation_function="gelu").
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gptkit.checkpoint import load_trained
from gptkit.config import parse_args
from gptkit.errors import UserError, run_main
from gptkit.rundir import OutDirLock
from gptkit.sharded import files_from_sharded


@dataclass
class ExportConfig:
    out_dir: str = "out"  # the run folder train.py wrote
    ckpt: str = "best"  # best (best.pt, lowest val loss), latest (ckpt.pt), or a path to a .pt file
    # pt: ckpt.pt and best.pt in out_dir from the sharded checkpoints of a parallel=fsdp run
    to: Literal["hf", "gguf", "pt"] = "hf"  # hf: a Hugging Face GPT-2 directory; gguf: one file for llama.cpp
    gguf_type: Literal["f32", "f16", "q8_0"] = "f16"  # --to=gguf: how the weight matrices are stored
    dest: str = ""  # the directory (hf) or file (gguf) to write: the positional argument
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl

    def validate(self):
        if not self.dest and self.to != "pt":
            what = "GGUF file" if self.to == "gguf" else "directory"
            raise UserError(f"give the {what} to write: python3 export.py --out_dir=DIR --to={self.to} DEST")


def parse(argv):
    """The validated settings of a command line, without running anything."""
    (cfg,) = parse_args([ExportConfig], argv, positional="dest")
    return cfg


@run_main
def main(argv):
    cfg = parse(argv)
    if cfg.to == "pt":
        return files_from_sharded_run(cfg.out_dir)
    from gptkit.gguf_export import export_gguf, require_gguf
    from gptkit.gpt2_weights import export_hf, require_transformers

    if cfg.to == "gguf":  # the missing package is an error before reading a large checkpoint
        require_gguf()
    else:
        require_transformers("export --to=hf")
    trained = load_trained(cfg.out_dir, cfg.ckpt, cfg.data_dir)
    meta = trained.tokenizer.meta()
    if cfg.to == "gguf":
        print(export_gguf(trained.model, meta, cfg.dest, cfg.gguf_type))
        return
    files = export_hf(trained.model, cfg.dest, meta)
    print(f"exported {trained.path} as a Hugging Face GPT-2 to {cfg.dest}/ ({', '.join(files)}); load it with "
          f"GPT2LMHeadModel.from_pretrained({cfg.dest!r})")


def files_from_sharded_run(out_dir):
    """ckpt.pt and best.pt from out_dir's sharded checkpoints, holding out_dir as train.py does: one writer."""
    out = Path(out_dir)
    if not any((out / name / "state.pt").is_file() for name in ("ckpt.dcp", "best.dcp")):
        raise UserError(f"no sharded checkpoint in {out}/ (ckpt.dcp or best.dcp): --to=pt is for the out_dir of a "
                        f"run trained with --parallel=fsdp")
    with OutDirLock(out):
        written = files_from_sharded(out)
    print(f"wrote {', '.join(str(out / name) for name in written)} from the sharded checkpoints" if written else
          f"{out}/ckpt.pt and best.pt are already as new as the sharded checkpoints; nothing to do")


if __name__ == "__main__":
    main(sys.argv[1:])
