"""Batch-wise rotation and centre crop on tensors, on whatever device the batch is on.

Sense of rotation: a positive angle (radians) turns the image **counter-clockwise as displayed** with row 0 at
the top (``imshow`` convention); 90° equals ``torch.rot90(crop, 1, dims=(-2, -1))``. Rotation is about the centre
of the plain centre crop, so angle 0 gives exactly :func:`center_crop`; when ``M - S`` is odd that centre sits
half a pixel off the image centre, which the margin (``margin_size``) allows for.

Pixel geometry (``align_corners=False``): input pixel centres sit at normalised ``(2i + 1)/M - 1``, output ones
at ``(2j + 1)/S - 1``, so an output offset ``u`` pixels from the crop centre samples the input at
``R(angle) u`` pixels from that same point: ``theta = (S/M) R`` plus the half-pixel shift. Only the ``S x S``
output is sampled (no full-size rotated intermediate); with ``M >= margin_size(S)`` no sample (nor its bilinear
neighbours) falls outside the stored image, so padding never shows.

``oversample = k``: the images hold ``k`` pixels per output pixel; the ``k*S`` crop is rotated at that resolution,
then resized to ``S`` with antialiasing (the filter PIL's resize of the stored images uses), so the rotation's
interpolation blur shrinks by ``k``.

``field="full_frame"`` (the study's code, see :mod:`gcnn_spin.data.images`): the whole stored image is rotated
about its centre with reflect-101 padding at the corners (OpenCV's ``BORDER_REFLECT_101``, albumentations'
``Rotate`` default: the border pixel is not repeated), then resized to ``S`` with antialiasing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gcnn_spin.data.images import check_field, margin_size


def _to_float(images: torch.Tensor, buffer: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """``images`` as float32 and the divisor that maps them to [0, 1] (255 for uint8, 1 for floats)."""
    if images.dtype == torch.uint8:
        if buffer is not None and buffer.numel() >= images.numel() and buffer.device == images.device:
            out = buffer.view(-1)[: images.numel()].view(images.shape)
            out.copy_(images)  # reusing a buffer avoids a fresh large allocation (page faults) per batch on CPU
            return out, 255.0
        return images.to(torch.float32), 255.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    return images.to(torch.float32), 1.0


def _check(images: torch.Tensor, out_size: int) -> int:
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images (B, C, M, M), got shape {tuple(images.shape)}")
    side = int(images.shape[-1])
    if not 0 < out_size <= side:
        raise ValueError(f"cannot crop {out_size} x {out_size} from {side} x {side} images")
    return side


def center_crop(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """``(B, C, M, M)`` uint8 (0–255) or float ([0, 1]) -> ``(B, C, S, S)`` float32 in [0, 1], ``S = out_size``.

    The crop starts at ``(M - S) // 2``; uint8 is cropped before the conversion (only ``S x S`` is converted).
    """
    side = _check(images, out_size)
    off = (side - out_size) // 2
    crop = images[:, :, off:off + out_size, off:off + out_size]
    out, scale = _to_float(crop)
    if out.data_ptr() == crop.data_ptr():
        out = out.clone()  # a float input: never hand back a view of the caller's tensor
    return out.div_(scale) if scale != 1.0 else out


def rotation_theta(angles: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Affine matrices ``(B, 2, 3)`` (``F.affine_grid`` convention, ``align_corners=False``) for ``angles (B,)``."""
    angles = angles.to(torch.float64)
    cos, sin = torch.cos(angles), torch.sin(angles)
    ratio = out_size / in_size
    # rotate about the centre of the integer-offset centre crop (half a pixel left/up when M - S is odd)
    shift = 2 * ((in_size - out_size) // 2 - (in_size - out_size) / 2) / in_size
    theta = torch.empty(angles.shape[0], 2, 3, dtype=torch.float64, device=angles.device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = ratio * cos, -ratio * sin, shift
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = ratio * sin, ratio * cos, shift
    return theta.to(torch.float32)


def affine_grid(theta: torch.Tensor, out_size: int) -> torch.Tensor:
    """Sampling grid ``(B, S, S, 2)`` equal to ``F.affine_grid(theta, (B, C, S, S), align_corners=False)``.

    Written straight into the output, one broadcast add per coordinate: on CPU several times faster than
    ``F.affine_grid``'s batched matmul.
    """
    base = (torch.arange(out_size, dtype=theta.dtype, device=theta.device) * 2 + 1) / out_size - 1  # (S,)
    grid = torch.empty(theta.shape[0], out_size, out_size, 2, dtype=theta.dtype, device=theta.device)
    for i in range(2):  # i = 0: x (column), 1: y (row)
        along_x = theta[:, i, 0, None] * base  # (B, S), varies with the column
        along_y = theta[:, i, 1, None] * base + theta[:, i, 2, None]  # (B, S), varies with the row
        torch.add(along_x[:, None, :], along_y[:, :, None], out=grid[..., i])
    return grid


def full_frame(images: torch.Tensor, angles: torch.Tensor | np.ndarray | None, out_size: int, *,
               buffer: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, C, M, M)`` uint8 or float -> the whole image at ``(B, C, S, S)`` float32 in [0, 1]: rotated by
    ``angles`` (radians, as :func:`rotate_crop`; ``None``: not rotated) about its centre, bilinear with reflect-101
    corners, at ``M`` px, then resized to ``S`` (bilinear, antialiased)."""
    side = _check(images, out_size)
    values, scale = _to_float(images, buffer)
    if angles is not None:
        angles = torch.as_tensor(angles, device=images.device)
        if angles.shape != (images.shape[0],):
            raise ValueError(f"angles must have shape ({images.shape[0]},), got {tuple(angles.shape)}")
        theta = rotation_theta(angles, side, side)  # no crop: ratio 1, no shift
        # align_corners=True puts the border pixel centres at +-1, so "reflection" mirrors about them (reflect-101)
        grid = F.affine_grid(theta, list(values.shape), align_corners=True)
        values = F.grid_sample(values, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    if side != out_size:
        values = F.interpolate(values, size=(out_size, out_size), mode="bilinear", antialias=True,
                               align_corners=False)
    elif values.data_ptr() == images.data_ptr():
        values = values.clone()  # a float input: never hand back the caller's tensor
    return values.div_(scale) if scale != 1.0 else values


def rotate_crop(
    images: torch.Tensor, angles: torch.Tensor | np.ndarray | None, out_size: int, *,
    buffer: torch.Tensor | None = None, oversample: int = 1, field: str = "inscribed",
) -> torch.Tensor:
    """Rotate each image by its own angle (bilinear) and centre-crop, in one ``grid_sample``.

    images: ``(B, C, M, M)`` uint8 (0–255) or float ([0, 1]); angles: ``(B,)`` radians, counter-clockwise as
    displayed, or ``None`` for a plain :func:`center_crop`. Returns ``(B, C, S, S)`` float32 in [0, 1] on the
    images' device. ``M >= margin_size(S)`` is required so no padding can show. ``buffer``: optional float32
    tensor with at least ``B*C*M*M`` elements reused for the uint8 -> float conversion. ``oversample = k``: rotate
    and crop ``k*S`` px, then resize to ``S`` with antialiasing (``M >= margin_size(k*S)`` then).
    ``field="full_frame"``: :func:`full_frame` instead (the whole image, at any ``oversample``).
    """
    if check_field(field) == "full_frame":
        return full_frame(images, angles, out_size, buffer=buffer)
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    if oversample > 1:
        big = rotate_crop(images, angles, out_size * oversample, buffer=buffer)
        return F.interpolate(big, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)
    if angles is None:
        return center_crop(images, out_size)
    side = _check(images, out_size)
    if side < margin_size(out_size):
        raise ValueError(
            f"rotating {side} px images then cropping {out_size} px would show padding; "
            f"rotation needs images of at least margin_size({out_size}) = {margin_size(out_size)} px"
        )
    angles = torch.as_tensor(angles, device=images.device)
    if angles.shape != (images.shape[0],):
        raise ValueError(f"angles must have shape ({images.shape[0]},), got {tuple(angles.shape)}")
    values, scale = _to_float(images, buffer)
    grid = affine_grid(rotation_theta(angles, side, out_size), out_size)
    out = F.grid_sample(values, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # grid_sample is linear, so scaling the small output equals scaling the large input
    return out.div_(scale) if scale != 1.0 else out
