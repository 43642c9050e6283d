"""Losses and metrics in the study's definitions (soft-label cross-entropy, argmax accuracy, spiral counts, CVS)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .conventions import ACW, CLASSES, CW, OTHER, cvs, predicted_spirals


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits ``(B, 3)`` against soft targets ``(B, 3)`` (vote fractions)."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def n_correct(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """Argmax of the target vs argmax of the prediction, counted over the batch."""
    return int((logits.argmax(dim=-1) == targets.argmax(dim=-1)).sum())


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int = len(CLASSES), normalise: bool = True) -> np.ndarray:
    """``(n, n)`` matrix, rows = true class, columns = predicted; row-normalised unless ``normalise=False``.

    Rows with no galaxies stay zero (not NaN) so the matrix is always plottable.
    """
    counts = np.zeros((n_classes, n_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    if not normalise:
        return counts
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def spiral_summary(probabilities: np.ndarray) -> dict[str, float]:
    """Spirals found (softmax probability >= 0.5) and the CVS they imply. ``probabilities``: ``(N, 3)``."""
    calls = predicted_spirals(probabilities)
    n_cw, n_acw = int((calls == CW).sum()), int((calls == ACW).sum())
    return {"n": int(len(calls)), "n_cw": n_cw, "n_acw": n_acw, "n_other": int((calls == OTHER).sum()),
            "acw_cw_ratio": (n_acw / n_cw) if n_cw else float("nan"), "cvs": cvs(n_acw, n_cw)}


def classification_metrics(probabilities: np.ndarray, targets: np.ndarray) -> dict:
    """Loss, accuracy, confusion matrix and spiral counts of probabilities ``(N, 3)`` vs soft targets ``(N, 3)``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    true, pred = targets.argmax(axis=1), probabilities.argmax(axis=1)
    loss = float(-(targets * np.log(np.clip(probabilities, 1e-12, 1.0))).sum(axis=1).mean()) if len(targets) else float("nan")
    return {
        "loss": loss,
        "accuracy": float((true == pred).mean()) if len(true) else float("nan"),
        "confusion": confusion_matrix(true, pred).tolist(),
        "confusion_counts": confusion_matrix(true, pred, normalise=False).astype(int).tolist(),
        "spirals": spiral_summary(probabilities),
    }
