"""The data pipeline end to end on real rows and real pixels (tests/fixtures/real_sample: 36 GZ1 galaxies).

Assumptions for the inputs the fixture lacks (stated in gcnn_spin.data.real_sample): each DESI position is its GZ1
position, and every galaxy passes the SDSS cuts with no neighbour within 1″. The tests build with no
downsampling, so every galaxy reaches a store.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gcnn_spin.config import load_experiment
from gcnn_spin.data import crossmatch, sdss, selection
from gcnn_spin.data.bad_rows import BadRowsError
from gcnn_spin.data.gz1 import parse_sexagesimal
from gcnn_spin.data.images import jpg_relpath, margin_size
from gcnn_spin.data.loader import StoreLoader
from gcnn_spin.data.pipeline import build_dataset
from gcnn_spin.data.real_sample import prepare_raw, real_sample_inputs
from gcnn_spin.data.sharpness import high_frequency_energy, high_frequency_ratio
from gcnn_spin.data.store import open_store

FIXTURE = Path(__file__).parent / "fixtures" / "real_sample"
S = 33  # exact for G-ResNets and small: M = 48
OVERRIDES = [f"data.image_size={S}", "data.downsample_bins=[]", "data.val_fraction=0.25", "data.chunk_images=8",
             "data.shard_images=16"]


def gz1_rows() -> pd.DataFrame:
    """The fixture's GZ1 rows as published, read independently of the pipeline."""
    return pd.read_csv(FIXTURE / "GalaxyZoo1_DR_table2.csv", dtype={"OBJID": np.int64})


def cutout(dr8_id: str) -> np.ndarray:
    with Image.open(FIXTURE / jpg_relpath(dr8_id)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture through prepare_raw and the whole pipeline: ``(raw paths, data dir)``."""
    root = tmp_path_factory.mktemp("real")
    raw = prepare_raw(FIXTURE, root / "raw")
    cfg = load_experiment("demo", OVERRIDES).data
    build_dataset(root / "data", real_sample_inputs(root / "raw"), cfg, stores=("train", "val", "test"),
                  progress=False)
    return raw, root / "data"


def test_raw_layout_keeps_gz1_as_published_and_states_its_assumptions(built):
    raw, _ = built
    assert raw["gz1"].read_bytes() == (FIXTURE / "GalaxyZoo1_DR_table2.csv").read_bytes()
    pairs = pd.read_csv(FIXTURE / "gz1_to_dr8.csv", dtype={"OBJID": np.int64, "dr8_id": str})
    index = pd.read_parquet(raw["desi_index"])
    assert list(index.columns) == ["ra", "dec", "dr8_id", "brickid", "objid", "jpg_loc"]  # the file index as published
    assert set(crossmatch.INDEX_COLUMNS) <= set(index.columns)
    assert sorted(index["dr8_id"]) == sorted(pairs["dr8_id"])
    gz1 = gz1_rows().merge(pairs, on="OBJID").set_index("dr8_id").loc[index["dr8_id"]]
    np.testing.assert_allclose(index["ra"], parse_sexagesimal(gz1["RA"], hours=True)[0], atol=1e-9)
    np.testing.assert_allclose(index["dec"], parse_sexagesimal(gz1["DEC"], hours=False)[0], atol=1e-9)
    assert (index["brickid"].astype(str) + "_" + index["objid"].astype(str)).tolist() == index["dr8_id"].tolist()
    assert all((raw["images"] / loc).exists() for loc in index["jpg_loc"])
    photometry = sdss.read_photometry_table(raw["sdss_photometry"])
    assert sorted(photometry["objid"]) == sorted(pairs["OBJID"])
    cuts = load_experiment("demo").data.cuts
    assert selection.neighbour_mask(photometry, cuts).all() and selection.photometry_mask(photometry, cuts).all()
    assert photometry["petroMag_r"].isna().all()  # unknown, not invented
    note = raw["note"].read_text()
    assert "position of its GZ1 galaxy" in note and "not SDSS measurements" in note


def test_prepare_raw_names_a_pair_whose_objid_is_not_in_the_gz1_table(tmp_path):
    sample = tmp_path / "sample"
    shutil.copytree(FIXTURE, sample, ignore=shutil.ignore_patterns("jpg"))
    (sample / "jpg").mkdir()
    pairs = (sample / "gz1_to_dr8.csv").read_text().splitlines()
    pairs.append("587700000000000001,999999_1")
    (sample / "gz1_to_dr8.csv").write_text("\n".join(pairs) + "\n")
    with pytest.raises(BadRowsError, match=rf"OBJID not in the GZ1 table on line\(s\) \[{len(pairs)}\]"):
        prepare_raw(sample, tmp_path / "raw")


def test_every_real_galaxy_reaches_a_store_with_its_published_votes(built):
    _, data = built
    catalogue = pd.read_parquet(data / "catalogue.parquet")
    assert len(catalogue) == 36 and (catalogue["reason"] == "").all()
    assert (catalogue["match_sep_arcsec"] < 1e-6).all()  # the published pairs, found at the assumed positions
    rows = pd.concat([open_store(data / "stores" / f"{s}.zarr").rows.assign(split=s) for s in selection.SPLITS])
    assert rows["split"].value_counts().to_dict() == {"test": 7, "train": 22, "val": 7}
    gz1 = gz1_rows().set_index("OBJID").loc[rows["objid"]]
    np.testing.assert_allclose(rows["p_cw"], gz1["P_CW"])
    np.testing.assert_allclose(rows["p_acw"], gz1["P_ACW"])
    np.testing.assert_allclose(rows["p_other"], gz1[["P_EL", "P_EDGE", "P_DK", "P_MG"]].sum(axis=1))
    expected = np.where(gz1["P_CW"] > 0.5, 0, np.where(gz1["P_ACW"] > 0.5, 1, 2))
    np.testing.assert_array_equal(rows["label"], expected)
    assert np.bincount(rows["label"], minlength=3).tolist() == [12, 12, 12]  # the fixture: 12 CW, 12 ACW, 12 Other
    loader = StoreLoader(data / "stores" / "train.zarr", batch_size=64, shuffle=False)
    targets = next(iter(loader)).targets.numpy()
    np.testing.assert_allclose(targets[:, 0], open_store(data / "stores" / "train.zarr").rows["p_cw"], rtol=1e-6)


def test_store_images_are_the_real_cutouts_resized_and_the_loader_crops_their_centre(built):
    _, data = built
    store = open_store(data / "stores" / "test.zarr")
    side = margin_size(S)
    images = np.asarray(store.images[:])
    assert images.shape == (7, 3, side, side)
    # an independent resize of every row's own JPEG: close to its store image, and closer than any other galaxy's
    resized = np.stack([np.asarray(Image.fromarray(cutout(d)).resize((side, side), Image.BILINEAR)).transpose(2, 0, 1)
                        for d in store.rows["dr8_id"]]).astype(np.float64)
    distance = np.abs(images[:, None].astype(np.float64) - resized[None]).mean(axis=(2, 3, 4))
    assert distance.diagonal().max() < 2.0  # grey levels of 255
    np.testing.assert_array_equal(distance.argmin(axis=1), np.arange(len(store)))
    crops = next(iter(StoreLoader(store, batch_size=16, shuffle=False))).images.numpy()
    off = (side - S) // 2
    np.testing.assert_allclose(crops, images[:, :, off:off + S, off:off + S] / 255.0, atol=1e-6)


def test_an_oversampled_train_store_gives_the_same_field_at_the_same_scale(built, tmp_path):
    _, data = built
    cfg = load_experiment("demo", [*OVERRIDES, "data.train_oversample=2"]).data
    build_dataset(tmp_path, real_sample_inputs(built[0]["images"]), cfg, stores=("train", "test"), progress=False)
    plain, over = open_store(data / "stores" / "train.zarr"), open_store(tmp_path / "stores" / "train.zarr")
    assert over.images.shape[-1] == 2 * margin_size(S) and over.oversample == 2 and plain.oversample == 1
    assert open_store(tmp_path / "stores" / "test.zarr").images.shape[-1] == margin_size(S)  # test stays sharp
    a = next(iter(StoreLoader(plain, batch_size=64, shuffle=False))).images
    b = next(iter(StoreLoader(over, batch_size=64, shuffle=False))).images
    assert a.shape == b.shape == (22, 3, S, S)
    assert float((a - b).abs().mean()) < 0.02  # same pixels, not a shifted or rescaled field
    rotated = StoreLoader(over, batch_size=64, shuffle=True, rotate=True, seed=3)
    batch = next(iter(rotated)).images
    assert batch.shape == (22, 3, S, S) and float(batch.min()) >= 0 and float(batch.max()) <= 1


def test_oversample_must_be_at_least_one():
    with pytest.raises(ValueError, match="train_oversample must be >= 1"):
        from gcnn_spin.data.store import store_oversample

        store_oversample("train", load_experiment("demo", ["data.train_oversample=0"]).data)


def test_high_frequency_energy_separates_fine_from_coarse_structure():
    y, x = np.mgrid[0:64, 0:64]
    fine = np.where((x + y) % 2 == 0, 1.0, 0.0)  # the checkerboard: all energy at Nyquist
    coarse = np.sin(2 * np.pi * x / 32)  # 1/16 of Nyquist
    energy = high_frequency_energy(np.stack([fine, coarse, np.ones((64, 64))]))
    assert energy[0] > 1e3 * energy[1] and energy[2] == 0
    with pytest.raises(ValueError, match="square"):
        high_frequency_energy(np.zeros((3, 4, 5)))


def test_rotating_before_downsampling_keeps_the_detail_that_a_final_resolution_rotation_loses():
    ids = pd.read_csv(FIXTURE / "gz1_to_dr8.csv", dtype=str)["dr8_id"][:3]
    angle = np.radians(37)
    for dr8_id in ids:
        image = cutout(dr8_id)
        unrotated = high_frequency_ratio(image, 0.0, 65)
        plain, over2, over3 = (high_frequency_ratio(image, angle, 65, k) for k in (1, 2, 3))
        assert 0.9 < unrotated < 1.15  # a test image is as sharp as the reference
        assert plain < 0.65  # rotated at the final resolution: about half the detail lost
        assert over2 > plain + 0.05 and 0.85 < over3 < 1.15  # rotate-then-downsample recovers it


def test_cli_writes_the_raw_layout_and_names_a_folder_that_is_not_a_sample(tmp_path):
    script = Path(__file__).parents[1] / "data_prep" / "real_sample.py"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True)
    assert "--sample" in help_text.stdout and "ASSUMPTIONS.md" in help_text.stdout
    run = subprocess.run([sys.executable, str(script), "--sample", str(FIXTURE), "--out", str(tmp_path / "RAW")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert all((tmp_path / "RAW" / name).exists() for name in ("desi_index.parquet", "sdss_photometry.csv", "jpg"))
    bad = subprocess.run([sys.executable, str(script), "--sample", str(tmp_path), "--out", str(tmp_path / "X")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "GalaxyZoo1_DR_table2.csv not found" in bad.stderr


def test_a_rerun_leaves_the_raw_files_untouched_so_the_pipeline_reuses_its_stages(tmp_path):
    first = prepare_raw(FIXTURE, tmp_path / "raw")
    stamps = {name: path.stat().st_mtime_ns for name, path in first.items() if path.is_file()}
    second = prepare_raw(FIXTURE, tmp_path / "raw")
    assert {name: second[name].stat().st_mtime_ns for name in stamps} == stamps
    assert not list((tmp_path / "raw").glob(".*.tmp"))
