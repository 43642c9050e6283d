"""Survey counts, CVS, the north/south galactic split and a dipole fit of the spin sign.

Counts per class use the softmax ≥ 0.5 rule (``conventions.predicted_spirals``) on every galaxy of every part.

Dipole fit (fixed here): over the predicted spirals, the spin sign s_i = +1 (ACW) or −1 (CW) is fitted by
ordinary least squares to s_i = m + d·n̂_i, with n̂_i the unit vector of galaxy i (ICRS). The monopole m takes the
overall ACW/CW excess, so that on a partial sky (the survey footprint) an excess does not leak into the dipole.
Errors: the covariance σ²(XᵀX)⁻¹ with σ² the residual variance. Amplitude |d| (in units of the mean sign), its
direction (RA, Dec of d), the error of |d| along d, and the significance of the dipole as a whole:
χ² = dᵀ C_d⁻¹ d with 3 degrees of freedom under "no dipole", its p-value, and the two-sided Gaussian σ with the
same p-value. |d| is biased high by noise (it is a length); the χ² test is not.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..conventions import ACW, CW, OTHER, cvs, predicted_spirals
from ..errors import reading
from ..io import marker_path, read_parquet

PROB_COLUMNS = ["p_cw", "p_acw", "p_other"]


def merge_parts(parts: Sequence[str | Path], progress: bool = True, desc: str = "merge") -> dict:
    """Read prediction parts; return counts per class and the predicted spirals' ``ra``, ``dec``, ``sign``."""
    import pyarrow.parquet as pq

    n = {CW: 0, ACW: 0, OTHER: 0}
    ras, decs, signs = [], [], []
    iterator = parts
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(parts, desc=desc, unit="part", dynamic_ncols=True, file=sys.stderr)
    for path in iterator:
        fix = (f"delete it and its marker {marker_path(path)}, then rerun inference (the part is predicted "
               "again; finished parts are kept)")
        with reading(path, "prediction part", fix):
            names = set(pq.read_schema(path).names)
            missing = [c for c in PROB_COLUMNS if c not in names]
            if missing:
                raise ValueError(f"it lacks the columns {missing}")
            table = read_parquet(path, [c for c in ("ra", "dec", *PROB_COLUMNS) if c in names], "prediction part", fix)
        calls = predicted_spirals(table[PROB_COLUMNS].to_numpy())
        for k in n:
            n[k] += int((calls == k).sum())
        spiral = calls != OTHER
        if {"ra", "dec"} <= names:
            ras.append(table["ra"].to_numpy(dtype=np.float64)[spiral])
            decs.append(table["dec"].to_numpy(dtype=np.float64)[spiral])
            signs.append(np.where(calls[spiral] == ACW, 1, -1).astype(np.int8))
    def cat(chunks, dtype):
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)

    return {"n_cw": n[CW], "n_acw": n[ACW], "n_other": n[OTHER], "ra": cat(ras, np.float64),
            "dec": cat(decs, np.float64), "sign": cat(signs, np.int8)}


def count_row(merged: dict) -> dict[str, float]:
    """Counts, fractions, ACW/CW ratio and CVS of one merged prediction set."""
    n_cw, n_acw, n_other = merged["n_cw"], merged["n_acw"], merged["n_other"]
    total = n_cw + n_acw + n_other
    return {"n_total": total, "n_cw": n_cw, "n_acw": n_acw, "n_other": n_other,
            "pct_cw": 100.0 * n_cw / total if total else math.nan,
            "pct_acw": 100.0 * n_acw / total if total else math.nan,
            "acw_cw_ratio": n_acw / n_cw if n_cw else math.nan, "cvs": cvs(n_acw, n_cw)}


def galactic_latitude(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Galactic latitude b (deg) of ICRS positions (deg), with astropy."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    if len(ra) == 0:
        return np.zeros(0)
    return SkyCoord(ra=np.asarray(ra) * u.deg, dec=np.asarray(dec) * u.deg, frame="icrs").galactic.b.deg


def hemisphere_split(ra: np.ndarray, dec: np.ndarray, sign: np.ndarray) -> dict[str, float]:
    """ACW/CW counts and CVS of the predicted spirals north (b > 0) and south (b < 0) of the galactic plane."""
    b = galactic_latitude(ra, dec)
    sign = np.asarray(sign)
    out = {}
    for name, mask in (("north", b > 0), ("south", b < 0)):
        n_acw, n_cw = int((sign[mask] > 0).sum()), int((sign[mask] < 0).sum())
        out.update({f"n_acw_{name}": n_acw, f"n_cw_{name}": n_cw, f"cvs_{name}": cvs(n_acw, n_cw)})
    return out


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``(N, 3)`` unit vectors of RA, Dec in degrees."""
    ra, dec = np.radians(np.asarray(ra, dtype=np.float64)), np.radians(np.asarray(dec, dtype=np.float64))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


DIPOLE_KEYS = ("monopole", "monopole_err", "dipole", "dipole_err", "dipole_ra", "dipole_dec", "chi2", "p_value",
               "significance_sigma")


def dipole_summary(coef: np.ndarray | None, cov: np.ndarray | None, n: int) -> dict[str, float]:
    """Monopole, dipole amplitude, its error along its direction, direction (RA, Dec) and χ² significance from the
    fitted ``(m, d_x, d_y, d_z)`` and their covariance (all NaN when ``coef`` is None)."""
    from scipy import stats

    if coef is None:
        return {"n_spirals": n, **{k: math.nan for k in DIPOLE_KEYS}}
    d, cov_d = coef[1:], cov[1:, 1:]
    amplitude = float(np.linalg.norm(d))
    direction = d / amplitude if amplitude > 0 else np.array([0.0, 0.0, 1.0])
    chi2 = float(d @ np.linalg.solve(cov_d, d))
    p_value = float(stats.chi2.sf(chi2, df=3))
    return {"n_spirals": n, "monopole": float(coef[0]), "monopole_err": math.sqrt(cov[0, 0]),
            "dipole": amplitude, "dipole_err": math.sqrt(float(direction @ cov_d @ direction)),
            "dipole_ra": float(np.degrees(np.arctan2(direction[1], direction[0])) % 360.0),
            "dipole_dec": float(np.degrees(np.arcsin(np.clip(direction[2], -1, 1)))),
            "chi2": chi2, "p_value": p_value, "significance_sigma": float(stats.norm.isf(p_value / 2))}


def dipole_fit(ra: np.ndarray, dec: np.ndarray, sign: np.ndarray) -> dict[str, float]:
    """Least-squares monopole + dipole fit of the spin sign (see the module docstring)."""
    sign = np.asarray(sign, dtype=np.float64)
    n = len(sign)
    if n < 10:
        return dipole_summary(None, None, n)
    design = np.column_stack([np.ones(n), unit_vectors(ra, dec)])
    coef, *_ = np.linalg.lstsq(design, sign, rcond=None)
    resid = sign - design @ coef
    sigma2 = float(resid @ resid) / max(n - 4, 1)
    try:
        cov = sigma2 * np.linalg.inv(design.T @ design)
    except np.linalg.LinAlgError:  # every galaxy on one point or great circle: no dipole can be fitted
        return dipole_summary(None, None, n)
    return dipole_summary(coef, cov, n)


def survey_seed(merged: dict) -> dict[str, float]:
    """Everything the survey tables need from one (model, seed): counts, CVS, hemispheres, dipole."""
    row = count_row(merged)
    if len(merged["sign"]):
        row.update(hemisphere_split(merged["ra"], merged["dec"], merged["sign"]))
        row.update(dipole_fit(merged["ra"], merged["dec"], merged["sign"]))
    return row
