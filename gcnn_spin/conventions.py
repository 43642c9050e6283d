"""Label conventions shared by every stage (see the study's conventions).

CW = Z-wise spiral, ACW = S-wise spiral. Logit/probability order everywhere is
``CLASSES = (CW, ACW, Other)``. Mirroring an image swaps CW and ACW; rotating it changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

CLASSES: tuple[str, str, str] = ("CW", "ACW", "Other")
CW, ACW, OTHER = 0, 1, 2
#: GZ1 vote-fraction columns that make up the "Other" class.
OTHER_VOTE_COLUMNS: tuple[str, ...] = ("P_EL", "P_EDGE", "P_DK", "P_MG")
#: Index permutation that a mirror applies to (CW, ACW, Other).
MIRROR_PERMUTATION: tuple[int, int, int] = (ACW, CW, OTHER)
#: A class is "hard" when its fraction/probability reaches this.
HARD_THRESHOLD = 0.5


def soft_targets(p_cw, p_acw, p_other) -> np.ndarray:
    """Stack vote fractions into ``(N, 3)`` float32 targets in ``CLASSES`` order."""
    return np.stack([np.asarray(p_cw), np.asarray(p_acw), np.asarray(p_other)], axis=-1).astype(np.float32)


def hard_class(targets: np.ndarray) -> np.ndarray:
    """Label rule of the study: CW if P_CW > 0.5, ACW if P_ACW > 0.5, else Other. ``(N, 3) -> (N,)``."""
    targets = np.asarray(targets)
    out = np.full(targets.shape[0], OTHER, dtype=np.int64)
    out[targets[:, CW] > HARD_THRESHOLD] = CW
    out[targets[:, ACW] > HARD_THRESHOLD] = ACW
    return out


def predicted_spirals(probabilities: np.ndarray) -> np.ndarray:
    """Class calls from softmax probabilities ``(N, 3) -> (N,)``: a spiral when its probability is >= 0.5.

    Never feed raw logits here (a bug of the study's public code): the threshold is on probabilities.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.size and (probabilities.min() < -1e-6 or np.abs(probabilities.sum(-1) - 1).max() > 1e-3):
        raise ValueError("predicted_spirals expects softmax probabilities (rows in [0, 1] summing to 1), not logits")
    out = np.full(probabilities.shape[0], OTHER, dtype=np.int64)
    out[probabilities[:, CW] >= HARD_THRESHOLD] = CW
    out[probabilities[:, ACW] >= HARD_THRESHOLD] = ACW
    return out


def cvs(n_acw: float, n_cw: float) -> float:
    """Chirality violation significance ``(n_ACW - n_CW) / sqrt(n_ACW + n_CW)``; positive = more ACW."""
    total = n_acw + n_cw
    return float("nan") if total <= 0 else (n_acw - n_cw) / math.sqrt(total)


def class_counts(classes: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Counts row in the layout of the study's Table 1: total, ACW, CW, Other, CVS."""
    classes = np.asarray(classes)
    n_cw = int((classes == CW).sum())
    n_acw = int((classes == ACW).sum())
    n_other = int((classes == OTHER).sum())
    return {"total": int(classes.size), "ACW": n_acw, "CW": n_cw, "Other": n_other, "CVS": round(cvs(n_acw, n_cw), 2)}


def counts_table(rows: Mapping[str, Sequence[int] | np.ndarray]):
    """A pandas DataFrame of :func:`class_counts`, one row per named stage (dataset), in insertion order."""
    import pandas as pd

    return pd.DataFrame([{"dataset": name, **class_counts(c)} for name, c in rows.items()]).set_index("dataset")
