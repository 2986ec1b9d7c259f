"""Llama-architecture checkpoints in and out (gptkit/hf_weights.py, gguf_export.py), tested offline on randomly
initialised `transformers` Llama models of several shapes saved to temporary directories.

Hugging Face LlamaForCausalLM -> our GPT (--init_from=DIR): the same logits within 1e-5 in float32; our
Llama-shaped GPT -> export.py --to=hf -> LlamaForCausalLM: the same logits; sample.py writes text with the
directory's tokenizer.json and greedy-decodes the tokens transformers does; train.py fine-tunes it; what our
model cannot represent (rope_scaling, ...) is refused in one line; the GGUF `llama` file holds q and k in
llama.cpp's interleaved RoPE order.
"""

import json

import pytest
import torch

import export
import sample
from conftest import main_error_line
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from gptkit.hf_weights import config_from_llama, export_hf, load_hf_llama, load_pretrained
from gptkit.tokenizer import HFTokenizer, load_tokenizer, prompt_ids
from model import GPT, GPTConfig, apply_rotary, rotary_cos_sin

TOL = 1e-5  # float32
# (name, LlamaConfig settings): grouped-query, multi-query and full heads; tied and untied; three rope_theta
SHAPES = {
    "gqa-tied": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=10000.0),
    "mqa-untied": dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False, rope_theta=500000.0,
                       intermediate_size=88, rms_norm_eps=1e-5),
    "mha-bias": dict(num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=1e6,
                     attention_bias=True, mlp_bias=True),
}
VOCAB = 300


def make_tokenizer_json(vocab_size=VOCAB):
    """A byte-level BPE trained on a line of Shakespeare that starts every text with <s>, as Llama's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["First Citizen: Before we proceed any further, hear me speak."] * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return tok.to_str()


def random_llama(transformers, shape, vocab_size=VOCAB):
    torch.manual_seed(0)
    settings = {**dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       max_position_embeddings=64, bos_token_id=0, eos_token_id=1), **SHAPES[shape]}
    return spread(transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings)).float().eval())


def spread(model):
    """Weights large enough for logits of order 1 (an init's std 0.02 gives logits near 0, where any two models
    agree), and random RMSNorm gains and biases, so that every tensor matters."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.1 if p.dim() == 1 else 0.15))
    return model


@pytest.fixture(scope="module", params=list(SHAPES))
def llama_dir(request, transformers, tmp_path_factory):
    """(transformers model, its saved directory with a tokenizer.json) for each shape."""
    hf = random_llama(transformers, request.param)
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(make_tokenizer_json(), encoding="utf-8")
    return hf, folder


def max_logit_diff(hf, ours, vocab_size, T=24):
    ids = torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(ids).logits
        mine, _ = ours.eval()(ids)
    assert theirs.std() > 0.5  # logits of order 1: a difference below 1e-5 means something
    return (theirs - mine[..., :theirs.size(-1)]).abs().max().item()


def test_llama_directory_to_ours_gives_identical_logits(llama_dir, one_thread):
    hf, folder = llama_dir
    ours = load_pretrained(str(folder))
    c, theirs = ours.config, hf.config
    assert (c.pos_encoding, c.norm, c.mlp, c.bias) == ("rope", "rmsnorm", "swiglu", theirs.attention_bias)
    assert (c.kv_heads, c.mlp_width, c.tie_weights) == (theirs.num_key_value_heads, theirs.intermediate_size,
                                                     theirs.tie_word_embeddings)
    assert c.rope_theta == hf.config.rope_parameters["rope_theta"] and c.norm_eps == theirs.rms_norm_eps
    assert (ours.lm_head.weight is ours.transformer.wte.weight) == theirs.tie_word_embeddings
    diff = max_logit_diff(hf, ours, VOCAB)
    print(f"parity in ({folder.name}): max |logit diff| {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("shape", list(SHAPES))
def test_ours_exported_as_llama_gives_identical_logits(transformers, tmp_path, shape, one_thread):
    """Our Llama-shaped GPT (config_from_llama of the shape, random weights) -> LlamaForCausalLM, and back."""
    config = config_from_llama(random_llama(transformers, shape).config.to_dict())
    torch.manual_seed(1)
    ours = spread(GPT(config).eval())
    meta = HFTokenizer(make_tokenizer_json(), eot=1).meta()
    files = export_hf(ours, tmp_path / "hf", meta)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.num_key_value_heads == config.kv_heads and hf.config.eos_token_id == 1
    diff = max_logit_diff(hf, ours, VOCAB)
    print(f"parity out ({shape}): max |logit diff| {diff:.2e}")
    assert diff <= TOL
    assert max_logit_diff(hf, load_hf_llama(tmp_path / "hf"), VOCAB) <= TOL  # and read back in


def test_sample_py_greedy_text_equals_transformers_generate(llama_dir, capsys, one_thread):
    hf, folder = llama_dir
    tokenizer = HFTokenizer.from_dir(folder)
    prompt = prompt_ids(tokenizer, "hear me")
    assert prompt[0] == 0  # the tokenizer's own <s> starts the prompt
    ids = torch.tensor([prompt])
    with torch.no_grad():  # (an explicit mask: the pad id would be taken for padding wherever it occurs)
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                               eos_token_id=None, pad_token_id=1)[0, len(prompt):].tolist()
    sample.main([f"--init_from={folder}", "--start=hear me", "--max_new_tokens=12", "--num_samples=1",
                 "--temperature=0", "--device=cpu"])
    out = capsys.readouterr().out
    assert out == "hear me" + tokenizer.decode(expected) + "\n"  # text, not ids; <s> not shown


def test_train_py_fine_tunes_a_llama_directory(transformers, char_data_dir, tmp_path, one_thread):
    """A Llama whose vocabulary is the char dataset's (65) fine-tuned with --init_from=DIR: the checkpoint holds
    its weights as they were at max_iters=0."""
    import train

    vocab = json.loads((char_data_dir / "shakespeare_char" / "meta.json").read_text())["vocab_size"]
    hf = random_llama(transformers, "gqa-tied", vocab_size=vocab)
    hf.save_pretrained(tmp_path / "llama")
    out_dir = tmp_path / "out"
    train.main([f"--init_from={tmp_path / 'llama'}", "--max_iters=0", f"--data_dir={char_data_dir}", "--device=cpu",
                f"--out_dir={out_dir}", "--block_size=32", "--batch_size=2", "--eval_iters=1", "--threads=1"])
    ckpt = load_checkpoint(out_dir / "ckpt.pt")
    assert ckpt["model_args"]["n_kv_head"] == 2 and ckpt["model_args"]["mlp"] == "swiglu"
    assert max_logit_diff(hf, model_from_checkpoint(ckpt), vocab, T=32) <= TOL


@pytest.mark.parametrize("change, named", [
    (dict(rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 8192}), "rope_scaling of type 'llama3'"),
    (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}), "rope_scaling of type 'yarn'"),
    (dict(sliding_window=4096), "sliding_window=4096"),
    (dict(head_dim=16), "head_dim=16"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(attention_bias=True, mlp_bias=False), "attention_bias=True with mlp_bias=False"),
    (dict(model_type="mistral"), "model_type='mistral'"),
])
def test_what_our_model_cannot_represent_is_refused_in_one_line(tmp_path, capsys, change, named):
    config = {**dict(model_type="llama", vocab_size=11, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=4, num_key_value_heads=2, rope_theta=1e4), **change}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").write_text(make_tokenizer_json())
    line = main_error_line(capsys, sample, [f"--init_from={tmp_path}", "--device=cpu"])
    assert line.startswith("error: ") and named in line


def test_missing_weights_and_tokenizer_are_one_line(transformers, tmp_path, capsys):
    random_llama(transformers, "gqa-tied").config.save_pretrained(tmp_path)
    assert "has no tokenizer.json" in main_error_line(capsys, sample, [f"--init_from={tmp_path}", "--device=cpu"])
    (tmp_path / "tokenizer.json").write_text(make_tokenizer_json())
    assert "has no model.safetensors" in main_error_line(capsys, sample, [f"--init_from={tmp_path}", "--device=cpu"])


def test_hf_tokenizer_round_trips_through_its_meta():
    tok = HFTokenizer(make_tokenizer_json(), eot=1)
    again = load_tokenizer(json.loads(json.dumps(tok.meta())))  # as a checkpoint or meta.json carries it
    text = "hear me speak, Citizen é"
    assert again.encode(text) == tok.encode(text) and again.decode(again.encode(text)) == text
    assert (again.vocab_size, again.bos, again.eot) == (VOCAB, 0, 1)


def sentencepiece_tokenizer_json():
    """A Llama 2-style tokenizer.json: "\u2581" for a space, a byte's token (<0xC3>) for what the vocabulary lacks."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in ["\u2581", "h", "e", "a", "r", "m", "\u2581h", "\u2581he"]:
        vocab[piece] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("\u2581", "h"), ("\u2581h", "e")], byte_fallback=True,
                               unk_token="<unk>"))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok.to_str()


@pytest.mark.parametrize("kind", ["byte-level", "sentencepiece"])
def test_hf_token_bytes_join_to_the_text(kind):
    """sample.py streams a token's bytes (token_bytes): a character split over two tokens (ü as <0xC3> <0xBC>)
    joins back, and special tokens are no text. SentencePiece's leading "\u2581" stays a space."""
    tok = HFTokenizer(make_tokenizer_json() if kind == "byte-level" else sentencepiece_tokenizer_json())
    text = "hear me \u00fc"
    ids = tok.encode(text)
    lead = " " if kind == "sentencepiece" else ""
    assert b"".join(tok.token_bytes(i) for i in ids) == (lead + text).encode()
    assert tok.token_bytes(1) == b"" and tok.decode(ids) == text
    if kind == "sentencepiece":
        assert [tok.token_bytes(i) for i in ids[-2:]] == [b"\xc3", b"\xbc"]


def interleaved_rotary(x, cos, sin):
    """RoPE as RoFormer and Meta's Llama (and llama.cpp's `llama`) pair channels: (x[2i], x[2i+1])."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def test_interleaved_rows_give_the_same_scores_under_interleaved_rope():
    """gguf_export.interleave_rope_rows (llama.cpp's permute) turns our half-split pairing into neighbours:
    the attention scores are unchanged, so llama.cpp computes what we do."""
    from gptkit.gguf_export import interleave_rope_rows

    torch.manual_seed(0)
    n_head, hs, C, T = 2, 8, 16, 5
    wq, wk, x = torch.randn(n_head * hs, C), torch.randn(n_head * hs, C), torch.randn(T, C)
    cos, sin = rotary_cos_sin(torch.arange(T), hs, base=500000.0)

    def scores(wq, wk, rope):
        q, k = (x @ wq.t()).view(T, n_head, hs).transpose(0, 1), (x @ wk.t()).view(T, n_head, hs).transpose(0, 1)
        return rope(q, cos, sin) @ rope(k, cos, sin).transpose(-2, -1)  # (n_head, T, T)

    ours = scores(wq, wk, apply_rotary)
    theirs = scores(interleave_rope_rows(wq, n_head), interleave_rope_rows(wk, n_head), interleaved_rotary)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, scores(wq, wk, interleaved_rotary), atol=1e-2)  # unpermuted: wrong


def test_gguf_llama_file_holds_interleaved_q_and_k(tmp_path):
    gguf = pytest.importorskip("gguf")
    from gptkit.gguf_export import export_gguf, interleave_rope_rows

    torch.manual_seed(0)
    config = GPTConfig(block_size=32, vocab_size=11, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, bias=False,
                       pos_encoding="rope", rope_theta=500000.0, norm="rmsnorm", norm_eps=1e-6, mlp="swiglu",
                       mlp_hidden=64, tie_weights=False)
    model = GPT(config)
    meta = {"tokenizer": "char", "vocab_size": 11, "chars": "abcdefghijk"}
    export_gguf(model, meta, tmp_path / "m.gguf", "f32")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    fields = {f.name: f.contents() for f in reader.fields.values()}
    assert fields["general.architecture"] == "llama"
    assert (fields["llama.attention.head_count"], fields["llama.attention.head_count_kv"]) == (4, 2)
    assert fields["llama.feed_forward_length"] == 64 and fields["llama.rope.dimension_count"] == 8
    assert fields["llama.rope.freq_base"] == pytest.approx(500000.0)
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    tensors = {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}
    attn = model.transformer.h[1].attn
    q, k, v = attn.c_attn.weight.detach().split(attn.widths)
    assert torch.equal(tensors["blk.1.attn_q.weight"], interleave_rope_rows(q, 4))
    assert torch.equal(tensors["blk.1.attn_k.weight"], interleave_rope_rows(k, 2))
    assert torch.equal(tensors["blk.1.attn_v.weight"], v)
    assert torch.equal(tensors["blk.1.ffn_gate.weight"], model.transformer.h[1].mlp.c_fc.weight.detach())
    assert torch.equal(tensors["blk.1.ffn_up.weight"], model.transformer.h[1].mlp.c_fc2.weight.detach())
    assert set(tensors) >= {"token_embd.weight", "output.weight", "output_norm.weight", "blk.0.ffn_down.weight"}


def test_export_cli_names_the_architecture(transformers, tmp_path, capsys):
    config = GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_kv_head=1, n_embd=16, bias=False,
                       pos_encoding="rope", norm="rmsnorm", mlp="swiglu", tie_weights=False)
    save_checkpoint(tmp_path / "out" / "ckpt.pt", GPT(config),
                    meta={"tokenizer": "char", "vocab_size": 11, "chars": "abcdefghijk"})
    export.main([f"--out_dir={tmp_path / 'out'}", "--to=hf", str(tmp_path / "hf")])
    assert "as a Hugging Face Llama" in capsys.readouterr().out
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    # rope with LayerNorm is neither: both architectures' objections in one line
    save_checkpoint(tmp_path / "out2" / "ckpt.pt", GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2,
                                                                 n_embd=16, pos_encoding="rope")),
                    meta={"tokenizer": "char", "vocab_size": 11, "chars": "abcdefghijk"})
    line = main_error_line(capsys, export, [f"--out_dir={tmp_path / 'out2'}", "--to=hf", str(tmp_path / "hf2")])
    assert "nor as Llama, which has no norm='layernorm'" in line and not (tmp_path / "hf2").exists()


def test_bench_kv_heads_shows_the_cache_shrinking_by_n_head_over_n_kv_head(capsys, one_thread):
    import bench

    bench.main(["kv_heads", "--n_layer=1", "--n_head=4", "--n_embd=32", "--block_size=16", "--new_tokens=4",
                "--kv_heads=4,2,1", "--threads=1"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    # 2 (k and v) x 1 layer x n_kv_head x 8 (head size) x 4 bytes
    assert [(int(r[0]), r[1].strip(), r[2].strip()) for r in rows] == [(4, "256", "1.0x"), (2, "128", "2.0x"),
                                                                      (1, "64", "4.0x")]
