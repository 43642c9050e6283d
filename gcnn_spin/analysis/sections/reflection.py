"""Handedness confusions: how often each model mistakes a spiral for its mirror image, and the confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ...conventions import ACW, CW
from .. import figures
from ..report import Section
from ...run import Run, model_order
from ..tables import Column, summary_table
from .common import Output, Written

TEXT = ("Row-normalised confusion matrices (true × predicted) on the test set, pooled over seeds (counts summed, "
        "then each row normalised). A mirror turns CW into ACW: the CW→ACW and ACW→CW cells measure handedness "
        "confusions.")


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row of a confusion-count matrix divided by its total (rows without galaxies stay 0)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def highlighted_models(labels: Sequence[str]) -> list[str]:
    """The reflection study's models: g_resnet18, any model with "flip" in its name, and the first gc_ model."""
    out = [m for m in labels if m == "g_resnet18"]
    out += [m for m in labels if "flip" in m.lower() and m not in out]
    out += [m for m in labels if m.startswith("gc_")][:1]
    return out


def reflection_section(out: Output, runs: Sequence[Run], incomplete: Mapping[str, list[str]]) -> Written:
    """The handedness-confusion table over ``runs`` (the complete runs) and the pooled confusion matrices."""
    written = Written(Section("Reflection", TEXT))
    pooled: dict[str, np.ndarray] = {}
    rows = []
    for run in runs:
        test = run.metrics()["test"]
        counts = np.asarray(test.get("confusion_counts", test["confusion"]), dtype=float)
        norm = row_normalised(counts)
        rows.append({"model": run.label, "seed": run.seed, "cw_as_acw": norm[CW, ACW], "acw_as_cw": norm[ACW, CW],
                     "handedness_error": 0.5 * (norm[CW, ACW] + norm[ACW, CW])})
        if out.shows(run.label, incomplete):
            pooled[run.label] = pooled.get(run.label, 0) + counts
    per_run = pd.DataFrame(rows, columns=["model", "seed", "cw_as_acw", "acw_as_cw", "handedness_error"])
    if len(per_run) or incomplete:
        written.table(out, summary_table(
            "reflection", "Handedness confusions",
            "Fraction of true CW galaxies predicted ACW, of true ACW predicted CW, and their mean, "
            "mean ± std over seeds (0 for a perfectly chirality-aware model).",
            per_run, [Column("cw_as_acw", "CW→ACW %", 2, 100), Column("acw_as_cw", "ACW→CW %", 2, 100),
                      Column("handedness_error", "mean %", 2, 100)], incomplete, out.allow_partial,
            ddof=out.spread_ddof))
    if not pooled:
        return written
    normalised = {label: row_normalised(pooled[label]) for label in model_order(pooled)}
    highlight = highlighted_models(list(normalised))
    written.figure(out, figures.confusion_grid, "confusion_matrices.png",
                   "Row-normalised test confusion matrices of every model, pooled over seeds."
                   + out.partial_note(incomplete, model_order(incomplete)),
                   normalised, title="Test confusion matrices (row-normalised)", highlight=highlight)
    if highlight:
        written.figure(out, figures.confusion_grid, "confusion_reflection.png",
                       "Confusion matrices of G-ResNet18 without and with reflections and of a one-pass "
                       "chirality-equivariant (gc_) model: off-diagonal CW/ACW cells are handedness errors.",
                       {m: normalised[m] for m in highlight}, title="Reflection: handedness confusions")
    return written
