"""Tables 6 and 7 (loss and accuracy with and without rotations in training), metrics per run, training curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import figures
from ..report import Section
from ...run import Run, is_nr, model_order
from ..tables import Column, frame_table, summary_table
from .common import Output, Written

METRIC_COLUMNS = [Column("val_loss", "val loss", 4), Column("val_accuracy", "val acc %", 2, 100),
                  Column("test_loss", "test loss", 4), Column("test_accuracy", "test acc %", 2, 100)]
PER_RUN_COLUMNS = ["model", "seed", "epochs", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
                   "best_val_epoch", "weights_epoch", "val_epoch", "tables_checkpoint", "val_on_training_galaxies",
                   "train_hours",
                   "equivariance_error"]
#: How the report names each ``train.tables_checkpoint`` (keys: its choices).
WEIGHTS = {"final": "the final epoch", "least_val_loss": "the epoch of least validation loss"}
#: ``tables.val_columns``: where the val columns come from, as the report names it (keys: its choices).
VAL_COLUMNS = {"evaluated": "the evaluated weights",
               "least_val_loss_epoch": "the training history at the epoch of least validation loss (the study's code)"}


def val_columns_of(run: Run, metrics: Mapping[str, Any], source: str) -> tuple[float, float, int | None]:
    """``(val loss, val accuracy, epoch)`` of a run for Tables 6-7: from ``metrics.json`` (``"evaluated"``; the
    epoch of the weights it evaluated) or from ``history.csv`` at its least ``val_loss`` (the first on ties, as the
    study's ``np.argmin``). ``source``: one of :data:`VAL_COLUMNS` (``Settings`` checks it)."""
    if source == "evaluated":
        return metrics["val"]["loss"], metrics["val"]["accuracy"], metrics.get("weights_epoch", metrics.get("epochs"))
    history = run.history()
    if not len(history):
        raise ValueError(f"{run.path}: history.csv has no epochs; tables.val_columns = \"least_val_loss_epoch\" "
                         "needs them")
    best = history.iloc[int(history["val_loss"].to_numpy().argmin())]
    return float(best["val_loss"]), float(best["val_accuracy"]), int(best["epoch"])


def equivariance_error(metrics: Mapping[str, Any]) -> float:
    """``equivariance_error`` of a run's metrics (top level or under ``test``); the largest value if it is a
    mapping of several errors; NaN when not recorded."""
    value = metrics.get("equivariance_error", metrics.get("test", {}).get("equivariance_error"))
    if isinstance(value, dict):
        numbers = [float(v) for v in value.values() if isinstance(v, (int, float))]
        return max(numbers) if numbers else math.nan
    return math.nan if value is None else float(value)


def per_run_metrics(runs: Sequence[Run], val_columns: str = "evaluated") -> pd.DataFrame:
    """One row per complete run: epochs, val/test loss and accuracy, best epoch, hours, equivariance error.

    ``val_columns``: :data:`VAL_COLUMNS` (``tables.val_columns``); ``val_epoch`` says which epoch they are from.
    """
    rows = []
    for run in runs:
        m = run.metrics()
        val_loss, val_accuracy, val_epoch = val_columns_of(run, m, val_columns)
        rows.append({"model": run.label, "seed": run.seed, "epochs": m.get("epochs"),
                     "val_loss": val_loss, "val_accuracy": val_accuracy, "val_epoch": val_epoch,
                     "test_loss": m["test"]["loss"], "test_accuracy": m["test"]["accuracy"],
                     "best_val_epoch": m.get("best_val_epoch"),
                     # runs from before these choices existed: final weights, held-out validation
                     "weights_epoch": m.get("weights_epoch", m.get("epochs")),
                     "tables_checkpoint": m.get("tables_checkpoint", "final"),
                     "val_on_training_galaxies": bool(m.get("val_on_training_galaxies", False)),
                     "train_hours": float(m.get("train_seconds", math.nan)) / 3600.0,
                     "equivariance_error": equivariance_error(m)})
    return pd.DataFrame(rows, columns=PER_RUN_COLUMNS)


def choices_note(per_run: pd.DataFrame, val_columns: str = "evaluated") -> str:
    """The caption sentences saying whose weights the numbers come from and where validation ran (per model when
    the runs differ): ``train.tables_checkpoint`` and ``data.study_code_split_bug`` as each run recorded them, and
    ``tables.val_columns``."""
    if not len(per_run):
        return ""
    by_choice = per_run.groupby("tables_checkpoint")["model"].agg(lambda m: ", ".join(model_order(set(m))))
    lead = "Weights" if val_columns == "evaluated" else "Test columns"
    if len(by_choice) == 1:
        note = f" {lead}: {WEIGHTS.get(by_choice.index[0], by_choice.index[0])} (train.tables_checkpoint)."
    else:
        note = f" {lead} (train.tables_checkpoint): " + "; ".join(
            f"{WEIGHTS.get(choice, choice)} for {models}" for choice, models in by_choice.items()) + "."
    if val_columns != "evaluated":
        note += f" Val columns: {VAL_COLUMNS[val_columns]} (tables.val_columns)."
    on_training = per_run[per_run["val_on_training_galaxies"]]
    if len(on_training):
        note += (" Validation on the training galaxies (the study code's split, data.study_code_split_bug) for: "
                 f"{', '.join(model_order(set(on_training['model'])))}.")
    return note


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
            "Soft-label cross-entropy and argmax accuracy on the validation and test sets, mean ± std over seeds."
            + choices_note(rotated, out.val_columns), rotated, METRIC_COLUMNS, inc_rot, out.allow_partial,
            ddof=out.spread_ddof))
    if len(nr) or inc_nr:
        written.table(out, summary_table(
            "table7_metrics_nr", "Table 7: loss and accuracy without rotations in training (_nr)",
            "As Table 6 for runs trained without random rotations; compare each row with its model in Table 6."
            + choices_note(nr, out.val_columns), nr, METRIC_COLUMNS, inc_nr, out.allow_partial, ddof=out.spread_ddof))
    if len(per_run):
        written.table(out, frame_table(
            "metrics_per_seed", "Metrics per run", "Every complete run: epochs, losses, accuracies, "
            "best validation epoch, the epoch whose weights were evaluated, the epoch of the val columns (val_epoch) "
            "and training time (hours).", per_run,
            {"val_loss": ".4f", "val_accuracy": ".4f", "test_loss": ".4f", "test_accuracy": ".4f",
             "train_hours": ".2f", "equivariance_error": ".2e"}))
    histories: dict[str, list[pd.DataFrame]] = {}
    for run in runs:
        if out.shows(run.label, incomplete):
            histories.setdefault(run.label, []).append(run.history())
    if histories:
        written.figure(out, figures.training_curves, "training_curves.png",
                       "Training and validation loss and accuracy per epoch: mean line and ±1 std band over seeds."
                       + out.partial_note(incomplete, model_order(incomplete)), histories, ddof=out.spread_ddof)
    return written
