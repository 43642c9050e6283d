"""Is this output done, and made from what? The one answer that every stage, ``status``, ``--dry-run`` and
``collect`` ask.

An artifact is an output path (file or folder), the identity of what it must be made from (the ``config_hash``
its completion marker must carry: a hash of settings *and* of the content of its inputs) and an integrity check.
Its :class:`Verdict` is ``done`` or says why not:

* ``missing``: no completion marker (never made, or its task died before the end);
* ``stale``: the marker was written for other inputs or settings (made from X, now Y);
* ``damaged``: the marker vouches for bytes that are no longer there: a missing output, an unreadable marker, a
  file output whose size differs from the one :func:`gcnn_spin.io.write_marker` recorded, or the output's own
  check (a store shard's size); with ``deep``, also any output whose SHA-256 differs from the recorded one.

Two depths, named by :func:`checked`: the default reads markers and file sizes only (cheap: ``status`` and
``--dry-run`` at survey scale touch no output's bytes), ``deep`` hashes every output (``--deep``; a task about
to be skipped always does).

Identity is content end to end (docs/architecture.md): a store's covers its shard digests and rows (labels
included), a run's its config and the identities of the stores it trained on, a prediction part's the run and
the shards it read, collect's cache its inputs. Edit a label upstream and everything downstream turns stale.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import DIGEST_KEY, SIZE_KEY, config_hash, file_digest, marker_path, read_marker

STATES = ("done", "missing", "stale", "damaged")

#: An output's own integrity check beyond its marker: why it is damaged, or ``None``; ``deep`` may read it all.
Check = Callable[[bool], str | None]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``state`` (one of :data:`STATES`) and, unless done, why."""

    state: str
    why: str = ""

    @property
    def done(self) -> bool:
        return self.state == "done"

    def __str__(self) -> str:
        return self.state if self.done else f"{self.state}: {self.why}"


def short(identity: object) -> str:
    """An identity as people read it in a message (12 characters of a hash)."""
    return str(identity)[:12] if identity else "nothing recorded"


def checked(deep: bool) -> str:
    """What a verdict of this depth looked at, for the line under a plan or a status report."""
    if deep:
        return "checked: every marker's identity and every output's SHA-256 (--deep)"
    return "checked: every marker's identity and every output's size (--deep also compares every SHA-256)"


def output_problem(output: str | os.PathLike, marker: dict, deep: bool = False) -> str | None:
    """Why the output a marker vouches for is not what it recorded (``None``: it is): a file output's size is
    compared with the recorded one; with ``deep`` (or when no size was recorded) its SHA-256 instead."""
    output = Path(output)
    recorded = marker.get(DIGEST_KEY)
    if recorded is None:  # a folder or a virtual output (a store shard): their own check judges them
        return None
    if not output.is_file():
        return f"its output {output} is missing"
    recorded_size = marker.get(SIZE_KEY)
    if not deep and recorded_size is not None:
        size = output.stat().st_size
        return None if size == recorded_size else (f"{output.name} changed after it was written ({recorded_size} "
                                                   f"bytes, now {size})")
    found = file_digest(output)
    if found != recorded:
        return f"{output.name} changed after it was written (SHA-256 {short(recorded)}, now {short(found)})"
    return None


def verdict(output: str | os.PathLike, identity: str | None = None, check: Check | None = None,
            deep: bool = False) -> Verdict:
    """The verdict on ``output``: its marker, then the identity that marker records, then its bytes.

    ``identity``: the ``config_hash`` the marker must carry (``None`` accepts any marker). ``check``: the
    output's own integrity check, called with ``deep``. ``deep``: hash every byte (see :func:`checked`).
    """
    try:
        marker = read_marker(output)
    except InputError as err:
        return Verdict("damaged", str(err))
    if marker is None:
        return Verdict("missing", f"no completion marker {marker_path(output).name}")
    made_from = marker.get("config_hash")
    if identity is not None and made_from != identity:
        return Verdict("stale", f"made from {short(made_from)}, now {short(identity)} (its inputs or settings "
                                "changed since)")
    problem = output_problem(output, marker, deep) or (check(deep) if check is not None else None)
    return Verdict("damaged", problem) if problem else Verdict("done")


@dataclasses.dataclass(frozen=True)
class Artifact:
    """An output, the identity it must be made from and its own integrity check (see :func:`verdict`)."""

    output: Path
    identity: str | None = None
    check: Check | None = None

    def verdict(self, deep: bool = False) -> Verdict:
        return verdict(self.output, self.identity, self.check, deep)

    @property
    def done(self) -> bool:
        return self.verdict().done


def is_done(output: str | os.PathLike, config: Mapping[str, Any] | None = None) -> bool:
    """``output`` is done for ``config`` (any config when ``None``): the :func:`verdict` of the pipeline stages,
    deep (a handful of tables, each hashed, so a label edited after the fact is seen whatever its size)."""
    return verdict(output, None if config is None else config_hash(config), deep=True).done
