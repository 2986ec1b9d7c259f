"""Errors a user can fix, and how every script reports them: one line, no traceback, exit code 2."""

import errno
import functools
import os
import sys


class UserError(Exception):
    """A mistake the user can fix: printed as one line, without a traceback."""


def run_main(main):
    """Run a script's main(): a UserError (or a path the file system refuses: too long, not permitted)
    becomes `error: ...` on stderr and exit code 2, Ctrl-C exit 130, and output piped into a reader
    that stops early (`sample.py | head`) an exit without a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(error_line(e), file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C: no traceback; 130 is the shell's code for death by SIGINT
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            # the reader has gone: send what Python still flushes at exit to /dev/null, and exit as
            # a process killed by SIGPIPE would (128 + 13), like any other Unix tool in a pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as e:  # a path the user gave that the file system refuses, wherever it is first used
            if e.errno not in PATH_ERRORS:
                raise
            name = str(e.filename)
            shown = name if len(name) <= 120 else name[:117] + "..."
            print(error_line(UserError(f"{e.strerror}: {shown}; check the paths in your settings")), file=sys.stderr)
            sys.exit(2)

    return wrapper


# a name longer than the file system allows, no permission, a file where a folder should be, a symlink loop
PATH_ERRORS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ELOOP}


def error_line(error):
    """What run_main prints for a UserError: one line, even when the message quotes what the user typed
    or a file held (a newline, a carriage return, any control character: shown escaped, as in repr)."""
    return "error: " + "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(error))


def first_line(error, last=False):
    """One line of an exception's message for an error of ours (the last line with last=True, where a
    library puts the cause at the end), or the exception's type when the message is empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0])[:200] if lines else type(error).__name__
