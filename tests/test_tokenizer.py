"""The trained BPE (prepare.py --tokenizer=bpe): datasets that decode back to their file byte for byte,
determinism, special tokens, streaming, and round trips of any text (hypothesis)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prepare
from conftest import main_error_line
from gptkit.data import load_meta
from gptkit.errors import UserError
from gptkit.tokenizer import BPE_FILE, EOT_NAME, GPT2Tokenizer, load_tokenizer, train_bpe

# German with umlauts and ß, emoji, Chinese, bytes that are not UTF-8, Windows line endings
MIXED = ("Grüße aus Köln, die Straße ist naß.\r\nEmoji \U0001F600\U0001F44D und 中文字符.\r\n".encode()
         + b"raw \xff\xfe\xc3 bytes\n")


@pytest.fixture(scope="module")
def excerpt(shakespeare_text_session):
    return shakespeare_text_session[:200_000]


@pytest.fixture(scope="module")
def bpe(excerpt):
    return train_bpe([excerpt], 512, (EOT_NAME, "<|user|>"))


def read_dataset(folder):
    meta = load_meta(folder)
    ids = [i for split in ("train", "val") for i in np.fromfile(folder / f"{split}.bin", dtype=np.uint16).tolist()]
    return meta, load_tokenizer(meta), ids


def test_prepare_bpe_decodes_back_to_the_file_byte_for_byte_and_is_deterministic(tmp_path, excerpt):
    data = excerpt.encode() + MIXED * 50
    (tmp_path / "my.txt").write_bytes(data)
    for name in ("a", "b"):
        prepare.main(["text", "--input=" + str(tmp_path / "my.txt"), f"--name={name}", "--tokenizer=bpe",
                      "--vocab_size=600", f"--data_dir={tmp_path}"])
    meta, tokenizer, ids = read_dataset(tmp_path / "a")
    assert meta["vocab_size"] == tokenizer.vocab_size == 600 and meta["special_tokens"] == {EOT_NAME: 599}
    assert tokenizer.decode_bytes(ids) == data
    assert meta["train_bytes"] + meta["val_bytes"] == len(data)  # experiment.py's bits per byte divide by these
    assert len(ids) < len(data) / 2  # merges learned: fewer tokens than bytes
    for file in (BPE_FILE, "train.bin", "val.bin"):  # the same text and settings: the same files
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_streaming_in_small_blocks_gives_the_ids_of_the_whole_file(tmp_path, monkeypatch, excerpt, bpe):
    text = excerpt[:30_000] + "\n\n  \n" + MIXED.decode("utf-8", "surrogateescape") * 20
    path = tmp_path / "my.txt"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    monkeypatch.setattr(prepare, "READ_BLOCK", 97)  # blocks that cut characters and lines anywhere
    pieces = list(prepare.text_pieces(path))
    assert len(pieces) > 100 and "".join(p for p, _ in pieces) == text
    assert [i for p, _ in pieces for i in bpe.encode(p)] == bpe.encode(text)


def test_doc_separator_becomes_one_endoftext_and_special_tokens_are_single_ids_only_when_asked(tmp_path, bpe):
    docs = ["first document\nwith two lines\n", "second <|user|> one\n", "", "last"] * 30
    path = tmp_path / "docs.txt"
    path.write_text("\n===\n".join(docs), encoding="utf-8")
    prepare.main(["text", f"--input={path}", "--name=d", "--tokenizer=bpe", "--vocab_size=300",
                  "--special_tokens=<|user|>", "--doc_separator=\n===\n", f"--data_dir={tmp_path}"])
    meta, tokenizer, ids = read_dataset(tmp_path / "d")
    assert meta["doc_separator"] == "\n===\n"
    assert ids.count(tokenizer.eot) == len(docs) - 1  # one per separator
    assert tokenizer.special_tokens["<|user|>"] not in ids  # in the text it is text
    assert tokenizer.decode(ids) == EOT_NAME.join(docs)
    for tok in (bpe, GPT2Tokenizer()):
        text = f"a{EOT_NAME}b<|user|>"
        plain = tok.encode(text)
        assert tok.eot not in plain and tok.decode(plain) == text
        special = tok.encode(text, allowed_special={EOT_NAME})
        assert special.count(tok.eot) == 1 and tok.decode(special) == text
    assert bpe.encode("<|user|>", allowed_special="all") == [bpe.special_tokens["<|user|>"]]


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(text=st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)
       | st.sampled_from(["Grüße, Straße, Öl, Ärger", "\r\n\r\n", "\U0001F600\U0001F44D", "中文字符", " " * 5]))
def test_any_text_round_trips(bpe, text):
    for tok in (bpe, GPT2Tokenizer()):
        assert tok.decode(tok.encode(text)) == text
        assert tok.decode(tok.encode(text, allowed_special="all")) == text


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(data=st.binary(max_size=200))
def test_any_bytes_round_trip(bpe, data):
    text = data.decode("utf-8", "surrogateescape")  # how prepare.py reads a file
    for tok in (bpe, GPT2Tokenizer()):
        assert tok.decode_bytes(tok.encode(text)) == data


def test_checkpoints_carry_the_tokens_and_a_changed_tokenizer_file_is_refused(tmp_path, excerpt):
    (tmp_path / "my.txt").write_text(excerpt[:50_000], encoding="utf-8")
    prepare.main(["text", f"--input={tmp_path / 'my.txt'}", "--name=m", "--tokenizer=bpe", "--vocab_size=300",
                  f"--data_dir={tmp_path}"])
    folder = tmp_path / "m"
    assert "ranks" not in json.loads((folder / "meta.json").read_text())  # they live in the tokenizer file
    meta = load_meta(folder)  # train.py copies this into its checkpoints: the tokens come along
    assert load_tokenizer(json.loads(json.dumps(meta))).encode("the king") == load_tokenizer(meta).encode("the king")
    lines = (folder / BPE_FILE).read_text().splitlines()
    (folder / BPE_FILE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UserError, match="not the tokenizer this dataset was encoded with"):
        load_meta(folder)
    with pytest.raises(UserError, match="damaged"):
        load_tokenizer({**meta, "vocab_size": 5})


@pytest.mark.parametrize("argv, message", [
    (["--tokenizer=bpe", "--vocab_size=100"], "vocab_size=100 must be from 257"),
    (["--tokenizer=char", "--vocab_size=1000"], "are for --tokenizer=bpe"),
    (["--tokenizer=char", "--doc_separator=x"], "use --tokenizer=bpe or gpt2"),
    (["--tokenizer=bpe", f"--special_tokens={EOT_NAME}"], "distinct, non-empty"),
    (["--tokenizer=bep"], "did you mean 'bpe'"),
])
def test_bad_bpe_settings_are_one_line(capsys, tmp_path, argv, message):
    (tmp_path / "my.txt").write_text("hello\n" * 100)
    line = main_error_line(capsys, prepare, ["text", f"--input={tmp_path / 'my.txt'}", "--name=m",
                                             f"--data_dir={tmp_path}", *argv])
    assert message in line


def test_sample_streams_whole_characters_only(capsys):
    from sample import Printer

    tokenizer, text = GPT2Tokenizer(), "Grüße aus Köln \U0001F600 中文"
    ids = tokenizer.encode(text)
    assert "\ufffd" in "".join(tokenizer.decode([i]) for i in ids)  # tokens that end inside a character
    printer, shown = Printer(tokenizer), []
    for i in ids:
        printer.add(i)
        shown.append(capsys.readouterr().out)
    printer.close()
    assert "".join(shown) + capsys.readouterr().out == text
    assert not any("\ufffd" in piece for piece in shown)


def test_a_token_holding_part_of_a_character_shows_its_bytes():
    from gptkit.tokenizer import token_spans, token_text

    tokenizer = GPT2Tokenizer()
    ids = tokenizer.encode(" \U0001F600")  # GPT-2 cuts the emoji's 4 bytes into two tokens
    assert [token_text(tokenizer, i) for i in ids] == ["<0xF0><0x9F><0x98>", "<0x80>"]
    text, spans = token_spans(tokenizer, ids)
    assert text == " \U0001F600" and spans == [(0, 1), (1, 2)]  # the emoji belongs to the token ending it


def test_visualize_tokens_prints_draws_and_counts_tokens_per_word(tmp_path, capsys, excerpt):
    import visualize
    from conftest import png_size
    from gptkit.tokenizer import SAMPLES, tokens_per_word

    (tmp_path / "my.txt").write_text(excerpt[:50_000], encoding="utf-8")
    prepare.main(["text", f"--input={tmp_path / 'my.txt'}", "--name=m", "--tokenizer=bpe", "--vocab_size=400",
                  f"--data_dir={tmp_path}"])
    capsys.readouterr()
    text = "Der Ofen ist heiß."
    visualize.main(["tokens", f"--text={text}", "--dataset=m", f"--data_dir={tmp_path}", f"--out={tmp_path / 't.png'}"])
    out = capsys.readouterr().out
    gpt2, bpe = GPT2Tokenizer(), load_tokenizer(load_meta(tmp_path / "m"))
    assert f"GPT-2 BPE: {len(gpt2.encode(text))} tokens" in out
    assert f"m (bpe, 400 tokens): {len(bpe.encode(text))} tokens" in out
    assert "[<0xC3>|195] [<0x9F>|159]" in out  # Shakespeare has no ß: the BPE spells it in bytes
    german = tokens_per_word(gpt2, (SAMPLES / "de.txt").read_text(encoding="utf-8"))
    assert f"{german[0]:.2f} / {german[1]:.2f}" in out.splitlines()[-3]  # the GPT-2 row of the table
    assert png_size(tmp_path / "t.png")[0] == 1400


def test_the_exercises_reference_bpe_is_rustbpes_merges_and_tiktokens_ids(shakespeare_text_session):
    """learn.py's bpe reference (pure Python, the rules in exercises/bpe.py) and prepare.py's tokenizer
    (rustbpe trains, tiktoken encodes) agree: the tie-break and the split are the same."""
    from gptkit.exercises.bpe import encode_reference, german, train_reference, vocab_of

    for text in (shakespeare_text_session[:60_000], german(), "aaaa xyxyxy aaa bcd\n" * 3):
        merges = train_reference(text, 256 + 80)
        vocab = vocab_of(merges)
        trained = train_bpe([text], 256 + len(merges) + 1)
        assert [vocab[i] for i in range(256, 256 + len(merges))] == trained.ranks[256:]
        other = shakespeare_text_session[60_000:70_000] + german() + MIXED.decode("utf-8", "replace")
        assert encode_reference(other, merges) == trained.encode(other)


@pytest.fixture(scope="module")
def hf(bpe):
    from gptkit.gpt2_weights import hf_bpe_tokenizer

    return hf_bpe_tokenizer(bpe)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(text=st.text(st.characters(blacklist_categories=["Cs"]), max_size=120)
       | st.sampled_from(["Grüße aus Köln\r\n", "aaaaaaa  bbb\n\n\nccc   ", "\U0001F600 中文 don't 1234567"]))
def test_the_hugging_face_export_tokenizes_like_tiktoken(bpe, hf, text):
    text = text.replace(EOT_NAME, "").replace("<|user|>", "")  # special there, text here (see below)
    assert hf.encode(text).ids == bpe.encode(text)
    assert hf.encode(f"a{EOT_NAME}b").ids == bpe.encode(f"a{EOT_NAME}b", allowed_special="all")


def test_the_hugging_face_export_tokenizes_real_text_like_tiktoken(bpe, hf, shakespeare_text_session):
    from gptkit.exercises.bpe import german

    for text in (shakespeare_text_session[200_000:260_000], german(), MIXED.decode("utf-8", "replace")):
        assert hf.encode(text).ids == bpe.encode(text)
        assert hf.decode(bpe.encode(text)) == text


def prepared_bpe_checkpoint(tmp_path, text, vocab_size=400):
    """A dataset prepared with --tokenizer=bpe and a small untrained model checkpoint carrying its meta."""
    from conftest import make_model
    from gptkit.checkpoint import save_checkpoint

    (tmp_path / "my.txt").write_text(text, encoding="utf-8")
    prepare.main(["text", f"--input={tmp_path / 'my.txt'}", "--name=m", "--tokenizer=bpe",
                  f"--vocab_size={vocab_size}", f"--data_dir={tmp_path}"])
    meta = load_meta(tmp_path / "m")
    model = make_model(vocab_size=vocab_size, block_size=32, n_embd=16, n_layer=1, n_head=2)
    save_checkpoint(tmp_path / "out" / "best.pt", model, iter_num=0, meta=meta)
    return load_tokenizer(meta)


def test_export_hf_writes_a_tokenizer_transformers_loads_to_the_same_ids(transformers, tmp_path, excerpt):
    import export
    from gptkit.exercises.bpe import german

    tokenizer = prepared_bpe_checkpoint(tmp_path, excerpt[:80_000])
    export.main([f"--out_dir={tmp_path / 'out'}", "--to=hf", str(tmp_path / "hf")])
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in (excerpt[100_000:110_000], german(), MIXED.decode("utf-8", "replace")):
        assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.eos_token_id == tokenizer.eot == 399


def test_export_gguf_carries_the_tokens_and_merges(tmp_path, excerpt):
    gguf = pytest.importorskip("gguf")
    import export
    from gptkit.tokenizer import byte_level_vocab

    tokenizer = prepared_bpe_checkpoint(tmp_path, excerpt[:80_000])
    export.main([f"--out_dir={tmp_path / 'out'}", "--to=gguf", "--gguf_type=f32", str(tmp_path / "m.gguf")])
    reader = gguf.GGUFReader(tmp_path / "m.gguf")

    def field(name):
        f = reader.fields[name]
        return [bytes(f.parts[i]).decode() for i in f.data] if len(f.data) > 1 else f.parts[f.data[0]].tolist()

    tokens, merges = byte_level_vocab(tokenizer)
    assert field("tokenizer.ggml.tokens") == tokens and field("tokenizer.ggml.merges") == merges
    assert field("tokenizer.ggml.eos_token_id") == [tokenizer.eot]
    assert bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "gpt-2"


def test_bench_tokenizer_prints_both_trainers_and_the_encoding_ratio(tmp_path, capsys, excerpt):
    import bench

    (tmp_path / "t.txt").write_text(excerpt[:20_000], encoding="utf-8")
    bench.main(["tokenizer", f"--input={tmp_path / 't.txt'}", "--vocab_size=300"])
    out = capsys.readouterr().out
    assert "| rustbpe (prepare.py's)  | 300" in out and "| Hugging Face tokenizers | 300" in out
    assert "| tiktoken GPT-2 (50,257) |" in out and "1.00x" in out


def test_experiment_compares_datasets_in_bits_per_byte():
    import math

    from experiment import bits_per_byte, per_byte_records

    meta = {"train_tokens": 400, "train_bytes": 1000, "val_tokens": 50, "val_bytes": 100}
    assert bits_per_byte(meta, "val") == pytest.approx(0.5 / math.log(2))
    (record,) = per_byte_records([{"iter": 300, "train_loss": 2.0, "val_loss": 3.0}], meta)
    assert record == {"iter": 300, "train_loss": pytest.approx(0.8 / math.log(2)),
                      "val_loss": pytest.approx(1.5 / math.log(2))}
    assert bits_per_byte({"val_tokens": 50}, "val") is None  # prepared before bytes were counted
