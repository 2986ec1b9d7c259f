"""Sample from a trained model: python3 sample.py --out_dir=out-shakespeare-char --start="ROMEO:"
Or from a pretrained one, as nanoGPT: python3 sample.py --init_from=gpt2-xl --start="What is the answer"
(OpenAI's GPT-2 by name, or a local Hugging Face GPT-2 or Llama directory, which brings its tokenizer.json).

Streams the first sample to the terminal as its tokens are made (all samples are decoded together,
as one batch), then prints the others. --start=FILE:prompt.txt reads the prompt from a file.
The same seed gives the same text. --beam_width=N decodes by beam search instead of sampling and prints
the num_samples best continuations with their scores. --compile=True decodes with gpt-fast's static
cache and a compiled one-token step (gptkit/decode.py), and says how long compiling took.

A model trained on sentence pairs (prepare.py numbers_de or translation) translates --start instead,
printing its greedy translation, or with --beam_width=N the num_samples best of beam search
(docs/translation.md):

    python3 sample.py --out_dir=out-translate-numbers-de --start="twenty-three"
"""

import codecs
import sys
import time
from dataclasses import dataclass
from typing import Literal

import torch

from gptkit.checkpoint import load_trained
from gptkit.config import parse_args
from gptkit.errors import UserError, run_main
from gptkit.decode import SlidingDecoder, StaticDecoder, beam_search, why_not_static
from gptkit.hf_weights import PRETRAINED, check_init_from, trained_from_pretrained
from gptkit.quantize import quantize
from gptkit.shape_trace import print_shape_trace
from gptkit.system import pick_device, pick_dtype, setup_torch
from gptkit.tokenizer import prompt_ids, read_prompt
from gptkit.translation import source_ids, translation_decoder
from model import stream
from transformer import until_eos

SEPARATOR = "\n---------------\n"


@dataclass
class SampleConfig:
    # resume: out_dir's checkpoint; gpt2 (or -medium, -large, -xl): OpenAI's GPT-2; or a Hugging Face GPT-2 or
    # Llama directory (config.json, model.safetensors, tokenizer.json)
    init_from: str = "resume"
    out_dir: str = "out"  # the run folder train.py wrote
    ckpt: str = "best"  # best (best.pt, lowest val loss), latest (ckpt.pt), or a path to a .pt file
    data_dir: str = "data"  # where a nanoGPT checkpoint's char-level vocabulary is: <dataset>/meta.pkl
    start: str = "\n"  # the prompt, or FILE:path to read it from a file
    num_samples: int = 3  # how many samples (one batch)
    max_new_tokens: int = 500  # tokens to generate after the prompt
    temperature: float = 0.8  # 0: greedy (always the most likely token); higher: more random. Translating: greedy
    top_k: int = 200  # keep only the k most likely tokens; 0: no limit
    top_p: float = 1.0  # keep the smallest set of tokens whose probability reaches p; 1.0: no limit
    seed: int = 1337  # the same seed gives the same text
    use_cache: bool = True  # KV cache: run the prompt once, then one position per token
    # beam search instead of sampling: keep the beam_width most likely continuations at each step and print
    # the num_samples best (temperature, top_k and top_p do not apply); 0: sample; 1: greedy
    beam_width: int = 0
    length_penalty: float = 0.0  # GNMT's alpha: rank beams by log p / ((5 + length) / 6)^alpha (ended ones)
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA and bf16 CPUs (pick_dtype)
    compile: bool = False  # a static KV cache and a compiled one-token step (gpt-fast); compile time on stderr
    quantize: Literal["none", "int8"] = "none"  # int8: Linear layers with int8 weights, for faster CPU sampling
    trace_shapes: bool = False  # print each named tensor's shape for one forward pass, then exit
    trace_values: bool = False  # with trace_shapes: print the numbers too (try a short --start)
    trace_layer: int | None = None  # with trace_shapes: show only this layer's steps (0 is the first)

    def validate(self):
        check_init_from(self.init_from, ("resume", *PRETRAINED))
        if self.num_samples <= 0 or self.max_new_tokens < 0:
            raise UserError("num_samples must be positive and max_new_tokens not negative")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise UserError("temperature and top_k must not be negative, and top_p must be in (0, 1]")
        if self.beam_width < 0 or self.length_penalty < 0:
            raise UserError("beam_width and length_penalty must not be negative (beam_width 0: sample)")


class Printer:
    """Print tokens as text as they come: their bytes through an incremental UTF-8 decoder, which holds
    back a character's first bytes until its last arrives (a GPT-2 token may end inside an umlaut)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoder = tokenizer, codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, *tokens):
        sys.stdout.write(self.decoder.decode(b"".join(map(self.tokenizer.token_bytes, tokens))))
        sys.stdout.flush()

    def close(self):
        """Bytes still held back (the sample ended inside a character) show as U+FFFD."""
        sys.stdout.write(self.decoder.decode(b"", final=True))


@run_main
def main(argv):
    cfg = parse(argv)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device, int8=cfg.quantize != "none")
    ctx = setup_torch(device, dtype)
    if cfg.init_from == "resume":
        trained = load_trained(cfg.out_dir, cfg.ckpt, cfg.data_dir, device)
    else:
        trained = trained_from_pretrained(cfg.init_from, device)
    model, tokenizer = trained.model, trained.tokenizer
    model = quantize(model, cfg.quantize, device, dtype)
    if trained.specials is not None:  # trained on sentence pairs: --start is a sentence to translate
        return print_translation(model, trained, read_prompt(cfg.start), cfg, ctx)
    if model.config.sees_the_future:
        print(f"warning: this model was trained with mask={model.config.mask}, so it saw the tokens it had to predict "
              f"and learned to copy them; generating, there is no future to copy, so expect garbage "
              f"(docs/experiments.md, the mask)", file=sys.stderr)

    prompt = prompt_ids(tokenizer, read_prompt(cfg.start))
    idx = torch.tensor([prompt] * cfg.num_samples, dtype=torch.long, device=device)  # (B, T)
    if cfg.trace_shapes:
        source = f"trained: {trained.path} (iter {trained.iter_num})" if cfg.init_from == "resume" else \
            f"pretrained: {cfg.init_from}"
        print_shape_trace(model, idx, tokenizer=tokenizer, values=cfg.trace_values, layer=cfg.trace_layer,
                          source=source)
        return
    torch.manual_seed(cfg.seed)
    if cfg.beam_width:
        return print_beams(model, tokenizer, idx[:1], cfg, ctx)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    decoder = make_decoder(model, idx, cfg)

    out = Printer(tokenizer)
    out.add(*prompt)
    t0 = time.time()
    with ctx:
        for token in stream(model, idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k or None,
                            top_p=cfg.top_p, vocab_limit=tokenizer.vocab_size, generator=generator, decoder=decoder):
            out.add(token[0, 0].item())
    out.close()
    elapsed = time.time() - t0
    for row in decoder.context[1:].tolist():  # (B - 1, T + max_new_tokens): the samples after the streamed one
        sys.stdout.write(SEPARATOR + tokenizer.decode(row))
    sys.stdout.write("\n")
    n = cfg.num_samples * cfg.max_new_tokens
    compiled = getattr(decoder, "compile_seconds", None)
    if compiled is not None:  # the first step compiled: time it apart from the tokens/s
        elapsed -= compiled
        print(f"compiled the decode step in {compiled:.1f} s", file=sys.stderr)
    print(f"{cfg.num_samples} x {cfg.max_new_tokens} tokens in {elapsed:.2f} s: {n / max(elapsed, 1e-9):,.0f} tokens/s",
          file=sys.stderr)


def parse(argv):
    """The validated settings of a command line, without running anything."""
    (cfg,) = parse_args([SampleConfig], argv)
    return cfg


def make_decoder(model, idx, cfg):
    """gptkit/decode.py's SlidingDecoder, or with --compile=True its static cache and compiled step, where it can
    run: a causal mask, the KV cache on, and the whole generation within block_size."""
    if not cfg.compile:
        return SlidingDecoder(model, idx, cfg.use_cache)
    if cfg.quantize != "none":  # PyTorch's int8 Linear does not compile; the weight-only int8 that does was slower
        print(f"note: --quantize={cfg.quantize} decodes without compiling, its fastest here (docs/sampling.md)",
              file=sys.stderr)
        return SlidingDecoder(model, idx, cfg.use_cache)
    why = why_not_static(model, idx.size(1), cfg.max_new_tokens, cfg.use_cache)
    if why is None:
        return StaticDecoder(model, idx)
    print(f"note: --compile=True decodes with a static KV cache, and {why}; decoding without compiling",
          file=sys.stderr)
    return SlidingDecoder(model, idx, cfg.use_cache)


def print_translation(model, trained, text, cfg, ctx):
    """Translate text: print the greedy translation as it is made, or with beam_width the num_samples best beams."""
    tokenizer, eos = trained.tokenizer, trained.specials["eos"]
    decoder = translation_decoder(model, source_ids(model, tokenizer, text), trained.specials, cfg.use_cache)
    max_new = min(cfg.max_new_tokens, model.config.block_size - decoder.context.size(1))  # positions left
    t0 = time.time()
    with ctx:
        if cfg.beam_width:
            beams = beam_search(model, None, max_new, cfg.beam_width, cfg.length_penalty, vocab_limit=eos + 1, eos=eos,
                                decoder=decoder)  # text or EOS: never padding or BOS
            write_beams(beams[:cfg.num_samples], lambda tokens: tokenizer.decode(until_eos(tokens, eos)))
        else:
            out = Printer(tokenizer)
            for token in stream(model, None, max_new, temperature=0, vocab_limit=eos + 1, decoder=decoder):  # (1, 1)
                if token.item() == eos:
                    break
                out.add(token.item())
    sys.stdout.write("\n")
    how = f"beam search, width {cfg.beam_width}" if cfg.beam_width else "greedy"
    print(f"translated ({how}) in {time.time() - t0:.2f} s", file=sys.stderr)


def write_beams(beams, text_of):
    """Each beam [(tokens, score)] as text_of(tokens) on stdout, separated, and its score on stderr (so that
    `sample.py --beam_width=4 > out.txt` holds the text only)."""
    for i, (tokens, score) in enumerate(beams):
        sys.stdout.write(SEPARATOR if i else "")
        sys.stdout.flush()  # on a terminal, the score comes between the separator and its beam
        print(f"[beam {i + 1}, score {score:.3f}]", file=sys.stderr, flush=True)
        sys.stdout.write(text_of(tokens))


def print_beams(model, tokenizer, prompt, cfg, ctx):
    """Beam search from the prompt (1, T); print the num_samples best continuations and their scores."""
    if cfg.compile:
        print("note: beam search runs without compiling (its batch of beams changes as they end)", file=sys.stderr)
    eos = getattr(tokenizer, "eot", None)  # GPT-2's <|endoftext|> ends a beam; characters have no end token
    t0 = time.time()
    with ctx:
        beams = beam_search(model, prompt, cfg.max_new_tokens, cfg.beam_width, cfg.length_penalty,
                            vocab_limit=tokenizer.vocab_size, eos=eos, use_cache=cfg.use_cache)
    text = tokenizer.decode(prompt[0].tolist())
    write_beams(beams[:cfg.num_samples], lambda tokens: text + tokenizer.decode(tokens))
    sys.stdout.write("\n")
    print(f"beam search, width {cfg.beam_width}: {cfg.max_new_tokens} tokens in {time.time() - t0:.2f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
