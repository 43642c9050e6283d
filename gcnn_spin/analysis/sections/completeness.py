"""What is missing: every incomplete run, prediction part, study output and failed task, and the figures that
could not be drawn. Built last, so it lists what the other sections found, and shown first."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..report import Section
from ..runs import Completeness, Issue
from ..tables import frame_table
from .common import Output, Written

STRICT = ("Strict (default): rows with an incomplete member are marked partial and carry no mean; rerun the missing "
          "tasks, or pass --allow-partial to average over the complete members.")
ALLOW_PARTIAL = "--allow-partial: incomplete members are left out and each affected row says which."


def completeness_section(out: Output, completeness: Completeness, issues: Sequence[Issue],
                         figure_errors: Sequence[str]) -> Written:
    """The counts of runs and prediction sets, the policy in force, ``issues`` as a table and ``figure_errors``."""
    n_runs, n_done = len(completeness.runs), len(completeness.complete_runs())
    policy = ALLOW_PARTIAL if out.allow_partial else STRICT
    text = (f"{n_done} of {n_runs} runs complete; {len(completeness.predictions)} prediction sets, "
            f"{completeness.n_parts} parts each expected (from {completeness.parts_source}). {policy}")
    if completeness.notes:
        text += "\n\nMeans over members that differ: " + "; ".join(completeness.notes) + "."
    written = Written(Section("Completeness", text))
    if issues:
        frame = pd.DataFrame([i.as_dict() for i in issues])[["kind", "model", "seed", "part", "problem", "log"]]
        written.table(out, frame_table(
            "incomplete", "Incomplete runs, parts and tasks",
            "Everything missing or unfinished, by model, seed and part, with the array task's log when a "
            "submission record names it.", frame.astype(object).where(frame.notna(), "")))
    else:
        written.section.text += "\n\nNothing is missing."
    if figure_errors:
        written.section.text += "\n\nFigures that could not be drawn: " + "; ".join(figure_errors) + "."
    return written
