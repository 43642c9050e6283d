"""CVS recovery study: can a model recover a chirality violation that is put into its test set?

Method (fixed here):

- the S/Z set: test galaxies whose hard label is ACW (S) or CW (Z), i.e. vote fraction > 0.5, sorted by store
  row;
- each resampled set holds N = ``n_set`` galaxies, the study's 2,333 by default (``None``: the size of the S/Z
  set). For each set CVS c in −12, −9, …, +12 and each draw, n_A = round((N + c·√N) / 2) galaxies are drawn
  from the ACW galaxies and n_C = N − n_A from the CW ones, so (n_A − n_C)/√N = c up to rounding; the realised
  value is the x of the fit. A class is drawn **without replacement** when it has at least the galaxies asked
  for (the study's test set has 1,753 ACW and 1,580 CW: every level fits), with replacement only otherwise,
  and the output says so per set (``acw_with_replacement``, ``cw_with_replacement``). The draws depend only on
  the labels, ``n_set`` and ``seed``, so every (model, seed) is scored on the same resampled sets;
- each run's predicted classes come from its ``test_predictions.parquet`` probabilities (softmax ≥ 0.5,
  ``conventions.predicted_spirals``): no model is rerun. The predicted CVS of a draw is
  ``cvs(n_ACW predicted, n_CW predicted)`` over the drawn galaxies;
- an ordinary least-squares line predicted = intercept + slope · set, with standard errors from the
  residuals; the ideal is slope 1, intercept 0. Over seeds: mean ± std of slope and intercept.

A model that calls each spiral correctly with probability q and "Other" otherwise scales both counts by q,
so its expected slope is √q.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..conventions import ACW, CW, cvs, hard_class, predicted_spirals

CVS_LEVELS: tuple[float, ...] = tuple(float(c) for c in range(-12, 13, 3))
N_DRAWS = 5
#: Galaxies per resampled set: the study's (its S/Z test set, resampled at constant total).
N_SET = 2333
TRUE_COLUMNS = ["p_cw_true", "p_acw_true", "p_other_true"]
PROB_COLUMNS = ["p_cw", "p_acw", "p_other"]


def spiral_set(test_predictions: pd.DataFrame) -> pd.DataFrame:
    """Rows of the test set labelled S or Z (vote > 0.5), sorted by ``row``, with ``true_class`` (CW/ACW)."""
    missing = [c for c in TRUE_COLUMNS + PROB_COLUMNS if c not in test_predictions]
    if missing:
        raise ValueError(f"test predictions lack {missing}; the CVS recovery needs labels and probabilities")
    table = test_predictions.sort_values("row" if "row" in test_predictions else "dr8_id", kind="stable")
    true = hard_class(table[TRUE_COLUMNS].to_numpy())
    keep = (true == CW) | (true == ACW)
    out = table[keep].reset_index(drop=True)
    out["true_class"] = true[keep]
    return out


def possible_levels(total: int, levels=CVS_LEVELS) -> list[float]:
    """The set CVS levels that ``total`` S/Z galaxies can reach with both spins present (|CVS| < √N)."""
    return [float(c) for c in levels if 0 < round((total + c * math.sqrt(total)) / 2) < total]


def _draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """``n`` of ``pool``, without replacement when the pool is large enough; and whether it was not."""
    replace = n > len(pool)
    return rng.choice(pool, n, replace=replace), replace


def resample(true_class: np.ndarray, levels=CVS_LEVELS, draws: int = N_DRAWS, seed: int = 0,
             n_set: int | None = N_SET) -> list[dict]:
    """Resampled sets of ``n_set`` galaxies (``None``: as many as ``true_class``): ``[{"level", "draw", "indices"
    (into ``true_class``), "n_acw", "n_cw", "set_cvs", "acw_with_replacement", "cw_with_replacement"}, ...]``.

    Levels a set of this size cannot reach (|CVS| ≥ √N, see :func:`possible_levels`) are left out.
    """
    true_class = np.asarray(true_class)
    acw, cw = np.flatnonzero(true_class == ACW), np.flatnonzero(true_class == CW)
    total = len(true_class) if n_set is None else int(n_set)
    if len(acw) == 0 or len(cw) == 0:
        raise ValueError(f"the S/Z set needs galaxies of both spins (has {len(acw)} ACW, {len(cw)} CW)")
    rng = np.random.default_rng(seed)
    sets = []
    possible = possible_levels(total, levels)
    if len(possible) < 3:
        raise ValueError(f"only {len(possible)} of the set CVS levels fit sets of {total} S/Z galaxies (|CVS| < √N)")
    for level in possible:
        n_acw = int(round((total + level * math.sqrt(total)) / 2))
        for draw in range(draws):
            acw_idx, acw_replaced = _draw(rng, acw, n_acw)
            cw_idx, cw_replaced = _draw(rng, cw, total - n_acw)
            sets.append({"level": float(level), "draw": draw, "indices": np.concatenate([acw_idx, cw_idx]),
                         "n_acw": n_acw, "n_cw": total - n_acw, "set_cvs": cvs(n_acw, total - n_acw),
                         "acw_with_replacement": acw_replaced, "cw_with_replacement": cw_replaced})
    return sets


def recovery_points(predicted_class: np.ndarray, sets: list[dict]) -> pd.DataFrame:
    """Predicted counts and CVS of each resampled set, given the predicted class of every S/Z galaxy."""
    predicted_class = np.asarray(predicted_class)
    rows = []
    for s in sets:
        calls = predicted_class[s["indices"]]
        n_acw, n_cw = int((calls == ACW).sum()), int((calls == CW).sum())
        rows.append({"level": s["level"], "draw": s["draw"], "set_cvs": s["set_cvs"], "n_acw_set": s["n_acw"],
                     "n_cw_set": s["n_cw"], "n_acw_pred": n_acw, "n_cw_pred": n_cw, "pred_cvs": cvs(n_acw, n_cw),
                     "acw_with_replacement": s["acw_with_replacement"], "cw_with_replacement": s["cw_with_replacement"]})
    return pd.DataFrame(rows)


def run_recovery(test_predictions: pd.DataFrame, levels=CVS_LEVELS, draws: int = N_DRAWS,
                 seed: int = 0, n_set: int | None = N_SET) -> pd.DataFrame:
    """The study for one run: resample its S/Z set and score its predictions (see the module docstring)."""
    table = spiral_set(test_predictions)
    sets = resample(table["true_class"].to_numpy(), levels, draws, seed, n_set)
    return recovery_points(predicted_spirals(table[PROB_COLUMNS].to_numpy()), sets)


def fit_line(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least squares ``y = intercept + slope·x`` with standard errors (residual variance, n − 2 dof)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        raise ValueError(f"a line fit needs at least 3 points with different x (got {len(x)})")
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    sigma2 = float(resid @ resid) / (len(x) - 2)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return {"slope": float(coef[1]), "slope_err": math.sqrt(cov[1, 1]), "intercept": float(coef[0]),
            "intercept_err": math.sqrt(cov[0, 0]), "n_points": int(len(x))}


def spirals_found(test_predictions: pd.DataFrame) -> dict[str, float]:
    """On the S/Z set: how many galaxies the model calls spirals (Table 8), and with the right spin."""
    table = spiral_set(test_predictions)
    calls = predicted_spirals(table[PROB_COLUMNS].to_numpy())
    spiral = (calls == CW) | (calls == ACW)
    n = len(table)
    return {"n_sz": n, "n_found": int(spiral.sum()), "found_fraction": float(spiral.mean()) if n else math.nan,
            "right_spin_fraction": float((calls == table["true_class"].to_numpy()).mean()) if n else math.nan,
            "n_acw_pred": int((calls == ACW).sum()), "n_cw_pred": int((calls == CW).sum())}
