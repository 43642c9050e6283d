"""Tables 6 and 7 (loss and accuracy with and without rotations in training), metrics per run, training curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import figures
from ..report import Section
from ..runs import Run, is_nr, model_order
from ..tables import Column, frame_table, summary_table
from .common import Output, Written

METRIC_COLUMNS = [Column("val_loss", "val loss", 4), Column("val_accuracy", "val acc %", 2, 100),
                  Column("test_loss", "test loss", 4), Column("test_accuracy", "test acc %", 2, 100)]
PER_RUN_COLUMNS = ["model", "seed", "epochs", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
                   "best_val_epoch", "train_hours", "equivariance_error"]


def equivariance_error(metrics: Mapping[str, Any]) -> float:
    """``equivariance_error`` of a run's metrics (top level or under ``test``); the largest value if it is a
    mapping of several errors; NaN when not recorded."""
    value = metrics.get("equivariance_error", metrics.get("test", {}).get("equivariance_error"))
    if isinstance(value, dict):
        numbers = [float(v) for v in value.values() if isinstance(v, (int, float))]
        return max(numbers) if numbers else math.nan
    return math.nan if value is None else float(value)


def per_run_metrics(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per complete run: epochs, val/test loss and accuracy, best epoch, hours, equivariance error."""
    rows = []
    for run in runs:
        m = run.metrics()
        rows.append({"model": run.label, "seed": run.seed, "epochs": m.get("epochs"),
                     "val_loss": m["val"]["loss"], "val_accuracy": m["val"]["accuracy"],
                     "test_loss": m["test"]["loss"], "test_accuracy": m["test"]["accuracy"],
                     "best_val_epoch": m.get("best_val_epoch"),
                     "train_hours": float(m.get("train_seconds", math.nan)) / 3600.0,
                     "equivariance_error": equivariance_error(m)})
    return pd.DataFrame(rows, columns=PER_RUN_COLUMNS)


def metrics_section(out: Output, runs: Sequence[Run], incomplete: Mapping[str, list[str]],
                    per_run: pd.DataFrame) -> Written:
    """Tables 6 (rotated training) and 7 (``_nr``), every run's metrics, and the training curves.

    ``runs``: the complete runs; ``incomplete``: model -> its incomplete runs; ``per_run``: :func:`per_run_metrics`.
    """
    written = Written(Section("Classification metrics"))
    rotated = per_run[~per_run["model"].map(is_nr)] if len(per_run) else per_run
    nr = per_run[per_run["model"].map(is_nr)] if len(per_run) else per_run
    inc_rot = {k: v for k, v in incomplete.items() if not is_nr(k)}
    inc_nr = {k: v for k, v in incomplete.items() if is_nr(k)}
    if len(rotated) or inc_rot:
        written.table(out, summary_table(
            "table6_metrics", "Table 6: loss and accuracy (trained with rotations)",
            "Soft-label cross-entropy and argmax accuracy on the validation and test sets, mean ± std over seeds.",
            rotated, METRIC_COLUMNS, inc_rot, out.allow_partial))
    if len(nr) or inc_nr:
        written.table(out, summary_table(
            "table7_metrics_nr", "Table 7: loss and accuracy without rotations in training (_nr)",
            "As Table 6 for runs trained without random rotations; compare each row with its model in Table 6.",
            nr, METRIC_COLUMNS, inc_nr, out.allow_partial))
    if len(per_run):
        written.table(out, frame_table(
            "metrics_per_seed", "Metrics per run", "Every complete run: epochs, losses, accuracies, "
            "best validation epoch and training time (hours).", per_run,
            {"val_loss": ".4f", "val_accuracy": ".4f", "test_loss": ".4f", "test_accuracy": ".4f",
             "train_hours": ".2f", "equivariance_error": ".2e"}))
    histories: dict[str, list[pd.DataFrame]] = {}
    for run in runs:
        if out.shows(run.label, incomplete):
            histories.setdefault(run.label, []).append(run.history())
    if histories:
        written.figure(out, figures.training_curves, "training_curves.png",
                       "Training and validation loss and accuracy per epoch: mean line and ±1 std band over seeds."
                       + out.partial_note(incomplete, model_order(incomplete)), histories)
    return written
