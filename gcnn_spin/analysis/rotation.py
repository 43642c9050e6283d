"""Rotation study: how stable a model's class probabilities are under rotation, measured with MC dropout.

For each test image and each angle, the margin image is rotated and centre-cropped
(``gcnn_spin.data.augment.rotate_crop``) and sampled 10 times with every dropout layer in train mode and
everything else in eval mode. Angles: the study's code's 0°, 20°, …, 160° (``STUDY_CODE_ANGLES_DEG``, the study
config) or 0°, 22.5°, …, 180° (``C8_ANGLES_DEG``: 5 of the 9 are C8 rotations, where a G-ResNet is exactly
invariant). Per angle, the overlap index η (``overlap``, KDE method ``"study_code"`` or ``"reflected"``) is
computed between the 10 sampled probabilities of each pair of classes: η_SZ (S = ACW vs Z = CW), η_ZN (Z vs Other)
and η_SN (S vs Other). ⟨η⟩ per image is the mean over **all** angles (the study's code overwrote η inside its
angle loop, so its ⟨η⟩ is η(last angle) / 9: ``mean_over_angles(..., study_code_bug=True)`` reproduces it).
A lower η means better separated classes.

The 10 passes of an angle share one backbone forward and repeat only the model's head, where every dropout
layer sits (``gcnn_spin.models.mc``): the same samples as 10 whole passes, 5-20x faster on the CPU.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..conventions import ACW, CW, OTHER, hard_class
from ..crop import crop_for
from ..models.mc import sample_logits
from .overlap import BANDWIDTH, ETA_TOLERANCE, compare_overlaps, kde_method, kde_on_grid, overlap_from_densities

C8_ANGLES_DEG: tuple[float, ...] = tuple(np.linspace(0.0, 180.0, 9))
#: The study's code: ``range(0, 180, 20)``.
STUDY_CODE_ANGLES_DEG: tuple[float, ...] = tuple(float(a) for a in range(0, 180, 20))
ANGLES_DEG = C8_ANGLES_DEG
N_PASSES = 10
#: η name -> the two classes it compares (S = ACW, Z = CW, N = Other).
PAIRS: dict[str, tuple[int, int]] = {"eta_sz": (ACW, CW), "eta_zn": (CW, OTHER), "eta_sn": (ACW, OTHER)}
PROB_NAMES = ("p_cw", "p_acw", "p_other")

Rotate = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def default_rotate() -> Rotate:
    """``gcnn_spin.data.augment.rotate_crop``; a clear error when the data package does not provide it."""
    try:
        from ..data.augment import rotate_crop
    except ImportError as err:
        raise RuntimeError(f"the rotation study needs gcnn_spin.data.augment.rotate_crop, which cannot be imported "
                           f"({err}); pass rotate= explicitly or install the data package") from None
    return rotate_crop


def enable_mc_dropout(module: torch.nn.Module) -> int:
    """Eval mode everywhere except the dropout layers (train mode); returns how many dropout layers are on."""
    from ..models import enable_mc_dropout as switch_on

    module.eval()
    n = switch_on(module)
    if n == 0:
        raise ValueError(f"{type(module).__name__} has no dropout layer: MC dropout cannot sample it")
    return n


@torch.no_grad()
def mc_probabilities(module: torch.nn.Module, images: torch.Tensor, image_size: int,
                     angles_deg: tuple[float, ...] = ANGLES_DEG, n_passes: int = N_PASSES,
                     rotate: Rotate | None = None, head_only: bool = True) -> torch.Tensor:
    """Sampled softmax probabilities ``(B, A, P, 3)`` of margin images ``(B, 3, M, M)`` (float in [0, 1]).

    All angles of the batch go through the backbone as one batch of ``B·A`` crops, and the ``P`` passes of each
    through the head (``head_only``; ``False``: ``B·A·P`` whole passes, the same samples, slower); the caller
    puts the module in MC-dropout mode (:func:`enable_mc_dropout`).
    """
    rotate = rotate or default_rotate()
    n_images, n_angles = images.shape[0], len(angles_deg)
    angles = torch.tensor([math.radians(a) for a in angles_deg], dtype=torch.float32, device=images.device)
    stacked = images.repeat_interleave(n_angles, dim=0)  # (B·A, 3, M, M): image-major, then angle
    crops = rotate(stacked, angles.repeat(n_images), image_size)  # (B·A, 3, S, S)
    logits = sample_logits(module, crops, n_passes, head_only)  # (B·A·P, 3)
    return torch.softmax(logits.float(), dim=-1).reshape(n_images, n_angles, n_passes, 3)


def overlaps(probabilities: np.ndarray, bandwidth: float = BANDWIDTH, kde: str = "reflected") -> dict[str, np.ndarray]:
    """η of each class pair per image and angle: ``(B, A, P, 3)`` -> ``{"eta_sz": (B, A), ...}``, with KDE
    method ``kde`` (:data:`~.overlap.KDE_METHODS`)."""
    method = kde_method(kde)
    densities = kde_on_grid(np.moveaxis(np.asarray(probabilities), -1, -2), bandwidth, method.n_grid,
                            method.reflect)  # (B, A, 3, G)
    return {name: overlap_from_densities(densities[..., i, :], densities[..., j, :], method.rule)
            for name, (i, j) in PAIRS.items()}


def select_images(rows: pd.DataFrame, n_images: int, seed: int = 0) -> np.ndarray:
    """Store rows of ``n_images`` usable test images, drawn without replacement with ``seed`` (sorted).

    The draw depends only on the store rows and ``seed``, so every (model, seed) sees the same images.
    """
    usable = np.flatnonzero(rows["ok"].to_numpy(dtype=bool)) if "ok" in rows else np.arange(len(rows))
    if len(usable) == 0:
        raise ValueError("the test store has no usable image")
    n = min(n_images, len(usable))
    return np.sort(np.random.default_rng(seed).choice(usable, size=n, replace=False))


class ChunkReader:
    """Reads images by row, decompressing each store chunk once however many chosen rows it holds."""

    def __init__(self, store):
        self.store, self.chunk = store, max(1, int(store.attrs.get("chunk_images", 1)))
        self.key, self.block = None, None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = []
        for r in map(int, rows):
            key = r // self.chunk
            if key != self.key:
                start = key * self.chunk
                self.key, self.block = key, self.store.read_block(start, min(start + self.chunk, len(self.store)))
            out.append(self.block[r - key * self.chunk])
        return np.stack(out)


def rotation_table(module: torch.nn.Module, store, rows: np.ndarray, angles_deg: tuple[float, ...] = ANGLES_DEG,
                   n_passes: int = N_PASSES, batch_images: int = 8, device: torch.device | str = "cpu",
                   rotate: Rotate | None = None, seed: int = 0, progress: bool = True, kde: str = "reflected",
                   head_only: bool = True) -> pd.DataFrame:
    """Run the study on store ``rows``: one row per (image, angle) with η of each pair and probability mean/std.

    ``store`` is an opened training-kind store (margin images, ``store.read_block``/``store.rows``).
    Columns: ``row, dr8_id, label, angle_deg, eta_sz, eta_zn, eta_sn, p_cw_mean, …, p_cw_std, …``.
    """
    if not bool(store.attrs.get("margin", True)) or int(store.attrs.get("margin_size", 0)) <= store.image_size:
        raise ValueError(f"{getattr(store, 'path', store)} holds no margin images: the rotation study needs a "
                         f"labelled store built with margins (test.zarr), not a survey store")
    rotate = rotate or functools.partial(default_rotate(), field=str(store.attrs.get("field", "inscribed")))
    crop = crop_for(module, store)  # the crop the model was trained at
    device = torch.device(device)
    module = module.to(device)
    enable_mc_dropout(module)
    torch.manual_seed(seed)
    meta = store.rows.iloc[rows]
    labels = (hard_class(meta[["p_cw", "p_acw", "p_other"]].to_numpy()) if {"p_cw", "p_acw", "p_other"} <= set(meta)
              else np.full(len(rows), -1))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), desc="rotation study", unit="img", dynamic_ncols=True, file=sys.stderr)
    frames, reader = [], ChunkReader(store)
    for start in range(0, len(rows), batch_images):
        chunk = rows[start:start + batch_images]
        images = torch.from_numpy(reader(chunk)).to(device).float() / 255.0
        probs = mc_probabilities(module, images, crop, angles_deg, n_passes, rotate, head_only).cpu().numpy()
        etas = overlaps(probs, kde=kde)
        n_angles = len(angles_deg)
        frame = {"row": np.repeat(chunk, n_angles), "label": np.repeat(labels[start:start + len(chunk)], n_angles),
                 "angle_deg": np.tile(np.asarray(angles_deg), len(chunk))}
        if "dr8_id" in meta:
            frame["dr8_id"] = np.repeat(meta["dr8_id"].to_numpy()[start:start + len(chunk)], n_angles)
        frame.update({name: eta.reshape(-1) for name, eta in etas.items()})
        for k, name in enumerate(PROB_NAMES):
            frame[f"{name}_mean"] = probs[..., k].mean(axis=-1).reshape(-1)
            frame[f"{name}_std"] = probs[..., k].std(axis=-1).reshape(-1)
        frames.append(pd.DataFrame(frame))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return pd.concat(frames, ignore_index=True)


def mean_over_angles(table: pd.DataFrame, study_code_bug: bool = False) -> pd.DataFrame:
    """⟨η⟩ per image: the mean of each η over every angle the table holds (one row per image).

    ``study_code_bug=True`` reproduces the study's code, which reset its η array inside the angle loop: only
    the last angle's η survives, divided by the number of angles.
    """
    if not study_code_bug:
        return table.groupby("row", sort=True)[list(PAIRS)].mean().reset_index()
    ordered = table.sort_values(["row", "angle_deg"], kind="stable").groupby("row", sort=True)
    return (ordered[list(PAIRS)].last() / ordered.size().to_numpy()[:, None]).reset_index()


def compare_models(per_image: dict[str, pd.DataFrame], tolerance: float = ETA_TOLERANCE) -> pd.DataFrame:
    """For each pair of models and each η, the fractions of common images where model a has the lower ⟨η⟩ by
    more than ``tolerance`` (``{η}_a_lower``), where the two are within ``tolerance`` (``{η}_within``) and where
    model b is lower by more than it (``{η}_b_lower``), as the study counted (:func:`~.overlap.compare_overlaps`).

    ``per_image`` maps a model to its ⟨η⟩ per image (``row`` + η columns), e.g. averaged over seeds.
    """
    labels = list(per_image)
    out = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            merged = per_image[a].merge(per_image[b], on="row", suffixes=("_a", "_b"))
            if merged.empty:
                continue
            row = {"model_a": a, "model_b": b, "n_images": len(merged)}
            for name in PAIRS:
                fractions = compare_overlaps(merged[f"{name}_a"].to_numpy(), merged[f"{name}_b"].to_numpy(), tolerance)
                row.update({f"{name}_{k}": v for k, v in fractions.items()})
            out.append(row)
    columns = ["model_a", "model_b", "n_images", *[f"{n}_{k}" for n in PAIRS for k in ("a_lower", "within", "b_lower")]]
    return pd.DataFrame(out, columns=columns)
