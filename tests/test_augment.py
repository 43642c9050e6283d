"""Rotation + centre crop: equals a plain crop at 0, rot90 at 90°, never shows padding, documented sense."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gcnn_spin.data.augment import affine_grid, center_crop, rotate_crop, rotation_theta
from gcnn_spin.data.images import margin_size


def _images(rng, b, side):
    return torch.from_numpy(rng.integers(0, 256, size=(b, 3, side, side), dtype=np.uint8))


@pytest.mark.parametrize("size", [16, 15, 48])  # M - S even (16), odd (15: 23-15=8; 48: 69-48=21)
def test_angle_zero_is_the_plain_centre_crop(rng, size):
    side = margin_size(size)
    images = _images(rng, 4, side)
    off = (side - size) // 2
    expected = images[:, :, off:off + size, off:off + size].float() / 255
    assert torch.allclose(center_crop(images, size), expected, atol=0, rtol=0)
    assert torch.allclose(rotate_crop(images, torch.zeros(4), size), expected, atol=1e-5)
    assert torch.equal(rotate_crop(images, None, size), expected)


@pytest.mark.parametrize("size", [16, 48])
def test_quarter_turns_equal_rot90_of_the_crop(rng, size):
    side = margin_size(size)
    images = _images(rng, 3, side)
    crop = center_crop(images, size)
    for k in (1, 2, 3, -1):
        out = rotate_crop(images, torch.full((3,), k * math.pi / 2), size)
        assert torch.allclose(out, torch.rot90(crop, k, dims=(-2, -1)), atol=1e-4), k


def test_positive_angle_is_counter_clockwise_as_displayed():
    """A bright spot right of centre (row 0 at the top) moves to above centre at +90°, below at -90°."""
    size = 15
    side = margin_size(size)
    image = torch.zeros(1, 3, side, side, dtype=torch.uint8)
    centre = (side - size) // 2 + size // 2
    image[0, :, centre, centre + 5] = 255
    for angle, expected in ((math.pi / 2, (size // 2 - 5, size // 2)), (-math.pi / 2, (size // 2 + 5, size // 2))):
        out = rotate_crop(image, torch.tensor([angle]), size)[0, 0]
        assert divmod(int(out.argmax()), size) == expected
        assert out.max() > 0.99


@pytest.mark.parametrize("size", [16, 15, 48])
def test_rotation_never_samples_padding_or_the_corners(size):
    """Interior 255, everything beyond the largest radius a rotated crop can reach marked 0: output must be 1."""
    side = margin_size(size)
    centre = (side - size) // 2 + (size - 1) / 2  # rotation centre in pixel coordinates
    yy, xx = np.mgrid[:side, :side]
    reach = (size - 1) / math.sqrt(2) + 1.5  # farthest output pixel centre plus the bilinear neighbour
    image = np.where(np.hypot(yy - centre, xx - centre) > reach, 0, 255).astype(np.uint8)
    assert (image == 0).any()  # the corner marks exist
    angles = torch.linspace(0, 2 * math.pi, 73)
    batch = torch.from_numpy(np.broadcast_to(image, (73, 3, side, side)).copy())
    out = rotate_crop(batch, angles, size)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)


def test_too_small_images_are_refused_for_rotation(rng):
    images = _images(rng, 2, margin_size(16) - 1)
    with pytest.raises(ValueError, match="padding"):
        rotate_crop(images, torch.zeros(2), 16)
    with pytest.raises(ValueError, match="angles"):
        rotate_crop(_images(rng, 2, margin_size(16)), torch.zeros(3), 16)


def test_grid_matches_torch_affine_grid(rng):
    angles = torch.from_numpy(rng.uniform(0, 2 * math.pi, 5))
    theta = rotation_theta(angles, 69, 48)
    expected = F.affine_grid(theta, (5, 3, 48, 48), align_corners=False)
    assert torch.allclose(affine_grid(theta, 48), expected, atol=1e-6)


def test_float_input_and_buffer_give_the_same_result(rng):
    side = margin_size(16)
    images = _images(rng, 4, side)
    angles = torch.from_numpy(rng.uniform(0, 2 * math.pi, 4))
    ref = rotate_crop(images, angles, 16)
    assert torch.allclose(rotate_crop(images.float() / 255, angles, 16), ref, atol=1e-6)
    buffer = torch.full((4 * 3 * side * side + 7,), float("nan"))
    assert torch.equal(rotate_crop(images, angles, 16, buffer=buffer), ref)
    assert ref.dtype == torch.float32 and ref.shape == (4, 3, 16, 16) and 0 <= ref.min() and ref.max() <= 1
    floats = images.float() / 255
    crop = center_crop(floats, 16)
    crop += 1
    assert floats.max() <= 1  # the caller's tensor is never handed back as a view
