"""Errors users cause, and the one way every command reports them: one line on stderr, exit status 2.

A mistake in the input (a missing store, a bad TOML file, an unknown ``--set`` key, a corrupt parquet) is not a bug:
it deserves a sentence that names the file and what to do, not a traceback. Library code raises
:class:`UserError` (or a subclass) with that sentence; every entry point runs its ``main`` through
:func:`run_command`, which prints it and exits 2. ``--debug`` on the command line or ``GCNN_SPIN_DEBUG=1`` in the
environment shows the traceback as well.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "GCNN_SPIN_DEBUG"


class UserError(Exception):
    """An error the user can fix; its message says what is wrong, naming the file, row or flag."""


class InputError(UserError):
    """An input file that exists but cannot be read as what it should be (corrupt, truncated, wrong format)."""


class DiskFullError(UserError):
    """A write failed for want of space (``ENOSPC``) or quota (``EDQUOT``): what was being written and what is left."""


DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(err: OSError, target: str | os.PathLike | None = None) -> DiskFullError:
    """The one-line error for a full disk while writing ``target`` (default: the file the error names)."""
    target = Path(target or err.filename or os.getcwd())
    folder = next((p for p in (target, *target.parents) if p.exists()), Path(os.getcwd()))
    try:
        left = f"{shutil.disk_usage(folder).free / 1e9:.2f} GB left on the file system of {folder}"
    except OSError:
        left = f"free space of {folder} unknown"
    reason = "quota exceeded" if err.errno != errno.ENOSPC else "disk full"
    return DiskFullError(f"{reason} while writing {target} ({left}); free some space or write elsewhere, then rerun "
                         "(finished outputs are kept, the unfinished one is redone)")


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "file", fix: str = "") -> Iterator[None]:
    """Turn a parser's error inside the block into an :class:`InputError` naming ``path`` (and ``fix``).

    For a cache entry, say which file to delete: ``reading(entry, "cache entry", f"delete {entry} and rerun")``.
    """
    try:
        yield
    except (UserError, FileNotFoundError):
        raise
    except (ValueError, OSError, EOFError, RuntimeError, KeyError) as err:  # parquet, CSV, JSON, TOML, codecs
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise InputError(f"{path}: cannot read this {what} ({reason})" + (f"; {fix}" if fix else "")) from err


#: Errors that, escaping a command, mean a bad or missing input rather than a bug in the suite. A parser's
#: error (a corrupt parquet, CSV or JSON) is not one of them: it does not name its file, so readers of user
#: inputs wrap it with :func:`reading`, which does.
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def describe(err: BaseException) -> str:
    """The one line printed for ``err``: the message of a :class:`UserError`, else type and message."""
    text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text += f": {err.filename}"
    return "error: " + " ".join(text.split())


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def run_command(main: Callable[..., int | None], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main`` and exit with its status; user errors become one stderr line and exit 2.

    ``--debug`` is taken out of ``argv`` (default ``sys.argv[1:]``) before ``main`` sees it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    if debug:  # seen by the tasks a command starts (their own run_command shows their tracebacks)
        os.environ[DEBUG_VARIABLE] = "1"
    try:
        try:
            code = main(argv)
        except OSError as err:
            if err.errno in DISK_FULL and not isinstance(err, UserError):
                raise disk_full(err) from err
            raise
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc()
        print(describe(err), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(code or 0)


def commands() -> list[str]:
    """``python -m ...`` of every module of the package that is a command (has a ``__main__`` guard)."""
    root = Path(__file__).resolve().parent
    return sorted(
        "python -m " + ".".join(("gcnn_spin", *path.relative_to(root).with_suffix("").parts))
        for path in root.rglob("*.py")
        if path.name != "__main__.py" and 'if __name__ == "__main__":\n    from gcnn_spin.errors import run_command'
        in path.read_text()
    )


def not_a_command(module: str) -> NoReturn:
    """What ``python -m`` on a package or library module does: say so, list the commands, exit 2."""
    print(f"error: {module} is not a command; the commands are {', '.join(commands())} and the scripts in "
          "data_prep/ and analysis/ (each has --help)", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)
