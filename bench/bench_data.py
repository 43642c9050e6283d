"""``make bench-data``: the Zarr store + StoreLoader against a JPEG-folder loader, and the codec choice.

Self-contained: renders a few hundred synthetic DESI-like galaxies (``gcnn_spin.data.synthetic``), writes them as
424 px JPEGs in the Galaxy Zoo DESI layout in a temporary folder, builds stores from them, then prints
(Markdown tables):

1. codecs: bytes per galaxy and read speed of whole chunk-aligned blocks for each candidate codec;
2. chunk sizes: read speed of the configured codec for several ``chunk_images``;
3. loaders, side by side, producing the same training tensors ``(B, 3, S, S)`` float32: the JPEG path (PIL
   decode, rotate, crop the inscribed square, resize to ``S``) and the Zarr path (StoreLoader, rotate on the
   CPU), images/s per process and CPU-seconds per image, plus bytes per galaxy on disk;
4. where the Zarr path's time goes: file read, decompression, batch gather, rotation, crop;
5. the cost of shard checksums: the same images in a store whose chunks carry a checksum (today's format: zstd's
   frame checksum) and in one without (the format before), timed in alternating pairs within one run, and the
   ratio (``--only-checksums``: this table alone).

All reads come from the page cache (the files were just written), as they do for a training set that fits in
RAM. Timings are best-of-``--repeats``; the machine's other load shows up as noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr
from PIL import Image
from tqdm.auto import tqdm

from gcnn_spin.config import DataConfig
from gcnn_spin.data.augment import center_crop, rotate_crop
from gcnn_spin.data.images import JpegTree, crop_field, jpg_relpath, margin_size
from gcnn_spin.data.loader import StoreLoader
from gcnn_spin.data.store import Store, build_store, compressors_for, create_store, open_store
from gcnn_spin.data.synthetic.params import SurveyParams
from gcnn_spin.data.synthetic.population import draw_population
from gcnn_spin.data.synthetic.render import encode_jpeg, render_galaxy
from gcnn_spin.layout import store_path

#: (codec, level) candidates of the codec table.
CODEC_CANDIDATES = (
    ("none", 0), ("zstd", 1), ("zstd", 3), ("zstd", 9), ("blosc-lz4", 5), ("blosc-lz4-bitshuffle", 5),
    ("blosc-zstd", 1), ("blosc-zstd-bitshuffle", 1),
)


@dataclasses.dataclass
class Timing:
    images: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.images / self.wall

    @property
    def cpu_ms(self) -> float:
        return 1e3 * self.cpu / self.images


def best_of(repeats: int, images: int, fn: Callable[[], object]) -> Timing:
    """Run ``fn`` (which handles ``images`` images) ``repeats`` times after a warm-up; keep the fastest."""
    fn()
    best = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        t = Timing(images, time.perf_counter() - w, time.process_time() - c)
        best = t if best is None or t.wall < best.wall else best
    return best


# ----------------------------------------------------------------------------- data


def make_jpeg_tree(root: Path, n: int, seed: int, quality: int) -> tuple[pd.DataFrame, JpegTree]:
    """``n`` synthetic galaxies as 424 px JPEGs under ``root/jpg/...`` and their rows (dr8_id + vote fractions)."""
    params = SurveyParams(seed=seed, jpeg_quality=quality)
    rng = np.random.default_rng(seed)
    population = draw_population(params, np.ones(n, bool), rng)
    p = rng.dirichlet([1, 1, 4], size=n)
    rows = pd.DataFrame({"dr8_id": [f"{1000 + i // 50}_{i}" for i in range(n)],
                         "p_cw": p[:, 0], "p_acw": p[:, 1], "p_other": p[:, 2]})
    for i, (dr8_id, g) in enumerate(tqdm(list(zip(rows["dr8_id"], population.to_dict("records"))),
                                         desc="render", unit="img", leave=False)):
        image = render_galaxy(g, 424, np.random.default_rng([seed, i]), noise_seed=seed)
        path = root / jpg_relpath(dr8_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(image, quality))
    return rows, JpegTree(root)


class Preloaded:
    """An image source over cutouts already decoded (so store builds in the codec table skip JPEG decoding)."""

    def __init__(self, cutouts: dict[str, np.ndarray]):
        self.cutouts = cutouts

    def load(self, dr8_id: str) -> np.ndarray:
        return self.cutouts[dr8_id]


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- measurements


def read_all(store, block: int) -> None:
    for start in range(0, len(store), block):
        store.read_block(start, min(start + block, len(store)))


def codec_table(images: np.ndarray, tmp: Path, repeats: int, chunk: int, block: int) -> list[dict]:
    """Write ``images (N, 3, M, M)`` with each candidate codec; bytes per image, write and block-read speed."""
    n, side = images.shape[0], images.shape[-1]
    out = []
    for codec, level in tqdm(CODEC_CANDIDATES, desc="codecs", leave=False):
        path = tmp / f"codec-{codec}-{level}.zarr"
        array = zarr.open_group(path, mode="w").create_array(
            "images", shape=images.shape, dtype="uint8", chunks=(chunk, 3, side, side), shards=(n, 3, side, side),
            compressors=compressors_for(codec, level), fill_value=0,
        )
        w, c = time.perf_counter(), time.process_time()
        array[:] = images
        write = Timing(n, time.perf_counter() - w, time.process_time() - c)
        reader = zarr.open_group(path, mode="r")["images"]
        read = best_of(repeats, n, lambda: [reader[s:s + block] for s in range(0, n, block)])
        size = dir_bytes(path / "images") / n
        out.append({"codec": codec, "level": level, "kB/galaxy": size / 1e3, "ratio": images[0].nbytes / size,
                    "write img/s": write.rate, "read img/s": read.rate, "read CPU ms/img": read.cpu_ms})
        shutil.rmtree(path)
    return out


def chunk_table(images: np.ndarray, tmp: Path, cfg: DataConfig, repeats: int, block: int) -> list[dict]:
    n, side = images.shape[0], images.shape[-1]
    out = []
    for chunk in (1, 8, 32, 64):
        path = tmp / f"chunk-{chunk}.zarr"
        array = zarr.open_group(path, mode="w").create_array(
            "images", shape=images.shape, dtype="uint8", chunks=(chunk, 3, side, side),
            shards=(max(block, chunk), 3, side, side), compressors=compressors_for(cfg.codec, cfg.codec_level),
            fill_value=0,
        )
        array[:] = images
        reader = zarr.open_group(path, mode="r")["images"]
        read = best_of(repeats, n, lambda: [reader[s:s + block] for s in range(0, n, block)])
        out.append({"chunk_images": chunk, "read img/s": read.rate, "read CPU ms/img": read.cpu_ms})
        shutil.rmtree(path)
    return out


def jpeg_batches(source: JpegTree, ids: list[str], image_size: int, batch_size: int, seed: int) -> None:
    """The JPEG-folder path: per image decode, rotate (bilinear), crop the inscribed square, resize; stack."""
    rng = np.random.default_rng(seed)
    field = crop_field(image_size)
    for start in range(0, len(ids), batch_size):
        batch = []
        for dr8_id in ids[start:start + batch_size]:
            with Image.open(source.path(dr8_id)) as img:
                img = img.convert("RGB").rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR)
            lo = (img.width - field) / 2
            img = img.resize((image_size, image_size), Image.BILINEAR, box=(lo, lo, lo + field, lo + field))
            batch.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))  # ToTensor copies too
        torch.stack(batch).float().div_(255)


def loader_epochs(loader: StoreLoader, epochs: int) -> None:
    for k in range(epochs):
        loader.set_epoch(k)
        for _ in loader:
            pass


def host_epochs(loader: StoreLoader, epochs: int) -> None:
    for k in range(epochs):
        loader.set_epoch(k)
        for _ in loader.host_batches():
            pass


def breakdown(store, loader: StoreLoader, repeats: int, batch_size: int, block: int) -> list[dict]:
    """Each stage of the Zarr path on its own (img/s of that stage alone)."""
    n = len(store)
    shard_files = [f for f in (store.path / "images").rglob("*") if f.is_file() and f.name != "zarr.json"]
    batch = torch.from_numpy(store.read_block(0, min(batch_size, n)))
    angles = torch.rand(batch.shape[0]) * 2 * math.pi
    buffer = torch.empty(batch.numel())
    b = batch.shape[0]
    stages = [
        ("file read (page cache)", n, lambda: [f.read_bytes() for f in shard_files]),
        ("read_block: read + decompress", n, lambda: read_all(store, block)),
        ("host batches: + shuffle + gather", n, lambda: host_epochs(loader, 1)),
        ("rotate_crop (uint8 -> float, grid, sample)", b, lambda: rotate_crop(batch, angles, store.image_size,
                                                                              buffer=buffer)),
        ("center_crop (uint8 -> float)", b, lambda: center_crop(batch, store.image_size)),
    ]
    out = []
    for name, images, fn in stages:
        t = best_of(repeats, images, fn)
        out.append({"stage": name, "img/s": t.rate, "CPU ms/img": t.cpu_ms, "ms per 100": 1e5 / t.rate})
    return out


def checksum_cost(store, rows: pd.DataFrame, source, cfg: DataConfig, tmp: Path, repeats: int, epochs: int,
                  batch_size: int, block: int, seed: int) -> list[dict]:
    """The same images with and without chunk checksums, timed in pairs (checked then unchecked, then the other
    way round, ...) so that the machine's load hits both alike; best img/s of each and the median of the pairs'
    ratios checked/unchecked."""
    unchecked_path = store_path(tmp / "unchecked", "train")
    create_store(unchecked_path, rows, margin=True, cfg=cfg, checksum=False)
    build_store(unchecked_path, rows, source, margin=True, cfg=cfg, progress=False)
    unchecked = Store(unchecked_path, unchecked_ok=True)
    n = len(store)
    out = []
    for what, images, run in (
            ("read_block: read + decompress (+ verify)", n, lambda s: read_all(s, block)),
            ("StoreLoader epoch, rotate on CPU (training)", epochs * n,
             lambda s: loader_epochs(StoreLoader(s, batch_size, shuffle=True, seed=seed, image_size=s.image_size,
                                                 rotate=True), epochs))):
        run(store), run(unchecked)  # warm-up
        wall: dict[str, list[float]] = {"checked": [], "unchecked": []}
        cpu: dict[str, list[float]] = {"checked": [], "unchecked": []}
        for k in range(repeats):
            order = (("checked", store), ("unchecked", unchecked))
            for name, s in order if k % 2 == 0 else order[::-1]:
                w, c = time.perf_counter(), time.process_time()
                run(s)
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)

        def median_ratio(t: dict[str, list[float]]) -> float:
            ratios = sorted(u / c for c, u in zip(t["checked"], t["unchecked"]))
            return ratios[len(ratios) // 2]

        out.append({"path": what, "checked img/s": images / min(wall["checked"]),
                    "unchecked img/s": images / min(wall["unchecked"]),
                    "speed ratio, wall (median of pairs)": median_ratio(wall),
                    "speed ratio, CPU s of this process": median_ratio(cpu)})
    return out


# ----------------------------------------------------------------------------- report


def _fmt(value) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(rows: list[dict]) -> str:
    """Markdown table of equal-keyed dicts (three significant figures or so)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in rows])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n-images", type=int, default=384, help="galaxies to render (default 384)")
    parser.add_argument("--image-size", type=int, default=160, help="S, the model input side (default 160)")
    parser.add_argument("--batch-size", type=int, default=100, help="loader batch size (default 100)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="quality of the rendered JPEGs (default 90)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement, best kept (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="Zarr loader epochs per timed repeat (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendered galaxies (default 0)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here instead of a temp dir")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--only-checksums", action="store_true", help="measure the cost of shard checksums only")
    args = parser.parse_args(argv)

    cfg = DataConfig(image_size=args.image_size)
    S, M, n = args.image_size, margin_size(args.image_size), args.n_images
    block = 8 * cfg.chunk_images
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        t0 = time.perf_counter()
        rows, tree = make_jpeg_tree(workdir / "raw", n, args.seed, args.jpeg_quality)
        ids = rows["dr8_id"].tolist()
        cutouts = {i: tree.load(i) for i in ids}
        source = Preloaded(cutouts)
        train = store_path(workdir, "train")
        build = build_store(train, rows, tree, margin=True, cfg=cfg, progress=False)
        survey = build_store(store_path(workdir, "survey"), rows, source, margin=False, cfg=cfg, progress=False)
        store = open_store(train)
        images = store.images[:]
        jpeg_bytes = dir_bytes(workdir / "raw" / "jpg") / n
        print(f"# bench-data: {n} synthetic galaxies, S = {S}, M = {M}, batch {args.batch_size}, "
              f"torch threads {torch.get_num_threads()} of {os.cpu_count()} CPUs (load average "
              f"{os.getloadavg()[0]:.1f} at start), zarr {zarr.__version__}, torch {torch.__version__}\n")
        print(f"store build (JPEG decode + resize + {cfg.codec}-{cfg.codec_level} + write, 1 process): "
              f"{n / build['seconds']:,.0f} img/s\n")

        if args.only_checksums:
            checksums = checksum_cost(store, rows, source, cfg, workdir, args.repeats, args.epochs, args.batch_size,
                                      block, args.seed)
            print(table(checksums) + "\n")
            return {"checksums": checksums}
        codecs = codec_table(images, workdir, args.repeats, cfg.chunk_images, block)
        print(f"## Codecs: train-store images (3, {M}, {M}) uint8 = {images[0].nbytes / 1e3:.1f} kB raw; "
              f"chunks of {cfg.chunk_images}, reads of {block}-image blocks\n")
        print(table(codecs) + "\n")
        chunks = chunk_table(images, workdir, cfg, args.repeats, block)
        print(f"## Chunk size ({cfg.codec}-{cfg.codec_level}, {block}-image block reads)\n")
        print(table(chunks) + "\n")

        jpeg = best_of(max(1, args.repeats - 1), n, lambda: jpeg_batches(tree, ids, S, args.batch_size, args.seed))
        rotating = StoreLoader(store, args.batch_size, shuffle=True, seed=args.seed, image_size=S, rotate=True)
        plain = StoreLoader(store, args.batch_size, shuffle=True, seed=args.seed, image_size=S, rotate=False)
        e = args.epochs
        zarr_rot = best_of(args.repeats, e * n, lambda: loader_epochs(rotating, e))
        zarr_crop = best_of(args.repeats, e * n, lambda: loader_epochs(plain, e))
        zarr_host = best_of(args.repeats, e * n, lambda: host_epochs(rotating, e))
        loaders = [
            {"path": "JPEG folder: PIL decode 424 + rotate + crop + resize", "img/s": jpeg.rate,
             "CPU ms/img": jpeg.cpu_ms, "vs JPEG": 1.0},
            {"path": "Zarr StoreLoader, rotate on CPU (training)", "img/s": zarr_rot.rate,
             "CPU ms/img": zarr_rot.cpu_ms, "vs JPEG": zarr_rot.rate / jpeg.rate},
            {"path": "Zarr StoreLoader, centre crop (eval / _nr)", "img/s": zarr_crop.rate,
             "CPU ms/img": zarr_crop.cpu_ms, "vs JPEG": zarr_crop.rate / jpeg.rate},
            {"path": "Zarr host side only (uint8 batches; rotation on GPU)", "img/s": zarr_host.rate,
             "CPU ms/img": zarr_host.cpu_ms, "vs JPEG": zarr_host.rate / jpeg.rate},
        ]
        print(f"## Loaders: (B, 3, {S}, {S}) float32 training tensors, one process\n")
        print(table(loaders) + "\n")
        sizes = [
            {"on disk": f"JPEG 424 px (quality {args.jpeg_quality})", "kB/galaxy": jpeg_bytes / 1e3},
            {"on disk": f"Zarr train store (3, {M}, {M}) {cfg.codec}-{cfg.codec_level}",
             "kB/galaxy": build["bytes_per_image"] / 1e3},
            {"on disk": f"Zarr survey store (3, {S}, {S}) {cfg.codec}-{cfg.codec_level}",
             "kB/galaxy": survey["bytes_per_image"] / 1e3},
        ]
        print(table(sizes) + "\n")
        stages = breakdown(store, rotating, args.repeats, args.batch_size, block)
        print("## Where the Zarr path's time goes (each stage alone)\n")
        print(table(stages) + "\n")
        checksums = checksum_cost(store, rows, source, cfg, workdir, args.repeats, e, args.batch_size, block,
                                  args.seed)
        print(f"## Shard checksums: {cfg.codec}-{cfg.codec_level} chunks with their checksum (verified on every read) "
              "vs without, side by side\n")
        print(table(checksums) + "\n")
        print(f"total bench time {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f} at the end")
        figures = {"n_images": n, "image_size": S, "margin_size": M, "codecs": codecs, "chunks": chunks,
                   "loaders": loaders, "sizes": sizes, "stages": stages, "checksums": checksums}
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return figures
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
