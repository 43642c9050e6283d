"""Is this output done, and made from what? The one answer that every stage, ``status``, ``--dry-run`` and
``collect`` ask.

An artifact is an output path (file or folder), the identity of what it must be made from (the ``config_hash``
its completion marker must carry: a hash of settings *and* of the content of its inputs) and an integrity check.
Its :class:`Verdict` is ``done`` or says why not:

* ``missing``: no completion marker (never made, or its task died before the end);
* ``stale``: the marker was written for other inputs or settings (made from X, now Y);
* ``damaged``: the marker vouches for bytes that are no longer there: a file output whose SHA-256 differs from
  the one :func:`gcnn_spin.io.write_marker` recorded, a missing output, an unreadable marker, or the output's
  own check (a store shard's size; its SHA-256 when ``deep``).

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
from .io import DIGEST_KEY, config_hash, file_digest, marker_path, read_marker

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


def output_problem(output: str | os.PathLike, marker: dict) -> str | None:
    """Why the output a marker vouches for is not what it recorded (``None``: it is): a file output is
    compared with the SHA-256 the marker recorded."""
    output = Path(output)
    recorded = marker.get(DIGEST_KEY)
    if recorded is None:  # a folder or a virtual output (a store shard): their own check judges them
        return None
    if not output.is_file():
        return f"its output {output} is missing"
    found = file_digest(output)
    if found != recorded:
        return f"{output.name} changed after it was written (SHA-256 {short(recorded)}, now {short(found)})"
    return None


def verdict(output: str | os.PathLike, identity: str | None = None, check: Check | None = None,
            deep: bool = False) -> Verdict:
    """The verdict on ``output``: its marker, then the identity that marker records, then its bytes.

    ``identity``: the ``config_hash`` the marker must carry (``None`` accepts any marker). ``check``: the
    output's own integrity check, called with ``deep``.
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
    problem = output_problem(output, marker) or (check(deep) if check is not None else None)
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
    """``output`` is done for ``config`` (any config when ``None``): the :func:`verdict` of the pipeline stages."""
    return verdict(output, None if config is None else config_hash(config)).done
