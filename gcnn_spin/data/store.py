"""Chunked, sharded Zarr v3 cutout stores: build them resumably, shard by shard, and read them back.

Layout of ``DATA/stores/{split}.zarr`` and its siblings (see docs/architecture.md):

- ``{split}.zarr``: group with array ``images`` ``uint8 (N, 3, M, M)``, chunks ``(chunk_images, 3, M, M)``
  inside shards ``(shard_images, 3, M, M)``; ``M = margin_size(S)`` for training stores (``margin=True``),
  ``M = S`` for survey stores; ``M = oversample * margin_size(S)`` for an oversampled train store.
  Group attributes: ``image_size``, ``margin_size`` (= M), ``margin``, ``oversample``, ``field``, ``n_images``,
  ``shard_images``, ``chunk_images``, ``codec``, ``config_hash``, ``source``.
- ``{split}.zarr.shards/``: the build's bookkeeping: ``plan.parquet`` (rows in store order) and one marker
  ``shard-{k:05d}.done`` per finished shard (JSON: the shard's bad rows and its file's size in ``bytes``).
- ``{split}.parquet``: the rows in store order (index ``row``) plus ``ok``; ``{split}.bad.csv``: the rows
  whose image was bad (``on_bad="skip"``); ``{split}.zarr.done``: the store's marker. These three are written
  once every shard is finished, so their presence means the store is whole.

Building: :func:`create_store` writes the metadata once (race-safe: prepared in a temporary directory, then
renamed into place); :func:`build_shard` fills one shard (one file) in one write and writes its marker last, so
shards can be built by several processes or SLURM array tasks at once; :func:`build_store` does both, skips
finished shards, and finalises. A rebuild of a finished store is a no-op.

Integrity: every chunk inside a shard carries a checksum verified on every read (zstd's frame checksum; a
CRC-32C, zarr's ``crc32c`` codec, after any other compressor) and the shard index carries its own CRC-32C, so a
byte flipped anywhere in a shard file fails the read; a shard file that is missing (a scratch purge) would read back as zeros, so opening a store checks
every shard file against the size its marker recorded. A failure names the store, the shard, its rows and the
command that rebuilds it (a rebuild redoes exactly the shards whose file no longer matches its marker: size, and
the SHA-256 recorded at build time). A store written before chunks carried checksums (group attribute
``format`` < :data:`STORE_FORMAT`) is refused with the command that rebuilds it.

Identity (:attr:`Store.identity`): what the store holds, not where it lies: the SHA-256 of every shard file as
built and the SHA-256 of ``{split}.parquet`` as it is now, so an edited label changes the identity of the store
and of everything made from it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from tqdm.auto import tqdm

from gcnn_spin.artifacts import Verdict, verdict
from gcnn_spin.ranges import format_ranges, group_of
from gcnn_spin.config import ClusterProfile, Codec, DataConfig, choices
from gcnn_spin.data.images import FIELDS, BadImageError, ImageSource, margin_size, to_store_image
from gcnn_spin.errors import UserError
from gcnn_spin.layout import shard_output
from gcnn_spin.io import (atomic_path, config_hash, file_digest, fsync_dir, fsync_file, marker_path, read_marker,
                          read_parquet, write_json_atomic, write_marker, write_parquet)

ON_BAD = ("raise", "skip")
#: Codec names ``DataConfig.codec`` takes (level from ``DataConfig.codec_level``): ``gcnn_spin.config.Codec``.
CODECS = choices(Codec)
BAD_COLUMNS = ["row", "dr8_id", "path", "reason"]
#: Version of the on-disk format (group attribute ``format``); 2: every chunk carries a checksum.
STORE_FORMAT = 2


class StoreError(UserError, RuntimeError):
    """A store that cannot be used or built as asked (incomplete, or built with another config)."""


class ShardError(StoreError):
    """A finished store whose shard file is missing, truncated or unreadable."""


# ----------------------------------------------------------------------------- paths and plan


def store_paths(path: str | os.PathLike) -> dict[str, Path]:
    """Every file that belongs to store ``path`` (``.../{split}.zarr``)."""
    path = Path(path)
    if path.suffix != ".zarr":
        raise ValueError(f"a store path must end in .zarr (like train.zarr), got {path}")
    return {
        "store": path,
        "shards": path.with_name(path.name + ".shards"),
        "plan": path.with_name(path.name + ".shards") / "plan.parquet",
        "build": path.with_name(path.name + ".shards") / "build.json",
        "rows": path.with_suffix(".parquet"),
        "bad": path.with_suffix(".bad.csv"),
        "marker": marker_path(path),
    }


def plan_shards(n_rows: int, cfg: DataConfig) -> list[range]:
    """Row ranges of the shards of an ``n_rows`` store: ``[range(0, shard_images), ...]`` (last one shorter)."""
    _check_layout(cfg)
    return [range(start, min(start + cfg.shard_images, n_rows)) for start in range(0, n_rows, cfg.shard_images)]


def shard_file(images: zarr.Array, store_path: Path, k: int) -> Path:
    """The file zarr keeps shard ``k`` of ``images`` in (absent while the shard holds only zeros)."""
    return store_path / "images" / images.metadata.encode_chunk_key((k,) + (0,) * (images.ndim - 1))


def _durable_shard(images: zarr.Array, store_path: Path, k: int) -> tuple[int, str]:
    """fsync shard ``k``'s file and the folders naming it; ``(size in bytes, SHA-256)`` (0, "": no file)."""
    path = shard_file(images, store_path, k)
    if not path.exists():
        return 0, ""
    fsync_file(path)
    folder = path.parent
    while folder != store_path.parent:
        fsync_dir(folder)
        folder = folder.parent
    return path.stat().st_size, file_digest(path)


def _shard_problem(path: Path, expected: int | None, all_bad: bool = False, sha256: str | None = None,
                   deep: bool = False) -> str | None:
    """Why a shard file does not match its marker (``expected``: recorded size; ``None``: not recorded).

    The size is always compared; ``deep`` also compares the file's SHA-256 with the recorded one (reads the file).
    """
    size = path.stat().st_size if path.exists() else None
    if expected is None:  # a marker from before sizes were recorded: existence is all we can check
        return f"its file {path} is missing" if size is None and not all_bad else None
    if expected == 0:  # the shard held only zeros, so zarr wrote no file
        return None
    if size is None:
        return f"its file {path} is missing"
    if size != expected:
        return f"its file {path} has {size} bytes, its marker says {expected} (truncated or overwritten)"
    if deep and sha256 and (found := file_digest(path)) != sha256:
        return f"its file {path} has SHA-256 {found[:12]}, its marker says {sha256[:12]} (bytes changed)"
    return None


def store_oversample(split: str, cfg: DataConfig) -> int:
    """Stored pixels per model pixel of ``split``'s store: ``train_oversample`` for train, else 1."""
    if cfg.train_oversample < 1:
        raise ValueError(f"data.train_oversample must be >= 1, got {cfg.train_oversample}")
    return cfg.train_oversample if split == "train" else 1


def rebuild_command(paths: Mapping[str, Path], attrs: Mapping[str, Any], k: int | None) -> str:
    """The ``data_prep/build_store.py`` call that rebuilds shard ``k``: the array element holding it when the
    store's shards are grouped by :func:`gcnn_spin.ranges.at_most` into at most ``max_array_size`` elements
    (the shipped profiles' default); ``k=None``: the call that rebuilds the whole store from scratch."""
    n_shards = -(-int(attrs["n_images"]) // int(attrs["shard_images"]))
    task = None if k is None else group_of(k, n_shards, ClusterProfile.max_array_size)
    source = str(attrs.get("source", ""))
    images = source[len("JpegTree("):-1] if source.startswith("JpegTree(") else "IMAGE_ROOT"
    settings = " ".join(f"--set data.{key}={attrs[key]}" for key in
                        ("image_size", "chunk_images", "shard_images", "codec", "codec_level") if key in attrs)
    if int(attrs.get("oversample", 1)) != 1:
        settings += f" --set data.train_oversample={attrs['oversample']}"
    if attrs.get("field", FIELDS[0]) != FIELDS[0]:
        settings += f" --set data.field={attrs['field']}"
    margin = "--margin" if attrs.get("margin") else "--no-margin"
    where = f"--task-id {task}" if k is not None else "--overwrite"
    return (f"python data_prep/build_store.py --rows {paths['plan']} --images {images} --out {paths['store']} "
            f"{margin} {settings} {where}")


def _check_layout(cfg: DataConfig) -> None:
    if cfg.chunk_images < 1 or cfg.shard_images < 1 or cfg.shard_images % cfg.chunk_images:
        raise ValueError(
            f"shard_images ({cfg.shard_images}) must be a positive multiple of chunk_images ({cfg.chunk_images})"
        )


def compressors_for(codec: str, level: int, checksum: bool = True) -> tuple | None:
    """Zarr v3 compressor(s) for a :data:`CODECS` name with a checksum of every chunk that is verified on every
    read (``checksum``): zstd's own frame checksum (XXH64 of the data, the cheapest), else a CRC-32C of the
    compressed bytes (zarr's ``crc32c`` codec). ``None`` = stored raw and unchecked. ``codec``: a config's, so
    one of them (checked at load)."""
    checked = (zarr.codecs.Crc32cCodec(),) if checksum else ()
    if codec == "none":
        return checked or None
    if codec == "zstd":
        return (zarr.codecs.ZstdCodec(level=level, checksum=checksum),)
    cname, _, shuffle = codec.removeprefix("blosc-").partition("-")
    return (zarr.codecs.BloscCodec(cname=cname, clevel=level, shuffle=shuffle or "noshuffle", typesize=1),) + checked


def rows_digest(rows: pd.DataFrame) -> str:
    """Content hash of a rows table (columns, dtypes and every value, labels included), independent of its file."""
    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in rows.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(rows, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def _store_config(rows: pd.DataFrame, cfg: DataConfig, margin: bool, oversample: int = 1) -> dict[str, Any]:
    """What makes two stores the same: geometry, layout, codec and the galaxies in order (not the source path)."""
    ids = rows["dr8_id"].astype(str).to_numpy()
    config = {
        "image_size": cfg.image_size,
        "margin": bool(margin),
        "chunk_images": cfg.chunk_images,
        "shard_images": cfg.shard_images,
        "codec": cfg.codec,
        "codec_level": cfg.codec_level,
        "n_images": int(len(ids)),
        "dr8_ids": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16],
    }
    if oversample != 1:  # only then: the hashes of existing plain stores stay valid
        config["oversample"] = int(oversample)
    if cfg.field != FIELDS[0]:  # likewise
        config["field"] = cfg.field
    return config


def clean_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in store order with a fresh ``row`` index; refuses missing or empty ``dr8_id``."""
    if not len(rows):
        raise ValueError("no rows: a store needs at least one galaxy")
    if "dr8_id" not in rows.columns:
        raise ValueError(f"rows need a dr8_id column; got columns {list(rows.columns)}")
    ids = rows["dr8_id"]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        raise ValueError(f"rows with no dr8_id at positions {np.flatnonzero(empty.to_numpy())[:20].tolist()}")
    keep_index = rows.index.name not in (None, "row")
    out = rows.reset_index(drop=not keep_index).drop(columns=["ok"], errors="ignore")
    out.index = pd.RangeIndex(len(out), name="row")
    return out


def describe_source(source: ImageSource) -> str:
    """Short text naming where the images came from (group attribute ``source``)."""
    if hasattr(source, "describe"):
        return str(source.describe())
    root = getattr(source, "root", None)
    return f"{type(source).__name__}({root})" if root is not None else type(source).__name__


# ----------------------------------------------------------------------------- create


@contextlib.contextmanager
def _prepared_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh hidden directory next to ``target``, then rename it onto ``target`` in one step.

    When another process got there first (``target`` exists, non-empty), the copy made here is discarded; on an
    error it is removed, so no half-made directory is ever visible under ``target``'s name.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        for path in sorted(tmp.rglob("*"), reverse=True):  # files, then the folders that name them
            (fsync_dir if path.is_dir() else fsync_file)(path)
        fsync_dir(tmp)
        os.rename(tmp, target)
        fsync_dir(target.parent)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def create_store(
    path: str | os.PathLike, rows: pd.DataFrame, *, margin: bool, cfg: DataConfig, source: str = "",
    overwrite: bool = False, oversample: int = 1, checksum: bool = True,
) -> str:
    """Write the store's metadata and build plan once; return its config hash.

    Safe when several processes call it at once. An existing store made for the same rows and config is kept
    (resumed); one made differently raises :class:`StoreError` unless ``overwrite`` (which deletes it first).
    The plan is rewritten when only the rows' other columns changed (an edited label): the images stay valid.
    ``checksum=False`` writes the format before chunk checksums, which :func:`open_store` refuses (benchmarks
    compare against it).
    """
    paths = store_paths(path)
    rows = clean_rows(rows)
    _check_layout(cfg)
    compressors = compressors_for(cfg.codec, cfg.codec_level, checksum)
    if oversample < 1 or (oversample > 1 and not margin):
        raise ValueError(f"oversample must be >= 1 and needs a margin store, got {oversample} (margin={margin})")
    store_cfg = _store_config(rows, cfg, margin, oversample)
    digest = config_hash(store_cfg)
    if overwrite:
        delete_store(path)
    side = margin_size(cfg.image_size) * oversample if margin else cfg.image_size
    paths["store"].parent.mkdir(parents=True, exist_ok=True)

    if not paths["shards"].exists():
        with _prepared_dir(paths["shards"]) as tmp:
            write_parquet(rows, tmp / "plan.parquet", index=None)
            write_json_atomic(tmp / "build.json", {"config_hash": digest, "config": store_cfg})
    _check_hash(paths, digest, paths["build"], lambda p: json.loads(p.read_text())["config_hash"])
    if rows_digest(read_parquet(paths["plan"])) != rows_digest(rows):  # same galaxies, other labels
        with atomic_path(paths["plan"], suffix=".parquet") as tmp_plan:
            write_parquet(rows, tmp_plan, index=None)

    if not (paths["store"] / "zarr.json").exists():
        with _prepared_dir(paths["store"]) as tmp:
            group = zarr.open_group(tmp, mode="w", zarr_format=3)
            group.create_array(
                "images", shape=(len(rows), 3, side, side), dtype="uint8",
                chunks=(cfg.chunk_images, 3, side, side), shards=(cfg.shard_images, 3, side, side),
                compressors=compressors, fill_value=0, dimension_names=("image", "band", "y", "x"),
            )
            group.attrs.update({
                "image_size": cfg.image_size, "margin_size": side, "margin": bool(margin), "n_images": len(rows),
                "oversample": int(oversample), "field": cfg.field, "shard_images": cfg.shard_images,
                "chunk_images": cfg.chunk_images,
                "codec": cfg.codec, "codec_level": cfg.codec_level, "config_hash": digest, "source": source,
                "format": STORE_FORMAT if checksum else 1,
            })
    _check_hash(paths, digest, paths["store"], lambda p: zarr.open_group(p, mode="r").attrs["config_hash"])
    return digest


def _check_hash(paths, digest: str, where: Path, read) -> None:
    found = read(where)
    if found != digest:
        raise StoreError(
            f"{paths['store']} exists but was made for other rows or another layout/codec "
            f"(config hash {found} != {digest}); delete it or pass overwrite=True"
        )


def delete_store(path: str | os.PathLike) -> None:
    """Remove a store and every file that belongs to it."""
    paths = store_paths(path)
    for key in ("store", "shards"):
        if paths[key].exists():
            if key == "store" and not (paths[key] / "zarr.json").exists():
                raise StoreError(f"refusing to delete {paths[key]}: it is not a Zarr store")
            shutil.rmtree(paths[key])
    for key in ("rows", "bad", "marker"):
        paths[key].unlink(missing_ok=True)


# ----------------------------------------------------------------------------- build


@functools.lru_cache(maxsize=2)
def _plan_ids(plan: str, mtime_ns: int) -> np.ndarray:
    """dr8_ids of a build plan in store order, read once per process (a survey plan has millions)."""
    return read_parquet(plan, ["dr8_id"], "store build plan")["dr8_id"].astype(str).to_numpy()


def _remove_partials(store_path: Path, k: int) -> None:
    """Drop temporary files a killed write of shard ``k`` may have left (zarr writes ``*.partial`` then renames)."""
    shard_dir = store_path / "images" / "c" / str(k)
    if shard_dir.exists():
        for tmp in shard_dir.rglob("*.partial"):
            tmp.unlink(missing_ok=True)


def build_shard(
    path: str | os.PathLike, k: int, source: ImageSource, *, on_bad: str = "raise", progress: Any = None,
) -> dict[str, Any]:
    """Fill shard ``k`` of a created store from ``source`` in one write, then write its marker.

    Skips a shard whose marker exists. Bad images raise (naming the row, dr8_id and file) or, with
    ``on_bad="skip"``, leave zeros in the slot and are listed in the marker. ``progress``: an optional tqdm
    bar advanced once per image. Returns the shard's summary (``shard``, ``start``, ``stop``, ``bad``...).
    """
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")
    paths = store_paths(path)
    output = shard_output(paths["store"], k)
    group = zarr.open_group(paths["store"], mode="r+")
    digest = group.attrs["config_hash"]
    marker = read_marker(output)
    images = group["images"]
    if (marker is not None and marker.get("config_hash") == digest
            and not _marker_problem(images, paths, marker, deep=True)):
        return {**marker, "skipped": True}
    n, shard = images.shape[0], int(group.attrs["shard_images"])
    if not 0 <= k * shard < n:
        raise ValueError(f"shard {k} does not exist in {paths['store']} ({n} images, {shard} per shard)")
    start, stop = k * shard, min((k + 1) * shard, n)
    ids = _plan_ids(str(paths["plan"]), paths["plan"].stat().st_mtime_ns)[start:stop]
    size, margin = int(group.attrs["image_size"]), bool(group.attrs["margin"])
    oversample = int(group.attrs.get("oversample", 1))
    field = str(group.attrs.get("field", FIELDS[0]))

    t0 = time.perf_counter()
    buf = np.zeros((stop - start,) + images.shape[1:], dtype=np.uint8)
    bad = []
    for i, dr8_id in enumerate(ids):
        try:
            cutout = source.load(dr8_id)
            try:
                buf[i] = to_store_image(cutout, size, margin, oversample, field)
            except ValueError as err:  # wrong shape or mode: as bad as an unreadable file
                where = source.path(dr8_id) if callable(getattr(source, "path", None)) else "?"
                raise BadImageError(dr8_id, where, str(err)) from None
        except BadImageError as err:
            if on_bad == "raise":
                raise BadImageError(err.dr8_id, err.path, f"{err.reason} [store row {start + i}, shard {k}]") from None
            bad.append({"row": start + i, "dr8_id": err.dr8_id, "path": err.path, "reason": err.reason})
        if progress is not None:
            progress.update(1)
    _remove_partials(paths["store"], k)
    shard_file(images, paths["store"], k).unlink(missing_ok=True)  # a damaged one: zarr would read its index
    images[start:stop] = buf  # the whole shard in one write: one file, written atomically by zarr
    nbytes, sha256 = _durable_shard(images, paths["store"], k)
    summary = {"shard": k, "start": start, "stop": stop, "bad": bad, "bytes": nbytes, "sha256": sha256,
               "seconds": round(time.perf_counter() - t0, 3)}
    write_marker(output, config_hash=digest, **summary)
    return {**summary, "skipped": False}


def _build_shard_task(path: str, k: int, source: ImageSource, on_bad: str) -> dict[str, Any]:
    """Worker-process entry; a BadImageError comes back as data (it does not survive pickling)."""
    try:
        return build_shard(path, k, source, on_bad=on_bad)
    except BadImageError as err:
        return {"bad_image": (err.dr8_id, err.path, err.reason)}


def _marker_problem(images: zarr.Array, paths: Mapping[str, Path], marker: Mapping[str, Any],
                    deep: bool = False) -> str | None:
    """Why shard ``marker["shard"]``'s file does not match what its marker recorded (``None``: it does)."""
    k = int(marker["shard"])
    all_bad = len(marker.get("bad", ())) == int(marker["stop"]) - int(marker["start"])
    return _shard_problem(shard_file(images, paths["store"], k), marker.get("bytes"), all_bad,
                          marker.get("sha256"), deep)


def _recorded_sizes(paths: Mapping[str, Path], marker: Mapping[str, Any],
                    n_shards: int) -> tuple[list[int | None], set[int]]:
    """``(sizes, all_bad)``: each shard file's size as built (from the store marker, else from the shard markers
    of a store finished before sizes were recorded) and the shards whose every image was bad."""
    if "shard_bytes" in marker:
        return list(marker["shard_bytes"]), set()
    markers = [read_marker(shard_output(paths["store"], k)) or {} for k in range(n_shards)]
    all_bad = {k for k, m in enumerate(markers) if len(m.get("bad", ())) == m.get("stop", 0) - m.get("start", 0) > 0}
    return [m.get("bytes") for m in markers], all_bad


def shard_problem(path: str | os.PathLike, k: int, deep: bool = False) -> str | None:
    """Why shard ``k`` of store ``path`` is not built intact (no marker, or a file that no longer matches it:
    its size; with ``deep`` its SHA-256 too)."""
    paths = store_paths(path)
    marker = read_marker(shard_output(paths["store"], k))
    if marker is None:
        return "not built"
    images = zarr.open_array(paths["store"] / "images", mode="r")
    return _marker_problem(images, paths, marker, deep)


def damaged_shards(path: str | os.PathLike, deep: Collection[int] = ()) -> dict[int, str]:
    """Shards of a finished store whose file no longer matches the store's marker: ``{k: why}``; the size of
    every shard file is compared, the SHA-256 of the shards in ``deep`` too (that reads them)."""
    paths = store_paths(path)
    group = zarr.open_group(paths["store"], mode="r")
    n_shards = -(-int(group.attrs["n_images"]) // int(group.attrs["shard_images"]))
    marker = read_marker(paths["store"]) or {}
    sizes, all_bad = _recorded_sizes(paths, marker, n_shards)
    digests = marker.get("shard_sha256") or [None] * n_shards
    images = group["images"]
    return {k: why for k in range(n_shards)
            if (why := _shard_problem(shard_file(images, paths["store"], k), sizes[k], k in all_bad, digests[k],
                                      k in deep))}


def rows_problem(paths: Mapping[str, Path], marker: Mapping[str, Any], rows: pd.DataFrame | None = None
                 ) -> str | None:
    """Why the finished store's ``{split}.parquet`` is not what its build made from ``rows`` (the build's input,
    when given): edited since the build (its SHA-256 changed), or built from other rows (an edited label)."""
    if rows is not None and marker.get("rows_input") != rows_digest(rows):
        return "built from other rows than the ones given now (labels or columns changed since)"
    recorded = marker.get("rows_sha256")
    if recorded and paths["rows"].exists() and (found := file_digest(paths["rows"])) != recorded:
        return f"{paths['rows'].name} was changed after the build (SHA-256 {recorded[:12]}, now {found[:12]})"
    return None


def store_verdict(path: str | os.PathLike) -> Verdict:
    """The artifact verdict on store ``path`` as a whole: missing (not finished), damaged (a shard file that lost
    its recorded size, or a rows parquet changed since the build), else done."""
    paths = store_paths(path)
    found = verdict(paths["store"])
    if not found.done:
        return found
    marker = read_marker(paths["store"]) or {}
    if not paths["rows"].exists():
        return Verdict("damaged", f"its rows {paths['rows'].name} are missing")
    problem = rows_problem(paths, marker) or next(iter(damaged_shards(path).values()), None)
    return Verdict("damaged", problem) if problem else found


def finished_shards(path: str | os.PathLike, deep: Collection[int] = ()) -> tuple[int, list[int]]:
    """``(n_shards, missing)``: how many shards the store has and which are not built: no marker yet, or a
    file that no longer matches its marker (deleted or truncated since; for the shards in ``deep``, any byte
    changed since)."""
    paths = store_paths(path)
    group = zarr.open_group(paths["store"], mode="r")
    n, shard, digest = int(group.attrs["n_images"]), int(group.attrs["shard_images"]), group.attrs["config_hash"]
    images = group["images"]
    n_shards = -(-n // shard)
    missing = []
    for k in range(n_shards):
        marker = read_marker(shard_output(paths["store"], k)) or {}
        if marker.get("config_hash") != digest or _marker_problem(images, paths, marker, k in deep):
            missing.append(k)
    return n_shards, missing


def finalize_store(path: str | os.PathLike) -> dict[str, Any]:
    """Once every shard is done: write ``{split}.parquet`` (with ``ok``), ``{split}.bad.csv`` and the marker."""
    paths = store_paths(path)
    n_shards, missing = finished_shards(path)
    if missing:
        raise StoreError(f"{paths['store']}: cannot finalise, shards not built: {format_ranges(missing)}")
    bad, shard_bytes, shard_sha256 = [], [], []
    for k in range(n_shards):
        marker = read_marker(shard_output(paths["store"], k))
        bad.extend(marker["bad"])
        shard_bytes.append(marker.get("bytes"))
        shard_sha256.append(marker.get("sha256", ""))
    rows = read_parquet(paths["plan"], what="store build plan")
    planned = rows_digest(rows)
    rows["ok"] = True
    bad_df = pd.DataFrame(bad, columns=BAD_COLUMNS)
    rows.loc[bad_df["row"].to_numpy(dtype=np.int64), "ok"] = False
    with atomic_path(paths["rows"]) as out:
        write_parquet(rows, out, index=None)
    with atomic_path(paths["bad"]) as out:
        bad_df.to_csv(out, index=False)
    digest = zarr.open_group(paths["store"], mode="r").attrs["config_hash"]
    write_marker(paths["store"], config_hash=digest, n_images=len(rows), n_bad=len(bad_df), shard_bytes=shard_bytes,
                 shard_sha256=shard_sha256, rows_input=planned, rows_sha256=file_digest(paths["rows"]))
    return {"n_images": len(rows), "n_bad": len(bad_df)}


def build_store(
    path: str | os.PathLike, rows: pd.DataFrame, source: ImageSource, *, margin: bool, cfg: DataConfig,
    workers: int = 1, on_bad: str = "raise", shards: Iterable[int] | None = None, progress: bool = True,
    overwrite: bool = False, oversample: int = 1,
) -> dict[str, Any]:
    """Build (or resume) store ``path`` from ``rows`` (``dr8_id`` + catalogue columns, in store order).

    ``shards``: build only these (an array task's share); the store is finalised by whichever call sees every
    shard done. ``workers > 1`` builds shards in that many processes (``source`` must then be picklable).
    ``oversample``: keep ``oversample * M`` px per side (train stores; see :mod:`gcnn_spin.data.images`).
    Returns a summary: ``n_images``, ``n_shards``, ``built``, ``skipped``, ``missing``, ``n_bad``, ``complete``,
    ``seconds``, ``bytes``. The shards asked for (all by default) are read in full against the SHA-256 their
    markers recorded, so one whose bytes changed since is rebuilt; the others' sizes are checked.
    """
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")
    shards = None if shards is None else list(shards)
    t0 = time.perf_counter()
    paths = store_paths(path)
    rows = clean_rows(rows)
    digest = config_hash(_store_config(rows, cfg, margin, oversample))
    marker = read_marker(paths["store"])
    finished = (not overwrite and marker is not None and marker.get("config_hash") == digest
                and paths["rows"].exists())
    n_planned = len(plan_shards(len(rows), cfg))
    checked = set(range(n_planned) if shards is None else shards)  # read in full: a changed byte is rebuilt
    if finished and not damaged_shards(path, checked) and not rows_problem(paths, marker, rows):
        return _summary(paths, built=[], skipped=list(range(n_planned)), t0=t0)
    create_store(path, rows, margin=margin, cfg=cfg, source=describe_source(source), overwrite=overwrite,
                 oversample=oversample)
    n_shards, missing = finished_shards(path, checked)
    if finished:  # a shard file was lost or truncated after the store was finished: it is whole again only
        marker_path(paths["store"]).unlink(missing_ok=True)  # once those shards are rebuilt
    wanted = list(range(n_shards)) if shards is None else sorted(set(shards))
    outside = [k for k in wanted if not 0 <= k < n_shards]
    if outside:
        raise ValueError(f"shards {outside} do not exist: {paths['store']} has shards 0..{n_shards - 1}")
    todo = [k for k in wanted if k in set(missing)]
    sizes = {k: len(r) for k, r in enumerate(plan_shards(len(rows), cfg))}
    with tqdm(total=sum(sizes[k] for k in todo), unit="img", desc=paths["store"].name, disable=not progress) as bar:
        if workers <= 1 or len(todo) <= 1:
            for k in todo:
                build_shard(path, k, source, on_bad=on_bad, progress=bar)
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding zarr's threads
            with cf.ProcessPoolExecutor(min(workers, max(len(todo), 1)), mp_context=ctx) as pool:
                futures = {pool.submit(_build_shard_task, str(path), k, source, on_bad): k for k in todo}
                try:
                    for fut in cf.as_completed(futures):
                        result = fut.result()
                        if "bad_image" in result:
                            raise BadImageError(*result["bad_image"])
                        bar.update(sizes[futures[fut]])
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    _, missing = finished_shards(path)
    if not missing:
        finalize_store(path)
    return _summary(paths, built=todo, skipped=[k for k in wanted if k not in todo], t0=t0)


def _summary(paths, *, built: list[int], skipped: list[int], t0: float) -> dict[str, Any]:
    n_shards, missing = finished_shards(paths["store"])
    marker = read_marker(paths["store"])
    nbytes = sum(f.stat().st_size for f in (paths["store"] / "images").rglob("*") if f.is_file())
    n_images = int(zarr.open_group(paths["store"], mode="r").attrs["n_images"])
    return {
        "path": str(paths["store"]), "n_images": n_images, "n_shards": n_shards, "built": built,
        "skipped": skipped, "missing": missing, "complete": marker is not None and not missing,
        "n_bad": None if marker is None else marker["n_bad"], "bytes": nbytes,
        "bytes_per_image": nbytes / n_images if n_images else float("nan"),
        "seconds": round(time.perf_counter() - t0, 3),
    }


# ----------------------------------------------------------------------------- read


class Store:
    """A finished store, opened for reading.

    ``images``: the zarr array ``(N, 3, M, M) uint8``; ``rows``: DataFrame in store order (index ``row``,
    column ``ok``); ``attrs``: group attributes; ``ok``: ``(N,) bool`` mask of usable images.
    """

    def __init__(self, path: str | os.PathLike, unchecked_ok: bool = False):
        self.paths = store_paths(path)
        self.path = self.paths["store"]
        if not (self.path / "zarr.json").exists():
            raise StoreError(f"no Zarr store at {self.path}")
        group = zarr.open_group(self.path, mode="r")
        self.attrs: dict[str, Any] = dict(group.attrs)
        if int(self.attrs.get("format", 1)) < STORE_FORMAT and not unchecked_ok:
            raise StoreError(f"store {self.path} was built before its shards carried checksums (format "
                             f"{self.attrs.get('format', 1)} < {STORE_FORMAT}), so a damaged byte could not be seen; "
                             f"rebuild it with: {rebuild_command(self.paths, self.attrs, None)}")
        marker = read_marker(self.path)
        # the store marker is written only after every shard marker was checked: one file to read, not thousands
        if marker is None or marker.get("config_hash") != self.attrs["config_hash"] or not self.paths["rows"].exists():
            n_shards, missing = finished_shards(self.path)
            if missing:
                raise StoreError(
                    f"{self.path} is incomplete: shards {format_ranges(missing)} of 0..{n_shards - 1} have no marker in "
                    f"{self.paths['shards']} (build interrupted?); rerun the build to finish it"
                )
            raise StoreError(f"{self.path}: every shard is built but the store was not finalised; rerun the build")
        self.images = group["images"]
        rebuild_rows = f"delete it and rerun the store's build, which rewrites it ({self.paths['rows'].name})"
        self.rows = read_parquet(self.paths["rows"], what="store rows parquet", fix=rebuild_rows)
        if len(self.rows) != self.images.shape[0]:
            raise StoreError(
                f"{self.paths['rows']} has {len(self.rows)} rows but {self.path} has {self.images.shape[0]} images"
            )
        self.ok = self.rows["ok"].to_numpy(dtype=bool)
        self.marker: dict[str, Any] = dict(marker)
        self._shard_images = int(self.attrs["shard_images"])
        self._expected = _recorded_sizes(self.paths, marker, -(-len(self) // self._shard_images))
        problems = {k: why for k in range(len(self._expected[0])) if (why := self._shard_problem(k))}
        if problems:
            raise self._shard_error(problems)

    @functools.cached_property
    def rows_sha256(self) -> str:
        """SHA-256 of ``{split}.parquet`` as it is now (an edited label changes it)."""
        return file_digest(self.paths["rows"])

    @functools.cached_property
    def identity(self) -> str:
        """What the store holds: the SHA-256 of each shard file as built and of ``{split}.parquet`` as it is now
        (labels included), hashed; where it lies plays no part."""
        return config_hash({"config_hash": self.attrs["config_hash"], "shards": self.marker.get("shard_sha256"),
                            "rows": self.rows_sha256})

    def shard_digests(self, shards: Iterable[int]) -> list[str]:
        """The SHA-256 recorded at build time of each of ``shards`` (what a reader of them was made from)."""
        recorded = self.marker.get("shard_sha256") or []
        return [recorded[k] if k < len(recorded) else "" for k in shards]

    def _shard_problem(self, k: int) -> str | None:
        sizes, all_bad = self._expected
        return _shard_problem(shard_file(self.images, self.path, k), sizes[k], k in all_bad)

    def _shard_error(self, problems: Mapping[int, str]) -> ShardError:
        """One message naming the store, the bad shards, their rows and the command that rebuilds them."""
        first = min(problems)
        rows = range(first * self._shard_images, min((first + 1) * self._shard_images, len(self)))
        more = (f" ({len(problems)} bad shards: {format_ranges(sorted(problems))})" if len(problems) > 1 else "")
        return ShardError(
            f"store {self.path}: shard {first} (rows {rows.start}-{rows.stop - 1}) is unusable: {problems[first]}"
            f"{more}; rebuild it with: {rebuild_command(self.paths, self.attrs, first)}"
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"Store({self.path.name}, n={len(self)}, shape={tuple(self.images.shape)}, margin={self.margin})"

    @property
    def image_size(self) -> int:
        return int(self.attrs["image_size"])

    @property
    def margin(self) -> bool:
        return bool(self.attrs["margin"])

    @property
    def oversample(self) -> int:
        """Stored pixels per model-input pixel (1 unless an oversampled train store)."""
        return int(self.attrs.get("oversample", 1))

    @property
    def field(self) -> str:
        """The image field the store serves (``data.field``; stores built before it existed: ``"inscribed"``)."""
        return str(self.attrs.get("field", FIELDS[0]))

    @property
    def chunk_images(self) -> int:
        return int(self.attrs["chunk_images"])

    def read_block(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as ``(stop - start, 3, M, M) uint8`` (fastest when chunk-aligned)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"block {start}:{stop} outside {self.path.name} (0..{len(self)})")
        shards = range(start // self._shard_images, -(-stop // self._shard_images))
        # a shard deleted after opening would read back as zeros: look again before every read
        problems = {k: why for k in shards if (why := self._shard_problem(k))}
        if problems:
            raise self._shard_error(problems)
        try:
            return self.images[start:stop]
        except Exception:  # noqa: BLE001 - zarr and its codecs raise ValueError, RuntimeError... on bad bytes
            pass
        for k in shards:  # find the shard that cannot be read, to name it
            try:
                self.images[max(start, k * self._shard_images):min(stop, (k + 1) * self._shard_images)]
            except Exception as err:  # noqa: BLE001
                raise self._shard_error({k: f"reading it failed: its bytes do not match their checksum or cannot "
                                            f"be decoded ({type(err).__name__}: {err})"}) from err
        return self.images[start:stop]


def open_store(path: str | os.PathLike) -> Store:
    """Open a finished store; raises :class:`StoreError` naming the missing shards of an unfinished one, a
    damaged shard, or a store written before shards carried checksums."""
    return Store(path)

