"""Synthetic surveys only: the true sky CVS vs the labelled training set's CVS vs each model's predicted CVS."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ...io import read_parquet
from ...run import model_order
from ...layout import store_rows_path
from .. import figures
from ..report import Section
from ..tables import fmt_n, frame_table, mean_std
from ..validation import cvs_row, labelled_classes, truth_classes
from .common import Output, Written

TEXT = ("Synthetic data only: the truth is never read by the pipeline, only here. The true CVS of the simulated sky "
        "is compared with the CVS of the labelled training set (volunteer votes, hard labels) and with each "
        "model's predicted survey CVS.")
COLUMNS = ["source", "n_acw", "n_cw", "cvs", "cvs_std", "equivariance_error"]


def validation_section(out: Output, truth: Path, data: Path | None, per_run: pd.DataFrame,
                       survey_per_seed: pd.DataFrame, survey_incomplete: Mapping[str, list[str]]) -> Written:
    """Compare ``truth`` (``RAW/truth.parquet``) with the labelled stores under ``data`` and the predicted survey.

    ``per_run``: the metrics section's rows (for each model's recorded equivariance error); ``survey_per_seed``
    and ``survey_incomplete``: the survey section's complete prediction sets and incomplete models.
    """
    written = Written(Section("Validation against the synthetic truth", TEXT))
    truth_table = read_parquet(truth, what="truth table")
    true_class = truth_classes(truth_table)
    rows = [cvs_row("truth: every galaxy", true_class)]
    survey_rows = data and store_rows_path(data, "survey")
    if survey_rows and survey_rows.exists() and "dr8_id" in truth_table:
        ids = read_parquet(survey_rows, ["dr8_id"], "store rows")["dr8_id"]
        rows.append(cvs_row("truth: survey galaxies", true_class[truth_table["dr8_id"].isin(ids).to_numpy()]))
    labelled = labelled_classes(data) if data else None
    train_cvs = math.nan
    if labelled is not None:
        rows.append(cvs_row("labelled train+val (votes)", labelled))
        train_cvs = rows[-1]["cvs"]
    eq = per_run.groupby("model")["equivariance_error"] if len(per_run) else None
    predicted = []
    for label in model_order(survey_per_seed["model"]) if len(survey_per_seed) else []:
        members = survey_per_seed[survey_per_seed["model"] == label]
        eq_values = eq.get_group(label) if eq is not None and label in eq.groups else []
        eq_mean, _, eq_n = mean_std(eq_values)
        eq_note = f"; equivariance error{fmt_n(eq_n, len(eq_values))}" if 0 < eq_n < len(eq_values) else ""
        if label in survey_incomplete and not out.allow_partial:  # never average a partial set
            rows.append({"source": f"predicted: {label} (partial, see Completeness){eq_note}", "n_acw": math.nan,
                         "n_cw": math.nan, "cvs": math.nan, "cvs_std": math.nan, "equivariance_error": eq_mean})
            continue
        mean, std, n = mean_std(members["cvs"], out.spread_ddof)
        rows.append({"source": f"predicted: {label} (seeds: {n} of {len(members)}){eq_note}",
                     "n_acw": members["n_acw"].mean(),
                     "n_cw": members["n_cw"].mean(), "cvs": mean, "cvs_std": std, "equivariance_error": eq_mean})
        predicted.append({"model": label, "cvs_mean": mean, "cvs_std": std})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    written.table(out, frame_table(
        "validation", "Validation against the synthetic truth",
        "True sky CVS vs the labelled training set's CVS vs each model's predicted survey CVS (mean ± std over "
        "seeds), and each model's recorded reflection-equivariance error where its metrics have one.",
        frame, {"n_acw": ".0f", "n_cw": ".0f", "cvs": ".2f", "cvs_std": ".2f", "equivariance_error": ".2e"}))
    if predicted:
        written.figure(out, figures.validation_plot, "validation_cvs.png",
                       "Predicted survey CVS per model (mean ± std over seeds) against the true sky CVS and the "
                       "labelled training set's CVS.", pd.DataFrame(predicted), rows[0]["cvs"], train_cvs)
    return written
