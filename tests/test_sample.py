"""sample.py end to end on the tiny checkpoint trained by train.py (conftest's tiny_run)."""

import io
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import REPO_ROOT, main_error_line, one_error_line, running
from gptkit.checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint
from gptkit.tokenizer import load_tokenizer
import sample

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "ROMEO:"
NEW = 60


def sample_args(tiny_run, *extra):
    return [f"--out_dir={tiny_run.out_dir}", "--device=cpu", f"--max_new_tokens={NEW}", *extra]


def split_samples(stdout):
    assert stdout.endswith("\n")
    return stdout[:-1].split(sample.SEPARATOR)


def main_error(capsys, argv):
    return main_error_line(capsys, sample, argv)


@pytest.fixture(scope="module")
def seeded(tiny_run, cli):
    """Three runs: seed 1 twice, seed 2 once (3 samples of 60 new characters each)."""
    return {name: cli("sample.py", *sample_args(tiny_run, f"--start={PROMPT}", "--num_samples=3", f"--seed={seed}"))
            for name, seed in (("a", 1), ("b", 1), ("c", 2))}


@pytest.fixture(scope="module")
def vocab(tiny_run):
    return load_checkpoint(tiny_run.out_dir / "best.pt")["meta"]["chars"]


def test_sample_prints_the_requested_samples_after_the_prompt(seeded, vocab):
    result = seeded["a"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(PROMPT)
    samples = split_samples(result.stdout)
    assert len(samples) == 3
    for text in samples:
        assert text.startswith(PROMPT)
        assert len(text) == len(PROMPT) + NEW  # one character per token
        assert set(text) <= set(vocab)
    assert len(set(samples)) == 3  # three different draws
    assert any("tokens/s" in line for line in result.stderr.splitlines())
    assert "tokens/s" not in result.stdout


def test_same_seed_same_text_different_seed_different(seeded):
    assert seeded["b"].returncode == seeded["c"].returncode == 0
    assert seeded["a"].stdout == seeded["b"].stdout
    assert seeded["a"].stdout != seeded["c"].stdout


def test_temperature_zero_is_greedy_and_ignores_the_seed(tiny_run, cli):
    result = cli("sample.py", *sample_args(tiny_run, f"--start={PROMPT}", "--num_samples=2", "--temperature=0", "--seed=2"))
    assert result.returncode == 0, result.stderr
    samples = split_samples(result.stdout)
    assert len(samples) == 2 and samples[0] == samples[1]

    # the same as argmax decoding of the checkpoint, done here in-process
    ckpt = load_checkpoint(tiny_run.out_dir / "best.pt")
    tokenizer = load_tokenizer(ckpt["meta"])
    model = model_from_checkpoint(ckpt).eval()
    idx = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.no_grad():
        for _ in range(NEW):
            logits, _ = model(idx[:, -model.config.block_size:])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert samples[0] == tokenizer.decode(idx[0].tolist())


def test_prompt_from_a_file(tiny_run, tmp_path, cli):
    prompt = "KING RICHARD III:\nNow is the winter"
    path = tmp_path / "prompt.txt"
    path.write_text(prompt, encoding="utf-8")
    result = cli("sample.py", *sample_args(tiny_run, f"--start=FILE:{path}", "--num_samples=1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(prompt)
    assert len(split_samples(result.stdout)) == 1
    assert len(result.stdout) == len(prompt) + NEW + 1


def test_a_character_outside_the_vocabulary_is_named(capsys, tiny_run, vocab):
    unknown = next(c for c in "@#%é你" if c not in vocab)
    line = main_error(capsys, sample_args(tiny_run, f"--start=ROMEO {unknown}"))
    assert repr(unknown) in line


def test_missing_prompt_file_and_empty_prompt(capsys, tiny_run, tmp_path):
    assert "not found" in main_error(capsys, sample_args(tiny_run, f"--start=FILE:{tmp_path / 'nope.txt'}"))
    assert "empty" in main_error(capsys, sample_args(tiny_run, "--start="))


def test_missing_checkpoint_dir_is_a_clear_error(capsys, tmp_path):
    missing = tmp_path / "no_such_run"
    line = main_error(capsys, [f"--out_dir={missing}", "--device=cpu"])
    assert f"no checkpoint in {missing}/ (neither best.pt nor ckpt.pt)" in line  # names what it looked for


def test_a_model_that_saw_the_future_is_flagged_before_its_garbage(tmp_path, capsys):
    from gptkit.checkpoint import save_checkpoint
    from conftest import make_model
    from gptkit.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.from_text("ROMEO: abc\n")
    save_checkpoint(tmp_path / "best.pt", make_model(mask="none", vocab_size=tokenizer.vocab_size), iter_num=0,
                    meta=tokenizer.meta())
    sample.main([f"--out_dir={tmp_path}", "--start=ROMEO:", "--num_samples=1", "--max_new_tokens=5", "--device=cpu"])
    assert "warning: this model was trained with mask=none, so it saw the tokens it had to predict" in \
           capsys.readouterr().err


def test_piping_into_a_reader_that_stops_early_is_no_traceback(tiny_run):
    """`python3 sample.py | head -1`: when the reader goes, the writer stops quietly (exit 141, as a Unix tool)."""
    command = [sys.executable, str(REPO_ROOT / "sample.py"), f"--out_dir={tiny_run.out_dir}", "--num_samples=20",
               "--max_new_tokens=400", "--device=cpu"]
    with running(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as writer:
        writer.stdout.readline()
        writer.stdout.close()  # what head does after its line
        _, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 141 and b"Traceback" not in stderr, stderr.decode()


def test_corrupt_checkpoint_is_a_clear_error(capsys, tiny_run, tmp_path):
    data = (tiny_run.out_dir / "ckpt.pt").read_bytes()
    for name, cut in (("half.pt", len(data) // 2), ("head.pt", 100)):
        broken = tmp_path / name
        broken.write_bytes(data[:cut])
        line = main_error(capsys, sample_args(tiny_run, f"--ckpt={broken}"))
        assert str(broken) in line and "truncated" in line
        assert capsys.readouterr().out == ""


def edited(ckpt, **changes):
    """A copy of a loaded checkpoint dict with top-level entries replaced (None: removed)."""
    out = {**ckpt, **changes}
    return {k: v for k, v in out.items() if v is not None}


def write_not_a_checkpoint(path, kind, good):
    """Files that are not a checkpoint sample.py can use; `good` is a real one (bytes)."""
    ckpt = torch.load(io.BytesIO(good), weights_only=True)
    writers = {
        "directory": lambda: path.mkdir(),
        "text": lambda: path.write_text("ROMEO: a text file\n"),
        "empty": lambda: path.write_bytes(b""),
        "json": lambda: path.write_text('{"model": {}, "model_args": {}}'),
        "zip-of-other": lambda: zipfile.ZipFile(path, "w").close(),
        "bit-flipped": lambda: path.write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 4])
                                                + good[len(good) // 2 + 1:]),
        "weights-not-tensors": lambda: torch.save(edited(ckpt, model={k: 1.5 for k in ckpt["model"]}), path),
        "args-wrong-type": lambda: torch.save(edited(ckpt, model_args={**ckpt["model_args"], "n_layer": "2"}), path),
        "args-beyond-weights": lambda: torch.save(edited(ckpt, model_args={**ckpt["model_args"], "n_layer": 10**9}),
                                                  path),
        "meta-not-a-dict": lambda: torch.save(edited(ckpt, meta=["char"]), path),
        "chars-not-a-string": lambda: torch.save(edited(ckpt, meta={**ckpt["meta"], "chars": [1, 2]}), path),
        "tokenizer-past-model": lambda: torch.save(edited(ckpt, meta={**ckpt["meta"], "chars": ckpt["meta"]["chars"]
                                                                      + "\u00e9\u00e8\u00ea"}), path),
        "iter-not-a-number": lambda: torch.save(edited(ckpt, iter_num="ten"), path),
        "rng-without-states": lambda: torch.save(edited(ckpt, rng={}), path),  # found by tests/test_fuzz.py
    }
    writers[kind]()


NOT_A_CHECKPOINT = [  # (kind, phrase of the one error line)
    ("directory", "is a directory, not a checkpoint file; to read the checkpoints in it, pass --out_dir="),
    ("text", "is not a checkpoint: torch.save writes zip archives, and this file starts with b'ROMEO: a text fi'"),
    ("empty", "is empty, not a checkpoint"),
    ("json", "is not a checkpoint: torch.save writes zip archives"),
    ("zip-of-other", "is a zip archive but not a torch.save checkpoint (it has no data.pkl)"),
    ("bit-flipped", "is damaged or truncated (a checksum does not match"),
    ("weights-not-tensors", "is not a model checkpoint: its 'model' must map names to tensors, found "),
    ("args-wrong-type", "describes an impossible model (n_layer must be int, got '2' (str))"),
    ("args-beyond-weights", "model_args say n_layer=1000000000 but its weights hold 2 layers"),
    ("meta-not-a-dict", "is not a model checkpoint: its 'meta' must be a dict, found a list"),
    ("chars-not-a-string", "char-level metadata's 'chars' must be a string of characters"),
    ("tokenizer-past-model", "does not hold together: the tokenizer has 68 tokens but the model only 65"),
    ("iter-not-a-number", "is not a model checkpoint: its 'iter_num' must be a whole number >= 0, found 'ten'"),
    ("rng-without-states", "is not a model checkpoint: its 'rng' must hold the random states as byte tensors"),
]


@pytest.mark.parametrize("kind, phrase", NOT_A_CHECKPOINT, ids=[k for k, _ in NOT_A_CHECKPOINT])
def test_a_file_that_is_not_a_checkpoint_is_one_line_saying_what_was_expected(capsys, tiny_run, tmp_path, kind,
                                                                              phrase):
    path = tmp_path / f"{kind}.pt"
    write_not_a_checkpoint(path, kind, (tiny_run.out_dir / "ckpt.pt").read_bytes())
    line = main_error(capsys, sample_args(tiny_run, f"--ckpt={path}"))
    assert phrase in line and "Traceback" not in line
    assert capsys.readouterr().out == ""


class RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_malicious(path, marker, kind):
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"model": RunsCode(marker), "model_args": {}}))
    else:  # a torch.save zip archive, the format of a real checkpoint
        torch.save({"model": {"w": torch.zeros(1)}, "model_args": {}, "meta": RunsCode(marker)}, path)


def control(tmp_path, kind):
    """Loaded the unsafe way, the payload does run: the malicious files below are real."""
    marker, path = tmp_path / f"control_marker_{kind}", tmp_path / f"control_{kind}.pt"
    write_malicious(path, marker, kind)
    with open(path, "rb") as f:
        pickle.load(f) if kind == "pickle" else torch.load(f, weights_only=False)
    assert marker.exists()


def check_refusal(line, evil, kind):
    assert "refused" in line and str(evil) in line
    assert "weights_only" not in line  # not torch's advice to retry the unsafe way
    if kind == "torch_zip":
        assert "posix.system" in line  # says what was refused


def test_malicious_checkpoint_is_refused_and_never_runs(tiny_run, tmp_path, cli):
    """End to end: a torch.save archive (the format of a real checkpoint) whose pickle runs a command."""
    control(tmp_path, "torch_zip")
    marker, evil = tmp_path / "marker", tmp_path / "evil.pt"
    write_malicious(evil, marker, "torch_zip")
    result = cli("sample.py", *sample_args(tiny_run, f"--ckpt={evil}"))
    assert result.returncode == 2
    check_refusal(one_error_line(result.stderr), evil, "torch_zip")
    assert result.stdout == ""
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch_zip"])
def test_malicious_checkpoint_is_refused_in_process(capsys, tiny_run, tmp_path, kind):
    control(tmp_path, kind)
    marker, evil = tmp_path / "marker", tmp_path / "evil.pt"
    write_malicious(evil, marker, kind)
    check_refusal(main_error(capsys, sample_args(tiny_run, f"--ckpt={evil}")), evil, kind)
    assert not marker.exists()


def test_checkpoint_path_choices(tiny_run, tmp_path):
    assert checkpoint_path(tiny_run.out_dir) == tiny_run.out_dir / "best.pt"
    assert checkpoint_path(tiny_run.out_dir, "latest") == tiny_run.out_dir / "ckpt.pt"
    assert checkpoint_path(tiny_run.out_dir, str(tmp_path / "x.pt")) == tmp_path / "x.pt"
    only_latest = tmp_path / "nanogpt_style"
    only_latest.mkdir()
    shutil.copy(tiny_run.out_dir / "ckpt.pt", only_latest / "ckpt.pt")
    assert checkpoint_path(only_latest) == only_latest / "ckpt.pt"


def test_an_out_dir_given_without_its_key_gets_the_fix(capsys, tiny_run):
    line = main_error_line(capsys, sample, [str(tiny_run.out_dir)])
    assert line == (f"error: unexpected argument '{tiny_run.out_dir}': settings look like --key=value; "
                    f"did you mean --out_dir={tiny_run.out_dir}?")
