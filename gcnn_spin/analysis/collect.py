"""Collect finished runs, survey predictions and study outputs into ``RESULTS/``: tables, figures, ``report.md``.

    python analysis/collect.py --runs runs --predictions predictions --store data/stores/survey.zarr \\
        --data data --out results [--allow-partial] [--truth raw/truth.parquet]

Layout: ``RESULTS/tables/{stem}.csv`` + ``.md``, ``RESULTS/figures/*.png`` (both hold exactly what the last
collect wrote: older files it did not rewrite are removed), ``RESULTS/studies/{study}/{model}/seed{k}.parquet``
(the CVS recovery is computed here when missing; the rotation study is read when ``analysis/rotation_study.py``
has run), ``RESULTS/cache/survey/`` (merged survey counts, reused while the parts' markers are unchanged),
``RESULTS/report.md``.

Completeness policy: a run without its marker, a missing prediction part and a failed array task are named
(model, seed, part, log) in ``tables/incomplete.csv`` and in the report.

- default: everything complete is written; a model row whose set has an incomplete member is marked
  ``partial`` and shows no mean (partial sets are never averaged), that model is left out of the figures, and
  the command exits with status 3 after writing, listing what is incomplete;
- ``--allow-partial``: incomplete members are left out, rows are averaged over the complete members and say
  which were left out, and the command exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..conventions import ACW, CW
from ..io import config_hash, marker_path, write_json_atomic
from . import figures, recovery, rotation, survey
from .report import Figure, Section, write_report
from .runs import Completeness, Issue, check_completeness, group_issues, is_nr, model_order
from .studies import load_study, run_recovery_task
from .tables import Column, Table, fmt_pm, frame_table, mean_std, summary_table
from .validation import cvs_row, labelled_classes, truth_classes

log = logging.getLogger("gcnn_spin.analysis.collect")

EXIT_INCOMPLETE = 3
METRIC_COLUMNS = [Column("val_loss", "val loss", 4), Column("val_accuracy", "val acc %", 2, 100),
                  Column("test_loss", "test loss", 4), Column("test_accuracy", "test acc %", 2, 100)]


@dataclasses.dataclass(frozen=True)
class Settings:
    runs: Path
    out: Path
    predictions: Path | None = None
    store: Path | None = None
    data: Path | None = None
    truth: Path | None = None
    allow_partial: bool = False
    n_parts: int | None = None
    logs: tuple[Path, ...] | None = None
    draws: int = recovery.N_DRAWS
    resample_seed: int = 0
    progress: bool = True
    figures: bool = True


@dataclasses.dataclass
class Outcome:
    completeness: Completeness
    tables: list[Table]
    figures: list[Figure]
    report: Path
    issues: list[Issue]
    exit_code: int


class Collector:
    """Builds the report section by section; every table and figure it makes is recorded for the report."""

    def __init__(self, settings: Settings, completeness: Completeness):
        self.s = settings
        self.c = completeness
        self.out = Path(settings.out)
        self.tables_dir, self.figures_dir = self.out / "tables", self.out / "figures"
        self.tables: list[Table] = []
        self.figures: list[Figure] = []
        self.figure_errors: list[str] = []
        self.issues: list[Issue] = list(completeness.issues)
        self.complete_runs = completeness.complete_runs()
        self.run_incomplete = group_issues(self.issues, ("run",))

    # ------------------------------------------------------------------ helpers

    def table(self, table: Table) -> Table:
        table.write(self.tables_dir)
        self.tables.append(table)
        return table

    def figure(self, draw, name: str, caption: str, *args, **kwargs) -> Figure | None:
        if not self.s.figures:
            return None
        try:
            path = draw(*args, path=self.figures_dir / name, **kwargs)
        except Exception as err:  # noqa: BLE001 - a figure must not take the tables down with it
            log.warning("figure %s failed: %s: %s", name, type(err).__name__, err)
            self.figure_errors.append(f"{name}: {type(err).__name__}: {err}")
            return None
        fig = Figure(path, caption)
        self.figures.append(fig)
        return fig

    def shows(self, label: str, incomplete: dict[str, list[str]]) -> bool:
        """Whether figures show a model: always with --allow-partial, else only without an incomplete member."""
        return self.s.allow_partial or label not in incomplete

    def partial_note(self, incomplete: dict[str, list[str]], labels) -> str:
        hidden = [m for m in labels if m in incomplete]
        if not hidden:
            return ""
        if self.s.allow_partial:
            return f" Incomplete members are left out for: {', '.join(hidden)}."
        return f" Not shown (incomplete, see Completeness): {', '.join(hidden)}."

    # ------------------------------------------------------------------ sections

    def metrics_section(self) -> Section:
        rows = []
        for run in self.complete_runs:
            m = run.metrics()
            eq = _equivariance_error(m)
            rows.append({"model": run.label, "seed": run.seed, "epochs": m.get("epochs"),
                         "val_loss": m["val"]["loss"], "val_accuracy": m["val"]["accuracy"],
                         "test_loss": m["test"]["loss"], "test_accuracy": m["test"]["accuracy"],
                         "best_val_epoch": m.get("best_val_epoch"),
                         "train_hours": float(m.get("train_seconds", math.nan)) / 3600.0,
                         "equivariance_error": eq})
        per_run = pd.DataFrame(rows, columns=["model", "seed", "epochs", "val_loss", "val_accuracy", "test_loss",
                                              "test_accuracy", "best_val_epoch", "train_hours", "equivariance_error"])
        self.per_run_metrics = per_run
        section = Section("Classification metrics")
        rotated = per_run[~per_run["model"].map(is_nr)] if len(per_run) else per_run
        nr = per_run[per_run["model"].map(is_nr)] if len(per_run) else per_run
        inc_rot = {k: v for k, v in self.run_incomplete.items() if not is_nr(k)}
        inc_nr = {k: v for k, v in self.run_incomplete.items() if is_nr(k)}
        if len(rotated) or inc_rot:
            section.items.append(self.table(summary_table(
                "table6_metrics", "Table 6: loss and accuracy (trained with rotations)",
                "Soft-label cross-entropy and argmax accuracy on the validation and test sets, mean ± std over seeds.",
                rotated, METRIC_COLUMNS, inc_rot, self.s.allow_partial)))
        if len(nr) or inc_nr:
            section.items.append(self.table(summary_table(
                "table7_metrics_nr", "Table 7: loss and accuracy without rotations in training (_nr)",
                "As Table 6 for runs trained without random rotations; compare each row with its model in Table 6.",
                nr, METRIC_COLUMNS, inc_nr, self.s.allow_partial)))
        if len(per_run):
            section.items.append(self.table(frame_table(
                "metrics_per_seed", "Metrics per run", "Every complete run: epochs, losses, accuracies, "
                "best validation epoch and training time (hours).", per_run,
                {"val_loss": ".4f", "val_accuracy": ".4f", "test_loss": ".4f", "test_accuracy": ".4f",
                 "train_hours": ".2f", "equivariance_error": ".2e"})))
        histories: dict[str, list[pd.DataFrame]] = {}
        for run in self.complete_runs:
            if self.shows(run.label, self.run_incomplete):
                histories.setdefault(run.label, []).append(run.history())
        if histories:
            fig = self.figure(figures.training_curves, "training_curves.png",
                              "Training and validation loss and accuracy per epoch: mean line and ±1 std band over "
                              "seeds." + self.partial_note(self.run_incomplete, model_order(self.run_incomplete)),
                              histories)
            section.items += [fig] if fig else []
        return section

    def reflection_section(self) -> Section:
        section = Section("Reflection", "Row-normalised confusion matrices (true × predicted) on the test set, "
                                        "pooled over seeds (counts summed, then each row normalised). A mirror turns "
                                        "CW into ACW: the CW→ACW and ACW→CW cells measure handedness confusions.")
        matrices: dict[str, np.ndarray] = {}
        rows = []
        for run in self.complete_runs:
            test = run.metrics()["test"]
            counts = np.asarray(test.get("confusion_counts", test["confusion"]), dtype=float)
            totals = counts.sum(axis=1, keepdims=True)
            norm = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
            rows.append({"model": run.label, "seed": run.seed, "cw_as_acw": norm[CW, ACW], "acw_as_cw": norm[ACW, CW],
                         "handedness_error": 0.5 * (norm[CW, ACW] + norm[ACW, CW])})
            if self.shows(run.label, self.run_incomplete):
                matrices[run.label] = matrices.get(run.label, 0) + counts
        per_run = pd.DataFrame(rows, columns=["model", "seed", "cw_as_acw", "acw_as_cw", "handedness_error"])
        if len(per_run) or self.run_incomplete:
            section.items.append(self.table(summary_table(
                "reflection", "Handedness confusions",
                "Fraction of true CW galaxies predicted ACW, of true ACW predicted CW, and their mean, "
                "mean ± std over seeds (0 for a perfectly chirality-aware model).",
                per_run, [Column("cw_as_acw", "CW→ACW %", 2, 100), Column("acw_as_cw", "ACW→CW %", 2, 100),
                          Column("handedness_error", "mean %", 2, 100)], self.run_incomplete, self.s.allow_partial)))
        if not matrices:
            return section
        normalised = {}
        for label in model_order(matrices):
            totals = matrices[label].sum(axis=1, keepdims=True)
            normalised[label] = np.divide(matrices[label], totals, out=np.zeros_like(matrices[label]),
                                          where=totals > 0)
        highlight = highlighted_models(list(normalised))
        fig = self.figure(figures.confusion_grid, "confusion_matrices.png",
                          "Row-normalised test confusion matrices of every model, pooled over seeds." +
                          self.partial_note(self.run_incomplete, model_order(self.run_incomplete)),
                          normalised, title="Test confusion matrices (row-normalised)", highlight=highlight)
        section.items += [fig] if fig else []
        if highlight:
            fig = self.figure(figures.confusion_grid, "confusion_reflection.png",
                              "Confusion matrices of G-ResNet18 without and with reflections and of a one-pass "
                              "chirality-equivariant (gc_) model: off-diagonal CW/ACW cells are handedness errors.",
                              {m: normalised[m] for m in highlight}, title="Reflection: handedness confusions")
            section.items += [fig] if fig else []
        return section

    def recovery_section(self) -> Section:
        section = Section("CVS recovery", doc_body(recovery))
        found_rows, fit_rows, points = [], [], {}
        for run in self.complete_runs:
            try:
                path = run_recovery_task(run, self.out, draws=self.s.draws, resample_seed=self.s.resample_seed)
                table = pd.read_parquet(path)
                found = recovery.spirals_found(run.test_predictions())
                dropped = sorted(set(recovery.CVS_LEVELS) - set(table["level"]))
                if dropped:
                    section.text += (f"\n\n{run.label} seed{run.seed}: set CVS "
                                     f"{', '.join(f'{c:+g}' for c in dropped)} left out: |CVS| must stay below "
                                     f"√N for N = {found['n_sz']} S/Z galaxies.")
                fit = recovery.fit_line(table["set_cvs"], table["pred_cvs"])
            except ValueError as err:  # a data problem (no galaxy of one spin, too few S/Z galaxies to fit)
                section.text += f"\n\n{run.label} seed{run.seed}: no CVS recovery fit ({err})."
                continue
            found_rows.append({"model": run.label, "seed": run.seed, **found})
            fit_rows.append({"model": run.label, "seed": run.seed, **fit})
            if self.shows(run.label, self.run_incomplete):
                points.setdefault(run.label, []).append(table.assign(seed=run.seed))
        found = pd.DataFrame(found_rows, columns=["model", "seed", "n_sz", "n_found", "found_fraction",
                                                  "right_spin_fraction", "n_acw_pred", "n_cw_pred"])
        fits = pd.DataFrame(fit_rows, columns=["model", "seed", "slope", "slope_err", "intercept", "intercept_err",
                                               "n_points"])
        incomplete = self.run_incomplete
        if len(found) or incomplete:
            n_sz = ", ".join(sorted({str(n) for n in found["n_sz"]})) or "?"
            section.items.append(self.table(summary_table(
                "table8_spirals_found", "Table 8: spirals found on the S/Z test set",
                f"Of the test galaxies labelled S or Z (vote > 0.5; {n_sz} here), the share the model calls a "
                "spiral (softmax ≥ 0.5) and the share it calls with the right spin, mean ± std over seeds.",
                found, [Column("found_fraction", "called spiral %", 2, 100),
                        Column("right_spin_fraction", "right spin %", 2, 100)], incomplete, self.s.allow_partial)))
            section.items.append(self.table(summary_table(
                "cvs_recovery", "CVS recovery fit",
                "Least-squares line of predicted vs set CVS per run (ideal: slope 1, intercept 0), mean ± std "
                "over seeds.", fits, [Column("slope", "slope", 3), Column("intercept", "intercept", 3)],
                incomplete, self.s.allow_partial)))
        if points:
            slopes = {m: fmt_pm(*mean_std(fits.loc[fits["model"] == m, "slope"])[:2], 2) for m in points}
            fig = self.figure(figures.recovery_plot, "cvs_recovery.png",
                              "Predicted vs set CVS of the resampled S/Z test set per model (mean ± std over seeds) "
                              "with the ideal line of slope 1."
                              + self.partial_note(incomplete, model_order(incomplete)),
                              {m: pd.concat(t) for m, t in points.items()}, slopes)
            section.items += [fig] if fig else []
        return section

    def rotation_section(self) -> Section:
        section = Section("Rotation overlap", doc_body(rotation))
        tables, issues = load_study(self.out, "rotation", self.complete_runs)
        self.issues += issues
        if not tables:
            section.text += ("\n\nNo rotation study outputs were found under studies/rotation: run "
                             "`python analysis/rotation_study.py` (one array task per run) to add this section.")
            return section
        incomplete = group_issues(self.issues, ("run", "study"))
        rows, per_image = [], {}
        for (label, seed), table in tables.items():
            means = rotation.mean_over_angles(table)
            rows.append({"model": label, "seed": seed, "n_images": len(means),
                         **{k: float(means[k].mean()) for k in rotation.PAIRS}})
            if self.shows(label, incomplete):
                per_image.setdefault(label, []).append(means)
        per_run = pd.DataFrame(rows)
        section.items.append(self.table(summary_table(
            "rotation_overlap", "Rotation overlap ⟨η⟩",
            "Mean over images of ⟨η⟩ (each image's η averaged over all 9 angles) per class pair, mean ± std over the "
            "seeds studied; lower = classes better separated under rotation.",
            per_run, [Column(k, header, 3) for k, header in zip(rotation.PAIRS, ("η_SZ", "η_ZN", "η_SN"))],
            {m: v for m, v in incomplete.items() if m in set(per_run["model"])}, self.s.allow_partial)))
        averaged = {m: pd.concat(v).groupby("row", sort=True)[list(rotation.PAIRS)].mean().reset_index()
                    for m, v in per_image.items()}
        averaged = {m: averaged[m] for m in model_order(averaged)}
        comparison = rotation.compare_models(averaged)
        if len(comparison) and comparison["n_images"].min() < 1000:
            section.text += (f"\n\nOnly {comparison['n_images'].min()} images are common to some models; the study "
                             "compares models over at least 1,000 (`--images 1000`, the default).")
        if len(comparison):
            section.items.append(self.table(frame_table(
                "rotation_comparison", "Which model has the lower overlap",
                "For each pair of models, over the images both studied (⟨η⟩ averaged over seeds): the fraction of "
                "images where model a, resp. model b, has the lower ⟨η⟩ for each class pair.",
                comparison, {c: ".3f" for c in comparison.columns if c.endswith("_lower")})))
        if averaged:
            fig = self.figure(figures.eta_histograms, "rotation_eta.png",
                              "Distribution over test images of ⟨η⟩ (mean over angles and seeds) per class pair and "
                              "model.", averaged)
            section.items += [fig] if fig else []
        pick = example_galaxy(tables, list(averaged))
        if pick:
            (label_a, label_b), seed, row = pick
            one = {m: tables[(m, seed)][tables[(m, seed)]["row"] == row] for m in (label_a, label_b)}
            name = one[label_a]["dr8_id"].iloc[0] if "dr8_id" in one[label_a] else f"row {row}"
            fig = self.figure(figures.rotation_probabilities, "rotation_probabilities.png",
                              f"Class probabilities (MC-dropout mean ± std of the passes) vs rotation angle for one "
                              f"test galaxy ({name}), {label_a} vs {label_b}, seed {seed}.", one,
                              title=f"Galaxy {name}: probabilities under rotation")
            section.items += [fig] if fig else []
        return section

    def survey_section(self) -> Section:
        if not self.c.predictions:
            return Section("Survey", "No survey predictions were given (--predictions)." if self.s.predictions is None
                           else f"No prediction folders under {self.s.predictions}.")
        section = Section("Survey", f"Survey predictions: {self.c.n_parts} parts per run expected (from "
                                    f"{self.c.parts_source}). " + doc_body(survey))
        rows = []
        for label, pset in self.c.complete_prediction_sets():
            rows.append({"model": label, "seed": pset.seed, **self._survey_seed(label, pset)})
        per_seed = pd.DataFrame(rows)
        if len(per_seed):
            order = {m: i for i, m in enumerate(model_order(per_seed["model"]))}
            per_seed = per_seed.sort_values(["model", "seed"], key=lambda c: c.map(order) if c.name == "model" else c)
        incomplete = self.c.survey_incomplete()
        self.survey_incomplete = incomplete
        labels = model_order(set(per_seed["model"] if len(per_seed) else []) | set(incomplete))
        self.survey_per_seed = per_seed
        if per_seed.empty:
            per_seed = pd.DataFrame(columns=["model", "seed", "n_cw", "n_acw", "n_other", "pct_cw", "pct_acw",
                                             "acw_cw_ratio", "cvs", "cvs_north", "cvs_south", "dipole",
                                             "significance_sigma"])
        for col in ("cvs_north", "cvs_south", "dipole", "significance_sigma"):
            if col not in per_seed:
                per_seed[col] = math.nan
        count_cols = [Column("n_cw", "CW", 0), Column("n_acw", "ACW", 0), Column("n_other", "Other", 0),
                      Column("pct_cw", "CW %", 2), Column("pct_acw", "ACW %", 2)]
        counts = self.table(summary_table(
            "table9_survey_counts", "Table 9: survey galaxies per predicted class",
            "Survey galaxies predicted CW, ACW (softmax ≥ 0.5) and Other, and the spiral shares, mean ± std over "
            "seeds.",
            per_seed, count_cols, incomplete, self.s.allow_partial, labels))
        cvs_table = self.table(summary_table(
            "table10_survey_cvs", "Table 10: survey ACW/CW ratio and CVS",
            "n_ACW/n_CW and CVS = (n_ACW − n_CW)/√(n_ACW + n_CW) of the predicted survey, mean ± std over seeds.",
            per_seed, [Column("acw_cw_ratio", "ACW/CW", 4), Column("cvs", "CVS", 2)], incomplete,
            self.s.allow_partial, labels))
        sky = self.table(summary_table(
            "sky_split", "Sky split and dipole",
            "CVS of the predicted spirals north (b > 0) and south (b < 0) of the galactic plane, the fitted "
            "spin-sign dipole amplitude and its significance (Gaussian σ), mean ± std over seeds.",
            per_seed, [Column("cvs_north", "CVS north", 2), Column("cvs_south", "CVS south", 2),
                       Column("dipole", "dipole |d|", 4), Column("significance_sigma", "dipole σ", 2)],
            incomplete, self.s.allow_partial, labels))
        section.items += [counts, cvs_table, sky]
        if len(rows):
            keep = [c for c in ("model", "seed", "n_total", "n_cw", "n_acw", "n_other", "cvs", "cvs_north",
                                "cvs_south", "dipole", "dipole_err", "dipole_ra", "dipole_dec", "significance_sigma",
                                "p_value") if c in per_seed]
            section.items.append(self.table(frame_table(
                "survey_per_seed", "Survey per run", "Every complete prediction set: counts, CVS, hemispheres, "
                "dipole (amplitude, error, direction RA/Dec in degrees, significance).", per_seed[keep],
                {c: ".2f" for c in ("cvs", "cvs_north", "cvs_south", "dipole_ra", "dipole_dec", "significance_sigma")}
                | {"dipole": ".4f", "dipole_err": ".4f", "p_value": ".2e"})))
        drawn = [m for m in labels if self.shows(m, incomplete)]
        summary_counts = counts.frame.merge(cvs_table.frame[["model", "cvs_mean", "cvs_std"]], on="model")
        summary_counts = summary_counts[summary_counts["model"].isin(drawn) & (summary_counts["n_seeds"] > 0)]
        note = self.partial_note(incomplete, labels)
        if len(summary_counts):
            fig = self.figure(figures.survey_plot, "survey_counts_cvs.png",
                              "Share of survey galaxies predicted CW and ACW, and the survey CVS, per model "
                              "(mean ± std over seeds)." + note, summary_counts.reset_index(drop=True))
            section.items += [fig] if fig else []
            sky_frame = sky.frame[sky.frame["model"].isin(summary_counts["model"])].reset_index(drop=True)
            fig = self.figure(figures.sky_split_plot, "sky_split.png",
                              "CVS north vs south of the galactic plane and the spin-sign dipole amplitude per model "
                              "(mean ± std over seeds; labels: mean significance)." + note, sky_frame)
            section.items += [fig] if fig else []
        return section

    def _survey_seed(self, label: str, pset) -> dict[str, Any]:
        """Merge one prediction set (cached in ``RESULTS/cache`` by its parts' markers)."""
        parts = [p for i, p in pset.done.items() if i < self.c.n_parts]
        identity = config_hash([(p.name, marker_path(p).read_text()) for p in parts])
        cache = self.out / "cache" / "survey" / label / f"seed{pset.seed}.json"
        if cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("identity") == identity:
                return cached["row"]
        merged = survey.merge_parts(parts, progress=self.s.progress, desc=f"{label} seed{pset.seed}")
        row = survey.survey_seed(merged)
        write_json_atomic(cache, {"identity": identity, "row": row})
        return row

    def validation_section(self) -> Section:
        section = Section("Validation against the synthetic truth",
                          "Synthetic data only: the truth is never read by the pipeline, only here. The true CVS "
                          "of the simulated sky is compared with the CVS of the labelled training set (volunteer "
                          "votes, hard labels) and with each model's predicted survey CVS.")
        truth = pd.read_parquet(self.s.truth)
        true_class = truth_classes(truth)
        rows = [cvs_row("truth: every galaxy", true_class)]
        survey_rows = self.s.data and Path(self.s.data, "stores", "survey.parquet")
        if survey_rows and survey_rows.exists() and "dr8_id" in truth:
            ids = pd.read_parquet(survey_rows, columns=["dr8_id"])["dr8_id"]
            rows.append(cvs_row("truth: survey galaxies", true_class[truth["dr8_id"].isin(ids).to_numpy()]))
        labelled = labelled_classes(self.s.data) if self.s.data else None
        train_cvs = math.nan
        if labelled is not None:
            rows.append(cvs_row("labelled train+val (votes)", labelled))
            train_cvs = rows[-1]["cvs"]
        per_seed = getattr(self, "survey_per_seed", pd.DataFrame())
        eq = self.per_run_metrics.groupby("model")["equivariance_error"] if len(self.per_run_metrics) else None
        predicted = []
        incomplete = getattr(self, "survey_incomplete", {})
        for label in model_order(per_seed["model"]) if len(per_seed) else []:
            members = per_seed[per_seed["model"] == label]
            eq_mean = (mean_std(eq.get_group(label))[0] if eq is not None and label in eq.groups else math.nan)
            if label in incomplete and not self.s.allow_partial:  # never average a partial set
                rows.append({"source": f"predicted: {label} (partial, see Completeness)", "n_acw": math.nan,
                             "n_cw": math.nan, "cvs": math.nan, "cvs_std": math.nan, "equivariance_error": eq_mean})
                continue
            mean, std, n = mean_std(members["cvs"])
            rows.append({"source": f"predicted: {label} (seeds: {n})", "n_acw": members["n_acw"].mean(),
                         "n_cw": members["n_cw"].mean(), "cvs": mean, "cvs_std": std, "equivariance_error": eq_mean})
            predicted.append({"model": label, "cvs_mean": mean, "cvs_std": std})
        frame = pd.DataFrame(rows, columns=["source", "n_acw", "n_cw", "cvs", "cvs_std", "equivariance_error"])
        section.items.append(self.table(frame_table(
            "validation", "Validation against the synthetic truth",
            "True sky CVS vs the labelled training set's CVS vs each model's predicted survey CVS (mean ± std over "
            "seeds), and each model's recorded reflection-equivariance error where its metrics have one.",
            frame, {"n_acw": ".0f", "n_cw": ".0f", "cvs": ".2f", "cvs_std": ".2f", "equivariance_error": ".2e"})))
        if predicted:
            fig = self.figure(figures.validation_plot, "validation_cvs.png",
                              "Predicted survey CVS per model (mean ± std over seeds) against the true sky CVS and "
                              "the labelled training set's CVS.", pd.DataFrame(predicted), rows[0]["cvs"], train_cvs)
            section.items += [fig] if fig else []
        return section

    def completeness_section(self) -> Section:
        n_runs, n_done = len(self.c.runs), len(self.complete_runs)
        policy = ("--allow-partial: incomplete members are left out and each affected row says which."
                  if self.s.allow_partial else
                  "Strict (default): rows with an incomplete member are marked partial and carry no mean; "
                  "rerun the missing tasks, or pass --allow-partial to average over the complete members.")
        text = (f"{n_done} of {n_runs} runs complete; {len(self.c.predictions)} prediction sets, {self.c.n_parts} "
                f"parts each expected (from {self.c.parts_source}). {policy}")
        section = Section("Completeness", text)
        if self.issues:
            frame = pd.DataFrame([i.as_dict() for i in self.issues])[["kind", "model", "seed", "part", "problem",
                                                                      "log"]]
            section.items.append(self.table(frame_table(
                "incomplete", "Incomplete runs, parts and tasks",
                "Everything missing or unfinished, by model, seed and part, with the array task's log when a "
                "submission record names it.", frame.astype(object).where(frame.notna(), ""))))
        else:
            section.text += "\n\nNothing is missing."
        if self.figure_errors:
            section.text += "\n\nFigures that could not be drawn: " + "; ".join(self.figure_errors) + "."
        return section


# ----------------------------------------------------------------------------- small pieces


def _equivariance_error(metrics: dict[str, Any]) -> float:
    """``equivariance_error`` of a run's metrics (top level or under ``test``); the largest value if it is a
    mapping of several errors; NaN when not recorded."""
    value = metrics.get("equivariance_error", metrics.get("test", {}).get("equivariance_error"))
    if isinstance(value, dict):
        numbers = [float(v) for v in value.values() if isinstance(v, (int, float))]
        return max(numbers) if numbers else math.nan
    return math.nan if value is None else float(value)


def doc_body(module) -> str:
    """A module's docstring without its first paragraph: the method text the report quotes."""
    return (module.__doc__ or "").split("\n\n", 1)[-1].strip()


def highlighted_models(labels: Sequence[str]) -> list[str]:
    """The reflection study's models: g_resnet18, any model with "flip" in its name, and the first gc_ model."""
    out = [m for m in labels if m == "g_resnet18"]
    out += [m for m in labels if "flip" in m.lower() and m not in out]
    out += [m for m in labels if m.startswith("gc_")][:1]
    return out


def example_galaxy(tables: dict[tuple[str, int], pd.DataFrame], labels: Sequence[str]):
    """``((model_a, model_b), seed, row)`` for the rotation figure: resnet18 vs g_resnet18 when both exist,
    else the first two models; the first true spiral studied by both in their smallest common seed."""
    if len(labels) < 2:
        return None
    pair = ("resnet18", "g_resnet18") if {"resnet18", "g_resnet18"} <= set(labels) else tuple(labels[:2])
    seeds = sorted({s for m, s in tables if m == pair[0]} & {s for m, s in tables if m == pair[1]})
    if not seeds:
        return None
    a, b = tables[(pair[0], seeds[0])], tables[(pair[1], seeds[0])]
    common = a[a["row"].isin(set(b["row"]))]
    if common.empty:
        return None
    spirals = common[common["label"].isin([CW, ACW])] if "label" in common else common.iloc[:0]
    return pair, seeds[0], int((spirals if len(spirals) else common)["row"].iloc[0])


# ----------------------------------------------------------------------------- orchestration


def prune_stale(collector: Collector) -> list[Path]:
    """Remove tables and figures an earlier collect wrote that this one did not (so the folders match the report)."""
    kept = {Path(f.path).resolve() for f in collector.figures}
    kept |= {(collector.tables_dir / f"{t.stem}{ext}").resolve() for t in collector.tables for ext in (".csv", ".md")}
    stale = [p for pattern, folder in (("*.png", collector.figures_dir), ("*.csv", collector.tables_dir),
                                       ("*.md", collector.tables_dir))
             for p in folder.glob(pattern) if p.resolve() not in kept]
    for path in stale:
        log.info("removing %s: not written by this collect", path)
        path.unlink()
    return stale


def collect(settings: Settings) -> Outcome:
    """Write every table, figure and the report; the exit code follows the completeness policy."""
    completeness = check_completeness(settings.runs, settings.predictions, settings.store, settings.n_parts,
                                      settings.logs)
    if not completeness.runs:
        raise FileNotFoundError(f"no runs under {settings.runs} (looked for {settings.runs}/<model>/seed<k>)")
    collector = Collector(settings, completeness)
    sections = [collector.metrics_section(), collector.reflection_section(), collector.recovery_section(),
                collector.rotation_section(), collector.survey_section()]
    if settings.truth is not None:
        sections.append(collector.validation_section())
    sections.insert(0, collector.completeness_section())  # last, so it lists the studies' issues too
    mode = "--allow-partial" if settings.allow_partial else "strict"
    preamble = (f"Runs: `{settings.runs}`; predictions: `{settings.predictions}`; survey store: `{settings.store}`; "
                f"completeness mode: {mode}. Spreads are sample standard deviations over seeds.")
    report = write_report(sections, settings.out, "gcnn_spin results", preamble)
    prune_stale(collector)
    strict_failure = bool(collector.issues) and not settings.allow_partial
    return Outcome(completeness, collector.tables, collector.figures, report, collector.issues,
                   EXIT_INCOMPLETE if strict_failure else 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python analysis/collect.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="runs root holding {model}/seed{k} (default: runs)")
    parser.add_argument("--predictions", default="predictions",
                        help="survey predictions root holding {model}/seed{k}/part-*.parquet (default: predictions)")
    parser.add_argument("--store", default=None, help="survey store, for the expected number of parts "
                                                      "(default: DATA/stores/survey.zarr when --data has one)")
    parser.add_argument("--data", default=None, help="dataset folder (stores' rows; validation's labelled set)")
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="leave incomplete runs/parts out of the averages (and say so) instead of exiting 3")
    parser.add_argument("--n-parts", type=int, default=None, help="expected parts per run (overrides --store)")
    parser.add_argument("--logs", nargs="*", default=None,
                        help="stage log folders holding submission.json (default: the roots, their logs/ and a "
                             "logs/ folder beside them)")
    parser.add_argument("--truth", default=None, help="synthetic surveys only: RAW/truth.parquet for the "
                                                      "validation section")
    parser.add_argument("--draws", type=int, default=recovery.N_DRAWS, help="CVS recovery draws per level")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="tables and report only")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = Path(args.store) if args.store else None
    if store is None and args.data and (Path(args.data) / "stores" / "survey.zarr").exists():
        store = Path(args.data) / "stores" / "survey.zarr"
    predictions = Path(args.predictions) if args.predictions and Path(args.predictions).is_dir() else None
    if args.predictions and predictions is None and args.predictions != "predictions":
        print(f"predictions folder {args.predictions} does not exist", file=sys.stderr)
        return 2
    settings = Settings(runs=Path(args.runs), out=Path(args.out), predictions=predictions, store=store,
                        data=Path(args.data) if args.data else None, truth=Path(args.truth) if args.truth else None,
                        allow_partial=args.allow_partial, n_parts=args.n_parts,
                        logs=tuple(Path(p) for p in args.logs) if args.logs is not None else None, draws=args.draws,
                        progress=args.progress, figures=args.figures)
    from ..data.store import StoreError

    try:
        outcome = collect(settings)
    except (FileNotFoundError, StoreError, ValueError) as err:  # missing inputs, an unfinished store, name clashes
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print(f"{outcome.report}: {len(outcome.tables)} tables, {len(outcome.figures)} figures")
    if outcome.issues:
        verb = "left out (--allow-partial)" if settings.allow_partial else "incomplete"
        print(f"{len(outcome.issues)} {verb}:", file=sys.stderr)
        for issue in outcome.issues:
            print(f"  {issue.describe()}", file=sys.stderr)
        if outcome.exit_code:
            print("rows with incomplete members are marked partial; pass --allow-partial to average the complete "
                  "members", file=sys.stderr)
    return outcome.exit_code
