"""Cutout images: where they come from and the geometry that turns a 424 px cutout into model input.

Geometry (one definition for every stage): a training-store image holds the whole cutout resized to
``M = margin_size(S)`` so that any rotation followed by a centre crop to ``S`` shows no padding; the ``S`` crop
then covers the inscribed square of the cutout (``crop_field(S)`` ≈ 298 of 424 px). A survey-store image is
that same central field resized straight to ``S`` (same pixel scale, no margin).

Oversampling (``DataConfig.train_oversample = k``): the train store keeps the cutout at ``k * M`` px; the loader
then rotates at that resolution and resizes to ``S`` with antialiasing (rotate before downsampling); at ``k = 3`` a
rotated training image is about as sharp as an unrotated test image (:mod:`gcnn_spin.data.sharpness`).

Field (``DataConfig.field``, recorded by every store): ``"inscribed"`` is the geometry above; ``"full_frame"`` is
the study's code (``dataset_utils.py``): the whole cutout resized to ``S``, in training rotated first with
reflect-101 padding at the corners. Margin stores hold the same pixels for both (the whole cutout at ``M``; the
loader applies the field, :func:`gcnn_spin.data.augment.rotate_crop`); a survey store holds the field at ``S``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from gcnn_spin.config import ImageField, check_choice, choices

CUTOUT_SIZE = 424  # px, Galaxy Zoo DESI jpg cutouts (0.262"/px)


class BadImageError(ValueError):
    """A cutout that is missing, unreadable or of the wrong shape; names the galaxy and the file."""

    def __init__(self, dr8_id: str, path: str | Path, reason: str):
        super().__init__(f"{dr8_id}: {reason} ({path})")
        self.dr8_id, self.path, self.reason = dr8_id, str(path), reason

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.dr8_id, self.path, self.reason))


class ImageSource(Protocol):
    """Anything that returns a cutout ``(H, W, 3) uint8`` for a ``dr8_id`` or raises :class:`BadImageError`."""

    def load(self, dr8_id: str) -> np.ndarray: ...


#: Image fields a store can serve (see above; ``data.field``); the first is the default.
FIELDS = choices(ImageField)


def check_field(field: str) -> str:
    """``field`` if it is one of :data:`FIELDS`, else a ValueError naming the valid ones (a store's recorded field
    or a caller's argument: a config's was checked at load)."""
    return check_choice("data.field", field, ImageField)


def margin_size(image_size: int) -> int:
    """Side ``M`` of a training-store image: a rotated ``S x S`` crop of it never reaches its border."""
    return math.ceil(image_size * math.sqrt(2)) + 1


def crop_field(image_size: int, cutout_size: int = CUTOUT_SIZE) -> float:
    """Pixels of the source cutout that the final ``S x S`` crop covers (same for both store kinds)."""
    return cutout_size * image_size / margin_size(image_size)


def jpg_relpath(dr8_id: str) -> str:
    """Galaxy Zoo DESI layout: ``jpg/{brickid}/{dr8_id}.jpg`` with ``dr8_id = "{brickid}_{objid}"``."""
    brickid = dr8_id.split("_", 1)[0]
    return f"jpg/{brickid}/{dr8_id}.jpg"


def decode_jpeg(path: str | Path, dr8_id: str = "?") -> np.ndarray:
    """Decode an RGB JPEG to ``(H, W, 3) uint8``; every failure becomes a :class:`BadImageError`."""
    path = Path(path)
    if not path.exists():
        raise BadImageError(dr8_id, path, "file not found")
    try:
        with Image.open(path) as img:
            img.load()
            array = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(dr8_id, path, f"unreadable JPEG: {err}") from None
    return array


def to_store_image(cutout: np.ndarray, image_size: int, margin: bool, oversample: int = 1,
                   field: str = "inscribed") -> np.ndarray:
    """Cutout ``(H, W, 3) uint8`` -> store image ``(3, k*M, k*M)`` (``margin``, ``k = oversample``: the whole
    cutout, whatever the field) or ``(3, S, S)`` (the central ``field``: inscribed, or the full frame).
    """
    if oversample < 1 or (oversample > 1 and not margin):
        raise ValueError(f"oversample must be >= 1 and needs a margin store, got {oversample} (margin={margin})")
    if cutout.ndim != 3 or cutout.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {cutout.shape}")
    height, width = cutout.shape[:2]
    img = Image.fromarray(cutout)
    if margin:
        side = margin_size(image_size) * oversample
    else:
        side = image_size
        crop = min(height, width) if check_field(field) == "full_frame" else crop_field(image_size, min(height, width))
        left, top = (width - crop) / 2, (height - crop) / 2
        img = img.resize((side, side), Image.BILINEAR, box=(left, top, left + crop, top + crop), reducing_gap=2.0)
        return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))
    img = img.resize((side, side), Image.BILINEAR, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))


class JpegTree:
    """Cutouts in the Galaxy Zoo DESI folder layout under ``root`` (``root/jpg/{brickid}/{dr8_id}.jpg``)."""

    def __init__(self, root: str | Path, expected_size: int | None = CUTOUT_SIZE):
        self.root = Path(root)
        self.expected_size = expected_size

    def path(self, dr8_id: str) -> Path:
        return self.root / jpg_relpath(dr8_id)

    def load(self, dr8_id: str) -> np.ndarray:
        path = self.path(dr8_id)
        array = decode_jpeg(path, dr8_id)
        if self.expected_size and array.shape[:2] != (self.expected_size, self.expected_size):
            raise BadImageError(dr8_id, path, f"expected {self.expected_size}x{self.expected_size}, got {array.shape[1]}x{array.shape[0]}")
        return array
