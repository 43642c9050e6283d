"""Overlap index η of two samples on [0, 1] (Pastore & Calcagnì 2019): η = ∫ min(f_a, f_b) dx.

Method (``"reflected"``, the default):

- each density is a Gaussian kernel sum with kernel σ = ``bandwidth`` = 0.1 in probability units (a direct sum,
  not ``scipy.stats.gaussian_kde``, whose ``bw_method`` scales the bandwidth by the sample's own spread);
- boundaries: probabilities live on [0, 1], so every kernel is reflected at 0 and at 1 (the mass a kernel would
  put outside folds back in). Each density then integrates to 1 on [0, 1], identical samples give η = 1 even
  when they sit at 0 or 1, and away from the boundaries the reflection changes nothing;
- the integral is the trapezoid rule on ``n_grid`` equally spaced points of [0, 1].

:data:`KDE_METHODS` names the two ways this project computes η: ``"reflected"`` (the above) and
``"study_code"``, the study's code (``Code/overlap_noplot.py``, ``overlapping``): no reflection (kernels spill
past 0 and 1, so two samples piled at a boundary overlap by about half), 100 grid points, and the integral as
``sum(min) * (1/100)``.

For large samples of N(μ₁, σ) and N(μ₂, σ) far from the boundaries the KDE is N(μ, σ') with σ'² = σ² + 0.1²,
so η → 2Φ(−|μ₁ − μ₂| / (2σ')) (:func:`gaussian_overlap`).

Comparing two models image by image (:func:`compare_overlaps`), as the study did: a model has the lower η only
when it is lower by more than ``ETA_TOLERANCE`` = 0.01; the rest are reported as within 0.01 of each other.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..config import KdeName, check_choice

BANDWIDTH = 0.1
N_GRID = 512
_CHUNK_ELEMENTS = 2_000_000  # bound on rows x samples x grid points evaluated at once
ETA_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class KdeMethod:
    """How densities are estimated and integrated: reflected kernels or not, grid points, integration rule."""

    reflect: bool = True
    n_grid: int = N_GRID
    rule: str = "trapezoid"  # or "rectangle": sum(min) * 1/n_grid, as the study's code


#: Keyed by the choices of ``rotation_study.kde`` (``gcnn_spin.config.KdeName``).
KDE_METHODS: dict[str, KdeMethod] = {"reflected": KdeMethod(),
                                     "study_code": KdeMethod(reflect=False, n_grid=100, rule="rectangle")}


def kde_method(name: str) -> KdeMethod:
    """The named :class:`KdeMethod`; an unknown name raises with the valid ones."""
    return KDE_METHODS[check_choice("rotation_study.kde", name, KdeName)]


def grid(n_grid: int = N_GRID) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_grid)


def kde_on_grid(samples: np.ndarray, bandwidth: float = BANDWIDTH, n_grid: int = N_GRID,
                reflect: bool = True) -> np.ndarray:
    """Gaussian KDE of each sample on [0, 1], reflected at 0 and 1 unless ``reflect=False``:
    ``(..., n)`` -> ``(..., n_grid)``."""
    x = np.clip(np.asarray(samples, dtype=np.float64), 0.0, 1.0)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError("kde_on_grid needs at least one sample per density")
    lead, n = x.shape[:-1], x.shape[-1]
    x = x.reshape(-1, n)
    g = grid(n_grid)
    out = np.zeros((x.shape[0], n_grid))
    norm = 1.0 / (n * bandwidth * math.sqrt(2.0 * math.pi))
    rows_step = max(1, _CHUNK_ELEMENTS // (n * n_grid))
    samples_step = max(1, _CHUNK_ELEMENTS // n_grid)
    for r in range(0, x.shape[0], rows_step):
        for s in range(0, n, samples_step):
            block = x[r:r + rows_step, s:s + samples_step, None]  # (R, n_s, 1)
            for centre in (block, -block, 2.0 - block)[:3 if reflect else 1]:  # the sample, its mirrors at 0, 1
                out[r:r + rows_step] += np.exp(-0.5 * ((g - centre) / bandwidth) ** 2).sum(axis=1)
    return (out * norm).reshape(*lead, n_grid)


def overlap_from_densities(f_a: np.ndarray, f_b: np.ndarray, rule: str = "trapezoid") -> np.ndarray:
    """η = ∫₀¹ min(f_a, f_b) dx over the last axis (densities on :func:`grid`), by the trapezoid rule or, with
    ``rule="rectangle"``, as the study's code: ``sum(min) / n_grid``."""
    n_grid = f_a.shape[-1]
    if rule == "rectangle":
        return np.minimum(f_a, f_b).sum(axis=-1) / n_grid
    if rule != "trapezoid":
        raise ValueError(f"rule must be 'trapezoid' or 'rectangle', got {rule!r}")
    return np.trapz(np.minimum(f_a, f_b), dx=1.0 / (n_grid - 1), axis=-1)


def overlap_index(a: np.ndarray, b: np.ndarray, bandwidth: float = BANDWIDTH, n_grid: int = N_GRID) -> np.ndarray:
    """η of samples ``a`` and ``b`` along the last axis (leading axes broadcast): a float for 1-D input."""
    eta = overlap_from_densities(kde_on_grid(a, bandwidth, n_grid), kde_on_grid(b, bandwidth, n_grid))
    return float(eta) if np.ndim(eta) == 0 else eta


def gaussian_overlap(mu_a: float, mu_b: float, sigma: float) -> float:
    """Overlap of N(μ_a, σ) and N(μ_b, σ): 2Φ(−|μ_a − μ_b| / (2σ))."""
    return math.erfc(abs(mu_a - mu_b) / (2.0 * sigma) / math.sqrt(2.0))


def compare_overlaps(eta_a: np.ndarray, eta_b: np.ndarray, tolerance: float = ETA_TOLERANCE) -> dict[str, float]:
    """Fractions of paired η values ``(n,)`` where a is lower by more than ``tolerance``, where the two are within
    ``tolerance`` of each other, and where b is lower by more than it: ``{"a_lower", "within", "b_lower"}``,
    summing to 1 (NaN each for no pairs)."""
    diff = np.asarray(eta_b, dtype=np.float64) - np.asarray(eta_a, dtype=np.float64)
    if diff.size == 0:
        return {"a_lower": math.nan, "within": math.nan, "b_lower": math.nan}
    a_lower, b_lower = diff > tolerance, diff < -tolerance
    return {"a_lower": float(a_lower.mean()), "within": float((~a_lower & ~b_lower).mean()),
            "b_lower": float(b_lower.mean())}
