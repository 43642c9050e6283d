"""Build one Zarr cutout store from a rows parquet and a Galaxy Zoo DESI image folder (resumable, array-ready).

    python data_prep/build_store.py --rows data/catalogue.parquet --split train --images raw \\
        --out data/stores/train.zarr --workers 8
    python data_prep/build_store.py ... --dry-run                   # the plan: shards done / to do; writes nothing
    python data_prep/build_store.py ... --print-array               # "0-N" for sbatch --array
    python data_prep/build_store.py ... --task-id $SLURM_ARRAY_TASK_ID   # one contiguous group of shards

Rows keep their order (store order). ``--split`` keeps the rows whose ``split`` column equals it (so the
catalogue itself can be passed). Survey stores (``--out .../survey.zarr``) get no margin unless ``--margin``;
``train.zarr`` is kept at ``data.train_oversample`` times the margin size.
Every task may start at once: the store metadata is created race-free, each shard is written whole then marked,
and whichever task sees every shard done writes ``{split}.parquet``, ``{split}.bad.csv`` and the store marker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from gcnn_spin.config import load_experiment
from gcnn_spin.data.images import CUTOUT_SIZE, JpegTree
from gcnn_spin.data.pipeline import store_oversample
from gcnn_spin.data.store import ON_BAD, build_store, finished_shards, plan_shards, shard_groups, store_paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=Path, required=True, help="parquet with dr8_id (+ catalogue columns)")
    parser.add_argument("--split", default=None, help="keep rows whose 'split' column equals this")
    parser.add_argument("--images", type=Path, required=True, help="image root holding jpg/{brickid}/{dr8_id}.jpg")
    parser.add_argument("--out", type=Path, required=True, help="the store, e.g. data/stores/train.zarr")
    parser.add_argument("--margin", action=argparse.BooleanOptionalAction, default=None,
                        help="store the rotation margin (default: yes, except for survey.zarr)")
    parser.add_argument("--config", default="experiment", help="science config: shipped name or .toml path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, e.g. data.image_size=48 (repeatable)")
    parser.add_argument("--cutout-size", type=int, default=CUTOUT_SIZE, help="expected JPEG side (default 424)")
    parser.add_argument("--on-bad", choices=ON_BAD, default="raise", help="bad images: stop, or zero + list them")
    parser.add_argument("--workers", type=int, default=1, help="processes building shards in parallel")
    parser.add_argument("--task-id", type=int, default=None, help="build only this array task's group of shards")
    parser.add_argument("--max-array-size", type=int, default=1000, help="most array tasks to plan for")
    parser.add_argument("--print-array", action="store_true", help="print the sbatch --array range and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit; touches nothing")
    parser.add_argument("--overwrite", action="store_true", help="delete a store made for other rows/config first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def load_rows(path: Path, split: str | None) -> pd.DataFrame:
    rows = pd.read_parquet(path)
    if split is not None:
        if "split" not in rows.columns:
            raise SystemExit(f"--split {split}: {path} has no 'split' column")
        rows = rows[rows["split"] == split]
    if not len(rows):
        raise SystemExit(f"no rows to store from {path}" + (f" with split == {split!r}" if split else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_experiment(args.config, args.overrides).data
    rows = load_rows(args.rows, args.split)
    margin = args.margin if args.margin is not None else store_paths(args.out)["store"].stem != "survey"
    oversample = store_oversample(store_paths(args.out)["store"].stem, cfg) if margin else 1
    shards = plan_shards(len(rows), cfg)
    groups = shard_groups(len(shards), args.max_array_size)
    if args.print_array:
        print(f"0-{len(groups) - 1}")
        return 0
    if args.dry_run:
        missing = finished_shards(args.out)[1] if (args.out / "zarr.json").exists() else list(range(len(shards)))
        print(json.dumps({"store": str(args.out), "n_images": len(rows), "margin": margin, "oversample": oversample,
                          "image_size": cfg.image_size, "n_shards": len(shards), "n_tasks": len(groups),
                          "shards_to_build": len(missing), "codec": f"{cfg.codec}-{cfg.codec_level}"}, indent=2))
        return 0
    wanted = None
    if args.task_id is not None:
        if not 0 <= args.task_id < len(groups):
            print(f"task {args.task_id}: only {len(groups)} tasks, nothing to do")
            return 0
        wanted = groups[args.task_id]
    source = JpegTree(args.images, expected_size=args.cutout_size)
    summary = build_store(args.out, rows, source, margin=margin, cfg=cfg, workers=args.workers, on_bad=args.on_bad,
                          shards=wanted, progress=not args.no_progress, overwrite=args.overwrite, oversample=oversample)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("built", "skipped", "missing")}
                     | {"built": len(summary["built"]), "skipped": len(summary["skipped"]),
                        "missing": len(summary["missing"])}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
