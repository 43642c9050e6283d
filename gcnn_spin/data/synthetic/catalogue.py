"""Sky positions, identifiers, SDSS photometry and the four raw tables in the real on-disk layouts.

* ``GalaxyZoo1_DR_table2.csv``: GZ1 table 2 as published (RA ``HH:MM:SS.ss``, DEC ``+DD:MM:SS.s`` or
  ``-DD:MM:SS.s``, vote fractions to 3 decimals), rows sorted by RA;
* ``desi_index.parquet``: the Galaxy Zoo DESI file index ``ra, dec, dr8_id, brickid, objid, jpg_loc``, sorted by
  brick then object;
* ``sdss_photometry.csv``: the answers of the SDSS DR7 queries, ``objID, petroR50_r, petroR50Err_r,
  petroMagErr_r, n_neighbours_1arcsec``, sorted by objID (SDSS's -9999 for a missing value).

Positions fill a jittered grid on a patch of sky (default centred on RA 0, Dec 0, so RA wraps through 0 and
declinations take both signs), with a spacing that keeps distinct galaxies > 0.4 spacing apart: a GZ1 galaxy
without a DESI counterpart has none within 10". Each GZ1 galaxy has at most one defect (``defect``), so the
stage that must remove it (``expected_reason``) is unambiguous.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gcnn_spin.data.images import jpg_relpath

GZ1_COLUMNS: tuple[str, ...] = ("OBJID", "RA", "DEC", "NVOTE", "P_EL", "P_CW", "P_ACW", "P_EDGE", "P_DK", "P_MG",
                                "P_CS", "P_EL_DEBIASED", "P_CS_DEBIASED", "SPIRAL", "ELLIPTICAL", "UNCERTAIN")
DESI_COLUMNS: tuple[str, ...] = ("ra", "dec", "dr8_id", "brickid", "objid", "jpg_loc")
SDSS_COLUMNS: tuple[str, ...] = ("objID", "petroR50_r", "petroR50Err_r", "petroMagErr_r", "n_neighbours_1arcsec")
SDSS_MISSING = -9999.0
#: Defect -> the pipeline's exclusion reason (``catalogue.parquet`` vocabulary).
DEFECTS: dict[str, str] = {
    "": "",
    "no_desi": "no_desi_match",
    "no_photometry": "no_sdss_photometry",
    "neighbour": "neighbour_1arcsec",
    "bad_mag_err": "quality_cut",
    "small_r50": "quality_cut",
    "bad_r50_err": "quality_cut",
}
BRICK_HEIGHT_DEG = 0.25


def format_ra(ra_deg) -> list[str]:
    """RA in degrees ``(N,)`` -> GZ1 strings ``HH:MM:SS.ss`` (rounded to 0.01 s, 24 h wraps to 00)."""
    centis = np.rint(np.mod(np.asarray(ra_deg, float), 360.0) / 15.0 * 360000.0).astype(np.int64) % 8640000
    return [f"{c // 360000:02d}:{c // 6000 % 60:02d}:{c // 100 % 60:02d}.{c % 100:02d}" for c in centis]


def format_dec(dec_deg) -> list[str]:
    """Dec in degrees ``(N,)`` -> GZ1 strings ``+DD:MM:SS.s`` / ``-DD:MM:SS.s`` (rounded to 0.1")."""
    dec = np.asarray(dec_deg, float)
    tenths = np.rint(np.abs(dec) * 36000.0).astype(np.int64)
    signs = np.where((dec < 0) & (tenths > 0), "-", "+")
    return [f"{s}{t // 36000:02d}:{t // 600 % 60:02d}:{t // 10 % 60:02d}.{t % 10}" for s, t in zip(signs, tenths)]


def sdss_objid(run, rerun, camcol, field, obj) -> np.ndarray:
    """SDSS DR7 objID bit layout (skyVersion 1): rerun, run, camcol, field, obj packed into an int64."""
    parts = [np.asarray(a, np.int64) for a in (run, rerun, camcol, field, obj)]
    run, rerun, camcol, field, obj = parts
    return (np.int64(1) << 59) | (rerun << 48) | (run << 32) | (camcol << 29) | (field << 16) | obj


def draw_sdss_objids(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct DR7-like objIDs (rerun 40/41/44, runs 1650-2199: ``58772...`` like the GZ1 table)."""
    ids = np.empty(0, np.int64)
    while ids.size < n:
        m = n - ids.size
        new = sdss_objid(rng.integers(1650, 2200, m), rng.choice([40, 41, 44], m), rng.integers(1, 7, m),
                         rng.integers(11, 800, m), rng.integers(1, 2000, m))
        ids = np.concatenate([ids, new])
        _, first = np.unique(ids, return_index=True)
        ids = ids[np.sort(first)]
    return ids


@np.vectorize
def _ncols(row: int) -> int:
    dec = -90.0 + BRICK_HEIGHT_DEG * row
    return max(1, math.ceil(360.0 * math.cos(math.radians(dec)) / BRICK_HEIGHT_DEG))


_ROW_OFFSETS = np.concatenate([[0], np.cumsum(_ncols(np.arange(int(180 / BRICK_HEIGHT_DEG) + 1)))])


def brick_id(ra_deg, dec_deg) -> np.ndarray:
    """Legacy-Surveys-like brick id ``(N,)`` int64: 0.25 deg rows of dec, ~0.25 deg columns of RA, 1-based."""
    row = np.rint((np.asarray(dec_deg, float) + 90.0) / BRICK_HEIGHT_DEG).astype(np.int64)
    ncols = _ROW_OFFSETS[row + 1] - _ROW_OFFSETS[row]
    col = np.floor(np.mod(np.asarray(ra_deg, float), 360.0) / 360.0 * ncols).astype(np.int64)
    return 1 + _ROW_OFFSETS[row] + np.minimum(col, ncols - 1)


def draw_positions(n: int, ra_center: float, dec_center: float, density_per_deg2: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions (ra, dec in deg) on a jittered grid of spacing ``1/sqrt(density)`` (jitter +-0.3 cell)."""
    spacing = 1.0 / math.sqrt(density_per_deg2)
    ny = max(1, math.ceil(math.sqrt(n)))
    nx = max(1, math.ceil(n / ny))
    cells = rng.choice(nx * ny, size=n, replace=False)
    iy, ix = np.divmod(cells, nx)
    jitter = rng.uniform(-0.3, 0.3, (2, n))
    dec = dec_center + (iy - (ny - 1) / 2 + jitter[0]) * spacing
    if np.abs(dec).max() >= 89.0:
        raise ValueError(f"sky patch reaches the pole (dec up to {np.abs(dec).max():.1f} deg): lower dec_center or "
                         "raise density_per_deg2")
    ra = np.mod(ra_center + (ix - (nx - 1) / 2 + jitter[1]) * spacing / np.cos(np.radians(dec)), 360.0)
    return ra, dec


def draw_defects(in_gz1: np.ndarray, rates: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """One defect name per galaxy (``""`` for none; survey-only galaxies never have one)."""
    names = list(rates)
    edges = np.cumsum([rates[k] for k in names])
    pick = np.searchsorted(edges, rng.random(in_gz1.size), side="right")
    defect = np.array(names + [""], dtype=object)[pick]
    defect[~in_gz1] = ""
    return defect


def draw_desi_ids(ra, dec, has_desi: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(brickid, objid, dr8_id)`` per galaxy; -1, -1, "" where ``has_desi`` is False.

    Objids are distinct random numbers < 4000 within a brick (a brick also holds stars we do not list).
    """
    n = len(ra)
    brick = np.full(n, -1, np.int64)
    brick[has_desi] = brick_id(np.asarray(ra)[has_desi], np.asarray(dec)[has_desi])
    objid = np.full(n, -1, np.int64)
    for b in np.unique(brick[has_desi]):
        rows = np.flatnonzero(brick == b)
        objid[rows] = np.sort(rng.choice(4000, size=rows.size, replace=False))
    dr8 = np.array([f"{b}_{o}" if b >= 0 else "" for b, o in zip(brick, objid)], dtype=object)
    return brick.astype(np.int64), objid, dr8


def draw_photometry(defect: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """SDSS r-band photometry per galaxy (all rows; the writer leaves out ``no_photometry`` and survey-only)."""
    n = defect.size
    r50 = np.maximum(1.2, np.exp(rng.normal(math.log(3.5), 0.35, n)))
    rel_err = rng.uniform(0.01, 0.12, n)
    mag_err = rng.uniform(0.005, 0.06, n)
    neighbours = np.zeros(n, np.int64)
    # The defects, each failing exactly one cut of the study.
    small = defect == "small_r50"
    r50[small] = rng.uniform(0.4, 1.0, small.sum())
    bad_rel = defect == "bad_r50_err"
    rel_err[bad_rel] = np.where(rng.random(bad_rel.sum()) < 0.3, np.nan, rng.uniform(0.26, 0.9, bad_rel.sum()))
    bad_mag = defect == "bad_mag_err"
    mag_err[bad_mag] = np.where(rng.random(bad_mag.sum()) < 0.5, SDSS_MISSING, rng.uniform(1.0, 4.0, bad_mag.sum()))
    near = defect == "neighbour"
    neighbours[near] = rng.choice([1, 1, 1, 2], near.sum())
    r50_err = np.where(np.isnan(rel_err), SDSS_MISSING, r50 * np.nan_to_num(rel_err))
    return pd.DataFrame({"petroR50_r": np.round(r50, 4), "petroR50Err_r": np.round(r50_err, 4),
                         "petroMagErr_r": np.round(mag_err, 5), "n_neighbours_1arcsec": neighbours})


def gz1_table(truth: pd.DataFrame, votes_table: pd.DataFrame) -> pd.DataFrame:
    """GZ1 table 2 rows (:data:`GZ1_COLUMNS`, strings for RA/DEC) for the GZ1 galaxies, sorted by RA."""
    out = pd.DataFrame({"OBJID": truth["objid"].to_numpy(np.int64), "RA": format_ra(truth["ra"]),
                        "DEC": format_dec(truth["dec"])})
    out = pd.concat([out, votes_table.reset_index(drop=True)], axis=1)
    order = np.argsort(truth["ra"].to_numpy(), kind="stable")
    return out.iloc[order][list(GZ1_COLUMNS)].reset_index(drop=True)


def desi_table(truth: pd.DataFrame) -> pd.DataFrame:
    """Galaxy Zoo DESI file index (:data:`DESI_COLUMNS`) of every galaxy with an image, sorted by brick, objid."""
    rows = truth[truth["dr8_id"] != ""]
    out = pd.DataFrame({"ra": rows["desi_ra"].to_numpy(float), "dec": rows["desi_dec"].to_numpy(float),
                        "dr8_id": rows["dr8_id"].astype(str).to_numpy(),
                        "brickid": rows["brickid"].to_numpy(np.int64), "objid": rows["desi_objid"].to_numpy(np.int64)})
    out["jpg_loc"] = [jpg_relpath(d) for d in out["dr8_id"]]
    return out.sort_values(["brickid", "objid"], kind="stable").reset_index(drop=True)


def sdss_table(truth: pd.DataFrame, photometry: pd.DataFrame) -> pd.DataFrame:
    """SDSS answers (:data:`SDSS_COLUMNS`) for the GZ1 galaxies SDSS knows, sorted by objID."""
    keep = (truth["in_gz1"] & (truth["defect"] != "no_photometry")).to_numpy()
    out = photometry[keep].copy()
    out.insert(0, "objID", truth.loc[keep, "objid"].to_numpy(np.int64))
    return out.sort_values("objID", kind="stable").reset_index(drop=True)[list(SDSS_COLUMNS)]
