"""Errors users cause, and the one way every command reports them: one line on stderr, exit status 2.

A mistake in the input (a missing store, a bad TOML file, an unknown ``--set`` key, a corrupt parquet) is not a bug:
it deserves a sentence that names the file and what to do, not a traceback. Library code raises
:class:`UserError` (or a subclass) with that sentence; every entry point runs its ``main`` through
:func:`run_command`, which prints it and exits 2. ``--debug`` on the command line or ``GCNN_SPIN_DEBUG=1`` in the
environment shows the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """An error the user can fix; its message says what is wrong, naming the file, row or flag."""


def _input_error_types() -> tuple[type[BaseException], ...]:
    """Errors that, escaping a command, mean a bad or missing input rather than a bug in the suite."""
    import json
    import tomllib

    types: list[type[BaseException]] = [UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                        tomllib.TOMLDecodeError, json.JSONDecodeError]
    return tuple(types)


def describe(err: BaseException) -> str:
    """The one line printed for ``err``: the message of a :class:`UserError`, else type and message."""
    text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError)) and err.filename and \
            str(err.filename) not in text:
        text += f": {err.filename}"
    return "error: " + " ".join(text.split())


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("GCNN_SPIN_DEBUG", "") not in ("", "0")


def run_command(main: Callable[..., int | None], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main`` and exit with its status; user errors become one stderr line and exit 2.

    ``--debug`` is taken out of ``argv`` (default ``sys.argv[1:]``) before ``main`` sees it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        code = main(argv)
    except _input_error_types() as err:
        if debug:
            traceback.print_exc()
        print(describe(err), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(code or 0)
