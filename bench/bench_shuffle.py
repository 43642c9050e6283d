"""Are training batches representative at the study's scale? The loader's windowed shuffle against a global one.

Train stores are sorted by ``dr8_id`` (``{brickid}_{objid}``, so by sky position) and the loader shuffles blocks of
consecutive rows inside windows (``gcnn_spin.data.loader.window_shuffle``). Where classes cluster on the sky,
a block carries its sky's class mix into the batches. This script simulates the study's train/val set (Table 1
after downsampling: 6,796 ACW, 6,423 CW, 22,769 Other), places it on an SDSS-like footprint (RA 120-250 deg,
Dec -5-65 deg, uniform on the sphere), gives every galaxy a DESI-like brick id (0.25 deg dec rows, ~0.25 deg
bricks numbered by dec then RA), sorts by the ``dr8_id`` string as the pipeline does, and compares the
per-batch class-fraction std of each (block, window) layout with a global shuffle's, under scenarios of
class clustering:

- ``none``: classes independent of position;
- ``stripes sd s``: each 2.5 deg dec stripe (an SDSS-like scan stripe, observed at its own depth and seeing)
  shifts the spiral fraction's logit by N(0, s);
- ``groups f``: a fraction f of the Other galaxies sits in groups of 10-50 members within 0.3 deg
  (the morphology-density relation: ellipticals live in groups).

Every scenario keeps the Table 1 counts exactly. A ratio of 1 means batches as mixed as a global shuffle's.
``--read-cost N`` also times one epoch of the loader's host side (block reads, decompression, batch gather) per
layout on a temporary store of N random images, since smaller blocks mean more read requests.

    python bench/bench_shuffle.py                      # ~1 min on one core
    python bench/bench_shuffle.py --layouts 256x4 32x32 --epochs 50 --json shuffle.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from gcnn_spin.conventions import ACW, CW, OTHER
from gcnn_spin.data.loader import window_shuffle
from gcnn_spin.io import write_json_atomic

TABLE1 = {"acw": 6796, "cw": 6423, "other": 22769}  # train/val after downsampling
SCENARIOS = ("none", "stripes 0.3", "stripes 0.6", "groups 0.3", "groups 0.6")
CLASS_NAMES = {CW: "CW", ACW: "ACW", OTHER: "Other"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layouts", nargs="*", default=["256x4", "64x16", "32x32", "32x64"],
                   help="block_images x window_blocks layouts to compare (default: 256x4 64x16 32x32 32x64)")
    p.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), help=f"clustering scenarios {SCENARIOS}")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch (default: 100, the study's)")
    p.add_argument("--epochs", type=int, default=20, help="shuffles (epochs) per layout (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated catalogue (default: 0)")
    p.add_argument("--read-cost", type=int, default=0, metavar="N",
                   help="also time one loader epoch per layout on a temporary store of N images (default: off)")
    p.add_argument("--image-size", type=int, default=161, help="S of the --read-cost store (default: 161)")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    return p.parse_args(argv)


def sky(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions (deg) uniform on the sphere within the SDSS-like footprint."""
    ra = rng.uniform(120.0, 250.0, n)
    sin_dec = rng.uniform(np.sin(np.radians(-5.0)), np.sin(np.radians(65.0)), n)
    return ra, np.degrees(np.arcsin(sin_dec))


def brick_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """DESI-like brick ids: rows of 0.25 deg in dec, ~0.25 deg bricks in RA, numbered by dec then RA."""
    rows = np.arange(721)
    n_ra = np.maximum(1, np.round(360 * np.cos(np.radians(-90 + (rows + 0.5) * 0.25)) / 0.25)).astype(int)
    first = np.r_[0, np.cumsum(n_ra)[:-1]] + 1
    row = np.clip(np.floor((dec + 90) / 0.25).astype(int), 0, 720)
    return first[row] + np.floor((ra % 360) / 360 * n_ra[row]).astype(int)


def _spins(rng: np.random.Generator, n_spiral: int) -> np.ndarray:
    """Table 1's ACW/CW split of ``n_spiral`` spirals, in random order (spin does not cluster)."""
    return rng.permutation(np.r_[np.full(TABLE1["acw"], ACW), np.full(TABLE1["cw"], CW)][:n_spiral])


def simulate(scenario: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Classes ``(n,)`` and ``dr8_id``-like keys ``(n,)`` of one clustering scenario (Table 1 counts exactly)."""
    n_spiral, n_other = TABLE1["acw"] + TABLE1["cw"], TABLE1["other"]
    n = n_spiral + n_other
    kind, _, value = scenario.partition(" ")
    if kind in ("none", "stripes"):
        ra, dec = sky(rng, n)
        logit = np.zeros(n)
        if kind == "stripes":
            logit = rng.normal(0.0, float(value), 40)[np.floor((dec + 5.0) / 2.5).astype(int)]
        # weighted draw without replacement of exactly n_spiral spirals (Efraimidis-Spirakis keys)
        weight = 1.0 / (1.0 + np.exp(-(np.log(n_spiral / n_other) + logit)))
        spiral = np.zeros(n, dtype=bool)
        spiral[np.argsort(np.log(rng.random(n)) / weight)[-n_spiral:]] = True
        classes = np.full(n, OTHER)
        classes[spiral] = _spins(rng, n_spiral)
    elif kind == "groups":
        n_grouped = int(float(value) * n_other)
        sizes = rng.integers(10, 51, n_grouped // 10 + 1)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_grouped) + 1]
        sizes[-1] -= sizes.sum() - n_grouped
        centre_ra, centre_dec = sky(rng, len(sizes))
        group_ra = np.repeat(centre_ra, sizes) + rng.normal(0.0, 0.3, n_grouped)
        group_dec = np.repeat(centre_dec, sizes) + rng.normal(0.0, 0.3, n_grouped)
        field_ra, field_dec = sky(rng, n - n_grouped)
        ra, dec = np.r_[group_ra, field_ra], np.r_[group_dec, field_dec]
        field = rng.permutation(np.r_[_spins(rng, n_spiral), np.full(n_other - n_grouped, OTHER)])
        classes = np.r_[np.full(n_grouped, OTHER), field]
    else:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {SCENARIOS}")
    keys = np.array([f"{b}_{o}" for b, o in zip(brick_ids(ra, dec), rng.integers(0, 10_000, n))])
    return classes, keys


def batch_fractions(classes: np.ndarray, order: np.ndarray, batch_size: int) -> np.ndarray:
    """Class fractions ``(n_batches, 3)`` (CW, ACW, Other) of the full batches of ``order``."""
    n = len(order) // batch_size * batch_size
    batches = classes[order[:n]].reshape(-1, batch_size)
    return np.stack([(batches == k).mean(axis=1) for k in (CW, ACW, OTHER)], axis=1)


def compare(classes: np.ndarray, layouts: list[tuple[int, int]], batch_size: int, epochs: int) -> list[dict]:
    """Per layout: per-class std of batch fractions over ``epochs`` shuffles, divided by a global shuffle's."""
    rows = np.arange(len(classes))  # store order = dr8_id order

    def stds(shuffle) -> np.ndarray:
        return np.concatenate([batch_fractions(classes, shuffle(np.random.default_rng(e)), batch_size)
                               for e in range(epochs)]).std(axis=0)

    reference = stds(lambda rng: rng.permutation(rows))
    out = []
    for block, window in layouts:
        ratio = stds(lambda rng: window_shuffle(rows, block, window, rng)) / reference
        out.append({"block_images": block, "window_blocks": window, "global_std": reference.tolist(),
                    **{f"ratio_{CLASS_NAMES[k]}": float(r) for k, r in zip((CW, ACW, OTHER), ratio)}})
    return out


class _RandomImages:
    """Image source for the read-cost store: random uint8 cutouts (compress like noise: a pessimistic read)."""

    def __init__(self, side: int):
        self.side = side

    def load(self, dr8_id: str) -> np.ndarray:
        seed = int(dr8_id.split("_")[1])
        return np.random.default_rng(seed).integers(0, 256, (self.side, self.side, 3), dtype=np.uint8)


def read_cost(n_images: int, image_size: int, layouts: list[tuple[int, int]], batch_size: int) -> list[dict]:
    """Seconds for one shuffled epoch of ``StoreLoader.host_batches`` per layout, on one temporary store."""
    import pandas as pd

    from gcnn_spin.config import DataConfig
    from gcnn_spin.data.loader import StoreLoader
    from gcnn_spin.data.store import build_store, open_store

    cfg = DataConfig(image_size=image_size)
    rows = pd.DataFrame({"dr8_id": [f"1_{i}" for i in range(n_images)], "p_cw": 0.2, "p_acw": 0.2, "p_other": 0.6})
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        build_store(Path(tmp) / "train.zarr", rows, _RandomImages(2 * image_size), margin=True, cfg=cfg,
                    progress=False)
        store = open_store(Path(tmp) / "train.zarr")
        for block, window in layouts:
            loader = StoreLoader(store, batch_size, shuffle=True, block_images=block, window_blocks=window)
            best = float("inf")
            for _ in range(2):  # the first epoch warms the page cache
                t0 = time.perf_counter()
                for _batch in loader.host_batches():
                    pass
                best = min(best, time.perf_counter() - t0)
            out.append({"block_images": block, "window_blocks": window, "epoch_s": best,
                        "img_per_s": n_images / best})
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    layouts = [tuple(int(v) for v in text.split("x")) for text in args.layouts]
    results = []
    print(f"Per-batch class-fraction std, windowed / global shuffle (batch {args.batch_size}, {args.epochs} epochs)")
    print("| scenario | block x window | CW | ACW | Other |\n|---|---|---|---|---|")
    for scenario in args.scenarios:
        classes, keys = simulate(scenario, np.random.default_rng(args.seed))
        classes = classes[np.argsort(keys, kind="stable")]  # the store's dr8_id order
        for row in compare(classes, layouts, args.batch_size, args.epochs):
            results.append({"scenario": scenario, **row})
            print(f"| {scenario} | {row['block_images']} x {row['window_blocks']} | {row['ratio_CW']:.3f} | "
                  f"{row['ratio_ACW']:.3f} | {row['ratio_Other']:.3f} |")
    costs = read_cost(args.read_cost, args.image_size, layouts, args.batch_size) if args.read_cost else []
    if costs:
        print(f"\nLoader host side, one shuffled epoch of {args.read_cost} random images at S={args.image_size}")
        print("| block x window | s/epoch | img/s |\n|---|---|---|")
        for c in costs:
            print(f"| {c['block_images']} x {c['window_blocks']} | {c['epoch_s']:.2f} | {c['img_per_s']:.0f} |")
    if args.json:
        write_json_atomic(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                      "read_cost": costs})


if __name__ == "__main__":
    main()
