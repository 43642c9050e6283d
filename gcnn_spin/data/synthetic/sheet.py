"""Contact sheet of synthetic cutouts with their truth in the titles (a quick look for people)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str], path: str | os.PathLike,
                  n_cols: int = 6, panel_inches: float = 2.3) -> None:
    """Save ``images`` (each ``(H, W, 3)`` uint8) as a grid PNG with one title per panel."""
    from matplotlib.figure import Figure  # not pyplot: no backend to choose, no global figure to close

    from gcnn_spin.io import atomic_path

    n = len(images)
    n_rows = max(1, -(-n // n_cols))
    fig = Figure(figsize=(n_cols * panel_inches, n_rows * (panel_inches + 0.3)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, origin="upper", interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def survey_sheet(raw_dir: str | os.PathLike, path: str | os.PathLike, n: int = 24, seed: int = 0) -> None:
    """Contact sheet of ``n`` cutouts of a synthetic survey in ``raw_dir``: about half spirals (both senses),
    the rest one of each other morphology in turn; titles give the truth and, for GZ1 galaxies, the votes."""
    import pandas as pd

    from gcnn_spin.data.images import JpegTree

    truth = pd.read_parquet(os.path.join(raw_dir, "truth.parquet"))
    truth = truth[truth["dr8_id"] != ""]
    rng = np.random.default_rng(seed)
    spirals = truth[truth["morphology"] == "spiral"]
    others = truth[truth["morphology"] != "spiral"]
    picks = list(rng.permutation(spirals.index)[: n // 2])
    by_kind = [rng.permutation(rows.index).tolist() for _, rows in others.groupby("morphology")]
    while len(picks) < n and any(by_kind):
        for rows in by_kind:
            if rows and len(picks) < n:
                picks.append(rows.pop())
    tree = JpegTree(raw_dir)
    images, titles = [], []
    for _, g in truth.loc[picks].iterrows():
        images.append(tree.load(g["dr8_id"]))
        head = f"{g['true_class']} {g['morphology']}" + (f" ({g['winding']}-wise)" if g["winding"] else "")
        if g["morphology"] == "spiral":
            detail = f"m={g['n_arms']} pitch={g['pitch_deg']:.0f} i={g['inclination_deg']:.0f} clar={g['clarity']:.2f}"
        else:
            detail = f"i={g['inclination_deg']:.0f}"
        if g["in_gz1"]:
            detail += f"\nvotes CW {g['n_cw'] / g['n_vote']:.2f} ACW {g['n_acw'] / g['n_vote']:.2f}"
        titles.append(f"{head}\n{detail}")
    contact_sheet(images, titles, path)
