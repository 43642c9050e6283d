"""Write a whole synthetic survey into ``RAW/`` in the real layouts, deterministically and idempotently.

``generate_survey(RAW, ...)`` writes ``GalaxyZoo1_DR_table2.csv``, ``desi_index.parquet``,
``jpg/{brickid}/{dr8_id}.jpg``, ``sdss_photometry.csv``, ``truth.parquet`` (never read by the pipeline) and
``synthetic_params.json``; the marker ``RAW.done`` (next to ``RAW``, :func:`gcnn_spin.io.write_marker`, with the
parameter hash) comes last. A rerun with the same parameters finds the marker and does nothing; a rerun after a
crash reuses the images already written (each one is written atomically); other parameters over an existing
survey raise unless ``overwrite=True``.

Random streams: one ``SeedSequence([seed, stream])`` per concern (population, votes, S-wise bias, sky,
photometry) and one per galaxy for its image, so the bytes do not depend on ``workers`` and changing, say,
``swise_bias`` changes nothing but the votes it moves.

``workers > 1`` starts "spawn" processes: a script that calls :func:`generate_survey` needs the usual
``if __name__ == "__main__":`` guard (the CLI ``data_prep/make_synthetic.py`` has it).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gcnn_spin.conventions import counts_table, hard_class, soft_targets
from gcnn_spin.data.images import jpg_relpath
from gcnn_spin.data.synthetic import catalogue, votes
from gcnn_spin.data.synthetic.params import SurveyParams
from gcnn_spin.data.synthetic.population import draw_population
from gcnn_spin.data.synthetic.render import encode_jpeg, render_galaxy
from gcnn_spin.io import (atomic_path, config_hash, read_marker, read_parquet, write_json_atomic, write_marker,
                          write_parquet_atomic)

GZ1_FILE = "GalaxyZoo1_DR_table2.csv"
DESI_FILE = "desi_index.parquet"
SDSS_FILE = "sdss_photometry.csv"
TRUTH_FILE = "truth.parquet"
PARAMS_FILE = "synthetic_params.json"
STREAMS = {"population": 1, "votes": 2, "swise_bias": 3, "sky": 4, "photometry": 5, "image": 6}
#: Columns of a truth row that the renderer reads (what is sent to worker processes).
RENDER_COLUMNS: tuple[str, ...] = (
    "galaxy_index", "dr8_id", "morphology", "sense", "n_arms", "pitch_deg", "arm_phase_deg", "arm_strength",
    "arm_width_power", "arm_r_in_px", "bar_strength", "bar_length_px", "position_angle_deg", "axis_ratio",
    "disc_radius_px", "disc_scale_px", "disc_i0", "bulge_re_px", "bulge_sersic_n", "bulge_ie", "dust_lane",
    "companion_dx_px", "companion_dy_px", "companion_flux_ratio", "star_flux", "psf_sigma_px", "sky_sigma",
    "n_stars",
)


class SurveyExistsError(RuntimeError):
    """``RAW`` already holds a different survey (or data that is not a synthetic survey)."""


def _rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, STREAMS[stream], *extra]))


def build_truth(params: SurveyParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the whole survey except the images: ``(truth, photometry)``, one row per galaxy each.

    ``truth`` (``truth.parquet``; GZ1 galaxies first, then survey-only; ``galaxy_index`` = row):

    * sky and ids: ``in_gz1``, ``objid`` (SDSS, -1 if survey-only), ``ra``, ``dec`` (the GZ1/SDSS position, deg),
      ``dr8_id`` ("" without a DESI counterpart), ``brickid``, ``desi_objid``, ``desi_ra``, ``desi_dec``;
    * planted problems: ``defect`` and ``expected_reason`` (the pipeline's exclusion reason, "" if none);
    * class: ``morphology``, ``true_label`` (0/1/2 = CW/ACW/Other), ``true_class``, ``sense`` (+1 Z, -1 S, 0),
      ``winding`` ("Z", "S", "");
    * render parameters (lengths in px of this survey's cutouts): ``n_arms``, ``pitch_deg``, ``arm_*``,
      ``bar_*``, ``inclination_deg``, ``position_angle_deg``, ``axis_ratio``, ``disc_*``, ``bulge_*``,
      ``dust_lane``, ``companion_*``, ``star_flux``, ``psf_sigma_px``, ``sky_sigma``, ``n_stars``;
    * volunteers: ``visibility``, ``clarity``, ``n_vote``, ``n_el`` ... ``n_mg`` (after the S-wise bias),
      ``n_cw_unbiased`` (0 for survey-only galaxies).
    """
    n, in_gz1 = params.n_total, np.arange(params.n_total) < params.n_gz1
    pop = draw_population(params, in_gz1, _rng(params.seed, "population"))
    sky = _rng(params.seed, "sky")
    ra, dec = catalogue.draw_positions(n, params.ra_center, params.dec_center, params.density_per_deg2, sky)
    objid = np.full(n, -1, np.int64)
    objid[in_gz1] = catalogue.draw_sdss_objids(int(in_gz1.sum()), sky)
    rates = {"no_desi": params.p_no_desi, "no_photometry": params.p_no_photometry, "neighbour": params.p_neighbour,
             "bad_mag_err": params.p_bad_mag_err, "small_r50": params.p_small_r50, "bad_r50_err": params.p_bad_r50_err}
    defect = catalogue.draw_defects(in_gz1, rates, sky)
    has_desi = defect != "no_desi"
    offset = sky.normal(0.0, params.desi_offset_arcsec / 3600.0, (2, n))
    desi_dec = np.where(has_desi, dec + offset[1], np.nan)
    desi_ra = np.where(has_desi, np.mod(ra + offset[0] / np.cos(np.radians(dec)), 360.0), np.nan)
    brickid, desi_objid, dr8_id = catalogue.draw_desi_ids(desi_ra, desi_dec, has_desi, sky)

    truth = pd.DataFrame({
        "galaxy_index": np.arange(n, dtype=np.int64), "in_gz1": in_gz1, "objid": objid, "ra": ra, "dec": dec,
        "dr8_id": dr8_id.astype(str), "brickid": brickid, "desi_objid": desi_objid, "desi_ra": desi_ra,
        "desi_dec": desi_dec, "defect": defect.astype(str),
        "expected_reason": [catalogue.DEFECTS[d] for d in defect],
    })
    truth = pd.concat([truth, pop], axis=1)
    counts = pd.DataFrame(0, index=truth.index, columns=["n_vote", *votes.COUNT_COLUMNS, "n_cw_unbiased"],
                          dtype=np.int16)
    gz1 = truth[in_gz1]
    counts.loc[in_gz1] = votes.draw_votes(gz1, params, _rng(params.seed, "votes"),
                                          _rng(params.seed, "swise_bias")).to_numpy()
    truth = pd.concat([truth, counts], axis=1)
    photometry = catalogue.draw_photometry(defect, _rng(params.seed, "photometry"))
    return truth, photometry


def label_table(truth: pd.DataFrame, params: SurveyParams) -> pd.DataFrame:
    """The GZ1 table-2 rows of the GZ1 galaxies in ``truth`` (sorted by RA, strings for RA/DEC)."""
    gz1 = truth[truth["in_gz1"]]
    counts = gz1[["n_vote", *votes.COUNT_COLUMNS]]
    return catalogue.gz1_table(gz1, votes.table2_columns(counts, gz1["visibility"].to_numpy(), params.debias_strength))


# ----------------------------------------------------------------------------------------------- images


def render_cutout(g, params: SurveyParams) -> np.ndarray:
    """The cutout ``(S, S, 3)`` uint8 that :func:`generate_survey` writes for truth row ``g`` (in memory)."""
    return render_galaxy(g, params.image_size, _rng(params.seed, "image", int(g["galaxy_index"])),
                         noise_seed=params.seed)


def _render_chunk(records: Sequence[dict], root: str, params: SurveyParams, skip_existing: bool) -> int:
    """Render and write the cutouts of ``records`` (truth rows); returns how many it wrote."""
    written = 0
    for g in records:
        target = Path(root) / jpg_relpath(g["dr8_id"])
        if skip_existing and target.exists():
            continue
        image = render_cutout(g, params)
        with atomic_path(target, suffix=".jpg") as tmp:
            tmp.write_bytes(encode_jpeg(image, params.jpeg_quality))
        written += 1
    return written


def render_images(truth: pd.DataFrame, root: str | os.PathLike, params: SurveyParams, *, workers: int = 1,
                  skip_existing: bool = False, progress: bool = True, chunk: int = 64) -> int:
    """Write ``root/jpg/{brickid}/{dr8_id}.jpg`` for every truth row with a ``dr8_id``; returns images written."""
    rows = truth.loc[truth["dr8_id"] != "", list(RENDER_COLUMNS)]
    records = rows.to_dict("records")
    chunks = [records[i:i + chunk] for i in range(0, len(records), chunk)]
    args = (str(root), params, skip_existing)
    written = 0
    with tqdm(total=len(records), desc="render cutouts", unit="img", disable=not progress) as bar:
        if workers <= 1:
            for part in chunks:
                written += _render_chunk(part, *args)
                bar.update(len(part))
            return written
        # spawn: safe whatever the parent imported (torch, threads); the workers only need numpy and PIL.
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_render_chunk, part, *args): len(part) for part in chunks}
            try:
                for future in cf.as_completed(futures):
                    written += future.result()
                    bar.update(futures[future])
            except BaseException:
                pool.shutdown(cancel_futures=True)  # fail fast instead of rendering the rest first
                raise
    return written


# ----------------------------------------------------------------------------------------------- survey


def survey_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Where a survey in ``out_dir`` keeps each artifact (``marker`` is ``RAW.done`` next to ``RAW``)."""
    out = Path(out_dir).resolve()
    return {"gz1": out / GZ1_FILE, "desi_index": out / DESI_FILE, "jpg_root": out, "sdss_photometry": out / SDSS_FILE,
            "truth": out / TRUTH_FILE, "params": out / PARAMS_FILE, "marker": out.with_name(out.name + ".done")}


def _check_target(paths: dict[str, Path], wanted: str, overwrite: bool) -> str:
    """Decide what to do with ``RAW``: ``"done"``, ``"resume"`` (same parameters, unfinished) or ``"fresh"``.

    Only a folder that a synthetic survey wrote (it has ``synthetic_params.json``) is ever written over.
    """
    root = paths["jpg_root"]
    if not paths["params"].exists():
        found = [p.name for p in (paths["gz1"], paths["desi_index"], paths["sdss_photometry"], paths["truth"],
                                  root / "jpg") if p.exists()]
        if found:
            raise SurveyExistsError(f"{root} holds {found} but no {PARAMS_FILE}: not a synthetic survey, refusing to "
                                    "write over it")
        return "fresh"
    previous = json.loads(paths["params"].read_text()).get("hash")
    marker = read_marker(root)
    if previous == wanted:
        return "done" if marker is not None and marker.get("config_hash") == wanted else "resume"
    if marker is not None and not overwrite:
        raise SurveyExistsError(f"{root} holds a finished synthetic survey with other parameters (hash {previous}, "
                                f"wanted {wanted}); pass overwrite=True (--overwrite) to replace it")
    return "fresh"


def generate_survey(out_dir: str | os.PathLike, params: SurveyParams | None = None, *, workers: int = 1,
                    overwrite: bool = False, progress: bool = True, **param_overrides) -> dict[str, Path]:
    """Write the synthetic survey described by ``params`` (or :class:`SurveyParams` built from
    ``param_overrides``, e.g. ``n_gz1=3000, seed=0, swise_bias=0.1``) into ``out_dir``; return its paths.

    The same parameters give the same bytes whatever ``workers`` is; a finished survey is reused as is.
    """
    if params is None:
        params = SurveyParams(**param_overrides)
    elif param_overrides:
        params = dataclasses.replace(params, **param_overrides)
    paths = survey_paths(out_dir)
    config = params.to_dict()
    wanted = config_hash(config)
    state = _check_target(paths, wanted, overwrite)
    if state == "done":
        return paths
    paths["jpg_root"].mkdir(parents=True, exist_ok=True)
    paths["marker"].unlink(missing_ok=True)
    if state == "fresh":
        # Whatever is there was written by a synthetic survey with other parameters (checked above).
        shutil.rmtree(paths["jpg_root"] / "jpg", ignore_errors=True)
        for name in ("gz1", "desi_index", "sdss_photometry", "truth"):
            paths[name].unlink(missing_ok=True)
        write_json_atomic(paths["params"], {"hash": wanted, "params": config})

    truth, photometry = build_truth(params)
    with atomic_path(paths["gz1"], suffix=".csv") as tmp:
        label_table(truth, params).to_csv(tmp, index=False)
    write_parquet_atomic(catalogue.desi_table(truth), paths["desi_index"])
    with atomic_path(paths["sdss_photometry"], suffix=".csv") as tmp:
        catalogue.sdss_table(truth, photometry).to_csv(tmp, index=False)
    n_written = render_images(truth, paths["jpg_root"], params, workers=workers, skip_existing=state == "resume",
                              progress=progress)
    write_parquet_atomic(truth, paths["truth"])
    write_marker(paths["jpg_root"], config, n_galaxies=params.n_total, n_images=int((truth["dr8_id"] != "").sum()),
                 n_images_written=n_written)
    return paths


def summary(raw_dir: str | os.PathLike) -> pd.DataFrame:
    """Counts in the layout of the study's Table 1: the GZ1 vote labels, the GZ1 truth, the survey-only truth."""
    paths = survey_paths(raw_dir)
    table = pd.read_csv(paths["gz1"], usecols=["P_CW", "P_ACW"])
    labels = hard_class(soft_targets(table["P_CW"], table["P_ACW"], 1.0 - table["P_CW"] - table["P_ACW"]))
    truth = read_parquet(paths["truth"], ["in_gz1", "true_label"], "truth table")
    return counts_table({"GZ1 labels (votes > 0.5)": labels,
                         "GZ1 truth": truth.loc[truth["in_gz1"], "true_label"].to_numpy(),
                         "survey-only truth": truth.loc[~truth["in_gz1"], "true_label"].to_numpy()})
