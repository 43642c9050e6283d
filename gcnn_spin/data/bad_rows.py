"""Bad input rows: the raise-or-report logic every catalogue reader shares.

:class:`RowProblems` collects invalid rows of one table by reason, then either raises a :class:`BadRowsError`
naming them (``on_bad="raise"``) or drops them and lists every one with its reasons in a CSV report
(``on_bad="skip"``). :class:`EmptyInputError` is an input file with no rows at all.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from gcnn_spin.errors import UserError
from gcnn_spin.io import atomic_path

log = logging.getLogger(__name__)

ON_BAD = ("raise", "skip")


class BadRowsError(UserError, ValueError):
    """Input rows that cannot be used; the message names the file, the reasons and the first offending ids."""

    def __init__(self, message: str, ids: list | None = None):
        super().__init__(message)
        self.ids = list(ids or [])


class EmptyInputError(UserError, ValueError):
    """An input table with no (usable) rows: an empty file, a header alone, or every row skipped as bad."""


def require_rows(n_rows: int, source: str | os.PathLike, what: str = "rows") -> None:
    """Raise :class:`EmptyInputError` naming ``source`` when ``n_rows`` is 0: no stage runs on nothing."""
    if n_rows == 0:
        raise EmptyInputError(f"{source}: no {what}; nothing to build a dataset from")


def check_on_bad(on_bad: str) -> None:
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")


def missing_columns(present, required, source: str | os.PathLike) -> None:
    """Raise naming every required column that ``present`` lacks (and listing the ones it has)."""
    missing = [c for c in required if c not in set(present)]
    if missing:
        raise BadRowsError(f"{source}: missing column(s) {missing}; found {list(present)}")


class RowProblems:
    """Collects invalid rows of one input table by reason, then raises or drops them with a report.

    ``ids`` are what the messages and the report name (e.g. the raw OBJID strings); ``lines`` are the rows'
    line numbers in the input file (the CSV header is line 1), or row numbers for a parquet file.
    """

    def __init__(self, source: str | os.PathLike, ids: pd.Series, id_name: str, lines: np.ndarray | None = None,
                 line_name: str = "line"):
        self.source, self.id_name, self.line_name = str(source), id_name, line_name
        self.ids = ids.reset_index(drop=True)
        self.lines = np.arange(len(ids)) if lines is None else np.asarray(lines)
        self._reasons: list[tuple[str, np.ndarray]] = []

    def add(self, mask, reason: str) -> None:
        """Flag the rows where ``mask`` is True with ``reason``."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self._reasons.append((reason, mask))

    @property
    def bad(self) -> np.ndarray:
        out = np.zeros(len(self.ids), dtype=bool)
        for _, mask in self._reasons:
            out |= mask
        return out

    def report(self) -> pd.DataFrame:
        """One row per bad input row: ``line`` (or ``line_name``), the id, ``reason`` (all its reasons, '; '-joined)."""
        bad = self.bad
        reasons = pd.Series([""] * len(self.ids), dtype=object)
        for reason, mask in self._reasons:
            reasons[mask] = [f"{r}; {reason}" if r else reason for r in reasons[mask]]
        return pd.DataFrame({self.line_name: self.lines[bad], self.id_name: self.ids[bad].to_numpy(),
                             "reason": reasons[bad].to_numpy()})

    def message(self, max_ids: int = 10) -> str:
        parts = []
        for reason, mask in self._reasons:
            ids = [str(i) if str(i) else "<empty>" for i in self.ids[mask]]
            shown = ", ".join(ids[:max_ids]) + (", ..." if len(ids) > max_ids else "")
            parts.append(f"  {reason}: {len(ids)} row(s), {self.id_name} {shown}")
        return (f"{self.source}: {int(self.bad.sum())} bad row(s) of {len(self.ids)}\n" + "\n".join(parts)
                + "\n(use on_bad='skip' / --on-bad skip to drop them with a report)")

    def resolve(self, on_bad: str, report_path: str | os.PathLike | None = None) -> np.ndarray:
        """Raise on bad rows (``"raise"``), or return the keep-mask and write the report (``"skip"``).

        With ``"skip"`` the report is written even when nothing was skipped, so its absence never means "clean".
        """
        check_on_bad(on_bad)
        bad = self.bad
        if bad.any() and on_bad == "raise":
            ids = self.ids[bad].astype(str).tolist()
            raise BadRowsError(self.message(), ids)
        if on_bad == "skip":
            if report_path is not None:
                with atomic_path(report_path) as tmp:
                    self.report().to_csv(tmp, index=False)
            if bad.any():
                log.warning("%s: skipped %d bad row(s), listed in %s", self.source, int(bad.sum()),
                            report_path or "(no report path given)")
        return ~bad
