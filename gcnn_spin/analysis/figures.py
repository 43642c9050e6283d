"""Figures (matplotlib, PNG): each function draws one figure from plain tables and saves it atomically.

Figures are built with ``matplotlib.figure.Figure``, never through ``pyplot``: nothing here selects a backend or
keeps a figure open in global state, so importing this module changes nothing for its caller, and a figure that
fails half-way is simply garbage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..conventions import CLASSES, MIRROR_PERMUTATION
from ..io import atomic_path

CLASS_COLOURS = {"CW": "tab:blue", "ACW": "tab:red", "Other": "tab:gray"}
DPI = 120


def _subplots(*args, figsize: tuple[float, float], **kwargs):
    """A new figure and its axes, as ``pyplot.subplots`` but outside pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return path


def _colours(labels: Sequence[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def training_curves(histories: Mapping[str, Sequence[pd.DataFrame]], path: str | Path, ddof: int = 1) -> Path:
    """Loss and accuracy per epoch, train and val, mean line and ±1 std (``ddof``) band over each model's seeds."""
    fig, axes = _subplots(2, 2, figsize=(12, 8), sharex=True)
    colours = _colours(list(histories))
    panels = [("train_loss", "train loss"), ("val_loss", "val loss"), ("train_accuracy", "train accuracy"),
              ("val_accuracy", "val accuracy")]
    for ax, (key, title) in zip(axes.flat, panels):
        for label, frames in histories.items():
            table = pd.concat([f[["epoch", key]] for f in frames]).groupby("epoch")[key]
            mean, std = table.mean(), table.std(ddof=ddof).fillna(0.0)
            ax.plot(mean.index, mean.to_numpy(), color=colours[label], label=f"{label} ({len(frames)})")
            ax.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(), color=colours[label],
                            alpha=0.2, linewidth=0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8, title="model (seeds)", title_fontsize=8)
    fig.suptitle("Training curves: mean ± std over seeds")
    return _save(fig, path)


def confusion_grid(matrices: Mapping[str, np.ndarray], path: str | Path, title: str,
                   highlight: Sequence[str] = ()) -> Path:
    """Row-normalised confusion matrices (true × predicted), one annotated panel per model."""
    labels = list(matrices)
    n_cols = min(4, max(1, len(labels)))
    n_rows = int(np.ceil(len(labels) / n_cols)) or 1
    fig, axes = _subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 3.3 * n_rows), squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for ax, label in zip(axes.flat, labels):
        matrix = np.asarray(matrices[label], dtype=float)
        ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", fontsize=9,
                        color="white" if matrix[i, j] > 0.6 else "black")
        ax.set_xticks(range(3), CLASSES)
        ax.set_yticks(range(3), CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label, fontweight="bold" if label in highlight else "normal",
                     color="tab:red" if label in highlight else "black")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def recovery_plot(points: Mapping[str, pd.DataFrame], slopes: Mapping[str, str], path: str | Path) -> Path:
    """Predicted vs set CVS per model (mean ± std over seeds at each level) with the ideal line."""
    fig, ax = _subplots(figsize=(7, 6))
    colours = _colours(list(points))
    lo, hi = np.inf, -np.inf
    for k, (label, table) in enumerate(points.items()):
        per_seed = table.groupby(["seed", "level"])[["set_cvs", "pred_cvs"]].mean().reset_index()
        stats = per_seed.groupby("level").agg(x=("set_cvs", "mean"), y=("pred_cvs", "mean"),
                                              err=("pred_cvs", "std")).fillna(0.0)
        offset = (k - (len(points) - 1) / 2) * 0.12  # keeps error bars of different models apart
        ax.errorbar(stats["x"] + offset, stats["y"], yerr=stats["err"], fmt="o-", ms=4, capsize=2,
                    color=colours[label], label=f"{label}: slope {slopes.get(label, '?')}")
        lo, hi = min(lo, stats["x"].min(), stats["y"].min()), max(hi, stats["x"].max(), stats["y"].max())
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="ideal (slope 1)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_xlabel("set CVS of the resampled S/Z test set")
    ax.set_ylabel("predicted CVS")
    ax.set_title("CVS recovery (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def rotation_probabilities(tables: Mapping[str, pd.DataFrame], path: str | Path, title: str) -> Path:
    """Class probabilities (MC-dropout mean ± std) vs rotation angle for one galaxy, one panel per model."""
    fig, axes = _subplots(1, len(tables), figsize=(5.5 * len(tables), 4.2), sharey=True, squeeze=False)
    for ax, (label, table) in zip(axes[0], tables.items()):
        table = table.sort_values("angle_deg")
        for name, cls in zip(("p_cw", "p_acw", "p_other"), CLASSES):
            ax.errorbar(table["angle_deg"], table[f"{name}_mean"], yerr=table[f"{name}_std"], fmt="o-", ms=4,
                        capsize=3, color=CLASS_COLOURS[cls], label=cls)
        eta = table[["eta_sz", "eta_zn", "eta_sn"]].mean()
        ax.set_title(f"{label}\n⟨η_SZ⟩ {eta['eta_sz']:.2f}  ⟨η_ZN⟩ {eta['eta_zn']:.2f}  ⟨η_SN⟩ {eta['eta_sn']:.2f}",
                     fontsize=10)
        ax.set_xlabel("rotation angle (deg)")
        ax.set_xticks(np.arange(0, 181, 45))
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("softmax probability")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def eta_histograms(per_image: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Distributions of ⟨η⟩ per image, one panel per class pair, one histogram per model."""
    fig, axes = _subplots(1, 3, figsize=(15, 4), sharey=True)
    colours = _colours(list(per_image))
    bins = np.linspace(0, 1, 26)
    for ax, (key, title) in zip(axes, (("eta_sz", "η_SZ (ACW vs CW)"), ("eta_zn", "η_ZN (CW vs Other)"),
                                       ("eta_sn", "η_SN (ACW vs Other)"))):
        for label, table in per_image.items():
            ax.hist(table[key], bins=bins, histtype="step", lw=1.5, color=colours[label],
                    label=f"{label} (mean {table[key].mean():.3f})")
        ax.set_title(title)
        ax.set_xlabel("⟨η⟩ over angles (lower = better separated)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("images")
    fig.tight_layout()
    return _save(fig, path)


def survey_plot(summary: pd.DataFrame, path: str | Path) -> Path:
    """Predicted survey galaxies per spin class and the CVS per model, mean ± std over seeds."""
    fig, (ax_n, ax_c) = _subplots(1, 2, figsize=(13, 4.5))
    x = np.arange(len(summary))
    for k, (key, cls) in enumerate((("pct_cw", "CW"), ("pct_acw", "ACW"))):
        ax_n.bar(x + (k - 0.5) * 0.38, summary[f"{key}_mean"], 0.38, yerr=summary[f"{key}_std"].fillna(0),
                 capsize=3, color=CLASS_COLOURS[cls], label=cls)
    ax_n.set_ylabel("% of survey galaxies")
    ax_n.set_title("Predicted spirals per class")
    ax_n.legend()
    ax_c.errorbar(x, summary["cvs_mean"], yerr=summary["cvs_std"].fillna(0), fmt="o", capsize=4, color="k")
    ax_c.axhline(0, color="gray", lw=1)
    ax_c.set_ylabel("CVS = (n_ACW − n_CW)/√(n_ACW + n_CW)")
    ax_c.set_title("Survey CVS")
    for ax in (ax_n, ax_c):
        ax.set_xticks(x, summary["model"], rotation=30, ha="right")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)


def sky_split_plot(summary: pd.DataFrame, path: str | Path) -> Path:
    """CVS north vs south of the galactic plane, and the fitted spin-sign dipole, per model (mean ± std)."""
    fig, (ax_c, ax_d) = _subplots(1, 2, figsize=(13, 4.5))
    x = np.arange(len(summary))
    for k, (name, colour) in enumerate((("north", "tab:purple"), ("south", "tab:orange"))):
        ax_c.errorbar(x + (k - 0.5) * 0.2, summary[f"cvs_{name}_mean"], yerr=summary[f"cvs_{name}_std"].fillna(0),
                      fmt="o", capsize=4, color=colour, label=f"galactic {name} (b {'>' if k == 0 else '<'} 0)")
    ax_c.axhline(0, color="gray", lw=1)
    ax_c.set_ylabel("CVS")
    ax_c.set_title("Sky split")
    ax_c.legend()
    ax_d.errorbar(x, summary["dipole_mean"], yerr=summary["dipole_std"].fillna(0), fmt="s", capsize=4, color="k",
                  label="|d| (spread over seeds)")
    for xi, sig in zip(x, summary["significance_sigma_mean"]):
        if np.isfinite(sig):
            ax_d.annotate(f"{sig:.1f}σ", (xi, 0), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    ax_d.set_ylabel("dipole amplitude of the spin sign")
    ax_d.set_title("Dipole fit (labels: mean significance)")
    ax_d.set_ylim(bottom=0)
    for ax in (ax_c, ax_d):
        ax.set_xticks(x, summary["model"], rotation=30, ha="right")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)


def validation_plot(rows: pd.DataFrame, truth_cvs: float, train_cvs: float, path: str | Path) -> Path:
    """Each model's predicted survey CVS (mean ± std) against the synthetic truth and the labelled training set."""
    fig, ax = _subplots(figsize=(8, 4.5))
    x = np.arange(len(rows))
    ax.errorbar(x, rows["cvs_mean"], yerr=rows["cvs_std"].fillna(0), fmt="o", capsize=4, color="k",
                label="predicted survey CVS")
    if np.isfinite(truth_cvs):
        ax.axhline(truth_cvs, color="tab:green", lw=2, label=f"true sky CVS {truth_cvs:.2f}")
    if np.isfinite(train_cvs):
        ax.axhline(train_cvs, color="tab:orange", ls="--", label=f"labelled train/val CVS {train_cvs:.2f}")
    ax.set_xticks(x, rows["model"], rotation=30, ha="right")
    ax.set_ylabel("CVS")
    ax.set_title("Validation against the synthetic truth")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)


def attribution_grid(pairs: Mapping[str, Mapping[str, np.ndarray]], path: str | Path) -> Path:
    """Per model and galaxy: the galaxy, its attribution map, its mirror image and that image's map
    (:func:`gcnn_spin.analysis.attribution.mirrored_pairs`); maps share a symmetric colour scale per row."""
    n_rows = sum(len(p["targets"]) for p in pairs.values())
    fig, axes = _subplots(n_rows, 4, figsize=(8.0, 2.1 * n_rows), squeeze=False)
    row = 0
    for label, p in pairs.items():
        for i, target in enumerate(p["targets"]):
            mirrored = CLASSES[MIRROR_PERMUTATION[int(target)]]
            scale = float(max(np.abs(p["maps"][i]).max(), np.abs(p["mirror_maps"][i]).max(), 1e-12))
            panels = [(p["images"][i], f"{label}: galaxy"), (p["maps"][i], f"→ {CLASSES[int(target)]}"),
                      (p["mirrored"][i], "mirror image"), (p["mirror_maps"][i], f"→ {mirrored}")]
            for ax, (data, title) in zip(axes[row], panels):
                if data.ndim == 3:
                    ax.imshow(data)
                else:
                    ax.imshow(data, cmap="RdBu_r", vmin=-scale, vmax=scale)
                ax.set_title(title, fontsize=8)
                ax.set_axis_off()
            row += 1
    fig.tight_layout()
    return _save(fig, path)
