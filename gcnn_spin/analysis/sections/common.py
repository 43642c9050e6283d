"""What every section shares: where it writes (:class:`Output`), what it returns (:class:`Written`), and how a
partial set of seeds shows in figures."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..report import Figure, Section
from ..runs import Issue
from ..tables import Table

log = logging.getLogger("gcnn_spin.analysis.collect")


@dataclasses.dataclass(frozen=True)
class Output:
    """The results folder and the policies every section follows.

    ``allow_partial``: average over the complete members of an incomplete set (else show none of its numbers);
    ``figures``: draw figures (tables and the report are always written); ``spread_ddof``: of every std over
    seeds (``tables.spread_ddof``); ``val_columns``: of Tables 6-7 (``tables.val_columns``).
    """

    root: Path
    allow_partial: bool = False
    figures: bool = True
    spread_ddof: int = 1
    val_columns: str = "evaluated"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def shows(self, label: str, incomplete: Mapping[str, list[str]]) -> bool:
        """Whether figures show a model: always with ``allow_partial``, else only without an incomplete member."""
        return self.allow_partial or label not in incomplete

    def partial_note(self, incomplete: Mapping[str, list[str]], labels: Iterable[str]) -> str:
        """The caption sentence naming the models a figure leaves out (or shows from complete members only)."""
        hidden = [m for m in labels if m in incomplete]
        if not hidden:
            return ""
        if self.allow_partial:
            return f" Incomplete members are left out for: {', '.join(hidden)}."
        return f" Not shown (incomplete, see Completeness): {', '.join(hidden)}."


@dataclasses.dataclass
class Written:
    """One section's output: the report section (its tables and figures, already on disk), the figures that
    failed to draw, and the incomplete inputs the section found itself (a missing study output)."""

    section: Section
    figure_errors: list[str] = dataclasses.field(default_factory=list)
    issues: list[Issue] = dataclasses.field(default_factory=list)

    def table(self, out: Output, table: Table) -> Table:
        """Write ``table`` under ``RESULTS/tables`` and add it to the section."""
        table.write(out.tables_dir)
        self.section.items.append(table)
        return table

    def figure(self, out: Output, draw: Callable[..., Path], name: str, caption: str, *args, **kwargs) -> None:
        """Draw ``RESULTS/figures/{name}`` and add it to the section; a failure is recorded, never raised (a
        figure must not take the tables down with it)."""
        if not out.figures:
            return
        try:
            path = draw(*args, path=out.figures_dir / name, **kwargs)
        except Exception as err:  # noqa: BLE001 - see the docstring
            log.warning("figure %s failed: %s: %s", name, type(err).__name__, err)
            self.figure_errors.append(f"{name}: {type(err).__name__}: {err}")
            return
        self.section.items.append(Figure(path, caption))


def doc_body(module) -> str:
    """A module's docstring without its first paragraph: the method text the report quotes."""
    return (module.__doc__ or "").split("\n\n", 1)[-1].strip()
