"""Shared fixtures and helpers: the real Tiny Shakespeare (shipped in corpus/), a char-level dataset
prepared from it, one tiny checkpoint trained by train.py, tiny models, and ways to run scripts
(a fresh interpreter, or forked from a server that imported the modules once: `forked`)."""

import contextlib
import hashlib
import importlib
import json
import os
import random
import runpy
import select
import signal
import struct
import subprocess
import sys
import traceback
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shakespeare_text_session():
    """The real Tiny Shakespeare, from the copy the repository ships (checked against its sha256)."""
    import prepare

    return prepare.shakespeare_text()[0]


# ---------------------------------------------------------------------------------------------
# a char-level dataset made from the real text, and one tiny checkpoint trained by train.py

CHAR_DATASET = "shakespeare_char"
# A model small enough to train in a second or two on one CPU thread.
TINY_MODEL_ARGS = ("--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32")
TINY_TRAIN_ARGS = (*TINY_MODEL_ARGS, "--batch_size=8", "--max_iters=30", "--eval_interval=10",
                   "--eval_iters=2", "--learning_rate=1e-2", "--warmup_iters=5", "--device=cpu",
                   "--threads=1", f"--dataset={CHAR_DATASET}")


def run_script(script, *args, timeout=120, env=None):
    """Run one of the repository's scripts as a user would: a fresh interpreter, cwd = repo root.
    env: variables to set on top of this process's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def char_data_dir(tmp_path_factory, shakespeare_text_session):
    """A data_dir holding shakespeare_char/ prepared from the real Tiny Shakespeare by prepare.py."""
    import prepare

    data_dir = tmp_path_factory.mktemp("data")
    prepare.prepare_text(shakespeare_text_session, data_dir / CHAR_DATASET, "char", prepare.SHAKESPEARE_SOURCE)
    return data_dir


@pytest.fixture(scope="session")
def word_data_dir(tmp_path_factory):
    """A data_dir holding chars/: lines of random words from a 13-word vocabulary, char-level."""
    import prepare

    words = "now is the winter of our discontent made glorious summer by this sun york".split()
    rng = random.Random(0)
    text = "\n".join(" ".join(rng.choice(words) for _ in range(9)) for _ in range(400))
    data_dir = tmp_path_factory.mktemp("data")
    prepare.prepare_text(text, data_dir / "chars", "char", "generated")
    return data_dir


@pytest.fixture(scope="session")
def bpe_data_dir(tmp_path_factory):
    """A data_dir holding bpe/: a small GPT-2 BPE dataset, as prepare.py shakespeare writes (skips offline
    without the BPE files)."""
    import prepare
    from gptkit.errors import UserError

    text = "\n".join(f"First Citizen: we are accounted poor citizens, line {i}." for i in range(300))
    data_dir = tmp_path_factory.mktemp("data")
    try:
        prepare.prepare_text(text, data_dir / "bpe", "gpt2", "generated")
    except UserError as e:
        pytest.skip(f"GPT-2 BPE unavailable offline: {e}")
    return data_dir


@pytest.fixture(scope="session")
def transformers():
    """The transformers module, or the test skipped."""
    return pytest.importorskip("transformers", reason="transformers is not installed (optional; CI installs it)")


@pytest.fixture(scope="session")
def tiny_train_args(char_data_dir):
    """train.py arguments for the tiny model on the char dataset (add --out_dir)."""
    return [*TINY_TRAIN_ARGS, f"--data_dir={char_data_dir}"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_train_args):
    """`python3 train.py` run once on the tiny config (30 iters): .out_dir, .result (CompletedProcess).

    Tests must not modify out_dir: copy what they want to change.
    """
    out_dir = tmp_path_factory.mktemp("tiny_run") / "out"
    result = run_script("train.py", *tiny_train_args, f"--out_dir={out_dir}")
    if result.returncode != 0:
        pytest.fail(f"train.py failed on the tiny config:\n{result.stderr[-3000:]}")
    return types.SimpleNamespace(out_dir=out_dir, result=result)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the machine is shared; restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def cli():
    """run_script: cli("train.py", "--key=value", ...) -> CompletedProcess (text, captured)."""
    return run_script


def one_error_line(stderr):
    """A user mistake's stderr: exactly one `error: ...` line and no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


def main_error_line(capsys, module, argv):
    """Run module.main(argv) in-process; it must exit 2 with one `error:` line on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    assert e.value.code == 2
    return one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# processes a test starts: ended whatever the test's outcome


@contextlib.contextmanager
def running(command, **popen_kwargs):
    """subprocess.Popen(command) in its own process group; when the block ends, however it ends (a failed
    assertion, a timeout, Ctrl-C), the group is killed, workers included, and the process reaped. A test
    that starts a process uses this or the `processes` fixture, never a bare Popen."""
    proc = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # SIGKILL ends a stopped (SIGSTOP) process too
        proc.wait(timeout=60)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def processes():
    """start(command, **Popen keywords) -> Popen, each process `running` until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda command, **kwargs: stack.enter_context(running(command, **kwargs))


# ---------------------------------------------------------------------------------------------
# scripts run as a user runs them, fast: forked from a server that imported the modules once


def serve():
    """The fork server: for each JSON request on stdin, fork a child that runs the script as __main__."""
    for name in ("gptkit.checkpoint", "gptkit.data", "gptkit.system", "gptkit.tokenizer", "model", "prepare", "sample",
                 "train"):
        importlib.import_module(name)  # once here, not in every child
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.chdir(request["cwd"])
                for fd, name in ((1, request["stdout"]), (2, request["stderr"])):
                    os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                sys.argv = [request["script"], *request["args"]]
                try:
                    runpy.run_path(request["script"], run_name="__main__")
                    code = 0
                except SystemExit as e:  # what the interpreter does with it
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                    if not isinstance(e.code, (int, type(None))):
                        print(e.code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


@pytest.fixture(scope="module")
def forked():
    """forked(script, *args, cwd) -> CompletedProcess, run in a child of the fork server."""
    # the repository and tests/ importable, as pytest.ini's pythonpath has them for the tests themselves
    pythonpath = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])
    # the children it forks are in its process group: a script still running is ended with it
    with running([sys.executable, "-c", "import conftest; conftest.serve()"], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True,
                 env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}) as server:

        def run_forked(script, *args, cwd):
            out, err = cwd.parent / f"{cwd.name}.stdout", cwd.parent / f"{cwd.name}.stderr"
            request = dict(script=str(REPO_ROOT / script), args=list(map(str, args)), cwd=str(cwd),
                           stdout=str(out), stderr=str(err))
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            if not select.select([server.stdout], [], [], 120)[0]:
                raise TimeoutError(f"{script} {args} still running after 120 s")
            reply = json.loads(server.stdout.readline())
            return subprocess.CompletedProcess([script, *args], reply["returncode"], out.read_text(), err.read_text())

        yield run_forked
        server.stdin.close()
        server.wait(timeout=30)


def snapshot(root):
    """Every folder and file under root, files by content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# ---------------------------------------------------------------------------------------------
# tiny models and random tokens


def tiny_config(**overrides):
    """A GPTConfig small enough for a CPU test: 2 layers, 2 heads, 16 wide, block 16, vocabulary 24."""
    from model import GPTConfig

    return GPTConfig(**{**dict(block_size=16, vocab_size=24, n_layer=2, n_head=2, n_embd=16), **overrides})


def make_model(seed=0, **overrides):
    """A freshly initialised tiny GPT (the same weights for the same seed and settings)."""
    import torch
    from model import GPT

    torch.manual_seed(seed)
    return GPT(tiny_config(**overrides))


def random_tokens(shape, vocab_size=24, seed=0):
    import torch

    return torch.randint(vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk; fails if it is not a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])
