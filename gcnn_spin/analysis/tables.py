"""Per-model summaries over seeds (mean ± std) and the CSV + Markdown files every table is written as.

Spread: the standard deviation over seeds with ``ddof`` delta degrees of freedom (``tables.spread_ddof``: 1, the
sample standard deviation, by default; 0 is the study's ``np.std``); it is left empty for a single seed.

Every aggregated cell carries the number of members it really averaged (``{key}_n``): a member whose value is
missing (NaN) is left out of that cell's mean, and the cell then says so (``0.62 ± 0.01 (n=4 of 5)``) and the
table's notes name the seeds without a value. A row's ``n_seeds`` alone never stands for a mean over fewer.

Partial sets are never averaged silently. ``summarise`` takes the members that are complete and, per model,
the members that are not (``incomplete``): by default such a model's row keeps no numbers and says
``partial`` with the missing members named; with ``allow_partial`` the row is computed from the complete
members only and says which ones were left out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..run import model_order
from ..io import atomic_path, write_text_atomic

COMPLETE, PARTIAL, LEFT_OUT = "complete", "partial", "partial, left out"


@dataclasses.dataclass(frozen=True)
class Column:
    """A summarised quantity: ``key`` in the per-run frame, its table header, digits and display scale."""

    key: str
    header: str
    digits: int = 4
    scale: float = 1.0


@dataclasses.dataclass
class Table:
    """A finished table: ``frame`` is written as ``{stem}.csv``, ``markdown`` as ``{stem}.md``."""

    stem: str
    title: str
    caption: str
    frame: pd.DataFrame
    markdown: str

    def write(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / f"{self.stem}.csv", suffix=".csv") as tmp:
            self.frame.to_csv(tmp, index=False)
        write_text_atomic(out / f"{self.stem}.md", f"### {self.title}\n\n{self.caption}\n\n{self.markdown}\n")
        return [out / f"{self.stem}.csv", out / f"{self.stem}.md"]


def mean_std(values: Sequence[float] | np.ndarray, ddof: int = 1) -> tuple[float, float, int]:
    """``(mean, std, n)`` of the finite values, std with ``ddof`` (1: sample std); std is NaN for fewer than two
    values (a spread of one seed is unknown under either ddof)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), (float(x.std(ddof=ddof)) if x.size > 1 else math.nan), int(x.size)


def fmt_n(n: int, n_expected: int) -> str:
    """``" (n=4 of 5)"`` when fewer members were averaged than expected, else ``""``."""
    return f" (n={n} of {n_expected})" if n < n_expected else ""


def mean_std_cell(values: Sequence[float] | np.ndarray, digits: int = 4, scale: float = 1.0,
                  n_expected: int | None = None, ddof: int = 1) -> str:
    """``"0.62 ± 0.01"`` over the finite ``values``, marked ``" (n=4 of 5)"`` when fewer than ``n_expected``
    (default: ``len(values)``) were averaged: some were NaN, or some members gave no value at all."""
    mean, std, n = mean_std(values, ddof)
    return fmt_pm(mean, std, digits, scale) + fmt_n(n, len(values) if n_expected is None else n_expected)


def fmt_pm(mean: float, std: float, digits: int = 4, scale: float = 1.0) -> str:
    """``"0.6216 ± 0.0007"``; ``"—"`` without a mean; the mean alone without a spread."""
    if mean is None or not np.isfinite(mean):
        return "—"
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None and np.isfinite(std) else "")


def summarise(per_run: pd.DataFrame, columns: Sequence[Column], incomplete: Mapping[str, Sequence[str]] | None = None,
              allow_partial: bool = False, labels: Sequence[str] | None = None, ddof: int = 1) -> pd.DataFrame:
    """One row per model: ``n_seeds``, ``seeds``, ``{key}_mean``, ``{key}_std``, ``{key}_n`` (members averaged),
    ``status``, ``missing`` and ``no_value`` (``"{header}: seeds 1, 4"`` for cells averaged over fewer).

    ``per_run`` holds complete members only (columns ``model``, ``seed`` and the keys); ``incomplete`` maps a
    model to descriptions of its incomplete members. ``labels`` restricts and orders the rows (default: every
    model in either, in the study's order). ``ddof``: of the std (see the module doc).
    """
    incomplete = dict(incomplete or {})
    present = set(per_run["model"]) if len(per_run) else set()
    order = list(labels) if labels is not None else model_order(present | set(incomplete))
    rows = []
    for label in order:
        members = per_run[per_run["model"] == label] if len(per_run) else per_run
        missing = list(incomplete.get(label, ()))
        status = COMPLETE if not missing else (LEFT_OUT if allow_partial else PARTIAL)
        row = {"model": label, "n_seeds": len(members) if status != PARTIAL else 0,
               "seeds": ",".join(str(s) for s in sorted(members["seed"])) if len(members) else ""}
        no_value = []
        for col in columns:
            averaged = len(members) and status != PARTIAL
            mean, std, n = mean_std(members[col.key], ddof) if averaged else (math.nan, math.nan, 0)
            row[f"{col.key}_mean"], row[f"{col.key}_std"], row[f"{col.key}_n"] = mean, std, n
            if averaged and n < len(members):
                seeds = members.loc[~np.isfinite(members[col.key].to_numpy(dtype=np.float64)), "seed"]
                no_value.append(f"{col.header}: seeds {', '.join(str(s) for s in sorted(seeds))}")
        row["status"], row["missing"], row["no_value"] = status, "; ".join(missing), "; ".join(no_value)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["model", "n_seeds", "seeds", *[f"{c.key}_{s}" for c in columns
                                                                       for s in ("mean", "std", "n")],
                                        "status", "missing", "no_value"])
    return frame


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub pipe table; cells are used as given."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *[line(r) for r in rows]])


def summary_markdown(summary: pd.DataFrame, columns: Sequence[Column]) -> str:
    """Markdown of a :func:`summarise` frame: "mean ± std" cells, a status column, notes on partial rows."""
    header = ["model", "seeds", *[c.header for c in columns], "status"]
    rows, notes = [], []
    for _, row in summary.iterrows():
        cells = [fmt_pm(row[f"{c.key}_mean"], row[f"{c.key}_std"], c.digits, c.scale)
                 + (fmt_n(row[f"{c.key}_n"], row["n_seeds"]) if row["status"] != PARTIAL else "") for c in columns]
        status = row["status"] if row["status"] == COMPLETE else f"**{row['status']}**"
        rows.append([row["model"], str(row["n_seeds"]), *cells, status])
        if row["missing"]:
            verb = "left out" if row["status"] == LEFT_OUT else "incomplete, so no mean is shown"
            notes.append(f"- {row['model']} ({verb}): {row['missing']}")
        if row.get("no_value"):
            notes.append(f"- {row['model']} (averaged over fewer seeds, no value for): {row['no_value']}")
    return markdown_table(header, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def summary_table(stem: str, title: str, caption: str, per_run: pd.DataFrame, columns: Sequence[Column],
                  incomplete: Mapping[str, Sequence[str]] | None = None, allow_partial: bool = False,
                  labels: Sequence[str] | None = None, ddof: int = 1) -> Table:
    """:func:`summarise` + :func:`summary_markdown` as a :class:`Table`."""
    summary = summarise(per_run, columns, incomplete, allow_partial, labels, ddof)
    return Table(stem, title, caption, summary, summary_markdown(summary, columns))


def frame_table(stem: str, title: str, caption: str, frame: pd.DataFrame,
                formats: Mapping[str, str] | None = None) -> Table:
    """A table written as it is (per-seed values, pairwise comparisons); ``formats`` maps column -> format spec."""
    formats = dict(formats or {})

    def cell(col, value):
        if isinstance(value, float) and not np.isfinite(value):
            return "—"
        return format(value, formats[col]) if col in formats else str(value)

    rows = [[cell(c, v) for c, v in zip(frame.columns, values)] for values in frame.itertuples(index=False)]
    return Table(stem, title, caption, frame, markdown_table(list(frame.columns), rows))
