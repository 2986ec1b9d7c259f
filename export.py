"""Export a trained model: python export.py --out_dir=out-shakespeare --to=hf DEST

Writes DEST as a Hugging Face GPT-2 directory (config.json, model.safetensors, and the tokenizer
files for GPT-2's BPE vocabulary) that `GPT2LMHeadModel.from_pretrained(DEST)` loads and that gives
the same logits. Needs `transformers` (pip install transformers). Only the GPT-2 architecture can
be exported: learned positions, dot-product causal attention, residuals, LayerNorm, GELU, no
QK-norm. A model without biases is exported with zero biases, which is exact. Works on nanoGPT
checkpoints too (their exact GELU becomes GPT-2's activation_function="gelu").
"""

import sys
from dataclasses import dataclass
from typing import Literal

from checkpoint import load_trained
from settings import UserError, parse_args, run_main


@dataclass
class ExportConfig:
    out_dir: str = "out"
    ckpt: str = "best"  # best (best.pt, lowest val loss), latest (ckpt.pt), or a path to a .pt file
    to: Literal["hf"] = "hf"  # hf: a Hugging Face GPT-2 directory
    dest: str = ""  # the directory to write (the positional argument)
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl

    def validate(self):
        if not self.dest:
            raise UserError("give the directory to write: python export.py --out_dir=DIR --to=hf DEST")


@run_main
def main(argv):
    (cfg,) = parse_args([ExportConfig], argv, positional="dest")
    from gpt2_weights import export_hf, require_transformers

    require_transformers("export --to=hf")  # before reading a large checkpoint
    trained = load_trained(cfg.out_dir, cfg.ckpt, cfg.data_dir)
    files = export_hf(trained.model, cfg.dest, trained.tokenizer.meta())
    print(f"exported {trained.path} as a Hugging Face GPT-2 to {cfg.dest}/ ({', '.join(files)}); load it with "
          f"GPT2LMHeadModel.from_pretrained({cfg.dest!r})")


if __name__ == "__main__":
    main(sys.argv[1:])
