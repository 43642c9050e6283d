"""``data.field = "full_frame"``: the study's whole-cutout field, rotated first with reflect-101 corners."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from gcnn_spin.config import DataConfig
from gcnn_spin.crop import crop_for
from gcnn_spin.data.augment import full_frame, rotate_crop
from gcnn_spin.data.images import margin_size, to_store_image
from gcnn_spin.data.loader import StoreLoader
from gcnn_spin.data.store import _store_config, build_store, open_store, rebuild_command

S = 40
CFG = DataConfig(image_size=S, chunk_images=2, shard_images=4)


def smooth_cutout(side: int = 424) -> np.ndarray:
    """A smooth, asymmetric RGB pattern (so resampling paths agree to a few grey levels)."""
    y, x = np.mgrid[0:side, 0:side] / side
    bands = [0.5 + 0.4 * np.sin(2 * np.pi * (x + 0.3 * y)), 0.5 + 0.4 * np.cos(2 * np.pi * x * y),
             x * 0.6 + y * 0.3]
    return np.round(np.stack(bands, -1) * 255).astype(np.uint8)


def test_full_frame_at_angle_zero_is_a_resize_of_the_whole_cutout():
    cutout = smooth_cutout()
    stored = torch.from_numpy(to_store_image(cutout, S, margin=True))[None]  # (1, 3, M, M): the whole cutout
    direct = torch.from_numpy(to_store_image(cutout, S, margin=False, field="full_frame")).float() / 255
    unrotated = rotate_crop(stored, None, S, field="full_frame")[0]
    at_zero = rotate_crop(stored, torch.zeros(1), S, field="full_frame")[0]
    inscribed = rotate_crop(stored, None, S)[0]
    assert unrotated.shape == direct.shape == (3, S, S)
    assert float((unrotated - direct).abs().max()) < 0.02  # two resizes (424 -> M -> S) against one (424 -> S)
    assert float((at_zero - unrotated).abs().max()) < 1e-5  # the rotation path at 0 is the identity
    assert float((inscribed - direct).abs().max()) > 0.1  # the inscribed field is another picture


def triangle(coord: np.ndarray, side: int) -> np.ndarray:
    """Reflect-101 of pixel coordinates about the border pixel centres 0 and side - 1 (no pixel repeated)."""
    period = 2 * (side - 1)
    c = np.mod(coord, period)
    return np.where(c > side - 1, period - c, c)


def test_rotation_pads_the_corners_with_reflect_101():
    """A 45 deg turn of an image linear in x and y: every output pixel is the linear function at the reflected
    source coordinate (bilinear interpolation is exact on it), corners included; zero padding, or a reflection
    that repeats the border pixel, would differ there."""
    side = 33
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    image = torch.from_numpy(np.stack([x, y, x + 2 * y]) / (3 * side))[None].float()  # (1, 3, side, side)
    out = full_frame(image, torch.tensor([np.pi / 4]), side)[0].double().numpy()
    c = (side - 1) / 2
    u, v = x - c, y - c  # output offsets from the centre; counter-clockwise as displayed (row 0 on top)
    cos, sin = np.cos(np.pi / 4), np.sin(np.pi / 4)
    src_x, src_y = c + cos * u - sin * v, c + sin * u + cos * v
    fx, fy = triangle(src_x, side), triangle(src_y, side)
    expected = np.stack([fx, fy, fx + 2 * fy]) / (3 * side)
    outside = (src_x < 0) | (src_x > side - 1) | (src_y < 0) | (src_y > side - 1)
    assert outside[0, 0] and outside.sum() > 100  # the corners sample beyond the image
    assert np.abs(out - expected).max() < 1e-5
    assert np.abs(out - expected)[:, ~outside].max() < 1e-5 and out[:, outside].min() > 0


def test_stores_record_their_field_and_the_loader_applies_it(tmp_path):
    rows = pd.DataFrame({"dr8_id": ["7_1", "7_2", "7_3"], "p_cw": 0.2, "p_acw": 0.3, "p_other": 0.5})
    base = smooth_cutout()
    cutouts = dict(zip(rows["dr8_id"], (base, base[:, ::-1], base[::-1])))

    class Source:
        def load(self, dr8_id):
            return cutouts[dr8_id]

    full = dataclasses.replace(CFG, field="full_frame")
    for name, cfg, margin in [("train", full, True), ("survey", full, False), ("plain", CFG, True)]:
        build_store(tmp_path / f"{name}.zarr", rows, Source(), margin=margin, cfg=cfg, progress=False)
    train, survey, plain = (open_store(tmp_path / f"{n}.zarr") for n in ("train", "survey", "plain"))
    assert (train.field, survey.field, plain.field) == ("full_frame", "full_frame", "inscribed")
    assert train.images.shape[-1] == margin_size(S) and survey.images.shape[-1] == S
    assert "--set data.field=full_frame" in rebuild_command(train.paths, train.attrs, None)
    assert "field" not in _store_config(rows, CFG, True)  # the hashes of stores built before the key stay valid
    assert _store_config(rows, full, True) != _store_config(rows, CFG, True)

    def images(store, **kw):
        return next(iter(StoreLoader(store, batch_size=3, shuffle=False, **kw))).images

    served, whole = images(train), images(survey)
    assert float((served - whole).abs().max()) < 0.02  # both the whole cutout at S
    assert float((images(plain) - whole).abs().max()) > 0.1
    rotated = images(train, rotate=True, seed=1)
    assert rotated.shape == (3, 3, S, S) and float(rotated.min()) > 0  # reflected corners, no black padding
    with pytest.raises(ValueError, match="survey store"):
        StoreLoader(survey, batch_size=3, shuffle=False, rotate=True)

    module = torch.nn.Identity()
    module.model_name, module.image_field = "lenet", "full_frame"
    assert crop_for(module, survey) == crop_for("lenet", survey)
    with pytest.raises(ValueError, match='trained on full_frame images, but plain.zarr holds inscribed images'):
        crop_for(module, plain)


def test_an_unknown_field_is_refused():
    with pytest.raises(ValueError, match="data.field='whole': must be one of inscribed, full_frame"):
        to_store_image(smooth_cutout(64), 16, margin=False, field="whole")
    with pytest.raises(ValueError, match="data.field='whole': must be one of inscribed, full_frame"):
        rotate_crop(torch.zeros(1, 3, 24, 24), None, 16, field="whole")
