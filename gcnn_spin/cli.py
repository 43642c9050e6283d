"""The flags every command spells the same way: ``--dry-run``, ``-q/--quiet``, ``--batch-size``,
``--set SECTION.KEY=VALUE``, ``--config``, ``--task-id`` (default ``$SLURM_ARRAY_TASK_ID``) and ``--debug``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from .errors import DEBUG_FLAG, DEBUG_VARIABLE, UserError

TASK_ID_VARIABLE = "SLURM_ARRAY_TASK_ID"


def env_task_id() -> int | None:
    """``$SLURM_ARRAY_TASK_ID`` as an int, or ``None`` outside an array job; anything else is a :class:`UserError`."""
    value = os.environ.get(TASK_ID_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UserError(f"${TASK_ID_VARIABLE}={value!r} is not an array task number (an integer >= 0); unset it "
                        "or pass --task-id K")
    return int(value)


def at_least(minimum: int, flag: str) -> Callable[[str], int]:
    """``type=`` of a count flag: an integer >= ``minimum``, else a :class:`UserError` naming ``flag`` and the
    value (one line, exit 2, like every other bad input; argparse's own error would print the usage too)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise UserError(f"{flag} {text}: expected an integer >= {minimum}")
        return value

    return parse


def add_dry_run(parser: argparse.ArgumentParser, what: str = "list what would be done; change nothing") -> None:
    parser.add_argument("--dry-run", action="store_true", help=what)


def add_deep(parser: argparse.ArgumentParser) -> None:
    """``--deep``: judge outputs by their SHA-256, not only by markers and sizes (:func:`artifacts.checked`)."""
    parser.add_argument("--deep", action="store_true",
                        help="compare every output's SHA-256 with its marker's (reads them all); by default only "
                             "markers and sizes are read")


def add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bars") -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=what)


def add_debug(parser: argparse.ArgumentParser) -> None:
    """Document ``--debug`` in ``--help``; :func:`gcnn_spin.errors.run_command` takes it out of argv before parsing."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"on an error, print the traceback too (or set {DEBUG_VARIABLE}=1)")


def add_batch_size(parser: argparse.ArgumentParser, default: int, what: str = "images per forward batch") -> None:
    parser.add_argument("--batch-size", type=at_least(1, "--batch-size"), default=default,
                        help=f"{what} (default: {default})")


def add_config(parser: argparse.ArgumentParser, default: str = "experiment") -> None:
    parser.add_argument("--config", default=default,
                        help=f"science config: a shipped name or a TOML path (default: {default})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=3 (repeatable)")


def add_task_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-id", type=at_least(0, "--task-id"), default=env_task_id(),
                        help=f"run only array task K (default: ${TASK_ID_VARIABLE}; with neither, every task "
                             "in turn)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
