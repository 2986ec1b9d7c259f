"""Every bad user input is one `error:` line with the fix, exit code 2, no traceback, no change on disk.

One table of cases across train.py, sample.py and prepare.py. Each case runs as a user would run
it (a fresh interpreter) in its own copy of a small world: prepared datasets under data/, a
trained checkpoint under out/, and bad files under bad/. After the run every file and folder of
that copy must be exactly as before (sha256 per file), and no malicious payload may have run.

A fresh interpreter spends seconds importing torch, so most cases run in a process forked from a
server that imported the modules once and ran nothing (a fresh interpreter in all but the import
time: the script runs as __main__, exit code and stderr are the process's own). A few cases, one
per script, run in a really fresh interpreter too.
"""

import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, snapshot
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--device=cpu",
        "--threads=1", "--eval_iters=2"]
MARKER = "PWNED"  # what the malicious payloads would create in the working directory


class Payload:
    """Unpickling this runs a shell command: the classic malicious pickle."""

    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FRESH = {"config-with-code", "sample-malicious-checkpoint", "prepare-not-utf8"}  # also in a new interpreter


def run(script, *args, cwd):
    """Run a script in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def world(tmp_path_factory, shakespeare_text_session):
    """The template every case copies: datasets, a checkpoint, and bad files of every kind."""
    import prepare

    root = tmp_path_factory.mktemp("world")
    text = shakespeare_text_session[:20_000]
    prepare.prepare_text(text, root / "data" / "shakespeare_char", "char", "test")
    prepare.prepare_text("abcdefgh " * 500, root / "data" / "letters", "char", "test")  # another vocabulary
    prepare.prepare_text("To be, or not to be." * 3, root / "data" / "small", "char", "test")  # 54 train tokens
    shutil.copytree(root / "data" / "small", root / "data" / "broken")
    (root / "data" / "broken" / "meta.json").write_text('{"tokenizer": "char", "vocab_')  # cut short
    for name in ("beyond", "odd"):
        shutil.copytree(root / "data" / "shakespeare_char", root / "data" / name)
    beyond = root / "data" / "beyond" / "train.bin"  # a token id past the 58-character vocabulary
    beyond.write_bytes(beyond.read_bytes()[:200] + (200).to_bytes(2, "little") + beyond.read_bytes()[202:])
    with open(root / "data" / "odd" / "val.bin", "ab") as f:  # half a token at the end
        f.write(b"\0")
    result = run("train.py", *TINY, "--max_iters=0", "--out_dir=out", cwd=root)
    assert result.returncode == 0, result.stderr
    ckpt = (root / "out" / "ckpt.pt").read_bytes()

    bad = root / "bad"
    bad.mkdir()
    (bad / "truncated.pt").write_bytes(ckpt[: len(ckpt) // 2])
    (bad / "empty.pt").write_bytes(b"")
    (bad / "text.pt").write_text("not a checkpoint\n")
    middle = len(ckpt) // 2
    (bad / "flipped.pt").write_bytes(ckpt[:middle] + bytes([ckpt[middle] ^ 1]) + ckpt[middle + 1:])
    (bad / "payload_raw.pt").write_bytes(pickle.dumps(Payload()))
    torch.save({"model": Payload(), "model_args": {}}, bad / "payload_zip.pt")  # looks like a checkpoint
    torch.save(torch.zeros(3), bad / "tensor.pt")
    (bad / "a_file").write_text("not a folder\n")
    (bad / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 10)
    (bad / "empty.txt").write_bytes(b"")
    (bad / "short.txt").write_text("hi\n")
    (bad / "code.py").write_text(f"import os\nos.system('touch {MARKER}')\nbatch_size = 4\n")
    (bad / "call.py").write_text(f"batch_size = __import__('os').system('touch {MARKER}')\n")
    (bad / "syntax.py").write_text("batch_size = = 4\n")
    (bad / "typo.py").write_text("n_layers = 4\n")
    (bad / "latin1.py").write_bytes("out_dir = 'caf\xe9'\n".encode("latin-1"))
    for name, source in (("trunc", bad / "truncated.pt"), ("payload", bad / "payload_zip.pt")):
        (root / f"out_{name}").mkdir()
        shutil.copy(source, root / f"out_{name}" / "ckpt.pt")
    (root / "out_empty").mkdir()
    return root


# (id, script, arguments, a phrase the one error line must contain)
CASES = [
    # train.py: settings
    ("unknown-key", "train.py", ["--n_layers=2"], "unknown setting 'n_layers' (did you mean 'n_layer'?)"),
    ("wrong-type-str", "train.py", ["--batch_size=abc"], "batch_size must be int, got 'abc'"),
    ("wrong-type-float", "train.py", ["--n_layer=2.5"], "n_layer must be int"),
    ("wrong-type-bool", "train.py", ["--compile=yes"], "compile must be bool"),
    ("bad-choice", "train.py", ["--init_from=resme"], "did you mean 'resume'?"),
    ("malformed-override", "train.py", ["--n_layer"], "settings look like --key=value"),
    ("zero-layers", "train.py", [*TINY, "--n_layer=0"], "n_layer must be positive, got 0"),
    ("zero-block-size", "train.py", [*TINY, "--block_size=0"], "block_size must be positive"),
    ("negative-batch", "train.py", [*TINY, "--batch_size=-1"], "batch_size must be positive, got -1"),
    ("negative-iters", "train.py", [*TINY, "--max_iters=-5"], "max_iters must not be negative"),
    ("zero-eval-iters", "train.py", [*TINY, "--eval_iters=0"], "eval_iters must be positive"),
    ("dropout-too-big", "train.py", [*TINY, "--dropout=1.5"], "dropout must be in [0, 1)"),
    ("beta-too-big", "train.py", [*TINY, "--beta2=1.5"], "beta2 must be in [0, 1)"),
    ("negative-lr", "train.py", [*TINY, "--learning_rate=-1e-3"], "learning_rate must be positive"),
    ("model-larger-than-memory", "train.py", [*TINY, "--n_layer=1000000", "--out_dir=new"], "GiB for its weights, "
     "gradients and optimizer state, more than this cpu's"),
    ("heads-dont-divide", "train.py", [*TINY, "--n_embd=30", "--n_head=4"], "n_embd=30 is not divisible by n_head=4"),
    ("no-cuda", "train.py", [*TINY, "--device=cuda"], "CUDA is not available"),
    ("unknown-device", "train.py", [*TINY, "--device=xyz"], "device='xyz' is not one of auto, cpu, cuda, cuda:N, mps"),
    ("meta-device", "train.py", [*TINY, "--device=meta", "--out_dir=new"], "device='meta' is not one of auto"),
    ("sample-unknown-device", "sample.py", ["--out_dir=out", "--device=cuda:x"], "device='cuda:x' is not one of"),
    # train.py: config files
    ("missing-config", "train.py", ["config/nope.py"], "config file 'config/nope.py' not found"),
    ("config-with-code", "train.py", ["bad/code.py"], "`import os` is refused"),
    ("config-call-in-value", "train.py", ["bad/call.py"], "only literals and arithmetic are allowed"),
    ("config-syntax-error", "train.py", ["bad/syntax.py"], "not a valid `key = value` config file"),
    ("config-unknown-key", "train.py", ["bad/typo.py"], "did you mean 'n_layer'?"),
    ("config-not-utf8", "train.py", ["bad/latin1.py"], "not a valid `key = value` config file"),
    # train.py: datasets and out_dir
    ("dataset-not-prepared", "train.py", [*TINY, "--dataset=nope"],
     "create it with: python3 prepare.py text --input=FILE --name=nope"),
    ("block-size-over-dataset", "train.py", [*TINY, "--dataset=small", "--out_dir=new"], "fewer than block_size + 1"),
    ("corrupt-meta-json", "train.py", [*TINY, "--dataset=broken"], "rebuild it with: python3 prepare.py text"),
    ("data-id-beyond-vocab", "train.py", [*TINY, "--dataset=beyond", "--out_dir=new"],
     "train.bin holds token id 200 (token 100) but meta.json's vocabulary has 58 ids"),
    ("data-half-a-token", "train.py", [*TINY, "--dataset=odd", "--out_dir=new"], "not a whole number of 2-byte token ids"),
    ("empty-out-dir", "train.py", [*TINY, "--out_dir="], "out_dir is empty; name the folder"),  # found by fuzzing
    ("path-too-long", "train.py", [*TINY, "--init_from=" + "a" * 300], "error: File name too long: aaaa"),
    ("out-dir-exists", "train.py", [*TINY, "--out_dir=out"], "already holds a checkpoint"),
    ("out-dir-under-a-file", "train.py", [*TINY, "--out_dir=bad/a_file/out"], "cannot create out_dir"),
    # train.py: resuming
    ("resume-no-checkpoint", "train.py", [*TINY, "--init_from=resume", "--out_dir=out_empty"], "no checkpoint at"),
    ("resume-in-a-new-folder", "train.py", [*TINY, "--init_from=resume", "--out_dir=new/deeper"],
     "no checkpoint at new/deeper/ckpt.pt"),  # and the folders it made for the run are gone again
    ("resume-vocab-mismatch", "train.py", [*TINY, "--init_from=resume", "--out_dir=out", "--dataset=letters"],
     "does not match dataset 'letters'"),
    ("resume-truncated", "train.py", [*TINY, "--init_from=resume", "--out_dir=out_trunc"], "damaged or truncated"),
    ("resume-contradicts-checkpoint", "train.py", [*TINY, "--init_from=resume", "--out_dir=out", "--n_layer=3"],
     "n_layer=3 contradicts the checkpoint, whose model has n_layer=2"),
    ("resume-other-optimizer", "train.py", [*TINY, "--init_from=resume", "--out_dir=out", "--optimizer=muon"],
     "resume with --optimizer=adamw"),
    ("resume-malicious", "train.py", [*TINY, "--init_from=resume", "--out_dir=out_payload"], "refused to load"),
    # sample.py
    ("sample-prompt-outside-vocab", "sample.py", ["--out_dir=out", "--start=price: \u20ac", "--device=cpu"],
     "not in the char-level vocabulary: '\u20ac'"),
    ("sample-empty-prompt", "sample.py", ["--out_dir=out", "--start=", "--device=cpu"], "the prompt is empty"),
    ("sample-prompt-file-missing", "sample.py", ["--out_dir=out", "--start=FILE:nope.txt"], "prompt file nope.txt not found"),
    ("sample-prompt-file-not-utf8", "sample.py", ["--out_dir=out", "--start=FILE:bad/latin1.txt"], "is not UTF-8"),
    ("sample-no-checkpoint", "sample.py", ["--out_dir=nowhere"], "no checkpoint in nowhere/ (neither best.pt nor ckpt.pt)"),
    ("sample-truncated", "sample.py", ["--ckpt=bad/truncated.pt"], "damaged or truncated"),
    ("sample-empty-file", "sample.py", ["--ckpt=bad/empty.pt"], "is empty, not a checkpoint"),
    ("sample-text-file", "sample.py", ["--ckpt=bad/text.pt"], "is not a checkpoint: torch.save writes zip archives"),
    ("sample-directory", "sample.py", ["--ckpt=bad"], "bad is a directory, not a checkpoint file"),
    ("sample-bit-flipped", "sample.py", ["--ckpt=bad/flipped.pt"], "is damaged or truncated (a checksum does not match"),
    ("sample-malicious-pickle", "sample.py", ["--ckpt=bad/payload_raw.pt"], "refused to load"),
    ("sample-malicious-checkpoint", "sample.py", ["--ckpt=bad/payload_zip.pt"], "refused to load"),
    ("sample-not-a-checkpoint", "sample.py", ["--ckpt=bad/tensor.pt"], "is not a model checkpoint"),
    ("sample-zero-samples", "sample.py", ["--out_dir=out", "--num_samples=0"], "num_samples must be positive"),
    ("sample-top-p", "sample.py", ["--out_dir=out", "--top_p=0"], "top_p must be in (0, 1]"),
    ("sample-path-too-long", "sample.py", ["--ckpt=" + "a" * 300], "error: File name too long: aaaa"),
    ("sample-unknown-key", "sample.py", ["--temprature=0.5"], "did you mean 'temperature'?"),
    # prepare.py
    ("prepare-not-utf8", "prepare.py", ["text", "--input=bad/latin1.txt", "--name=x"],
     "is not UTF-8 text: byte 0xe9"),
    ("prepare-empty-input", "prepare.py", ["text", "--input=bad/empty.txt", "--name=x"], "is empty"),
    ("prepare-missing-input", "prepare.py", ["text", "--input=nope.txt", "--name=x"], "input file nope.txt not found"),
    ("prepare-unknown-dataset", "prepare.py", ["shakespear"], "did you mean 'shakespeare'"),
    ("prepare-unknown-option", "prepare.py", ["text", "--inptu=x.txt"], "unknown setting 'inptu' (did you mean 'input'?)"),
    ("prepare-too-short", "prepare.py", ["text", "--input=bad/short.txt", "--name=x"], "too short to split"),
]


PARAMS = [pytest.param(case, False, id=case[0]) for case in CASES] + [
    pytest.param(case, True, id=f"{case[0]}-fresh") for case in CASES if case[0] in FRESH]


@pytest.mark.parametrize("case, fresh", PARAMS)
def test_bad_input_is_one_error_line_and_changes_nothing(case, fresh, world, forked, tmp_path):
    name, script, args, phrase = case
    if name == "no-cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    cwd = tmp_path / "world"
    shutil.copytree(world, cwd)
    before = snapshot(cwd)

    result = (run if fresh else forked)(script, *args, cwd=cwd)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.rstrip("\n").splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
    assert phrase in lines[-1]
    assert not (cwd / MARKER).exists(), "a malicious payload ran"
    assert snapshot(cwd) == before
