"""Synthetic surveys only: the true classes behind the validation section (the pipeline never reads the truth).

The truth table (``RAW/truth.parquet``, written by ``gcnn_spin.data.synthetic``) gives each galaxy's class as
``true_label`` (0/1/2 = CW/ACW/Other) or, failing that, as the winding ``sense`` (+1 Z-wise = CW, −1 S-wise =
ACW, 0 none).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..conventions import ACW, CW, OTHER, cvs, hard_class
from ..io import read_parquet
from ..layout import store_rows_path


def truth_classes(truth: pd.DataFrame) -> np.ndarray:
    """True class (CW/ACW/Other) of each synthetic galaxy: ``true_label``, else ``sense`` (+1 Z = CW, −1 S = ACW)."""
    for column in ("true_label", "label", "true_class"):
        if column in truth:
            return truth[column].to_numpy(dtype=np.int64)
    if "sense" in truth:
        sense = truth["sense"].to_numpy()
        return np.where(sense > 0, CW, np.where(sense < 0, ACW, OTHER))
    raise ValueError(f"the truth table has none of true_label, label, true_class, sense; columns: {list(truth)}")


def labelled_classes(data: str | Path) -> np.ndarray | None:
    """Hard labels of the labelled training set (train + val stores' rows, else the catalogue)."""
    data = Path(data)
    rows = [store_rows_path(data, split) for split in ("train", "val")]
    frames = [read_parquet(path, what="store rows") for path in rows if path.exists()]
    if not frames and (data / "catalogue.parquet").exists():
        cat = read_parquet(data / "catalogue.parquet", what="dataset catalogue")
        frames = [cat[cat["split"].isin(["train", "val"])]]
    if not frames:
        return None
    rows = pd.concat(frames)
    return hard_class(rows[["p_cw", "p_acw", "p_other"]].to_numpy())


def cvs_row(source: str, classes: np.ndarray) -> dict[str, Any]:
    """A row of the validation table: ACW and CW counts of ``classes`` and their CVS."""
    n_acw, n_cw = int((classes == ACW).sum()), int((classes == CW).sum())
    return {"source": source, "n_acw": n_acw, "n_cw": n_cw, "cvs": cvs(n_acw, n_cw), "cvs_std": math.nan,
            "equivariance_error": math.nan}
