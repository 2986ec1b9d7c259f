"""Fuzzing: generated inputs thrown at every part that reads user input (the hypothesis library).

The property, for every input: success, or one `error: ...` line (a UserError) and exit code 2;
never another exception (a traceback), never code executed (the payloads below would create
MARKER), and never a file in out_dir or data/ changed by a failed run.

In process, many examples each (milliseconds apiece): config files (random `key = value` lines,
odd literals, unicode, huge numbers, code that must be refused), --key=value arguments for every
script, prompts, meta.json, nanoGPT's meta.pkl, and damaged checkpoints (truncated, bit-flipped,
wrong types inside, malicious) read for sampling and for resuming. End to end, a few examples
each: train.py, sample.py and prepare.py run as a user runs them (forked from a server that
imported the modules: conftest.forked) in a copy of a small world, checked by exit code, stderr
and a snapshot of every file.

CI runs the "ci" profile: a fixed number of examples, derandomized (the same inputs every run).
The long run (25 times as many examples, about 40,000, new ones each run; --hypothesis-seed=N repeats one):

    FUZZ_PROFILE=long python3 -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics
"""

import contextlib
import io
import json
import os
import pickle
import shutil
import tempfile
import typing
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import snapshot
from export import ExportConfig
from gptkit.checkpoint import load_trained
from gptkit.config import field_types, parse_args
from gptkit.data import TokenData
from gptkit.errors import PATH_ERRORS, UserError, error_line
from gptkit.nanogpt import read_meta_pkl
from gptkit.tokenizer import CharTokenizer, GPT2Tokenizer, prompt_ids, read_prompt
from model import GPTConfig
import prepare
from prepare import PrepareConfig
from sample import SampleConfig
import train
from train import TrainConfig

settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("FUZZ_PROFILE", "ci")
settings.load_profile(PROFILE)
SCALE = {"ci": 1, "long": 25}[PROFILE]


def examples(n):
    """n examples in CI, SCALE times as many in the long run."""
    return settings(max_examples=n * SCALE)


MARKER = Path(tempfile.gettempdir()) / f"fuzz-payload-ran-{os.getpid()}"  # what every payload would create
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--device=cpu",
        "--threads=1", "--eval_iters=2"]


class Payload:
    """Unpickling this runs a command: the classic malicious pickle."""

    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


@pytest.fixture(scope="module", autouse=True)
def no_payload_ran():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a fuzzed input executed code"


def outcome(line=None):
    """Count what became of an input (--hypothesis-show-statistics): accepted, or refused and why (the
    error's first words, without the paths and values that vary)."""
    if line is None:
        event("accepted")
    else:
        words = [w for w in line.removeprefix("error: ").split()[:8] if w.strip("`,;:().").isascii()
                 and w.strip("`,;:().").isalpha() and w.islower()]
        event("refused: " + " ".join(words[:4]))


def assert_user_error(error):
    """A UserError as run_main prints it: one line (even when it quotes what the user typed), not empty."""
    line = error_line(error)
    assert len(line.splitlines()) == 1 and line.startswith("error: ") and line[7:].strip(), repr(line)
    assert not MARKER.exists(), "a fuzzed input executed code"
    outcome(line)


def accepts_or_refuses(function, *args):
    """function(*args), which must succeed or raise a UserError (one line), or an OSError that run_main
    prints as one (a path the file system refuses): the result, or None."""
    try:
        result = function(*args)
    except UserError as e:
        assert_user_error(e)
        return None
    except OSError as e:
        if e.errno not in PATH_ERRORS:
            raise
        outcome(f"error: {e.strerror.lower()}")
        return None
    finally:
        assert not MARKER.exists(), "a fuzzed input executed code"
    outcome()
    return result


# ----------------------------------------------------------------------------------------------
# strategies: what a careful (or careless, or hostile) user types

KEYS = sorted({*GPTConfig.__dataclass_fields__, *TrainConfig.__dataclass_fields__, *SampleConfig.__dataclass_fields__,
               *PrepareConfig.__dataclass_fields__})
unicode_text = st.text(st.characters(codec=None, exclude_categories=[]), max_size=30)  # surrogates too
long_names = st.sampled_from(["a" * 256, "é" * 200, "a/" * 300, "x" * 5000])  # past what a file system allows
keys = st.sampled_from(KEYS) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True) | unicode_text
huge = st.sampled_from([2**31, 2**63, 2**64 + 1, 10**100, 10**308, 10**309, 10**1000, 10**4000])
numbers = (st.integers() | huge | st.integers(-3, 3).map(lambda e: 10**e if e >= 0 else -10 ** -e)
           | st.floats(allow_nan=False))
literal = st.one_of(
    numbers.map(repr), unicode_text.map(repr), st.binary(max_size=8).map(repr),
    st.sampled_from(["True", "False", "None", "...", "1j", "1e400", "-1e400", "0x7fffffff", "0o17", "1_000",
                     "'learned'", "'rope'", "'resume'", "'scratch'", "'gpt2'", "'cpu'", "'cuda'", "'muon'"]),
)
payload = str(MARKER)
CODE = [  # expressions and statements that would run code: every one must be refused, unexecuted
    f"__import__('os').system('touch {payload}')", f"open('{payload}', 'w')", f"exec(\"open('{payload}', 'w')\")",
    f"eval(\"open('{payload}', 'w')\")", f"[open('{payload}', 'w') for _ in [1]]",
    f"(lambda: open('{payload}', 'w'))()", f"f\"{{open('{payload}', 'w')}}\"", "().__class__.__base__.__subclasses__()",
    f"(x := open('{payload}', 'w'))", f"open('{payload}', 'w') if 1 else 0", "[1][0]", "a.b", "{1: 2}", "{1}",
    f"__builtins__['open']('{payload}', 'w')", f"getattr(__import__('os'), 'system')('touch {payload}')",
    "1 < 2", "1 and 2", "not 1", "~1", "1 << 2", "1 @ 2", "*a", "yield 1", "await x",
]
STATEMENTS = [
    f"import os; os.system('touch {payload}')", f"def f():\n    open('{payload}', 'w')\nf()",
    f"class C:\n    open('{payload}', 'w')", f"with open('{payload}', 'w'):\n    pass",
    f"for i in [1]:\n    open('{payload}', 'w')", f"assert open('{payload}', 'w')", "del x", "global x",
    f"raise SystemExit(open('{payload}', 'w'))", f"@open('{payload}', 'w')\ndef f():\n    pass",
    f"if open('{payload}', 'w'):\n    x = 1", "x: int = 1", "x = y = 1", "x, y = 1, 2", "x += 1", "x[0] = 1",
    "from os import system as n_layer", "'''a docstring'''", "# a comment", "", "    x = 1", "\tx = 1",
    "x = 1 \\\n  + 2", "x = (1 +\n  2)", "lambda: 0", "print('hello')", "x = 1; y = 2",
]


@st.composite
def expressions(draw, names, depth=0):
    """A config value: a literal, an earlier name, arithmetic on them, or code."""
    kind = draw(st.integers(0, 9))
    if kind <= 3 or depth >= 3:
        return draw(literal)
    if kind == 4 and names:
        return draw(st.sampled_from(names))
    if kind == 5:
        return draw(st.sampled_from(CODE))
    if kind == 6:
        items = draw(st.lists(expressions(names, depth + 1), max_size=3))
        return draw(st.sampled_from(["[{}]", "({},)"])).format(", ".join(items))
    if kind == 7:
        return f"{draw(st.sampled_from(['-', '+', 'not ']))}{draw(expressions(names, depth + 1))}"
    op = draw(st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]))
    return f"({draw(expressions(names, depth + 1))} {op} {draw(expressions(names, depth + 1))})"


@st.composite
def config_files(draw):
    """The bytes of a config file: `key = value` lines, odd statements, raw text, or raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    lines, names = [], []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 11))
        if kind <= 3:
            key = draw(keys)
            lines.append(f"{key} = {draw(expressions(names))}")
            names.append(key)
        elif kind <= 5:
            key = draw(st.sampled_from(sorted(FIELD_TYPES)))
            lines.append(f"{key} = {draw(typed_values(key))!r}")
        elif kind <= 7:
            lines.append(draw(st.sampled_from(STATEMENTS)))
        elif kind <= 9:
            lines.append(draw(unicode_text))
        elif draw(st.booleans()):  # a long chain: deep recursion for a naive evaluator
            lines.append(f"{draw(st.sampled_from(KEYS))} = " + " + ".join(["1"] * draw(st.integers(100, 5000))))
        else:  # a value that doubles in size on every line: memory and time for a naive evaluator
            key, op = draw(st.sampled_from(KEYS)), draw(st.sampled_from(["*", "+", "**"]))
            lines.append(f"{key} = {draw(st.sampled_from(['9 ** 999', repr('x' * 1000), '[0] * 1000', '2']))}")
            lines += [f"{key} = {key} {op} {key if op != '**' else 2}"] * draw(st.integers(10, 40))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines).encode("utf-8", "surrogatepass")


FIELD_TYPES = field_types([GPTConfig, TrainConfig, SampleConfig, PrepareConfig, ExportConfig])
WORDS = ["", "out", "new", "new/deeper", "bad", "resume", "scratch", "gpt2", "shakespeare_char", "cpu", "auto",
         "best", "latest", "nope", "char", "text", "a" * 256, "é" * 200, "a/" * 300]


def typed_values(key):
    """Values of the setting's own type, boundaries included: what gets past the type check to the checks after."""
    typ = FIELD_TYPES[key][1]
    if typing.get_origin(typ) is typing.Literal:
        return st.sampled_from(typing.get_args(typ))
    if typing.get_origin(typ) is list:
        return st.lists(st.sampled_from(WORDS), max_size=2)
    return {bool: st.booleans(), int: st.integers(-2, 64) | huge,
            float: st.floats(-1, 2) | st.sampled_from([0.0, 1e-6, 1e30, float("inf"), float("nan")]),
            }.get(typ, st.sampled_from(WORDS))


well_typed = st.sampled_from(sorted(FIELD_TYPES)).flatmap(
    lambda k: typed_values(k).map(lambda v: f"--{k}={v!r}" if not isinstance(v, str) else f"--{k}={v}"))
values = literal | unicode_text | long_names | st.sampled_from(CODE)
overrides = st.one_of(
    well_typed, well_typed,
    st.builds(lambda k, v: f"--{k}={v}", keys, values),
    st.sampled_from(["--", "-", "--=", "-x", "---n_layer=2", "--n_layer", "--=1", "-n_layer=2", "--n_layer==2"]),
    unicode_text.filter(lambda a: a not in ("-h", "--help")),
)
argvs = st.lists(overrides, max_size=6).filter(lambda argv: not {"-h", "--help"} & set(argv))


# ----------------------------------------------------------------------------------------------
# in process: settings


@examples(300)
@given(config_files(), argvs)
def test_config_files_and_overrides_are_read_or_refused_and_never_run(content, argv):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.py"
        path.write_bytes(content)
        accepts_or_refuses(parse_args, [GPTConfig, TrainConfig], [str(path), *argv], True)


@examples(300)
@given(st.sampled_from([
    dict(classes=[GPTConfig, TrainConfig], config_file=True),  # train.py
    dict(classes=[SampleConfig]),  # sample.py
    dict(classes=[PrepareConfig], positional="dataset"),  # prepare.py
    dict(classes=[ExportConfig], positional="dest"),  # export.py
]), argvs)
def test_every_scripts_arguments_are_read_or_refused(script, argv):
    accepts_or_refuses(lambda: parse_args(script["classes"], argv, config_file=script.get("config_file", False),
                                          positional=script.get("positional")))


# ----------------------------------------------------------------------------------------------
# the world: a prepared dataset and a checkpoint trained by train.py


@pytest.fixture(scope="module")
def world(tmp_path_factory, shakespeare_text_session, forked):
    root = tmp_path_factory.mktemp("fuzz_world")
    prepare.prepare_text(shakespeare_text_session[:20_000], root / "data" / "shakespeare_char", "char", "test")
    result = forked("train.py", *TINY, "--max_iters=0", "--out_dir=out", cwd=root)
    assert result.returncode == 0, result.stderr
    (root / "bad").mkdir()
    return root


@pytest.fixture(scope="module")
def char_tokenizer(world):
    return CharTokenizer(json.loads((world / "data" / "shakespeare_char" / "meta.json").read_text())["chars"])


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    try:
        return GPT2Tokenizer()
    except UserError as e:
        pytest.skip(f"GPT-2 BPE unavailable offline: {e}")


# ----------------------------------------------------------------------------------------------
# in process: prompts, meta.json, meta.pkl


@examples(300)
@given(prompt=unicode_text | st.builds(lambda s: "FILE:" + s, unicode_text | long_names),
       file_bytes=st.none() | st.binary(max_size=50))
def test_prompts_encode_within_the_vocabulary_or_are_refused(char_tokenizer, gpt2_tokenizer, prompt, file_bytes):
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        if file_bytes is not None:  # FILE:<name> names a file that exists
            prompt = "FILE:prompt.txt"
            Path("prompt.txt").write_bytes(file_bytes)
        text = accepts_or_refuses(read_prompt, prompt)
    if text is None:
        return
    for tokenizer in (char_tokenizer, gpt2_tokenizer):
        ids = accepts_or_refuses(prompt_ids, tokenizer, text)
        if ids is not None:
            assert ids and all(0 <= i < tokenizer.vocab_size for i in ids)
            if tokenizer is char_tokenizer or not any("\ud800" <= c <= "\udfff" for c in text):
                assert tokenizer.decode(ids) == (text or "<|endoftext|>")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | huge | st.floats() | unicode_text,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
                           max_leaves=10)
META_KEYS = ["tokenizer", "vocab_size", "chars", "train_tokens", "val_tokens", "train_max_id", "val_max_id", "shards",
             "source"]


@st.composite
def meta_jsons(draw, meta):
    """meta.json's bytes: the real one with keys changed or removed, any JSON, or any bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=100))
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    edited = dict(meta)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(META_KEYS) | unicode_text)
        if draw(st.booleans()):
            edited.pop(key, None)
        else:
            edited[key] = draw(json_values | st.sampled_from([meta["chars"][::-1], meta["chars"] + "x", 0, 1, 65, 2**16,
                                                             2**16 + 1, {"train": ["train.bin"], "val": ["val.bin"]},
                                                             {"train": ["../meta.json"], "val": []}]))
    return json.dumps(edited).encode()


@examples(200)
@given(data=st.data())
def test_meta_json_is_trusted_only_when_it_describes_the_data(world, data):
    folder = world / "data" / "shakespeare_char"
    content = data.draw(meta_jsons(json.loads((folder / "meta.json").read_text())))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "shakespeare_char"
        shutil.copytree(folder, copy)
        (copy / "meta.json").write_bytes(content)
        tokens = accepts_or_refuses(TokenData, copy, 32)
        if tokens is None:
            return
        for split in ("train", "val"):  # what training will see: ids inside the vocabulary
            x, y = tokens.get_batch(split, 64, torch.Generator().manual_seed(0))
            assert 0 <= int(x.min()) and int(max(x.max(), y.max())) < tokens.meta["vocab_size"]


def plain_pickles(protocol):
    plain = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | unicode_text | st.binary(max_size=8),
                         lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                         | st.dictionaries(st.integers() | unicode_text, inner, max_size=4), max_leaves=12)
    return plain.map(lambda value: pickle.dumps(value, protocol=protocol))


@st.composite
def meta_pkls(draw):
    """meta.pkl's bytes: nanoGPT's own, edited, damaged, any plain data, a payload, or any bytes."""
    chars = draw(st.text(min_size=1, max_size=10))
    stoi, itos = {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))
    meta = {"vocab_size": len(chars), "itos": itos, "stoi": stoi}
    protocol = draw(st.integers(0, pickle.HIGHEST_PROTOCOL))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return draw(plain_pickles(protocol))
    if kind == 2:
        meta[draw(st.sampled_from(list(meta)))] = draw(st.integers() | st.none() | unicode_text
                                                        | st.lists(unicode_text, max_size=3) | st.just(Payload()))
    good = pickle.dumps(meta, protocol=protocol)
    if kind == 3:
        return good[:draw(st.integers(0, len(good)))]
    if kind == 4:
        at = draw(st.integers(0, len(good) - 1))
        return good[:at] + bytes([good[at] ^ (1 << draw(st.integers(0, 7)))]) + good[at + 1:]
    return pickle.dumps(meta, protocol=protocol)


@examples(300)
@given(meta_pkls())
def test_meta_pkl_is_read_as_plain_data_or_refused(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meta.pkl"
        path.write_bytes(content)
        meta = accepts_or_refuses(read_meta_pkl, path)
    if meta is not None:
        assert CharTokenizer(meta["chars"]).vocab_size == meta["vocab_size"] >= 1


# ----------------------------------------------------------------------------------------------
# in process: damaged checkpoints, for sampling and for resuming

tensors = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
                    st.lists(st.integers(0, 4), max_size=3),
                    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.uint8, torch.bool]))
inside_values = (json_values | tensors | st.just(Payload())
                 | st.builds(lambda n: {f"x{i}": torch.zeros(2) for i in range(n)}, st.integers(0, 3)))


@st.composite
def damaged_checkpoints(draw, good):
    """A checkpoint's bytes: cut short, bits flipped, bytes overwritten or appended, or (loaded, changed at
    some place inside, saved again) wrong types and malicious objects inside."""
    kind = draw(st.integers(0, 6))
    if kind == 5:  # whole, or with values of the right types changed: what a resumed run must cope with
        ckpt = torch.load(io.BytesIO(good), weights_only=True)
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.sampled_from(["iter_num", "best_val_loss", "dropout", "train_config", "source"]))
            if key == "iter_num":
                ckpt[key] = draw(st.integers(0, 5) | huge)
            elif key == "best_val_loss":
                ckpt[key] = draw(st.floats() | st.just(torch.tensor(draw(st.floats()))))
            elif key == "dropout":
                ckpt["model_args"][key] = draw(st.floats(0, 1.5))
            elif key == "train_config":
                setting = draw(st.sampled_from(sorted(TrainConfig.__dataclass_fields__)))
                ckpt[key][setting] = draw(typed_values(setting) | json_values)
            else:
                ckpt["meta"][key] = draw(unicode_text)
        out = io.BytesIO()
        torch.save(ckpt, out)
        return out.getvalue()
    if kind == 0:
        return good[:draw(st.integers(0, len(good) - 1))]
    if kind == 1:
        damaged = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            damaged[draw(st.integers(0, len(good) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(damaged)
    if kind == 6:
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.binary(min_size=1, max_size=64)) + good[at + 64 * draw(st.integers(0, 1)):]
    ckpt = torch.load(io.BytesIO(good), weights_only=True)
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([None, "model_args", "model", "meta", "optimizer", "rng", "train_config"]))
        target = ckpt if section is None or not isinstance(ckpt.get(section), dict) else ckpt[section]
        key = draw(st.sampled_from(sorted(target, key=str)) | unicode_text) if target else draw(unicode_text)
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(inside_values)
    out = io.BytesIO()
    torch.save(ckpt, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def good_checkpoint(world):
    return (world / "out" / "ckpt.pt").read_bytes()


@examples(150)
@given(data=st.data())
def test_a_damaged_checkpoint_samples_or_is_refused(good_checkpoint, char_tokenizer, data):
    content = data.draw(damaged_checkpoints(good_checkpoint))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pt"
        path.write_bytes(content)
        trained = accepts_or_refuses(load_trained, tmp, str(path))
        if trained is None:
            return
        # what sample.py does next: encode a prompt, generate
        ids = accepts_or_refuses(prompt_ids, trained.tokenizer, "ROMEO:")
        if ids is not None:
            out = trained.model.generate(torch.tensor([ids]), 3, temperature=0.0)
            assert out.shape == (1, len(ids) + 3)


@examples(25)
@given(data=st.data())
def test_a_damaged_checkpoint_resumes_or_is_refused_and_nothing_changes(world, good_checkpoint, data):
    content = data.draw(damaged_checkpoints(good_checkpoint))
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp) / "out"
        shutil.copytree(world / "out", out_dir)
        (out_dir / "ckpt.pt").write_bytes(content)
        before = snapshot(out_dir)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                train.main([*TINY, f"--data_dir={world / 'data'}", f"--out_dir={out_dir}", "--init_from=resume",
                            "--max_iters=1", "--eval_interval=1"])
                code = 0
            except SystemExit as e:
                code = e.code
        assert not MARKER.exists(), "a fuzzed checkpoint executed code"
        assert code in (0, 2), stderr.getvalue()
        if code == 2:
            lines = stderr.getvalue().strip().splitlines()
            assert lines[-1].startswith("error: ") and sum(x.startswith("error:") for x in lines) == 1
            assert "Traceback" not in stderr.getvalue()
            assert snapshot(out_dir) == before
        outcome(lines[-1] if code == 2 else None)


# ----------------------------------------------------------------------------------------------
# end to end: the scripts as a user runs them, in a copy of the world


def run_in_copy(forked, world, script, args, setup=None):
    """Run the script in a fresh copy of the world; check the property; returns the CompletedProcess."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp) / "world"
        shutil.copytree(world, cwd)
        if setup:
            setup(cwd)
        before = snapshot(cwd)
        result = forked(script, *args, cwd=cwd)
        assert not MARKER.exists(), "a fuzzed input executed code"
        assert result.returncode in (0, 2), result.stderr[-3000:]
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        if result.returncode == 2:
            lines = result.stderr.rstrip("\n").splitlines()
            assert lines[-1].startswith("error: ") and sum(x.startswith("error:") for x in lines) == 1, result.stderr
            assert snapshot(cwd) == before, "a failed run changed a file"
        outcome(lines[-1] if result.returncode == 2 else None)
        return result


# an argument from a shell cannot hold NUL; and no path out of the world's copy (the runs write where they are told)
argv_text = (unicode_text | long_names).map(lambda s: s.replace("\0", "")).filter(
    lambda s: not s.startswith(("/", "~")) and ".." not in s)
E2E_KEYS = ["learning_rate", "min_lr", "warmup_iters", "dropout", "pos_encoding", "attn_score", "mask", "norm",
            "activation", "bias", "residual", "tie_weights", "qk_norm", "optimizer", "weight_decay", "beta1",
            "beta2", "grad_clip", "decay_lr", "eval_first", "eval_full_val", "always_save_checkpoint",
            "stop_at_val_loss", "seed", "init_from", "overwrite", "eval_only", "dataset", "out_dir", "dtype",
            "compile", "trace_shapes", "gradient_accumulation_steps", "lr_decay_iters", "log_interval"]
e2e_overrides = st.one_of(
    st.sampled_from(E2E_KEYS).flatmap(
        lambda k: typed_values(k).map(lambda v: f"--{k}={v!r}" if not isinstance(v, str) else f"--{k}={v}")),
    st.builds(lambda k, v: f"--{k}={v}", st.sampled_from(E2E_KEYS) | keys.filter(lambda k: "dir" not in k),
              literal | argv_text | st.sampled_from(WORDS)),
)


@examples(8)
@given(config=st.none() | st.none() | config_files(), argv=st.lists(e2e_overrides, max_size=4))
def test_train_py_end_to_end(forked, world, config, argv):
    config = config.replace(b"\0", b"") if config is not None else None

    def setup(cwd):
        if config is not None:
            (cwd / "bad" / "config.py").write_bytes(config)

    head = ["bad/config.py"] if config is not None else []
    # the fuzzed settings first, then the ones that keep a run to a second (the last value wins)
    bounded = [*TINY, "--max_iters=2", "--eval_interval=1", "--gradient_accumulation_steps=1", "--compile=False"]
    run_in_copy(forked, world, "train.py", [*head, "--out_dir=new", *argv, *bounded], setup)


@examples(8)
@given(start=argv_text | st.builds(lambda s: "FILE:" + s, argv_text), data=st.data(),
       ckpt=st.sampled_from(["best", "latest", "damaged", "bad", "out/log.jsonl", "nope.pt"]))
def test_sample_py_end_to_end(forked, world, good_checkpoint, start, data, ckpt):
    damaged = data.draw(damaged_checkpoints(good_checkpoint)) if ckpt == "damaged" else None

    def setup(cwd):
        if damaged is not None:
            (cwd / "bad" / "damaged.pt").write_bytes(damaged)

    path = "bad/damaged.pt" if ckpt == "damaged" else ckpt
    result = run_in_copy(forked, world, "sample.py", [f"--start={start}", f"--ckpt={path}", "--out_dir=out",
                                                       "--max_new_tokens=3", "--num_samples=1", "--device=cpu"], setup)
    if result.returncode == 0:
        assert result.stdout


@examples(8)
@given(text=st.binary(max_size=300) | unicode_text.map(lambda s: (s * 20).encode("utf-8", "surrogatepass")),
       name=st.sampled_from(["shakespeare_char", "mine", "", ".", "..", "a/b"]) | argv_text,
       tokenizer=st.sampled_from(["char", "gpt2", "", "bpe"]))
def test_prepare_py_end_to_end(forked, world, text, name, tokenizer):
    def setup(cwd):
        (cwd / "bad" / "input.txt").write_bytes(text)

    result = run_in_copy(forked, world, "prepare.py", ["text", "--input=bad/input.txt", f"--name={name}",
                                                        f"--tokenizer={tokenizer}"], setup)
    if result.returncode == 0:
        assert "prepared" in result.stdout


def test_the_payloads_are_real():
    """The marker would appear if a payload ran: unpickled the unsafe way, it does."""
    pickle.loads(pickle.dumps(Payload()))
    assert MARKER.exists()
    MARKER.unlink()
    eval(CODE[1])  # noqa: S307 (the control: what must never happen to a config file)
    assert MARKER.exists()
    MARKER.unlink()
