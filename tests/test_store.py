"""Sharded Zarr store: round trip, layout, resume after a kill, concurrent shard builders, bad images."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gcnn_spin.config import DataConfig
from gcnn_spin.data.images import BadImageError, JpegTree, jpg_relpath, margin_size, to_store_image
from gcnn_spin.data.store import (
    StoreError, build_shard, build_store, create_store, finalize_store, finished_shards, open_store, plan_shards,
    store_paths,
)
from gcnn_spin.io import read_marker

CFG = DataConfig(image_size=16, chunk_images=4, shard_images=8, codec="zstd", codec_level=1)
CUTOUT = 40  # px: small stand-ins for the 424 px cutouts


def make_rows(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    p = rng.dirichlet([1, 1, 3], size=n)
    return pd.DataFrame({
        "dr8_id": [f"{300 + i % 3}_{i}" for i in range(n)], "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-10, 10, n), "p_cw": p[:, 0], "p_acw": p[:, 1], "p_other": p[:, 2],
        "label": rng.integers(0, 3, n),
    })


class ArraySource:
    """In-memory cutouts; ``bad`` ids raise BadImageError, ``crash`` raises like a killed job would stop it."""

    def __init__(self, rows: pd.DataFrame, bad=(), crash=None):
        rng = np.random.default_rng(2)
        self.cutouts = {i: rng.integers(0, 256, (CUTOUT, CUTOUT, 3), dtype=np.uint8) for i in rows["dr8_id"]}
        self.bad, self.crash, self.loaded = set(bad), crash, []

    def load(self, dr8_id):
        if dr8_id == self.crash:
            raise RuntimeError("simulated kill")
        if dr8_id in self.bad:
            raise BadImageError(dr8_id, f"jpg/{dr8_id}.jpg", "unreadable JPEG")
        self.loaded.append(dr8_id)
        return self.cutouts[dr8_id]


def write_jpeg_tree(root: Path, rows: pd.DataFrame) -> JpegTree:
    rng = np.random.default_rng(3)
    for dr8_id in rows["dr8_id"]:
        path = root / jpg_relpath(dr8_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (CUTOUT, CUTOUT, 3), dtype=np.uint8)).save(path, quality=90)
    return JpegTree(root, expected_size=CUTOUT)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".tmp"))]


def snapshot(path: Path) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    store = open_store(path)
    return store.images[:], store.rows, pd.read_csv(store_paths(path)["bad"])


def test_plan_shards_and_layout_checks():
    assert plan_shards(19, CFG) == [range(0, 8), range(8, 16), range(16, 19)]
    assert plan_shards(0, CFG) == []
    with pytest.raises(ValueError, match="multiple of chunk_images"):
        plan_shards(10, dataclasses.replace(CFG, shard_images=6))
    with pytest.raises(ValueError, match="end in .zarr"):
        store_paths("somewhere/train")


@pytest.mark.parametrize("margin", [True, False])
def test_round_trip_layout_and_attributes(tmp_path, margin):
    rows = make_rows(21)
    source = ArraySource(rows)
    summary = build_store(tmp_path / "train.zarr", rows, source, margin=margin, cfg=CFG, progress=False)
    assert summary["complete"] and summary["n_shards"] == 3 and summary["built"] == [0, 1, 2]
    store = open_store(tmp_path / "train.zarr")
    side = margin_size(16) if margin else 16
    assert store.images.shape == (21, 3, side, side) and store.images.dtype == np.uint8
    assert store.images.chunks == (4, 3, side, side) and store.images.shards == (8, 3, side, side)
    assert store.attrs["image_size"] == 16 and store.attrs["margin_size"] == side and store.attrs["n_images"] == 21
    assert store.attrs["shard_images"] == 8 and store.attrs["chunk_images"] == 4 and store.attrs["margin"] is margin
    assert store.attrs["config_hash"] and store.attrs["source"] == "ArraySource"
    assert store.attrs["codec"] == "zstd"
    assert store.images.compressors[0].to_dict()["name"] == "zstd"
    expected = np.stack([to_store_image(source.cutouts[i], 16, margin) for i in rows["dr8_id"]])
    np.testing.assert_array_equal(store.images[:], expected)
    np.testing.assert_array_equal(store.read_block(4, 12), expected[4:12])
    assert store.rows.index.name == "row" and list(store.rows.index) == list(range(21))
    pd.testing.assert_frame_equal(store.rows.drop(columns="ok").reset_index(drop=True), rows)
    assert store.ok.all() and len(store) == 21
    assert read_marker(tmp_path / "train.zarr")["n_bad"] == 0
    with pytest.raises(IndexError):
        store.read_block(20, 22)


def test_resume_after_kill_matches_an_uninterrupted_build(tmp_path):
    rows = make_rows(45)  # shards 0..5, the last one 5 images
    path = tmp_path / "a" / "train.zarr"
    crash_row = 3 * 8 + 2
    with pytest.raises(RuntimeError, match="simulated kill"):
        build_store(path, rows, ArraySource(rows, crash=rows["dr8_id"][crash_row]), margin=True, cfg=CFG,
                    progress=False)
    assert finished_shards(path) == (6, [3, 4, 5])
    with pytest.raises(StoreError, match=r"shards 3-5 of 0\.\.5"):
        open_store(path)
    assert not store_paths(path)["rows"].exists() and not leftovers(tmp_path)
    partial = path / "images" / "c" / "3" / "0" / "0" / "0.0123abcd.partial"  # as a SIGKILL mid-write leaves it
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a shard")

    source = ArraySource(rows)
    summary = build_store(path, rows, source, margin=True, cfg=CFG, progress=False)
    assert summary["built"] == [3, 4, 5] and summary["complete"]
    assert source.loaded == list(rows["dr8_id"][24:])  # resumed at the first unfinished shard
    reference = tmp_path / "b" / "train.zarr"
    build_store(reference, rows, ArraySource(rows), margin=True, cfg=CFG, progress=False)
    for got, want in zip(snapshot(path), snapshot(reference)):
        (np.testing.assert_array_equal if isinstance(got, np.ndarray) else pd.testing.assert_frame_equal)(got, want)
    assert not leftovers(tmp_path)


def test_rebuild_of_a_finished_store_is_a_no_op_and_other_configs_are_refused(tmp_path):
    rows = make_rows(12)
    path = tmp_path / "val.zarr"
    build_store(path, rows, ArraySource(rows), margin=True, cfg=CFG, progress=False)
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    source = ArraySource(rows)
    summary = build_store(path, rows, source, margin=True, cfg=CFG, progress=False)
    assert summary["built"] == [] and summary["complete"] and source.loaded == []
    assert files == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match="overwrite=True"):
        build_store(path, rows.iloc[::-1], ArraySource(rows), margin=True, cfg=CFG, progress=False)
    other = dataclasses.replace(CFG, codec="none")
    summary = build_store(path, rows, ArraySource(rows), margin=True, cfg=other, progress=False, overwrite=True)
    assert summary["complete"] and open_store(path).attrs["codec"] == "none"


def test_bad_images_raise_naming_the_galaxy_or_are_skipped(tmp_path):
    rows = make_rows(20)
    bad = [rows["dr8_id"][5], rows["dr8_id"][17]]
    named = rf"{bad[0]}: unreadable JPEG \[store row 5, shard 0\] \(jpg/{bad[0]}\.jpg\)"
    with pytest.raises(BadImageError, match=named):
        build_store(tmp_path / "x.zarr", rows, ArraySource(rows, bad=bad), margin=True, cfg=CFG, progress=False)
    with pytest.raises(ValueError, match="on_bad"):
        build_store(tmp_path / "x.zarr", rows, ArraySource(rows), margin=True, cfg=CFG, on_bad="ignore")

    source = ArraySource(rows, bad=bad)
    summary = build_store(tmp_path / "test.zarr", rows, source, margin=True, cfg=CFG, on_bad="skip", progress=False)
    assert summary["n_bad"] == 2
    store = open_store(tmp_path / "test.zarr")
    assert np.flatnonzero(~store.ok).tolist() == [5, 17]
    assert not store.images[5].any() and not store.images[17].any() and store.images[6].any()
    listed = pd.read_csv(tmp_path / "test.bad.csv")
    assert listed["row"].tolist() == [5, 17] and listed["dr8_id"].tolist() == bad
    assert listed["path"].tolist() == [f"jpg/{i}.jpg" for i in bad] and (listed["reason"] == "unreadable JPEG").all()


def test_rows_without_dr8_id_are_refused(tmp_path):
    rows = make_rows(5)
    rows.loc[3, "dr8_id"] = ""
    with pytest.raises(ValueError, match=r"no dr8_id at positions \[3\]"):
        build_store(tmp_path / "x.zarr", rows, ArraySource(make_rows(5)), margin=True, cfg=CFG)


BUILD_SCRIPT = textwrap.dedent("""
    import sys, dataclasses
    import pandas as pd
    from gcnn_spin.config import DataConfig
    from gcnn_spin.data.images import JpegTree
    from gcnn_spin.data.store import build_store
    rows = pd.read_parquet(sys.argv[1])
    cfg = DataConfig(image_size=16, chunk_images=4, shard_images=8)
    shards = [int(k) for k in sys.argv[3].split(",")]
    build_store(sys.argv[2], rows, JpegTree(sys.argv[4], expected_size=40), margin=True, cfg=cfg, shards=shards,
                progress=False)
""")


def test_processes_building_different_shards_at_once(tmp_path):
    """Two processes race to create the store, each builds its shards; the last one finalises."""
    rows = make_rows(40)  # 5 shards
    source = write_jpeg_tree(tmp_path / "raw", rows)
    rows.to_parquet(tmp_path / "rows.parquet")
    path = tmp_path / "stores" / "train.zarr"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(tmp_path / "rows.parquet"), str(path), shards,
                          str(tmp_path / "raw")], env=env, stderr=subprocess.PIPE, text=True)
        for shards in ("0,2,4", "1,3")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = open_store(path)  # finalised by whichever process finished last
    expected = np.stack([to_store_image(source.load(i), 16, True) for i in rows["dr8_id"]])
    np.testing.assert_array_equal(store.images[:], expected)
    markers = sorted(p.name for p in store_paths(path)["shards"].glob("*.done"))
    assert markers == [f"shard-{k:05d}.done" for k in range(5)]
    assert not leftovers(tmp_path) and not list((tmp_path / "stores").glob(".*"))


@pytest.mark.slow  # two spawned process pools: ~4-9 s on a shared 2-core machine
def test_process_pool_builds_shards_and_reports_bad_images(tmp_path):
    rows = make_rows(40)
    source = write_jpeg_tree(tmp_path / "raw", rows)
    expected = np.stack([to_store_image(source.load(i), 16, True) for i in rows["dr8_id"]])
    pooled = tmp_path / "pooled" / "train.zarr"
    summary = build_store(pooled, rows, source, margin=True, cfg=dataclasses.replace(CFG, codec_level=1), workers=2,
                          progress=False)
    assert summary["complete"] and summary["built"] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(open_store(pooled).images[:], expected)
    missing = pd.concat([rows.iloc[:9], pd.DataFrame({"dr8_id": ["999_1"]})], ignore_index=True)
    with pytest.raises(BadImageError, match=r"999_1: file not found \[store row 9, shard 1\]"):
        build_store(tmp_path / "bad" / "train.zarr", missing, source, margin=True, cfg=CFG, workers=2,
                    progress=False)


def test_array_task_api_create_then_build_shard(tmp_path):
    rows = make_rows(10)
    path = tmp_path / "survey.zarr"
    create_store(path, rows, margin=False, cfg=CFG, source="test")
    create_store(path, rows, margin=False, cfg=CFG, source="test")  # a second task: kept as is
    with pytest.raises(StoreError, match="no marker"):
        open_store(path)
    source = ArraySource(rows)
    assert not build_shard(path, 1, source)["skipped"]
    assert build_shard(path, 1, source)["skipped"]
    with pytest.raises(ValueError, match="shard 2 does not exist"):
        build_shard(path, 2, source)
    assert finished_shards(path) == (2, [0])
    build_shard(path, 0, source)
    with pytest.raises(StoreError, match="not finalised"):
        open_store(path)
    assert finalize_store(path) == {"n_images": 10, "n_bad": 0}
    assert len(open_store(path)) == 10 and open_store(path).margin is False


def test_losing_the_creation_race_keeps_the_winner_and_leaves_nothing(tmp_path):
    from gcnn_spin.data.store import _prepared_dir

    target = tmp_path / "train.zarr.shards"
    target.mkdir()
    (target / "winner").write_text("first")
    with _prepared_dir(target) as tmp:  # the rename onto the winner's non-empty directory fails
        (tmp / "loser").write_text("second")
    assert [p.name for p in tmp_path.iterdir()] == ["train.zarr.shards"]
    assert [p.name for p in target.iterdir()] == ["winner"]
    with pytest.raises(ZeroDivisionError):
        with _prepared_dir(tmp_path / "other"):
            1 / 0
    assert [p.name for p in tmp_path.iterdir()] == ["train.zarr.shards"]
    with pytest.raises(ValueError, match="no rows"):
        build_store(tmp_path / "e.zarr", make_rows(0), ArraySource(make_rows(0)), margin=True, cfg=CFG)


# ----------------------------------------------------------------------------- lost and damaged shards


def built_from_jpegs(tmp_path: Path, n: int = 24) -> tuple[Path, np.ndarray]:
    """A finished 3-shard store built from a JPEG tree, and its images."""
    rows = make_rows(n)
    source = write_jpeg_tree(tmp_path / "raw", rows)
    path = tmp_path / "stores" / "train.zarr"
    build_store(path, rows, source, margin=True, cfg=CFG, progress=False)
    return path, open_store(path).images[:]


def shard_path(path: Path, k: int) -> Path:
    return path / "images" / "c" / str(k) / "0" / "0" / "0"


def flip_byte(file: Path, offset: int) -> None:
    """Invert every bit of the byte at ``offset`` of ``file`` (its size is unchanged)."""
    data = bytearray(file.read_bytes())
    data[offset] ^= 0xFF
    file.write_bytes(bytes(data))


def corrupt_shards(path: Path, shards: list[int] | None = None) -> list[Path]:
    """Flip one byte in the middle of the data of the shard files of store ``path`` (``shards``, default all):
    their size is unchanged, so opening cannot tell; the chunk checksum makes the read fail."""
    files = ([shard_path(path, k) for k in shards] if shards is not None
             else sorted(p for p in (path / "images" / "c").rglob("*") if p.is_file()))
    for file in files:
        flip_byte(file, file.stat().st_size // 2)
    return files


def test_a_deleted_shard_fails_on_open_naming_store_shard_rows_and_the_rebuild_command(tmp_path):
    """A scratch purge of one shard file must not read back as black images."""
    from gcnn_spin.data.store import ShardError

    path, images = built_from_jpegs(tmp_path)
    shard_path(path, 1).unlink()
    with pytest.raises(ShardError) as err:
        open_store(path)
    message = str(err.value)
    assert f"store {path}: shard 1 (rows 8-15)" in message and "is missing" in message
    command = message.split("rebuild it with: ", 1)[1]
    assert command.startswith("python data_prep/build_store.py ") and command.endswith("--task-id 1")
    # the command as printed rebuilds exactly that shard (test cutouts are 40 px, not the survey's 424)
    repo = Path(__file__).resolve().parents[1]
    untouched = {k: shard_path(path, k).stat().st_mtime_ns for k in (0, 2)}
    out = subprocess.run([sys.executable, *command.split()[1:], "--cutout-size", "40", "-q"], cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert shard_path(path, 1).exists()
    assert {k: shard_path(path, k).stat().st_mtime_ns for k in (0, 2)} == untouched  # only shard 1 was rebuilt
    np.testing.assert_array_equal(open_store(path).images[:], images)


def test_a_shard_deleted_after_opening_fails_the_read_instead_of_giving_zeros(tmp_path):
    from gcnn_spin.data.store import ShardError

    path, images = built_from_jpegs(tmp_path)
    store = open_store(path)
    np.testing.assert_array_equal(store.read_block(16, 24), images[16:])
    shard_path(path, 2).unlink()
    with pytest.raises(ShardError, match=r"shard 2 \(rows 16-23\) is unusable: its file .* is missing"):
        store.read_block(16, 20)
    np.testing.assert_array_equal(store.read_block(0, 8), images[:8])  # the other shards still read


def test_a_truncated_shard_fails_on_open_with_the_same_kind_of_message(tmp_path):
    from gcnn_spin.data.store import ShardError

    path, _ = built_from_jpegs(tmp_path)
    file = shard_path(path, 0)
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[: size // 2])
    pattern = (rf"shard 0 \(rows 0-7\) is unusable: its file .* has {size // 2} bytes, its marker says {size} "
               r"\(truncated or overwritten\); rebuild it with: python data_prep/build_store\.py .*--task-id 0$")
    with pytest.raises(ShardError, match=pattern):
        open_store(path)


def test_a_shard_with_corrupt_bytes_fails_the_read_naming_the_shard(tmp_path):
    from gcnn_spin.data.store import ShardError

    path, _ = built_from_jpegs(tmp_path)
    corrupt_shards(path, [1])
    store = open_store(path)  # same size: opening cannot tell, the read does
    with pytest.raises(ShardError, match=r"shard 1 \(rows 8-15\) is unusable: reading it failed: "
                                         r"[^(]*\((Runtime|Value)Error"):
        store.read_block(4, 16)


@pytest.mark.parametrize("codec, where", [
    *[("zstd", where) for where in ("first byte", "a quarter in", "middle", "three quarters in", "last data byte",
                                    "shard index")],
    ("blosc-lz4", "middle"), ("none", "middle"), ("none", "shard index")])
def test_a_byte_flipped_anywhere_in_a_shard_fails_the_read_and_the_printed_command_repairs_it(tmp_path, codec, where):
    """Same size, one byte changed: in a chunk's compressed data, its checksum or the shard's index, whatever the
    codec. The read fails naming the store, shard, rows and rebuild command; the rebuild redoes that shard."""
    from gcnn_spin.data.store import ShardError

    rows = make_rows(24)
    path = tmp_path / "stores" / "train.zarr"
    cfg = dataclasses.replace(CFG, codec=codec)
    build_store(path, rows, ArraySource(rows), margin=True, cfg=cfg, progress=False)
    images = open_store(path).images[:]
    file = shard_path(path, 1)
    size = file.stat().st_size
    index_bytes = 2 * 8 * 2 + 4  # (chunks per shard) x (offset, length) uint64 + CRC-32C, at the end of the file
    offset = {"first byte": 0, "a quarter in": size // 4, "middle": size // 2, "three quarters in": 3 * size // 4,
              "last data byte": size - index_bytes - 1, "shard index": size - index_bytes // 2}[where]
    flip_byte(file, offset)
    store = open_store(path)  # same size: opening cannot tell, the read does
    np.testing.assert_array_equal(store.read_block(0, 8), images[:8])  # other shards read on
    with pytest.raises(ShardError) as err:
        store.read_block(0, 24)
    message = str(err.value)
    assert f"store {path}: shard 1 (rows 8-15) is unusable: reading it failed: its bytes do not match" in message
    assert "rebuild it with: python data_prep/build_store.py " in message and message.endswith("--task-id 1")
    source = ArraySource(rows)
    summary = build_store(path, rows, source, margin=True, cfg=cfg, progress=False)
    assert summary["built"] == [1] and source.loaded == list(rows["dr8_id"][8:16])
    np.testing.assert_array_equal(open_store(path).read_block(0, 24), images)


def test_a_store_built_before_shards_carried_checksums_is_refused_with_the_rebuild_command(tmp_path):
    rows = make_rows(16)
    path = tmp_path / "stores" / "train.zarr"
    create_store(path, rows, margin=True, cfg=CFG, checksum=False)  # the format before this one
    build_store(path, rows, ArraySource(rows), margin=True, cfg=CFG, progress=False)
    with pytest.raises(StoreError, match=r"built before its shards carried checksums \(format 1 < 2\).*rebuild it "
                                         r"with: python data_prep/build_store\.py .*--out .*train\.zarr .*--overwrite$"):
        open_store(path)
    build_store(path, rows, ArraySource(rows), margin=True, cfg=CFG, progress=False, overwrite=True)
    assert open_store(path).attrs["format"] == 2


def test_the_store_identity_covers_labels_and_images_and_an_edited_label_is_refinalised(tmp_path):
    rows = make_rows(16)
    path = tmp_path / "stores" / "train.zarr"
    build_store(path, rows, ArraySource(rows), margin=True, cfg=CFG, progress=False)
    before = open_store(path).identity
    paths = store_paths(path)
    edited = pd.read_parquet(paths["rows"])
    edited.loc[3, "p_cw"] = 0.99  # a label edited after the build
    edited.to_parquet(paths["rows"])
    assert open_store(path).identity != before
    # the build is asked again with the original rows: the edited file is named, rewritten, the identity is back
    source = ArraySource(rows)
    summary = build_store(path, rows, source, margin=True, cfg=CFG, progress=False)
    assert summary["built"] == [] and source.loaded == [] and open_store(path).identity == before
    # rows whose labels changed upstream (same galaxies): no image is rebuilt, the rows and identity follow
    relabelled = rows.assign(label=(rows["label"] + 1) % 3)
    summary = build_store(path, relabelled, ArraySource(rows), margin=True, cfg=CFG, progress=False)
    store = open_store(path)
    assert summary["built"] == [] and store.identity != before
    assert list(store.rows["label"]) == list(relabelled["label"])


def test_a_shard_of_only_bad_images_has_no_file_and_is_not_taken_for_lost(tmp_path):
    rows = make_rows(16)
    path = tmp_path / "test.zarr"
    build_store(path, rows, ArraySource(rows, bad=list(rows["dr8_id"][8:])), margin=True, cfg=CFG, on_bad="skip",
                progress=False)
    assert not shard_path(path, 1).exists()  # zarr writes no file for a shard of zeros
    store = open_store(path)
    assert not store.read_block(8, 16).any() and not store.ok[8:].any()


def test_rebuilding_a_finished_store_redoes_only_the_damaged_shard(tmp_path):
    rows = make_rows(24)
    path = tmp_path / "train.zarr"
    build_store(path, rows, ArraySource(rows), margin=True, cfg=CFG, progress=False)
    images = open_store(path).images[:]
    shard_path(path, 2).unlink()
    source = ArraySource(rows)
    summary = build_store(path, rows, source, margin=True, cfg=CFG, progress=False)
    assert summary["built"] == [2] and summary["complete"] and source.loaded == list(rows["dr8_id"][16:])
    np.testing.assert_array_equal(open_store(path).images[:], images)
