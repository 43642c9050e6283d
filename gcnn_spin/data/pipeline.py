"""The real data pipeline: GZ1 -> DESI match -> SDSS cuts -> splits -> catalogue and counts -> Zarr stores.

Every stage reads and writes files in ``DIR`` only and is reused on a rerun when its output's marker was
written for the same inputs and settings (each stage's config hash covers its input files' size and mtime,
its settings and the hash of the stage before it, so a changed input reruns everything after it):

==============  ===============================================================================================
stage           outputs in ``DIR`` (each ``X.parquet`` gets the marker ``X.parquet.done``)
==============  ===============================================================================================
gz1             ``gz1.parquet``, ``gz1.counts.{csv,md}``, ``gz1.skipped.csv`` (``on_bad="skip"``)
crossmatch      ``crossmatch.parquet`` (objid + match columns), ``crossmatch.counts.*``, ``desi_index.skipped.csv``
sdss            ``sdss.parquet``, ``sdss.counts.*``, ``cache/sdss/{sha}.csv``, ``sdss.{failed,skipped}.csv``
catalogue       ``catalogue.parquet`` (every valid GZ1 row, ``split`` and ``reason``), ``counts.{csv,md}``
survey          ``survey.parquet``: the DESI galaxies not used in train/val/test (the survey store's rows)
stores          ``stores/{train,val,test,survey}.zarr`` via ``gcnn_spin.data.store.build_store`` (resumable)
==============  ===============================================================================================

Rows dropped as bad input (``on_bad="skip"``) are not in the catalogue; they are listed, each with its
reasons, in the ``*.skipped.csv`` reports. In the stores ``ra``/``dec`` are the DESI position (the cutout's
centre); the catalogue keeps GZ1's ``ra``/``dec`` and adds ``desi_ra``/``desi_dec``. A galaxy whose image is bad
keeps its ``split`` (its store slot is marked ``ok = False`` by the store builder) and gets reason ``bad_image``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gcnn_spin.config import DataConfig
from gcnn_spin.conventions import counts_table
from gcnn_spin.data import crossmatch, cutouts, gz1, sdss, selection
from gcnn_spin.data.bad_rows import check_on_bad
from gcnn_spin.data.images import JpegTree
from gcnn_spin.data.study import beside_study
from gcnn_spin.artifacts import is_done, verdict
from gcnn_spin.errors import reading
from gcnn_spin.io import (atomic_path, config_hash, read_parquet, write_json_atomic, write_marker,
                          write_parquet_atomic, write_text_atomic)
from gcnn_spin.layout import store_path, store_report_path

log = logging.getLogger(__name__)

STORE_SPLITS: tuple[str, ...] = ("train", "val", "test", "survey")
CATALOGUE_COLUMNS: tuple[str, ...] = (
    "objid", "ra", "dec", "p_cw", "p_acw", "p_other", "n_vote", "label", "dr8_id", "match_sep_arcsec",
    "n_neighbours_1arcsec", "petroR50_r", "petroR50Err_r", "petroMagErr_r", "split", "reason",
    "petroMag_r", "desi_ra", "desi_dec",
)
#: Columns handed to the store builder for train/val/test (``ra``/``dec`` = DESI position).
STORE_ROW_COLUMNS: tuple[str, ...] = ("dr8_id", "ra", "dec", "p_cw", "p_acw", "p_other", "label", "objid",
                                      "n_vote", "match_sep_arcsec")


class InputsError(ValueError):
    """Inputs that cannot make one consistent dataset (no image source, or two that do not share a scale)."""


class CutoutFetchError(RuntimeError):
    """Cutouts that could not be fetched from the Legacy Surveys service (names them and why)."""


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Where the raw data comes from. ``images`` and/or ``cutout_service`` provide the cutouts."""

    gz1: Path
    desi_index: Path
    images: Path | None = None
    sdss_photometry: Path | None = None  # None: query SkyServer
    cutout_service: bool = False
    sdss_url: str | None = None  # None: astroquery's SkyServer
    sdss_batch_size: int = sdss.DEFAULT_BATCH_SIZE  # objects per SkyServer request, at most
    sdss_max_query_bytes: int = sdss.MAX_QUERY_BYTES  # GET query-string limit per request
    sdss_rate: float = sdss.DEFAULT_REQUESTS_PER_S  # requests per second to SkyServer
    cutout_url: str = cutouts.DEFAULT_CUTOUT_URL
    cutout_rate: float = 5.0  # requests per second to the cutout service

    def __post_init__(self):
        if self.images is None and not self.cutout_service:
            raise InputsError("no image source: give the Galaxy Zoo DESI jpg folder (--images) or the cutout "
                              "service (--cutout-service)")
        if self.images is not None and self.cutout_service:
            raise InputsError("give --images or --cutout-service, not both: the Galaxy Zoo DESI JPEGs are cut at "
                              "a pixel scale set by each galaxy's size, the cutout service at a fixed "
                              f"{cutouts.NATIVE_PIXSCALE}\"/px, and a dataset mixing them would show galaxies "
                              "at two scales")


# ----------------------------------------------------------------------------- small helpers


def fingerprint(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """What identifies an input file's version without reading it: name, size, modification time."""
    if path is None:
        return None
    stat = Path(path).stat()
    return {"name": Path(path).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def counts_markdown(table: pd.DataFrame) -> str:
    """The counts table as Markdown in the study's Table 1 layout (thousands separators, CVS to 2 decimals),
    with the study's total of each stage beside ours and the ratio ours / study ("–" where it has none)."""
    lines = ["| dataset | total | ACW | CW | Other | CVS | study total | ours / study |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in beside_study(table).iterrows():
        cells = [f"{int(row[c]):,}" for c in ("total", "ACW", "CW", "Other")] + [f"{row['CVS']:.2f}"]
        known = np.isfinite(row["study_total"])
        cells += [f"{int(row['study_total']):,}", f"{row['ratio']:.3g}"] if known else ["–", "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_counts(table: pd.DataFrame, stem: Path) -> None:
    """``stem.csv`` and ``stem.md`` (atomic), and the table in the log."""
    with atomic_path(stem.with_name(stem.name + ".csv")) as tmp:
        table.to_csv(tmp)
    write_text_atomic(stem.with_name(stem.name + ".md"), counts_markdown(table))
    log.info("counts (%s):\n%s", stem.with_name(stem.name + ".csv").name, table.to_string())


def _stage_counts(cfg: DataConfig, upto: int, gz1_df: pd.DataFrame, match: pd.DataFrame | None = None,
                  photometry: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts of the first ``upto`` rows of the Table 1 layout, from the stages run so far."""
    label = gz1_df["label"].to_numpy()
    rows = {selection.STAGES[0]: label}
    if match is not None:
        matched = match["dr8_id"].to_numpy() != ""
        rows[selection.STAGES[1]] = label[matched]
        if photometry is not None:
            rows[selection.STAGES[2]] = label[matched & selection.neighbour_mask(photometry, cfg.cuts)]
    return counts_table(dict(list(rows.items())[:upto]))


# ----------------------------------------------------------------------------- stage configs


def stage_configs(inputs: Inputs, cfg: DataConfig, on_bad: str) -> dict[str, dict[str, Any]]:
    """The config each stage's marker records; chained, so a change upstream invalidates what follows."""
    configs: dict[str, dict[str, Any]] = {}
    configs["gz1"] = {"stage": "gz1", "gz1": fingerprint(inputs.gz1), "on_bad": on_bad,
                      "vote_tolerance": gz1.VOTE_SUM_TOLERANCE}
    configs["crossmatch"] = {"stage": "crossmatch", "after": config_hash(configs["gz1"]),
                             "desi_index": fingerprint(inputs.desi_index), "on_bad": on_bad,
                             "match_radius_arcsec": cfg.match_radius_arcsec, "unique": True}
    source = ({"table": fingerprint(inputs.sdss_photometry)} if inputs.sdss_photometry is not None
              else {"skyserver_dr": sdss.DATA_RELEASE})
    configs["sdss"] = {"stage": "sdss", "after": config_hash(configs["crossmatch"]), "source": source,
                       "neighbour_radius_arcsec": cfg.neighbour_radius_arcsec, "on_bad": on_bad}
    if inputs.sdss_photometry is None:  # a supplied table made its own choice (see the shipped SQL)
        configs["sdss"]["neighbours"] = cfg.sdss_neighbours
    configs["catalogue"] = {"stage": "catalogue", "after": config_hash(configs["sdss"]),
                            "cuts": dataclasses.asdict(cfg.cuts), "test_fraction": cfg.test_fraction,
                            "val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed,
                            "downsample_bins": [list(b) for b in cfg.downsample_bins]}
    configs["survey"] = {"stage": "survey", "after": config_hash(configs["catalogue"])}
    return configs


# ----------------------------------------------------------------------------- stages


def read_stage_output(output: Path) -> pd.DataFrame:
    """A finished stage's table, reused (checksummed: a damaged one is named, with what to do)."""
    return read_parquet(output, what="data stage output", fix="delete it and build the dataset again")


def stage_gz1(out: Path, inputs: Inputs, cfg: DataConfig, config: dict, on_bad: str) -> tuple[pd.DataFrame, bool]:
    """Stage 1 -> ``(gz1 table, reused)``."""
    output = out / "gz1.parquet"
    if is_done(output, config):
        return read_stage_output(output), True
    table = gz1.read_gz1(inputs.gz1, on_bad=on_bad, report_path=out / "gz1.skipped.csv")
    write_parquet_atomic(table, output)
    write_counts(_stage_counts(cfg, 1, table), out / "gz1.counts")
    write_marker(output, config, n_rows=len(table))
    return table, False


class _LazyIndex:
    """The DESI index, read (8.7 M rows, seconds) only when a stage needs it, then kept."""

    def __init__(self, path: Path, on_bad: str, report_path: Path):
        self.path, self.on_bad, self.report_path, self._table = path, on_bad, report_path, None

    def __call__(self) -> pd.DataFrame:
        if self._table is None:
            self._table = crossmatch.read_desi_index(self.path, on_bad=self.on_bad, report_path=self.report_path)
        return self._table


def stage_crossmatch(out: Path, gz1_df: pd.DataFrame, index: Callable[[], pd.DataFrame], cfg: DataConfig,
                     config: dict) -> tuple[pd.DataFrame, bool]:
    """Stage 2 -> ``(objid + match columns in gz1 order, reused)``."""
    output = out / "crossmatch.parquet"
    if is_done(output, config):
        return read_stage_output(output), True
    match = crossmatch.match_to_desi(gz1_df, index(), cfg.match_radius_arcsec, unique=True)
    match.insert(0, "objid", gz1_df["objid"].to_numpy())
    write_parquet_atomic(match, output)
    write_counts(_stage_counts(cfg, 2, gz1_df, match), out / "crossmatch.counts")
    write_marker(output, config, n_matched=int((match["dr8_id"] != "").sum()))
    return match, False


def stage_sdss(out: Path, gz1_df: pd.DataFrame, match: pd.DataFrame, inputs: Inputs, cfg: DataConfig,
               config: dict, on_bad: str, client: sdss.SkyServer | None = None,
               progress: bool = True) -> tuple[pd.DataFrame, bool]:
    """Stage 3 -> ``(SDSS columns aligned with gz1 rows, NaN where no answer, reused)``.

    The marker is only written when every matched galaxy got an answer, so a rerun retries failed batches.
    """
    output = out / "sdss.parquet"
    if is_done(output, config):
        return read_stage_output(output), True
    matched = match["dr8_id"].to_numpy() != ""
    objects = gz1_df.loc[matched, ["objid", "ra", "dec"]]
    failed = pd.DataFrame(columns=["objid", "batch", "reason"])
    if inputs.sdss_photometry is not None:
        answers = sdss.read_photometry_table(inputs.sdss_photometry, on_bad=on_bad,
                                             report_path=out / "sdss.skipped.csv")
    else:
        answers, failed = sdss.query_photometry(
            objects, out / "cache" / "sdss",
            client=client or sdss.SkyServer(inputs.sdss_url, max_requests_per_s=inputs.sdss_rate),
            radius_arcsec=cfg.neighbour_radius_arcsec, neighbours=cfg.sdss_neighbours,
            batch_size=inputs.sdss_batch_size, max_query_bytes=inputs.sdss_max_query_bytes, on_bad=on_bad,
            progress=progress)
        if len(failed):
            with atomic_path(out / "sdss.failed.csv") as tmp:
                failed.to_csv(tmp, index=False)
    photometry = pd.DataFrame({"objid": gz1_df["objid"].to_numpy()}).merge(answers, on="objid", how="left")
    photometry.loc[~matched, list(sdss.SDSS_COLUMNS[1:])] = np.nan  # only matched galaxies count
    write_parquet_atomic(photometry, output)
    write_counts(_stage_counts(cfg, 3, gz1_df, match, photometry), out / "sdss.counts")
    if len(failed) == 0:
        write_marker(output, config, n_answered=int(np.isfinite(photometry["n_neighbours_1arcsec"]).sum()))
    else:
        log.warning("SDSS: %d galaxies without an answer (sdss.failed.csv); rerun to retry them", len(failed))
    return photometry, False


def stage_catalogue(out: Path, gz1_df: pd.DataFrame, match: pd.DataFrame, photometry: pd.DataFrame,
                    cfg: DataConfig, config: dict, final: bool = True) -> tuple[pd.DataFrame, bool]:
    """Stage 4 -> ``(catalogue, reused)``; writes ``catalogue.parquet`` and ``counts.{csv,md}``.

    ``final=False`` (SDSS answers still missing): written for inspection but without a marker, so the next
    run builds it again.
    """
    output = out / "catalogue.parquet"
    if is_done(output, config):
        return read_stage_output(output), True
    for name, part in (("crossmatch", match), ("sdss", photometry)):
        if not np.array_equal(part["objid"].to_numpy(), gz1_df["objid"].to_numpy()):
            raise RuntimeError(f"{name}.parquet is not aligned with gz1.parquet (stale outputs?): delete "
                               f"{out / (name + '.parquet.done')} and rerun")
    merged = pd.concat([gz1_df.reset_index(drop=True), match.drop(columns="objid").reset_index(drop=True),
                        photometry.drop(columns="objid").reset_index(drop=True)], axis=1)
    catalogue = selection.select(merged, cfg)[list(CATALOGUE_COLUMNS)]
    write_parquet_atomic(catalogue, output)
    write_counts(counts_table(selection.stage_labels(catalogue, cfg)), out / "counts")
    if final:
        write_marker(output, config, n_rows=len(catalogue),
                     n_split={s: int((catalogue["split"] == s).sum()) for s in selection.SPLITS})
    return catalogue, False


def stage_survey(out: Path, catalogue: pd.DataFrame, index: Callable[[], pd.DataFrame],
                 config: dict) -> tuple[pd.DataFrame, bool]:
    """The survey set -> ``(rows, reused)``: the DESI index minus every train/val/test galaxy."""
    output = out / "survey.parquet"
    if is_done(output, config):
        return read_stage_output(output), True
    used = catalogue.loc[catalogue["split"].isin(selection.SPLITS), "dr8_id"]
    rows = crossmatch.survey_rows(index(), used)
    rows = rows.sort_values("dr8_id", kind="stable", ignore_index=True)  # dr8_id starts with the brick: locality
    write_parquet_atomic(rows, output)
    write_marker(output, config, n_rows=len(rows))
    log.info("survey set: %d DESI galaxies (%d used in train/val/test removed)", len(rows), len(used))
    return rows, False


def split_rows(catalogue: pd.DataFrame, split: str) -> pd.DataFrame:
    """Store rows of ``split`` (train/val/test): catalogue columns, ``ra``/``dec`` = DESI position, dr8_id order."""
    rows = catalogue[catalogue["split"] == split]
    rows = rows.assign(ra=rows["desi_ra"], dec=rows["desi_dec"])[list(STORE_ROW_COLUMNS)]
    return rows.sort_values("dr8_id", kind="stable").reset_index(drop=True)


def image_source(out: Path, inputs: Inputs, rows: pd.DataFrame, split: str, *, workers: int, on_bad: str,
                 progress: bool = True):
    """The store builder's image source for ``rows``: the jpg tree, or the cutout cache after fetching."""
    if not inputs.cutout_service:
        return JpegTree(inputs.images)
    cache_dir = out / "cache" / "cutouts"
    service = cutouts.LegacyCutoutService(rows[["dr8_id", "ra", "dec"]], cache_dir, base_url=inputs.cutout_url,
                                          max_requests_per_s=inputs.cutout_rate)
    result = cutouts.prefetch(service, rows["dr8_id"], workers=max(2, workers), progress=progress)
    report = store_report_path(out, split, "fetch_failed")
    failed = result["failed"]
    if len(failed):
        with atomic_path(report) as tmp:
            failed.to_csv(tmp, index=False)
        if on_bad == "raise":
            shown = "\n".join(f"  {r.dr8_id}: {r.reason} ({r.url})" for r in failed.head(10).itertuples())
            raise CutoutFetchError(f"{len(failed)} cutout(s) of {split} could not be fetched (all listed in "
                                   f"{report}):\n{shown}")
    return cutouts.CutoutCache(cache_dir)


def _mark_bad_images(out: Path, catalogue: pd.DataFrame, splits: Sequence[str]) -> pd.DataFrame:
    """Reason ``bad_image`` for the catalogue rows the store builder listed in ``stores/{split}.bad.csv``."""
    catalogue = catalogue.copy()
    changed = False
    for split in splits:
        bad_csv = store_report_path(out, split, "bad")
        if split == "survey" or not bad_csv.exists():
            continue
        bad_ids = pd.read_csv(bad_csv, dtype={"dr8_id": str})["dr8_id"]
        hit = (catalogue["split"] == split) & catalogue["dr8_id"].isin(bad_ids)
        changed |= bool((catalogue.loc[hit, "reason"] != "bad_image").any())
        catalogue.loc[hit, "reason"] = "bad_image"
    if changed:
        write_parquet_atomic(catalogue, out / "catalogue.parquet")
    return catalogue


def build_stores(out: Path, catalogue: pd.DataFrame, survey: Callable[[], pd.DataFrame], inputs: Inputs,
                 cfg: DataConfig, splits: Sequence[str], *, workers: int, on_bad: str,
                 progress: bool = True) -> dict[str, dict]:
    """Build ``stores/{split}.zarr`` for each of ``splits`` (train/val/test with margin, survey without)."""
    from gcnn_spin.data.store import StoreError, build_store, store_oversample  # late: the zarr stack only when needed

    summaries = {}
    for split in splits:
        rows = survey() if split == "survey" else split_rows(catalogue, split)
        source = image_source(out, inputs, rows, split, workers=workers, on_bad=on_bad, progress=progress)
        path = store_path(out, split)
        try:
            summaries[split] = build_store(path, rows, source, margin=split != "survey", cfg=cfg, workers=workers,
                                           on_bad=on_bad, oversample=store_oversample(split, cfg), progress=progress)
        except StoreError as err:  # built from an older catalogue: its rows changed, so it is stale
            log.warning("%s; rebuilding it from the current catalogue", err)
            summaries[split] = build_store(path, rows, source, margin=split != "survey", cfg=cfg, workers=workers,
                                           on_bad=on_bad, overwrite=True, oversample=store_oversample(split, cfg),
                                           progress=progress)
        log.info("store %s: %s", split, {k: v for k, v in summaries[split].items() if not isinstance(v, list)})
    return summaries


# ----------------------------------------------------------------------------- the whole pipeline


def plan(out_dir: str | os.PathLike, inputs: Inputs, cfg: DataConfig, *, on_bad: str = "raise") -> pd.DataFrame:
    """Dry run: each stage, its output, and whether a rerun would reuse it (the artifact verdict). Writes nothing."""
    from gcnn_spin.data.store import store_verdict  # late: the zarr stack only when needed

    out = Path(out_dir)
    configs = stage_configs(inputs, cfg, on_bad)
    outputs = {"gz1": "gz1.parquet", "crossmatch": "crossmatch.parquet", "sdss": "sdss.parquet",
               "catalogue": "catalogue.parquet", "survey": "survey.parquet"}
    rows = [{"stage": s, "output": name, "status": _status(verdict(out / name, config_hash(configs[s]), deep=True))}
            for s, name in outputs.items()]
    for split in STORE_SPLITS:
        path = store_path(out, split)
        found = store_verdict(path)
        rows.append({"stage": "store", "output": f"stores/{split}.zarr",
                     "status": _status(found) + ("" if found.done else ": resumes finished shards")})
    return pd.DataFrame(rows)


def _status(found) -> str:
    """A stage's plan line: done, or to run and why (missing, stale or changed since it was written)."""
    return "done" if found.done else f"to run ({found})"


def plan_sdss(out_dir: str | os.PathLike, inputs: Inputs, cfg: DataConfig) -> str:
    """Dry run of the SDSS stage: how many SkyServer requests, and how long at least. Reads no catalogue.

    The object count is the matched galaxies when ``crossmatch.parquet`` is done, else every GZ1 data line (an
    upper bound: only matched galaxies are queried).
    """
    if inputs.sdss_photometry is not None:
        return f"SDSS DR7: from the table {inputs.sdss_photometry} (no request)"
    match_path = Path(out_dir) / "crossmatch.parquet"
    if is_done(match_path):
        n_objects = int((read_parquet(match_path, ["dr8_id"])["dr8_id"] != "").sum())
    else:
        n_objects = table_rows(inputs.gz1)
    est = sdss.estimate(n_objects, requests_per_s=inputs.sdss_rate, batch_size=inputs.sdss_batch_size,
                        max_query_bytes=inputs.sdss_max_query_bytes, neighbours=cfg.sdss_neighbours,
                        radius_arcsec=cfg.neighbour_radius_arcsec)
    return sdss.describe_estimate(est, inputs.sdss_rate)


def plan_cutouts(out_dir: str | os.PathLike, inputs: Inputs) -> str | None:
    """Dry run of the cutout route: how many cutouts, requests and hours at least (``None`` without the route).

    Every store row is a galaxy of the DESI index and is fetched once, so the index's row count bounds the
    cutouts; those already in ``DATA/cache/cutouts`` are not requested again (counted only when the cache is
    small enough to list quickly).
    """
    if not inputs.cutout_service:
        return None
    n_images = table_rows(inputs.desi_index)
    cache = Path(out_dir) / "cache" / "cutouts"
    n_cached = sum(1 for _ in cache.rglob("*.jpg")) if cache.is_dir() and n_images <= 1_000_000 else 0
    est = cutouts.estimate(n_images, requests_per_s=inputs.cutout_rate, n_cached=min(n_cached, n_images))
    return cutouts.describe_estimate(est, inputs.cutout_rate)


def table_rows(path: str | os.PathLike) -> int:
    """Rows of a parquet file (from its footer) or data lines of a CSV, without reading the table."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with reading(path, "DESI index", "give the Galaxy Zoo DESI catalogue (parquet or CSV)"):
            return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, "rb") as f:
        return max(0, sum(1 for line in f if line.strip()) - 1)


def build_dataset(out_dir: str | os.PathLike, inputs: Inputs, cfg: DataConfig, *, on_bad: str = "raise",
                  workers: int = 1, stores: Sequence[str] = STORE_SPLITS,
                  sdss_client: sdss.SkyServer | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every stage into ``out_dir`` (reusing finished ones) and build the ``stores``; return a summary.

    Bad input raises naming the offending rows/files (``on_bad="raise"``) or is skipped with a report
    (``"skip"``). ``sdss_client``: a configured :class:`~gcnn_spin.data.sdss.SkyServer` (default: one for
    ``inputs.sdss_url``).
    """
    check_on_bad(on_bad)
    unknown = sorted(set(stores) - set(STORE_SPLITS))
    if unknown:
        raise ValueError(f"unknown store(s) {unknown}; valid: {list(STORE_SPLITS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = stage_configs(inputs, cfg, on_bad)
    index = _LazyIndex(inputs.desi_index, on_bad, out / "desi_index.skipped.csv")
    reused = {}
    gz1_df, reused["gz1"] = stage_gz1(out, inputs, cfg, configs["gz1"], on_bad)
    match, reused["crossmatch"] = stage_crossmatch(out, gz1_df, index, cfg, configs["crossmatch"])
    photometry, reused["sdss"] = stage_sdss(out, gz1_df, match, inputs, cfg, configs["sdss"], on_bad,
                                            client=sdss_client, progress=progress)
    sdss_complete = is_done(out / "sdss.parquet", configs["sdss"])
    catalogue, reused["catalogue"] = stage_catalogue(out, gz1_df, match, photometry, cfg, configs["catalogue"],
                                                     final=sdss_complete)
    if not sdss_complete:
        log.warning("SDSS answers missing (sdss.failed.csv): catalogue written without its marker and no "
                    "store built; rerun to retry the failed batches")
        stores = []
    survey_cache: dict[str, pd.DataFrame] = {}

    def survey() -> pd.DataFrame:
        if "rows" not in survey_cache:
            survey_cache["rows"], reused["survey"] = stage_survey(out, catalogue, index, configs["survey"])
        return survey_cache["rows"]

    store_summaries = build_stores(out, catalogue, survey, inputs, cfg, list(stores), workers=workers,
                                   on_bad=on_bad, progress=progress)
    catalogue = _mark_bad_images(out, catalogue, list(stores))
    summary = {
        "counts": pd.read_csv(out / "counts.csv").to_dict(orient="records"),  # Table 1 order
        "complete": sdss_complete,
        "reused": reused,
        "n_reason": catalogue["reason"].replace("", "kept").value_counts().to_dict(),
        "n_survey": len(survey_cache["rows"]) if "rows" in survey_cache else None,
        "stores": {s: {k: v for k, v in d.items() if not isinstance(v, list)} for s, d in store_summaries.items()},
    }
    write_json_atomic(out / "build_summary.json", summary)
    return summary
