"""The CVS on the sky: imaging regions, galactic hemispheres, HEALPix maps, bootstrap intervals, a map dipole.

Imaging region (the Legacy Surveys' own rule for joining DR8/DR9 north and south): a galaxy is ``north``
(BASS g, r + MzLS z) when it lies at Dec > 32.375° *and* north of the galactic plane, else ``south`` (DECaLS,
DECam). The two differ in depth and calibration, a known source of spurious north/south differences.

Bootstrap over galaxies: resampling the N galaxies of a set with replacement changes only how many of them fall
in each class, and those counts are multinomial(N, n_k/N) — the same distribution, drawn directly, so the
intervals cost nothing per galaxy and scale to the whole survey. The interval of a CVS is the central 95 % of
its ``BOOTSTRAP_DRAWS`` draws (seeded); it measures the sampling noise of the galaxies, which the spread over
seeds (the training noise) does not.

Maps: HEALPix (astropy-healpix, RING order, ICRS) at ``NSIDE``; per pixel the CW, ACW and Other counts. The map
dipole fits the mean spin sign of each pixel, s̄_p = (n_ACW − n_CW)/(n_ACW + n_CW), as m + d·n̂_p (n̂_p the pixel
centre) by weighted least squares with weights n_p/(1 − ŝ_p²) (the binomial variance of a mean of ±1 signs);
its covariance is (XᵀWX)⁻¹, and χ²_map/dof says whether the pixels scatter more than counting noise allows.
Significance as for the per-galaxy fit: χ² = dᵀC⁻¹d, 3 degrees of freedom.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..conventions import ACW, CW, OTHER, cvs
from .survey import dipole_summary, galactic_latitude

NORTH_DEC_MIN = 32.375
REGIONS = ("north", "south")
HEMISPHERES = ("north", "south")
#: Groups of galaxies the counts are kept for: imaging region x galactic hemisphere (index = 2 * region + hemi).
GROUPS = tuple((r, h) for r in REGIONS for h in HEMISPHERES)
NSIDE = 32
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_LEVEL = 0.95


def imaging_region(dec: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N,) str``: ``north`` (BASS/MzLS) at Dec > 32.375° north of the galactic plane, else ``south`` (DECaLS)."""
    north = (np.asarray(dec) > NORTH_DEC_MIN) & (np.asarray(b) > 0)
    return np.where(north, "north", "south")


def healpix(nside: int = NSIDE):
    from astropy_healpix import HEALPix

    return HEALPix(nside=nside, order="ring")


def sky_index(ra: np.ndarray, dec: np.ndarray, nside: int = NSIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pixel, group, b)`` of positions in degrees: HEALPix pixel, region x hemisphere group, galactic latitude."""
    import astropy.units as u

    ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    b = galactic_latitude(ra, dec)
    pixel = healpix(nside).lonlat_to_healpix(ra * u.deg, dec * u.deg) if len(ra) else np.zeros(0, np.int64)
    group = 2 * (imaging_region(dec, b) == "south") + (b <= 0)
    return np.asarray(pixel, dtype=np.int64), group.astype(np.int64), b


def add_counts(counts: np.ndarray, index: np.ndarray, calls: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Add class calls to ``counts`` ``(K, 3)`` at rows ``index`` (only where ``valid``), in place."""
    if valid is not None:
        index, calls = index[valid], calls[valid]
    counts += np.bincount(index * 3 + calls, minlength=counts.size).reshape(counts.shape)


def group_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """``{"all", "region north", "region south", "galactic north", "galactic south"}`` -> ``(3,)`` counts from the
    ``(4, 3)`` region x hemisphere counts."""
    out = {"all": counts.sum(0)}
    for i, name in enumerate(REGIONS):
        out[f"region {name}"] = counts[[2 * i, 2 * i + 1]].sum(0)
    for j, name in enumerate(HEMISPHERES):
        out[f"galactic {name}"] = counts[[j, 2 + j]].sum(0)
    return out


def cvs_of(counts: np.ndarray) -> np.ndarray:
    """CVS of ``(..., 3)`` counts (NaN without spirals)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts[..., ACW] + counts[..., CW]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (counts[..., ACW] - counts[..., CW]) / np.sqrt(n), np.nan)


def bootstrap_cvs(counts: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0,
                  level: float = BOOTSTRAP_LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, std)`` of the CVS under a bootstrap over galaxies, for ``(..., 3)`` class counts.

    Each draw resamples the galaxies of a set (a pixel, a region, the survey) with replacement, i.e. draws
    multinomial(N, n_k/N) counts (see the module docstring).
    """
    counts = np.asarray(counts, dtype=np.int64)
    shape = counts.shape[:-1]
    flat = counts.reshape(-1, 3)
    total = flat.sum(1)
    low, high, std = (np.full(len(flat), np.nan) for _ in range(3))
    used = total > 0
    if used.any():
        rng = np.random.default_rng(seed)
        p = flat[used] / total[used, None]
        sample = rng.multinomial(total[used], p, size=(draws, int(used.sum())))  # (draws, K, 3)
        values = cvs_of(sample)
        tail = 100 * (1 - level) / 2
        with warnings.catch_warnings():  # a set with a single spiral has draws without any: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            low[used], high[used] = np.nanpercentile(values, [tail, 100 - tail], axis=0)
            std[used] = np.nanstd(values, axis=0, ddof=1)
    return low.reshape(shape), high.reshape(shape), std.reshape(shape)


def pixel_vectors(pixels: np.ndarray, nside: int = NSIDE) -> np.ndarray:
    """``(P, 3)`` unit vectors of HEALPix pixel centres."""
    lon, lat = healpix(nside).healpix_to_lonlat(np.asarray(pixels))
    lon, lat = np.asarray(lon.rad, dtype=np.float64), np.asarray(lat.rad, dtype=np.float64)
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def map_dipole(counts: np.ndarray, nside: int = NSIDE) -> dict[str, float]:
    """Monopole + dipole of the mean spin sign per pixel, from ``(npix, 3)`` counts (see the module docstring)."""
    n = counts[:, ACW] + counts[:, CW]
    pixels = np.flatnonzero(n > 0)
    nan = dipole_summary(None, None, int(n.sum()))
    if len(pixels) < 5:
        return {**nan, "n_pixels": len(pixels), "chi2_map_dof": math.nan}
    y = (counts[pixels, ACW] - counts[pixels, CW]) / n[pixels]
    design = np.column_stack([np.ones(len(pixels)), pixel_vectors(pixels, nside)])
    weight = n[pixels].astype(np.float64)
    for _ in range(2):  # weights from the binomial variance of the fitted mean sign
        xtw = design.T * weight
        try:
            cov = np.linalg.inv(xtw @ design)
        except np.linalg.LinAlgError:  # all pixels on one great circle: no dipole
            return {**nan, "n_pixels": len(pixels), "chi2_map_dof": math.nan}
        coef = cov @ (xtw @ y)
        fitted = np.clip(design @ coef, -0.99, 0.99)
        weight = n[pixels] / (1 - fitted ** 2)
    resid = y - design @ coef
    dof = max(len(pixels) - 4, 1)
    return {**dipole_summary(coef, cov, int(n.sum())), "n_pixels": len(pixels),
            "chi2_map_dof": float(weight @ resid ** 2) / dof}


def truth_inside(truth_counts: np.ndarray, predicted_counts: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Per set (pixel, region): the true CVS, the predicted CVS, its bootstrap interval and whether it holds the
    truth. Both ``(..., 3)`` counts over the same galaxies."""
    low, high, _ = bootstrap_cvs(predicted_counts, seed=seed)
    true = cvs_of(truth_counts)
    return {"cvs_true": true, "cvs": cvs_of(predicted_counts), "cvs_low": low, "cvs_high": high,
            "inside": (true >= low) & (true <= high)}


def class_counts_row(counts: np.ndarray) -> dict[str, float]:
    """``n_cw, n_acw, n_other, cvs`` of ``(3,)`` counts."""
    return {"n_cw": int(counts[CW]), "n_acw": int(counts[ACW]), "n_other": int(counts[OTHER]),
            "cvs": cvs(int(counts[ACW]), int(counts[CW]))}


def with_bootstrap(per_seed, seed: int = 0):
    """``per_seed`` (rows with ``n_cw, n_acw, n_other``) plus each row's 95 % bootstrap interval and σ of its CVS."""
    counts = per_seed[["n_cw", "n_acw", "n_other"]].to_numpy(np.int64)  # columns in (CW, ACW, Other) order
    low, high, std = bootstrap_cvs(counts, seed=seed)
    return per_seed.assign(cvs_boot_low=low, cvs_boot_high=high, cvs_boot_std=std)
