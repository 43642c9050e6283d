"""The spin catalogue (FITS + parquet) and the CVS on the sky: regions, hemispheres, HEALPix maps, map dipole,
bootstrap intervals, and on a synthetic survey the injected sky against them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ... import layout
from ...config import GridConfig
from ...io import config_hash, read_parquet
from .. import catalogue, sky, sky_figures
from ..report import Section
from ..runs import Completeness, Issue, part_problems, read_part_plan
from ..tables import frame_table, mean_std
from ..validation import truth_classes
from .common import Output, Written, doc_body

TITLE = "Spin catalogue and the CVS on the sky"


@dataclasses.dataclass(frozen=True)
class CatalogueInputs:
    """Where the catalogue's inputs are: the survey store (rows and part plan), the predictions root, the dataset
    folder (GZ1 votes, labelled stores) and the synthetic truth."""

    store: Path | None
    predictions: Path | None
    data: Path | None = None
    truth: Path | None = None


def members_of(completeness: Completeness, allow_partial: bool) -> dict[str, list[catalogue.Member]]:
    """Prediction sets by model label. Strict: complete sets only (the caller refuses any incomplete one);
    ``allow_partial``: the finished, not stale parts of every set whose run is complete."""
    runs = {(r.name, r.seed): r for r in completeness.complete_runs()}
    members: dict[str, list[catalogue.Member]] = {}
    for s in completeness.predictions:
        run = runs.get((s.name, s.seed))
        if run is None:
            continue
        stale = set(part_problems(s, run, completeness.part_sources))
        parts = {i: p for i, p in s.done.items() if i < completeness.n_parts and i not in stale}
        label = completeness.labels_of_predictions[(s.name, s.seed)]
        members.setdefault(label, []).append(catalogue.Member(label, s.seed, parts))
    order = list(GridConfig().models)
    return dict(sorted(members.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def run_provenance(completeness: Completeness, members: dict[str, list[catalogue.Member]]) -> tuple[list, list]:
    """Each member run's identity, and the science config hash of each (its experiment config without the grid)."""
    runs = {(r.label, r.seed): r for r in completeness.complete_runs()}
    identities, hashes = [], []
    for label, ms in members.items():
        for m in ms:
            run = runs[(label, m.seed)]
            identities.append({"model": label, "seed": m.seed, **run.identity})
            config = run.config() if (run.path / layout.RUN_CONFIG).exists() else {}
            science = {k: v for k, v in config.get("experiment", {}).items() if k != "grid"}
            hashes.append(config_hash(science))
    return identities, hashes


def part_rows(predictions: Path | None, store) -> list[tuple[int, int]]:
    """Each part's ``(start, stop)`` store rows: the recorded inference plan, else the store's own plan."""
    plan = read_part_plan(predictions)
    if plan is not None and "parts" in plan:
        return [tuple(p) for p in plan["parts"]]
    from ...cluster.infer import store_parts

    return [(p.rows.start, p.rows.stop) for p in store_parts(store)]


def pick_maps(labels: list[str]) -> list[str]:
    """A chirality-equivariant model and a plain one to draw side by side (those present)."""
    chiral = sorted((m for m in labels if m.startswith(("gc_", "ce_")) or m.endswith("_c")),
                    key=lambda m: not m.startswith("gc_"))  # the exact one-pass model first
    plain = [m for m in labels if not m.startswith(("g_", "gc_", "ce_")) and not m.endswith("_c")]
    return chiral[:1] + plain[:1] or labels[:2]


def sky_rows(label: str, counts: catalogue.SkyCounts, ddof: int = 1) -> list[dict]:
    """Per group (all, regions, hemispheres): counts and CVS of the catalogue class with its bootstrap interval,
    beside the mean ± std (``ddof``) over seeds of each seed's CVS and that seed's bootstrap σ."""
    rows = []
    mean_groups = sky.group_counts(counts.groups)
    seed_groups = {s: sky.group_counts(g) for s, g in counts.seed_groups.items()}
    for name, c in mean_groups.items():
        low, high, _ = sky.bootstrap_cvs(c)
        seed_cvs = [float(sky.cvs_of(g[name])) for g in seed_groups.values()]
        boot_std = [float(sky.bootstrap_cvs(g[name])[2]) for g in seed_groups.values()]
        m, sd, n = mean_std(seed_cvs, ddof)
        rows.append({"model": label, "galaxies": name, **sky.class_counts_row(c), "cvs_low": float(low),
                     "cvs_high": float(high), "cvs_seed_mean": m, "cvs_seed_std": sd, "n_seeds": n,
                     "cvs_boot_std_seed": mean_std(boot_std)[0]})
    return rows


def dipole_row(label: str, counts: catalogue.SkyCounts, survey_per_seed: pd.DataFrame, ddof: int = 1) -> dict:
    """The map dipole of the catalogue class, its mean ± std (``ddof``) over seeds, beside the per-galaxy
    least-squares one."""
    fit = sky.map_dipole(counts.pixels)
    per_seed = [sky.map_dipole(p)["dipole"] for p in counts.seed_pixels.values()]
    lsq = survey_per_seed.loc[survey_per_seed["model"] == label, "dipole"] if "dipole" in survey_per_seed else []
    lsq_sigma = (survey_per_seed.loc[survey_per_seed["model"] == label, "significance_sigma"]
                 if "significance_sigma" in survey_per_seed else [])
    m, sd, _ = mean_std(per_seed, ddof)
    lm, lsd, _ = mean_std(lsq, ddof)
    return {"model": label, "n_pixels": fit["n_pixels"], "map_dipole": fit["dipole"],
            "map_dipole_err": fit["dipole_err"],
            "map_dipole_ra": fit["dipole_ra"], "map_dipole_dec": fit["dipole_dec"],
            "map_sigma": fit["significance_sigma"], "chi2_map_dof": fit["chi2_map_dof"],
            "map_dipole_seed_mean": m, "map_dipole_seed_std": sd, "lsq_dipole_seed_mean": lm,
            "lsq_dipole_seed_std": lsd, "lsq_sigma_seed_mean": mean_std(lsq_sigma)[0]}


def truth_rows(label: str, counts: catalogue.SkyCounts, truth: catalogue.SkyCounts) -> list[dict]:
    """The injected (true) CVS against the model's bootstrap interval, per group and per HEALPix pixel."""
    rows = []
    mean_groups, true_groups = sky.group_counts(counts.groups), sky.group_counts(truth.groups)
    for name in mean_groups:
        check = sky.truth_inside(true_groups[name], mean_groups[name])
        rows.append({"model": label, "galaxies": name, **{k: float(v) for k, v in check.items()}})
    pixels = np.flatnonzero(truth.pixels[:, :2].sum(1) > 0)
    check = sky.truth_inside(truth.pixels[pixels], counts.pixels[pixels])
    for k, pixel in enumerate(pixels):
        rows.append({"model": label, "galaxies": f"pixel {pixel}", **{c: float(v[k]) for c, v in check.items()}})
    return rows


def remove_stale(folder: Path) -> str:
    """Remove a catalogue an earlier collect wrote (it no longer matches the predictions); say so."""
    stale = [p for p in (folder / f"{catalogue.STEM}.fits", folder / f"{catalogue.STEM}.parquet") if p.exists()]
    for path in stale:
        path.unlink()
    return f" The earlier catalogue ({', '.join(p.name for p in stale)}) was removed." if stale else ""


def catalogue_section(out: Output, completeness: Completeness, inputs: CatalogueInputs,
                      survey_per_seed: pd.DataFrame) -> Written:
    """Write the catalogue and its sky tables and maps (see :mod:`gcnn_spin.analysis.catalogue`)."""
    written = Written(Section(TITLE, doc_body(catalogue) + "\n\n" + doc_body(sky)))
    section = written.section
    if not completeness.predictions or inputs.store is None:
        section.text = "No catalogue: it needs survey predictions and the survey store (--store or --data)."
        return written
    incomplete = completeness.survey_incomplete()
    if incomplete and not out.allow_partial:
        section.text = (f"Catalogue not written: incomplete prediction sets for {', '.join(incomplete)} (see "
                        f"Completeness); `--allow-partial` writes it with per-row member counts."
                        + remove_stale(out.root / "catalogue"))
        return written
    import pyarrow as pa

    from ...data.store import open_store
    from ...layout import store_identity

    store = open_store(inputs.store)
    members = members_of(completeness, out.allow_partial)
    identities, hashes = run_provenance(completeness, members)
    meta = catalogue.catalogue_meta(identities, store_identity(store), hashes, out.allow_partial)
    rows = pa.Table.from_pandas(store.rows[["dr8_id", "ra", "dec", "ok"]], preserve_index=False)  # read on open
    truth = None
    if inputs.truth is not None:
        table = read_parquet(inputs.truth, what="truth table")
        truth = pd.Series(truth_classes(table), index=table["dr8_id"].astype(str)).loc[lambda s: s.index != ""]
        truth = truth[~truth.index.duplicated()]
    try:
        result = catalogue.write_catalogue(out.root / "catalogue", rows, part_rows(inputs.predictions, store), members,
                                           meta, data=inputs.data, truth=truth, allow_partial=out.allow_partial)
    except catalogue.CatalogueIncomplete as err:
        section.text = f"Catalogue not written: {err}." + remove_stale(out.root / "catalogue")
        written.issues.append(Issue("predictions", err.model, err.seed, f"catalogue: {err}", part=err.part))
        return written
    section.text += (f"\n\nWritten: {', '.join(f'`{p.relative_to(out.root)}`' for p in result.paths)} "
                     f"({result.n_rows} rows, {len(result.columns)} columns; the columns are documented in "
                     f"docs/catalogue.md).")
    sky_frame = pd.DataFrame([r for label, c in result.sky.items() for r in sky_rows(label, c, out.spread_ddof)])
    written.table(out, frame_table(
        "catalogue_summary", "Catalogue summary: CVS by imaging region and galactic hemisphere",
        "Counts and CVS of the catalogue class (mean probabilities over seeds, 0.5 threshold) with its 95 % "
        "bootstrap interval over galaxies; beside them the CVS mean ± std over seeds and the mean per-seed "
        "bootstrap σ. Regions: north = BASS/MzLS (Dec > 32.375°, b > 0), south = DECaLS.", sky_frame,
        {c: ".2f" for c in ("cvs", "cvs_low", "cvs_high", "cvs_seed_mean", "cvs_seed_std", "cvs_boot_std_seed")}))
    dipoles = pd.DataFrame([dipole_row(label, c, survey_per_seed, out.spread_ddof)
                            for label, c in result.sky.items()])
    written.table(out, frame_table(
        "sky_dipole", "Dipole on the HEALPix map beside the least-squares dipole",
        f"Map dipole (NSIDE={sky.NSIDE}) of the catalogue class with its error, direction and significance, its "
        "χ²/dof; mean ± std over seeds of the map dipole and of the per-galaxy least-squares dipole.", dipoles,
        {c: ".4f" for c in dipoles.columns if "dipole" in c and not c.endswith(("_ra", "_dec"))}
        | {c: ".2f" for c in ("map_dipole_ra", "map_dipole_dec", "map_sigma", "chi2_map_dof", "lsq_sigma_seed_mean")}))
    if result.truth is not None:
        frame = pd.DataFrame([r for label, c in result.sky.items() for r in truth_rows(label, c, result.truth)])
        frame["inside"] = frame["inside"].astype(bool)
        written.table(out, frame_table(
            "sky_truth", "The injected sky against each model's bootstrap intervals",
            "Synthetic survey: true CVS of the predicted galaxies per group and HEALPix pixel, each model's CVS "
            "and its 95 % bootstrap interval, and whether the interval holds the truth.", frame,
            {c: ".2f" for c in ("cvs_true", "cvs", "cvs_low", "cvs_high")}))
    drawn = pick_maps(list(result.sky))
    if drawn:
        written.figure(out, sky_figures.sky_maps_plot, "sky_maps.png",
                       f"HEALPix (NSIDE={sky.NSIDE}) maps of the catalogue class: predicted spirals and CVS per "
                       f"pixel, {' and '.join(drawn)}.", {m: result.sky[m].pixels for m in drawn})
    return written

