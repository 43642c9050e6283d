"""Tables 9 and 10 (survey galaxies per predicted class, ACW/CW ratio and CVS), the sky split and dipole."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ...run import model_order
from ...errors import reading
from ...io import DIGEST_KEY, config_hash, read_marker, write_json_atomic
from .. import figures, survey
from ..report import Section
from ..runs import Completeness, PredictionSet
from ..sky import with_bootstrap
from ..tables import Column, frame_table, summary_table
from .common import Output, Written, doc_body

PER_SEED_COLUMNS = ["model", "seed", "n_cw", "n_acw", "n_other", "pct_cw", "pct_acw", "acw_cw_ratio", "cvs",
                    "cvs_north", "cvs_south", "dipole", "significance_sigma"]
SKY_COLUMNS = ("cvs_north", "cvs_south", "dipole", "significance_sigma")
PER_RUN_KEEP = ("model", "seed", "n_total", "n_cw", "n_acw", "n_other", "cvs", "cvs_boot_low", "cvs_boot_high",
                "cvs_north", "cvs_south", "dipole", "dipole_err", "dipole_ra", "dipole_dec", "significance_sigma",
                "p_value")


@dataclasses.dataclass
class SurveyResult:
    """The survey section and what the validation section compares with the truth: one row per complete
    prediction set (``per_seed``: model, seed, counts, CVS, ...) and the models with incomplete sets."""

    written: Written
    per_seed: pd.DataFrame
    incomplete: dict[str, list[str]]


def survey_seed(out: Output, label: str, pset: PredictionSet, n_parts: int, progress: bool = True) -> dict[str, Any]:
    """Counts, CVS, sky split and dipole of one prediction set, cached in ``RESULTS/cache/survey``; the entry's
    identity is its inputs: each part's name, identity and content digest as its marker records them (the
    completeness check has verified them against the bytes)."""
    parts = [p for i, p in pset.done.items() if i < n_parts]
    markers = [read_marker(p) or {} for p in parts]
    identity = config_hash([(p.name, m.get("config_hash"), m.get(DIGEST_KEY)) for p, m in zip(parts, markers)])
    cache = out.root / "cache" / "survey" / label / f"seed{pset.seed}.json"
    if cache.exists():
        with reading(cache, "survey cache entry", f"delete {cache} and rerun (it is recomputed from the parts)"):
            cached = json.loads(cache.read_text())
            if not isinstance(cached, dict) or not isinstance(cached.get("row"), dict):
                raise ValueError("not an object with an identity and a row")
        if cached.get("identity") == identity:
            return cached["row"]
    merged = survey.merge_parts(parts, progress=progress, desc=f"{label} seed{pset.seed}")
    row = survey.survey_seed(merged)
    write_json_atomic(cache, {"identity": identity, "row": row})
    return row


def per_seed_frame(out: Output, completeness: Completeness, progress: bool = True) -> pd.DataFrame:
    """One row per complete prediction set, in the study's model order, then by seed."""
    rows = [{"model": label, "seed": pset.seed, **survey_seed(out, label, pset, completeness.n_parts, progress)}
            for label, pset in completeness.complete_prediction_sets()]
    per_seed = pd.DataFrame(rows)
    if len(per_seed):
        order = {m: i for i, m in enumerate(model_order(per_seed["model"]))}
        per_seed = per_seed.sort_values(["model", "seed"], key=lambda c: c.map(order) if c.name == "model" else c)
        per_seed = with_bootstrap(per_seed)
    return per_seed


def survey_section(out: Output, completeness: Completeness, predictions: Path | None,
                   progress: bool = True) -> SurveyResult:
    """The survey tables and figures from the complete prediction sets under ``predictions``."""
    if not completeness.predictions:
        text = ("No survey predictions were given (--predictions)." if predictions is None
                else f"No prediction folders under {predictions}.")
        return SurveyResult(Written(Section("Survey", text)), pd.DataFrame(), {})
    written = Written(Section("Survey", f"Survey predictions: {completeness.n_parts} parts per run expected (from "
                                        f"{completeness.parts_source}). " + doc_body(survey)))
    per_seed = per_seed_frame(out, completeness, progress)
    result = SurveyResult(written, per_seed, completeness.survey_incomplete())
    incomplete = result.incomplete
    labels = model_order(set(per_seed["model"] if len(per_seed) else []) | set(incomplete))
    table = per_seed.copy() if len(per_seed) else pd.DataFrame(columns=PER_SEED_COLUMNS)
    for col in (*SKY_COLUMNS, "cvs_boot_std"):
        if col not in table:
            table[col] = math.nan
    counts = written.table(out, summary_table(
        "table9_survey_counts", "Table 9: survey galaxies per predicted class",
        "Survey galaxies predicted CW, ACW (softmax ≥ 0.5) and Other, and the spiral shares, mean ± std over seeds.",
        table, [Column("n_cw", "CW", 0), Column("n_acw", "ACW", 0), Column("n_other", "Other", 0),
                Column("pct_cw", "CW %", 2), Column("pct_acw", "ACW %", 2)], incomplete, out.allow_partial, labels,
        out.spread_ddof))
    cvs_table = written.table(out, summary_table(
        "table10_survey_cvs", "Table 10: survey ACW/CW ratio and CVS",
        "n_ACW/n_CW and CVS = (n_ACW − n_CW)/√(n_ACW + n_CW) of the predicted survey, mean ± std over seeds; "
        "beside it the σ of each seed's CVS under a bootstrap over galaxies (sampling noise, mean ± std over "
        "seeds), against the spread over seeds (training noise).",
        table, [Column("acw_cw_ratio", "ACW/CW", 4), Column("cvs", "CVS", 2),
                Column("cvs_boot_std", "CVS bootstrap σ", 2)], incomplete, out.allow_partial, labels, out.spread_ddof))
    sky = written.table(out, summary_table(
        "sky_split", "Sky split and dipole",
        "CVS of the predicted spirals north (b > 0) and south (b < 0) of the galactic plane, the fitted "
        "spin-sign dipole amplitude and its significance (Gaussian σ), mean ± std over seeds.",
        table, [Column("cvs_north", "CVS north", 2), Column("cvs_south", "CVS south", 2),
                Column("dipole", "dipole |d|", 4), Column("significance_sigma", "dipole σ", 2)],
        incomplete, out.allow_partial, labels, out.spread_ddof))
    if len(per_seed):
        keep = [c for c in PER_RUN_KEEP if c in table]
        written.table(out, frame_table(
            "survey_per_seed", "Survey per run", "Every complete prediction set: counts, CVS, hemispheres, "
            "dipole (amplitude, error, direction RA/Dec in degrees, significance).", table[keep],
            {c: ".2f" for c in ("cvs", "cvs_boot_low", "cvs_boot_high", "cvs_north", "cvs_south", "dipole_ra",
                                "dipole_dec", "significance_sigma")}
            | {"dipole": ".4f", "dipole_err": ".4f", "p_value": ".2e"}))
    drawn = [m for m in labels if out.shows(m, incomplete)]
    summary = counts.frame.merge(cvs_table.frame[["model", "cvs_mean", "cvs_std"]], on="model")
    summary = summary[summary["model"].isin(drawn) & (summary["n_seeds"] > 0)]
    note = out.partial_note(incomplete, labels)
    if len(summary):
        written.figure(out, figures.survey_plot, "survey_counts_cvs.png",
                       "Share of survey galaxies predicted CW and ACW, and the survey CVS, per model "
                       "(mean ± std over seeds)." + note, summary.reset_index(drop=True))
        sky_frame = sky.frame[sky.frame["model"].isin(summary["model"])].reset_index(drop=True)
        written.figure(out, figures.sky_split_plot, "sky_split.png",
                       "CVS north vs south of the galactic plane and the spin-sign dipole amplitude per model "
                       "(mean ± std over seeds; labels: mean significance)." + note, sky_frame)
    return result
