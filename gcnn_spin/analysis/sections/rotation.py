"""The rotation-overlap (η) study's tables and figures, from the study outputs under ``RESULTS/studies/rotation``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ...conventions import ACW, CW
from .. import figures, rotation
from ..report import Section
from ...run import Run, model_order
from ..runs import Issue, group_issues
from ..studies import load_study
from ..overlap import ETA_TOLERANCE
from ..tables import Column, frame_table, summary_table
from .common import Output, Written, doc_body

#: The study compares models over at least this many common test images (``--images``' default).
MIN_COMMON_IMAGES = 1000


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


def rotation_section(out: Output, runs: Sequence[Run], issues: Sequence[Issue]) -> Written:
    """⟨η⟩ per model and class pair, which model of each pair has the lower overlap, and the η figures.

    ``runs``: the complete runs; ``issues``: the incomplete runs and parts found so far. The returned
    ``issues`` are the complete runs whose study output is missing or unfinished.
    """
    written = Written(Section("Rotation overlap", doc_body(rotation)))
    section = written.section
    tables, written.issues = load_study(out.root, "rotation", runs)
    if not tables:
        section.text += ("\n\nNo rotation study outputs were found under studies/rotation: run "
                         "`python analysis/rotation_study.py` (one array task per run) to add this section.")
        return written
    incomplete = group_issues([*issues, *written.issues], ("run", "study"))
    rows, per_image = [], {}
    for (label, seed), table in tables.items():
        means = rotation.mean_over_angles(table)
        as_coded = rotation.mean_over_angles(table, study_code_bug=True)
        rows.append({"model": label, "seed": seed, "n_images": len(means),
                     **{k: float(means[k].mean()) for k in rotation.PAIRS},
                     **{f"{k}_study_code": float(as_coded[k].mean()) for k in rotation.PAIRS}})
        if out.shows(label, incomplete):
            per_image.setdefault(label, []).append(means)
    per_run = pd.DataFrame(rows)
    written.table(out, summary_table(
        "rotation_overlap", "Rotation overlap ⟨η⟩",
        "Mean over images of ⟨η⟩ (each image's η averaged over all 9 angles) per class pair, mean ± std over the "
        "seeds studied; lower = classes better separated under rotation.",
        per_run, [Column(k, header, 3) for k, header in zip(rotation.PAIRS, ("η_SZ", "η_ZN", "η_SN"))],
        {m: v for m, v in incomplete.items() if m in set(per_run["model"])}, out.allow_partial, ddof=out.spread_ddof))
    written.table(out, summary_table(
        "rotation_overlap_study_code", "Rotation overlap ⟨η⟩ as the study's code computed it",
        "The same outputs averaged as the study's code did (its η array was reset inside the angle loop, so each "
        "image's ⟨η⟩ is η at the last angle divided by the number of angles): the figures to hold against the "
        "published ones; the table above is the corrected mean (docs/study_deviations.md).",
        per_run, [Column(f"{k}_study_code", header, 3) for k, header in zip(rotation.PAIRS, ("η_SZ", "η_ZN", "η_SN"))],
        {m: v for m, v in incomplete.items() if m in set(per_run["model"])}, out.allow_partial, ddof=out.spread_ddof))
    averaged = {m: pd.concat(v).groupby("row", sort=True)[list(rotation.PAIRS)].mean().reset_index()
                for m, v in per_image.items()}
    averaged = {m: averaged[m] for m in model_order(averaged)}
    comparison = rotation.compare_models(averaged)
    if len(comparison) and comparison["n_images"].min() < MIN_COMMON_IMAGES:
        section.text += (f"\n\nOnly {comparison['n_images'].min()} images are common to some models; the study "
                         f"compares models over at least {MIN_COMMON_IMAGES:,} (`--images {MIN_COMMON_IMAGES}`, "
                         "the default).")
    if len(comparison):
        written.table(out, frame_table(
            "rotation_comparison", "Which model has the lower overlap",
            "For each pair of models, over the images both studied (⟨η⟩ averaged over seeds), as the study "
            f"counted: the fraction of images where model a has the lower ⟨η⟩ by more than {ETA_TOLERANCE} "
            f"(`_a_lower`), where the two are within {ETA_TOLERANCE} (`_within`), and where model b is lower by "
            "more than it (`_b_lower`), for each class pair.",
            comparison, {c: ".3f" for c in comparison.columns if c.endswith(("_lower", "_within"))}))
    if averaged:
        written.figure(out, figures.eta_histograms, "rotation_eta.png",
                       "Distribution over test images of ⟨η⟩ (mean over angles and seeds) per class pair and model.",
                       averaged)
    pick = example_galaxy(tables, list(averaged))
    if pick:
        (label_a, label_b), seed, row = pick
        one = {m: tables[(m, seed)][tables[(m, seed)]["row"] == row] for m in (label_a, label_b)}
        name = one[label_a]["dr8_id"].iloc[0] if "dr8_id" in one[label_a] else f"row {row}"
        written.figure(out, figures.rotation_probabilities, "rotation_probabilities.png",
                       f"Class probabilities (MC-dropout mean ± std of the passes) vs rotation angle for one "
                       f"test galaxy ({name}), {label_a} vs {label_b}, seed {seed}.", one,
                       title=f"Galaxy {name}: probabilities under rotation")
    return written
