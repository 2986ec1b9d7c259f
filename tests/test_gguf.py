"""GGUF export (gptkit/gguf_export.py, export.py --to=gguf): the file read back, and the file run by llama.cpp.

Always (CI): the written file read back with gguf.GGUFReader: architecture, hyper-parameters, the
tokenizer arrays, every tensor's name, shape and type, and values equal to our weights (q8_0 within
its rounding); zero biases for bias=False; refusals as one error line with no file written.

Opt-in: the same files run by llama.cpp itself through llama-cpp-python, for a char-level and a GPT-2
BPE model trained here by train.py: the same prompt ids, the same logits, and the same 100 greedy
tokens as sample.py --temperature=0. llama-cpp-python compiles llama.cpp on install (10+ minutes on
2 cores), too long for CI; enable with:

    pip install llama-cpp-python && python3 -m pytest tests/test_gguf.py
"""

import sys

import numpy as np
import pytest
import torch

from conftest import CHAR_DATASET, main_error_line, run_script
import export
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from gptkit.errors import UserError
from gptkit.gguf_export import GGUF_TYPES, export_gguf
from model import GPT, GPTConfig

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf; CI installs it)")
Q = gguf.GGMLQuantizationType
CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # Tiny Shakespeare's 65
CHAR_META = {"tokenizer": "char", "vocab_size": len(CHARS), "chars": CHARS}
BPE_META = {"tokenizer": "gpt2", "vocab_size": 50257}

# llama.cpp's gpt2 names (src/models/gpt2.cpp, gguf-py's constants) -> ours
GLOBAL_NAMES = {"token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
                "output_norm.weight": "transformer.ln_f.weight", "output_norm.bias": "transformer.ln_f.bias",
                "output.weight": "lm_head.weight"}
LAYER_NAMES = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
               "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}


def random_model(**kwargs):
    """A small GPT with random biases and LayerNorm gains too, so that every tensor matters."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**dict(block_size=24, vocab_size=len(CHARS), n_layer=2, n_head=2, n_embd=32), **kwargs}))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def read(path):
    """(metadata {key: value}, tensors {name: ReaderTensor}) of a GGUF file."""
    reader = gguf.GGUFReader(path)
    fields = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


def expected_shapes(C, V, T, n_layer, tied):
    """llama.cpp's gpt2 tensors with their ggml shapes (row length first), as its loader creates them."""
    shapes = {"token_embd.weight": [C, V], "position_embd.weight": [C, T], "output_norm.weight": [C],
              "output_norm.bias": [C]}
    for i in range(n_layer):
        for name, shape in (("attn_norm", [C]), ("attn_qkv", [C, 3 * C]), ("attn_output", [C, C]),
                            ("ffn_norm", [C]), ("ffn_up", [C, 4 * C]), ("ffn_down", [4 * C, C])):
            shapes[f"blk.{i}.{name}.weight"] = shape
            shapes[f"blk.{i}.{name}.bias"] = [shape[-1]]
    if not tied:
        shapes["output.weight"] = [C, V]
    return shapes


def ours(model, name, vocab_size):
    """Our tensor (float32 numpy, vocabulary cut) for a llama.cpp tensor name; zeros for a missing bias."""
    if name.startswith("blk."):
        _, i, part, kind = name.split(".")
        key = f"transformer.h.{i}.{LAYER_NAMES[part]}.{kind}"
    else:
        key = GLOBAL_NAMES[name]
    state = model.state_dict()
    if key not in state:
        assert key.endswith(".bias") and not model.config.bias
        return np.zeros(state[key.replace(".bias", ".weight")].shape[0], dtype=np.float32)
    value = state[key].float().numpy()
    return value[:vocab_size] if key in ("transformer.wte.weight", "lm_head.weight") else value


def check_file(path, model, meta, gguf_type):
    """Everything llama.cpp reads, read back: metadata, names, shapes, types and values."""
    config, V = model.config, meta["vocab_size"]
    fields, tensors = read(path)
    C = config.n_embd
    assert fields["general.architecture"] == "gpt2"
    assert fields["general.file_type"] == {"f32": 0, "f16": 1, "q8_0": 7}[gguf_type]
    assert (fields["gpt2.context_length"], fields["gpt2.embedding_length"], fields["gpt2.block_count"],
            fields["gpt2.feed_forward_length"], fields["gpt2.attention.head_count"]) == \
           (config.block_size, C, config.n_layer, 4 * C, config.n_head)
    assert fields["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert len(fields["tokenizer.ggml.tokens"]) == len(fields["tokenizer.ggml.token_type"]) == V
    assert fields["tokenizer.ggml.add_bos_token"] is False

    shapes = expected_shapes(C, V, config.block_size, config.n_layer, config.tie_weights)
    assert sorted(tensors) == sorted(shapes)
    for name, tensor in tensors.items():
        assert [int(n) for n in tensor.shape] == shapes[name], name
        want = ours(model, name, V)
        if len(shapes[name]) == 1 or name == "position_embd.weight":
            expected_type = Q.F32
        else:  # q8_0 packs 32 numbers of a row per block; other row lengths fall back to F16
            q8_0 = Q.Q8_0 if shapes[name][0] % 32 == 0 else Q.F16
            expected_type = {"f32": Q.F32, "f16": Q.F16, "q8_0": q8_0}[gguf_type]
        assert tensor.tensor_type == expected_type, name
        got = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(want.shape)
        if expected_type == Q.F32:
            np.testing.assert_array_equal(got, want, err_msg=name)
        elif expected_type == Q.F16:
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32), err_msg=name)
        else:  # int8 steps of max|block| / 127: off by at most half a step, plus the f16 scale's rounding
            assert np.abs(got - want).max() <= np.abs(want).max() / 127, name
    return fields, tensors


@pytest.mark.parametrize("gguf_type", GGUF_TYPES)
def test_char_model_file_holds_our_weights_and_vocabulary(tmp_path, gguf_type):
    model = random_model()
    summary = export_gguf(model, CHAR_META, tmp_path / "m.gguf", gguf_type)
    assert summary.startswith(f"wrote {tmp_path / 'm.gguf'}") and "65-token char vocabulary" in summary
    fields, _ = check_file(tmp_path / "m.gguf", model, CHAR_META, gguf_type)
    assert fields["tokenizer.ggml.model"] == "rwkv"
    assert fields["tokenizer.ggml.tokens"] == ["\\n"] + list(CHARS[1:])  # one token per character, by id
    assert set(fields["tokenizer.ggml.token_type"]) == {gguf.TokenType.NORMAL}
    assert not {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.merges"} & set(fields)


def test_char_tokens_are_escaped_as_llama_cpp_reads_them(tmp_path):
    chars = "\t\n\r !\\a\x00\x7fé"  # llama_unescape_rwkv_token reads \t \n \r \\ and \xhh (lowercase)
    meta = {"tokenizer": "char", "vocab_size": len(chars), "chars": chars}
    export_gguf(random_model(vocab_size=len(chars)), meta, tmp_path / "m.gguf", "f32")
    tokens = read(tmp_path / "m.gguf")[0]["tokenizer.ggml.tokens"]
    assert tokens == ["\\t", "\\n", "\\r", " ", "!", "\\\\", "a", "\\x00", "\\x7f", "é"]


@pytest.mark.parametrize("gguf_type", GGUF_TYPES)
def test_gpt2_bpe_model_file_carries_gpt2_vocabulary_and_drops_the_padding(tmp_path, gguf_type):
    from gptkit.tokenizer import GPT2Tokenizer

    model = random_model(vocab_size=50304)  # padded, as train.py pads GPT-2's 50257
    try:
        export_gguf(model, BPE_META, tmp_path / "m.gguf", gguf_type)
    except UserError as e:
        pytest.skip(f"GPT-2's BPE files are not available offline: {e}")
    fields, tensors = check_file(tmp_path / "m.gguf", model, BPE_META, gguf_type)
    assert (fields["tokenizer.ggml.model"], fields["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
    assert fields["tokenizer.ggml.bos_token_id"] == fields["tokenizer.ggml.eos_token_id"] == 50256
    types = fields["tokenizer.ggml.token_type"]
    assert types[50256] == gguf.TokenType.CONTROL and set(types[:50256]) == {gguf.TokenType.NORMAL}
    # every token's byte-level string spells the bytes tiktoken gives that id
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    encoding = GPT2Tokenizer().encoding
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[50256] == "<|endoftext|>"
    assert all(bytes(byte_of[ch] for ch in tokens[i]) == encoding.decode_single_token_bytes(i) for i in range(50256))
    merges = fields["tokenizer.ggml.merges"]
    assert len(merges) == 50000 and merges[:3] == ["Ġ t", "Ġ a", "h e"]


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (its encoder.py): printable bytes map to themselves."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b], extra = chr(256 + extra), extra + 1
    return table


def test_bias_free_and_untied_models(tmp_path):
    model = random_model(bias=False, tie_weights=False)
    export_gguf(model, CHAR_META, tmp_path / "m.gguf", "f32")
    _, tensors = check_file(tmp_path / "m.gguf", model, CHAR_META, "f32")
    biases = [name for name in tensors if name.endswith(".bias")]
    assert len(biases) == 2 * 6 + 1
    assert all(not tensors[name].data.any() for name in biases)
    assert "output.weight" in tensors  # untied: its own output matrix


def test_q8_0_keeps_rows_that_are_not_a_multiple_of_32_in_f16(tmp_path):
    model = random_model(n_embd=48, n_head=3)  # rows of 48 cannot be q8_0; ffn_down's 192 can
    export_gguf(model, CHAR_META, tmp_path / "m.gguf", "q8_0")
    _, tensors = check_file(tmp_path / "m.gguf", model, CHAR_META, "q8_0")
    assert tensors["blk.0.ffn_down.weight"].tensor_type == Q.Q8_0
    assert tensors["blk.0.ffn_up.weight"].tensor_type == Q.F16


def test_export_cli_writes_the_trained_char_model(tiny_run, tmp_path, capsys):
    dest = tmp_path / "gguf" / "tiny.gguf"
    export.main([f"--out_dir={tiny_run.out_dir}", "--to=gguf", "--gguf_type=q8_0", str(dest)])
    out, err = capsys.readouterr()
    assert out.strip().startswith(f"wrote {dest}") and "q8_0" in out
    assert "block_size=32" in err  # the note on llama.cpp's context
    ckpt = load_checkpoint(tiny_run.out_dir / "best.pt")
    fields, _ = check_file(dest, model_from_checkpoint(ckpt), ckpt["meta"], "q8_0")
    assert "".join(fields["tokenizer.ggml.tokens"]).replace("\\n", "\n") == ckpt["meta"]["chars"]
    assert [p.name for p in dest.parent.iterdir()] == ["tiny.gguf"]  # no temporary file left


def save_tiny(out_dir, **variant):
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8, **variant))
    save_checkpoint(out_dir / "ckpt.pt", model, meta={"tokenizer": "char", "vocab_size": 11, "chars": "abcdefghijk"})


@pytest.mark.parametrize("variant, key", [(dict(pos_encoding="rope"), "pos_encoding"), (dict(norm="rmsnorm"), "norm"),
                                          (dict(activation="relu2"), "activation"), (dict(qk_norm=True), "qk_norm")])
def test_refusal_is_one_line_and_keeps_an_existing_file(tmp_path, capsys, variant, key):
    save_tiny(tmp_path / "out", **variant)
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"an earlier export")
    line = main_error_line(capsys, export, [f"--out_dir={tmp_path / 'out'}", "--to=gguf", str(dest)])
    assert line.startswith("error: this model cannot be exported as GPT-2") and f"{key}=" in line
    assert dest.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf", "out"]  # no temporary file left


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"an earlier export")

    def disk_full(self, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", disk_full)
    with pytest.raises(UserError, match="No space left on device.*nothing was changed"):
        export_gguf(random_model(), CHAR_META, dest, "f16")
    assert dest.read_bytes() == b"an earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_bad_gguf_type_and_missing_gguf_are_one_line(tmp_path, capsys):
    save_tiny(tmp_path / "out")
    line = main_error_line(capsys, export, [f"--out_dir={tmp_path / 'out'}", "--to=gguf", "--gguf_type=q4_0",
                                            str(tmp_path / "m.gguf")])
    assert "gguf_type" in line and "q8_0" in line
    code = (f"import sys; sys.modules['gguf'] = None; import export; "
            f"export.main(['--out_dir={tmp_path / 'out'}', '--to=gguf', '{tmp_path / 'm.gguf'}'])")
    result = run_script("-c", code)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: export --to=gguf needs the gguf package: pip install gguf"
    assert not (tmp_path / "m.gguf").exists()


# ----------------------------------------------------------------------------------------------
# llama.cpp itself (opt-in: pip install llama-cpp-python && python3 -m pytest tests/test_gguf.py)

BLOCK = 128  # learned positions stop at block_size in llama.cpp too: prompt + 100 new tokens fit
TRAIN_ARGS = ("--n_layer=2", "--n_head=2", "--n_embd=32", f"--block_size={BLOCK}", "--batch_size=8",
              "--max_iters=30", "--eval_interval=10", "--eval_iters=2", "--learning_rate=1e-2", "--warmup_iters=5",
              "--device=cpu", "--threads=1")
NEW_TOKENS = 100


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason=(
        "llama-cpp-python is not installed (a 10+ minute compile, so not in CI); run the llama.cpp checks "
        "with: pip install llama-cpp-python && python3 -m pytest tests/test_gguf.py"))


def train(out_dir, data_dir, dataset):
    result = run_script("train.py", *TRAIN_ARGS, f"--data_dir={data_dir}", f"--dataset={dataset}",
                        f"--out_dir={out_dir}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir


@pytest.fixture(scope="module")
def trained(llama_cpp, tmp_path_factory, char_data_dir, shakespeare_text_session):
    """{kind: (out_dir, prompt)}: a char-level, a GPT-2 BPE and a trained-BPE (prepare.py --tokenizer=bpe) model
    trained on Tiny Shakespeare."""
    import prepare

    root = tmp_path_factory.mktemp("gguf_runs")
    try:
        prepare.prepare_text(shakespeare_text_session, root / "data" / "bpe", "gpt2", prepare.SHAKESPEARE_SOURCE)
    except UserError as e:
        pytest.skip(f"GPT-2 BPE unavailable offline: {e}")
    (root / "shakespeare.txt").write_text(shakespeare_text_session, encoding="utf-8")
    prepare.prepare_file(root / "shakespeare.txt", root / "data" / "own", "bpe", "Tiny Shakespeare", vocab_size=1024)
    return {"char": (train(root / "char", char_data_dir, CHAR_DATASET), "ROMEO:\nWhat say you"),
            "gpt2": (train(root / "gpt2", root / "data", "bpe"), "ROMEO:\nWhat say you to this?"),
            "bpe": (train(root / "bpe", root / "data", "own"), "ROMEO:\nWhat say you to this?")}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """{(kind, gguf_type): (path, model, tokenizer)} for both models in every type."""
    from gptkit.tokenizer import load_tokenizer

    root, files = tmp_path_factory.mktemp("gguf_files"), {}
    for kind, (out_dir, _) in trained.items():
        ckpt = load_checkpoint(out_dir / "best.pt")
        model, tokenizer = model_from_checkpoint(ckpt).eval(), load_tokenizer(ckpt["meta"])
        for gguf_type in GGUF_TYPES:
            path = root / f"{kind}-{gguf_type}.gguf"
            export_gguf(model, ckpt["meta"], path, gguf_type)
            files[kind, gguf_type] = path, model, tokenizer
    return files


def load_llama(llama_cpp, path):
    return llama_cpp.Llama(model_path=str(path), n_ctx=BLOCK, logits_all=True, seed=1337, n_threads=1,
                           verbose=False)


def logits_both(llama_cpp, exported, trained, kind, gguf_type):
    """(llama.cpp's, ours) logits (T, vocab) of the prompt, after checking both tokenize it alike."""
    path, model, tokenizer = exported[kind, gguf_type]
    prompt = trained[kind][1]
    llm = load_llama(llama_cpp, path)
    ids = llm.tokenize(prompt.encode())  # as a user would: BOS only if the file asks for one (it does not)
    assert ids == tokenizer.encode(prompt)
    llm.eval(ids)
    theirs = np.array(llm.scores[:len(ids)])  # (T, vocab)
    with torch.no_grad():
        mine = model(torch.tensor([ids]))[0][0, :, :tokenizer.vocab_size].numpy()  # (T, vocab)
    return theirs, mine


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_llama_cpp_f32_logits_match(llama_cpp, exported, trained, kind):
    theirs, mine = logits_both(llama_cpp, exported, trained, kind, "f32")
    diff = np.abs(theirs - mine).max()
    print(f"{kind} f32: max abs logit difference {diff:.2e}")
    assert diff < 1e-3


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_llama_cpp_f16_logits_match(llama_cpp, exported, trained, kind):
    theirs, mine = logits_both(llama_cpp, exported, trained, kind, "f16")
    diff = np.abs(theirs - mine).max()
    print(f"{kind} f16: max abs logit difference {diff:.2e}")
    assert diff < 5e-3
    assert (theirs.argmax(-1) == mine.argmax(-1)).all()


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_llama_cpp_q8_0_picks_the_same_next_token(llama_cpp, exported, trained, kind):
    theirs, mine = logits_both(llama_cpp, exported, trained, kind, "q8_0")
    agree = (theirs.argmax(-1) == mine.argmax(-1)).mean()
    print(f"{kind} q8_0: max abs logit difference {np.abs(theirs - mine).max():.2e}, argmax agrees at "
          f"{agree:.0%} of the prompt's positions")
    assert theirs[-1].argmax() == mine[-1].argmax()


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_llama_cpp_greedy_text_equals_sample_py(llama_cpp, exported, trained, kind):
    out_dir, prompt = trained[kind]
    result = run_script("sample.py", f"--out_dir={out_dir}", f"--start={prompt}", "--temperature=0",
                        "--num_samples=1", f"--max_new_tokens={NEW_TOKENS}", "--device=cpu")
    assert result.returncode == 0, result.stderr
    llm = load_llama(llama_cpp, exported[kind, "f32"][0])
    ids = llm.tokenize(prompt.encode())
    new = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        new.append(token)
        if len(new) == NEW_TOKENS:
            break
    text = llm.detokenize(ids + new).decode("utf-8", errors="replace")
    assert result.stdout == text + "\n"


@pytest.mark.parametrize("kind", ["gpt2", "bpe"])
def test_llama_cpp_tokenizes_any_text_to_our_ids(llama_cpp, exported, kind):
    """German, emoji, Chinese, Windows line endings, runs of spaces: llama.cpp's BPE with the file's tokens and
    merges and its gpt-2 pre-tokenizer gives tiktoken's ids (the Hugging Face export is checked the same way in
    tests/test_tokenizer.py)."""
    path, _, tokenizer = exported[kind, "f32"]
    llm = load_llama(llama_cpp, path)
    for text in ("Grüße aus Köln: die Straße ist naß.", "emoji \U0001F600\U0001F44D, 中文字符\r\n",
                 "  two  spaces,\n\n\nthree newlines   ", "ROMEO:\nWherefore art thou, Romeo? 1234567 don't"):
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tokenizer.encode(text), text


def test_llama_cpp_refuses_a_character_outside_the_vocabulary(llama_cpp, exported):
    """llama.cpp's RWKV tokenizer gives -1 for each byte no token starts with; llama_decode rejects it."""
    path, _, tokenizer = exported["char", "f32"]
    assert "~" not in tokenizer.chars
    llm = load_llama(llama_cpp, path)
    ids = llm.tokenize("a~b".encode())
    assert ids == [tokenizer.stoi["a"], -1, tokenizer.stoi["b"]]
    with pytest.raises(RuntimeError, match="llama_decode returned -1"):
        llm.eval(ids)


def test_bench_times_llama_cpp_on_an_exported_file(llama_cpp, exported, capsys):
    import bench

    path = exported["char", "q8_0"][0]
    bench.main(["llama_cpp", str(path), "--new_tokens=50", "--threads=1"])
    out = capsys.readouterr().out
    assert f"on {path}, batch 1, 50 new tokens, 1 threads" in out
    tokens_per_s = float(out.splitlines()[-1].split("|")[1].replace(",", ""))
    assert tokens_per_s > 0


def test_bench_llama_cpp_without_the_package_or_file_is_one_line(tmp_path, capsys, monkeypatch):
    import bench

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert "pip install llama-cpp-python" in main_error_line(capsys, bench, ["llama_cpp", str(tmp_path / "m.gguf")])
