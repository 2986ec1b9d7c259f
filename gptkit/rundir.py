"""The run folder (out_dir) and writing files safely, shared by every script that writes.

write_atomically is how every file that must survive a crash is written (checkpoints, GGUF exports,
log.jsonl rewrites): a temporary file beside the target, fsync'ed and renamed over it, so a crash at
any instant leaves the old file or the new one, never a broken one. A sharded checkpoint, a folder,
is swapped in whole the same way (replace_folder).

train.py checks the run folder before training (claim_out_dir, check_free_space) so a run fails at
its start, not after an hour, and holds it for its whole life (OutDirLock): one writer per folder,
any number of readers.
"""

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from gptkit.errors import UserError


def write_atomically(path, write):
    """write(tmp) fills a temporary file beside `path`, which is then fsync'ed and renamed over it: a crash
    at any instant leaves the old file or the new one, never a broken one. On any failure the temporary
    file is removed and the exception (OSError: disk full, read-only) goes on; `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data on disk before the rename points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # make the rename itself durable


def replace_folder(tmp, folder):
    """Move the folder `tmp` (written and fsync'ed) to `folder`, replacing the one there: the old one is
    moved aside first (a folder cannot be renamed over a full one), then deleted. A crash between the
    two moves leaves the old one aside, whole: remove_partial_writes puts it back."""
    tmp, folder = Path(tmp), Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    fsync_dir(folder.parent)  # make the moves themselves durable
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(folder):
    """Flush a folder's entries to disk: a rename or a new file in it survives a power loss only then."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_partial_writes(folder):
    """Delete the temporary files and folders of writes (checkpoints, log.jsonl) that a crash (SIGKILL, power
    loss) cut short, and put back a sharded checkpoint that a crash left moved aside (replace_folder)."""
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_dir():  # a sharded checkpoint's folder (.ckpt.dcp.tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    for old in Path(folder).glob(".*.dcp.old"):
        current = old.with_name(old.name[1:].removesuffix(".old"))
        if current.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, current)


# ----------------------------------------------------------------------------------------------
# one writer per run folder, checked before training

try:
    import fcntl
except ImportError:  # Windows has no flock: runs there are not protected from a second writer
    fcntl = None


class OutDirLock:
    """out_dir's one writer: an exclusive flock on out_dir/train.lock, which holds the holder's pid and
    command line for the error a second writer gets. The kernel drops a flock when its process dies,
    however it dies, so a killed run leaves no stale lock: its file may stay, unlocked, and the next
    run takes it. Readers (sample.py, visualize.py, export.py, bench.py) never lock.
    Used as `with OutDirLock(out_dir):`; leaving removes the file, and after a failure (or a run that wrote
    nothing: leave_as_found) the folders in `created` (deepest first) that are still empty: such a run changes
    nothing.
    """

    def __init__(self, out_dir, created=()):
        self.path, self.fd, self.created = Path(out_dir) / "train.lock", None, list(created)
        self.leave_as_found = False  # set by a run that wrote nothing: the folders it made go too

    def __enter__(self):
        if fcntl is None:
            return self
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: held by a live process
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "not yet recorded"
                os.close(fd)
                raise UserError(f"{self.path.parent} is in use by a live training run (pid {holder}); wait for it "
                                f"to end or stop it, or choose another --out_dir") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed the file as we opened it: lock the one at the path now
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}: {shlex.join(sys.argv)[:300]}\n".encode("utf-8", "replace"))
            self.fd = fd
        return self

    def __exit__(self, exc_type=None, *exc):
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: whoever opened it meanwhile sees a removed file
            os.close(self.fd)  # the lock goes with the last descriptor
            self.fd = None
        if exc_type is not None or self.leave_as_found:
            for folder in self.created:
                try:
                    folder.rmdir()  # only if empty
                except OSError:
                    break


def claim_out_dir(out_dir, protect_checkpoints):
    """Fail before training, not after: an unwritable out_dir, a live run in it, or (protect_checkpoints)
    checkpoints a new run would replace. Then remove what a crash mid-write left behind.

    Returns the held OutDirLock (`with claim_out_dir(...):`), taken before anything is removed: the
    temporary file of a live run's checkpoint write is not a crash's leftover.
    """
    out = Path(out_dir)
    created = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create out_dir {out} ({e.strerror}); choose another --out_dir") from None
    try:  # really write, not os.access: root passes permission checks but not a read-only disk
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"out_dir {out} is not writable ({e.strerror}); choose another --out_dir") from None
    lock = OutDirLock(out, created).__enter__()
    if protect_checkpoints and ((out / "ckpt.pt").exists() or (out / "ckpt.dcp").exists()):
        lock.__exit__()
        raise UserError(f"{out} already holds a checkpoint; continue it with --init_from=resume, "
                        f"start over with --overwrite=True, or pick another --out_dir")
    remove_partial_writes(out)
    return lock


def check_free_space(out_dir, model):
    """Fail before training when out_dir's disk cannot hold the checkpoints it will write.

    A checkpoint holds the weights and AdamW's two moments (about 3x the parameters). Each write
    needs room for the new file beside the old one until the rename; best.pt and ckpt.pt both.
    """
    size = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    missing = sum(not (Path(out_dir) / name).exists() for name in ("best.pt", "ckpt.pt"))
    need, free = size * max(1, missing), shutil.disk_usage(out_dir).free
    if free < need:
        raise UserError(f"out_dir {out_dir} has {free / 2**20:,.1f} MiB free but checkpoints need about "
                        f"{need / 2**20:,.1f} MiB; free some disk space or choose another --out_dir")
