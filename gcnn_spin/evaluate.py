"""Evaluation of a finished run on its val and test stores: loss, accuracy, confusion matrix, spirals, CVS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .crop import crop_for
from .io import write_json_atomic, write_parquet_atomic
from . import layout
from .metrics import classification_metrics

PROB_COLUMNS = ["p_cw", "p_acw", "p_other"]
TRUE_COLUMNS = ["p_cw_true", "p_acw_true", "p_other_true"]


def evaluate_store(module: torch.nn.Module, store_path: Path, device: torch.device, batch_size: int = 256,
                   desc: str = "evaluate", progress: bool = True, rows: np.ndarray | None = None):
    """Per-galaxy probabilities and the metrics of one labelled store (``rows``: these store rows only, default
    all). Returns ``(table, metrics)``."""
    from .predict import predict_probabilities

    table = predict_probabilities(module, store_path, rows=rows, batch_size=batch_size, device=device, desc=desc,
                                  progress=progress)
    missing = [c for c in TRUE_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"{store_path} has no labels ({missing}); evaluation needs a labelled store")
    metrics = classification_metrics(table[PROB_COLUMNS].to_numpy(), table[TRUE_COLUMNS].to_numpy())
    return table, metrics


@torch.no_grad()
def equivariance_errors(module: torch.nn.Module, store_path: Path, device: torch.device, n_images: int = 64) -> dict:
    """Largest change of the softmax probabilities ``(N, 3)`` on real test images under symmetry operations.

    ``mirror``: ``p(mirror(x))`` vs ``p(x)`` with CW and ACW swapped, worst of both mirror axes (0 for an exactly
    chirality-equivariant model); ``rot90``: ``p(rot90(x))`` vs ``p(x)`` (0 for an exactly rotation-invariant one).
    """
    from .conventions import MIRROR_PERMUTATION
    from .data.loader import StoreLoader
    from .data.store import open_store

    store = open_store(store_path)
    loader = StoreLoader(store, batch_size=n_images, shuffle=False, image_size=crop_for(module, store), device=device)
    images = next(iter(loader)).images

    def probs(x):
        return torch.softmax(module(x).double(), dim=-1)

    base = probs(images)
    swap = list(MIRROR_PERMUTATION)
    mirror = max(float((probs(images.flip(axis))[:, swap] - base).abs().max()) for axis in (-1, -2))
    rot90 = float((probs(torch.rot90(images, 1, dims=(-2, -1))) - base).abs().max())
    return {"mirror": mirror, "rot90": rot90, "n_images": int(len(images))}


def least_val_loss_epoch(history: list[dict[str, Any]]) -> int | None:
    """The epoch (1-based) of least ``val_loss`` in ``history``, the first on ties (``np.argmin``'s choice, the
    study's ``metrics_utils.py``); None without history."""
    if not history:
        return None
    return int(history[int(np.argmin([row["val_loss"] for row in history]))]["epoch"])


def evaluate_run(run_dir: Path, spec, module: torch.nn.Module, device: torch.device,
                 history: list[dict[str, Any]], progress: bool = True, sets=None,
                 weights_epoch: int | None = None) -> dict[str, Any]:
    """Evaluate the exported ``module`` on val and test; write ``test_predictions.parquet`` and ``metrics.json``.

    ``sets`` (:class:`gcnn_spin.data.study_split.TrainingSets`, default: the held-out val store) names the rows
    the val columns come from; ``weights_epoch``: the epoch whose weights ``module`` holds (default: the last).
    """
    val_split, val_rows = (sets.val_split, sets.val_rows) if sets is not None else ("val", None)
    val_store, test_store = (layout.store_path(spec.data_dir, split) for split in (val_split, "test"))
    batch_size = max(spec.experiment.train.batch_size, 128)
    _, val = evaluate_store(module, val_store, device, batch_size, desc=f"{spec.model} val", progress=progress,
                            rows=val_rows)
    test_table, test = evaluate_store(module, test_store, device, batch_size, desc=f"{spec.model} test",
                                      progress=progress)
    write_parquet_atomic(test_table, run_dir / layout.RUN_TEST_PREDICTIONS)
    errors = equivariance_errors(module, test_store, device)
    metrics = {"model": spec.model, "seed": spec.seed, "epochs": len(history), "val": val, "test": test,
               "best_val_epoch": least_val_loss_epoch(history), "equivariance_error": errors["mirror"],
               "equivariance": errors,
               "tables_checkpoint": spec.experiment.train.tables_checkpoint,
               "weights_epoch": len(history) if weights_epoch is None else int(weights_epoch),
               "val_on_training_galaxies": bool(sets is not None and sets.on_training_galaxies),
               "train_seconds": float(np.sum([row["seconds"] for row in history])) if history else 0.0}
    write_json_atomic(run_dir / layout.RUN_METRICS, metrics)
    return metrics


if __name__ == "__main__":  # a library module beside the train and predict commands
    from gcnn_spin.errors import not_a_command

    not_a_command(__spec__.name)
