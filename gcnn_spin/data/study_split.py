"""Which store rows a run trains and validates on: our held-out split, or the study code's split for comparison.

Ours (the default): every row of the ``train`` store trains, every row of the held-out ``val`` store validates.

The study's code (``dataset_utils.py``, ``data.study_code_split_bug = true``) splits its train/val catalogue
20/80 with a fixed seed, trains on the 20 % and validates on those same 20 % (the 80 % go unused). Here the
20 % (:func:`study_code_train_size` of ``n_train + n_val``) are rows drawn from the ``train`` store: the val store is itself a
uniform random part of the train/val set, so they are a uniform random 20 % of it, and no store is rebuilt. The
draw uses its own stream of ``data.split_seed``, the same for every model and seed (as the study's seed 42).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from gcnn_spin.config import DataConfig

#: The study code's training share of its train/val catalogue (``random_split(..., [0.20, 0.80])``).
STUDY_CODE_TRAIN_FRACTION = 0.2
_STREAM = 4  # after gcnn_spin.data.selection's test, downsample and val streams


@dataclasses.dataclass(frozen=True)
class TrainingSets:
    """The rows a run trains on and validates on. ``train_rows`` / ``val_rows``: store rows ``(n,)``, ascending,
    or None for every row of the store; ``val_split``: which store validates (``"val"``, or ``"train"`` under
    the study code's split); ``on_training_galaxies``: validation sees the training galaxies."""

    train_rows: np.ndarray | None
    val_split: str
    val_rows: np.ndarray | None

    @property
    def on_training_galaxies(self) -> bool:
        return self.val_split == "train"


def study_code_train_size(n: int) -> int:
    """The size of the 20 % part of ``n`` galaxies as the study's ``torch.utils.data.random_split(..., [0.20,
    0.80])`` makes it: each share floored, then what is left over added one by one from the first share."""
    sizes = [math.floor(n * share) for share in (STUDY_CODE_TRAIN_FRACTION, 1 - STUDY_CODE_TRAIN_FRACTION)]
    for i in range(n - sum(sizes)):
        sizes[i % len(sizes)] += 1
    return sizes[0]


def training_sets(stores: Mapping[str, object], cfg: DataConfig) -> TrainingSets:
    """The training and validation rows of opened ``stores`` (``train``, ``val``) under ``cfg``."""
    if not cfg.study_code_split_bug:
        return TrainingSets(train_rows=None, val_split="val", val_rows=None)
    n_train, n_val = len(stores["train"]), len(stores["val"])
    n = study_code_train_size(n_train + n_val)
    if n > n_train:
        raise ValueError(f"data.study_code_split_bug: 20 % of the train/val set ({n} galaxies) is more than the "
                         f"train store holds ({n_train}); lower data.val_fraction")
    rng = np.random.default_rng([cfg.split_seed, _STREAM])
    rows = np.sort(rng.choice(n_train, size=n, replace=False)).astype(np.int64)
    return TrainingSets(train_rows=rows, val_split="train", val_rows=rows)
