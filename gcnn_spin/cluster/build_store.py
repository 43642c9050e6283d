"""The store-build stage: build one Zarr cutout store from a rows parquet and a Galaxy Zoo DESI image folder (resumable, array-ready).

    python -m gcnn_spin.cluster.build_store --rows data/catalogue.parquet --split train --images raw \\
        --out data/stores/train.zarr --workers 8                   # every shard here (run is the default)
    python -m gcnn_spin.cluster.build_store ... --dry-run                   # the plan: shards done / to do; writes nothing
    python -m gcnn_spin.cluster.build_store ... --print-array               # "0-N" for sbatch --array
    python -m gcnn_spin.cluster.build_store run ... --task-id $SLURM_ARRAY_TASK_ID   # one contiguous group of shards
    python -m gcnn_spin.cluster.build_store submit ... --cluster a100       # the shards as job arrays (make submit-store)

Rows keep their order (store order). ``--split`` keeps the rows whose ``split`` column equals it (so the
catalogue itself can be passed). Survey stores (``--out .../survey.zarr``) get no margin unless ``--margin``.
One task per shard; array element K of ``run --task-id K`` holds a contiguous group of them. Every task may
start at once: the store metadata is created race-free, each shard is written whole then marked, and whichever
task sees every shard done writes ``{split}.parquet``, ``{split}.bad.csv`` and the store marker.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import pandas as pd
import zarr

from gcnn_spin import cli, layout
from gcnn_spin.cluster import arrays, make, stage
from gcnn_spin.cluster.make import Flag
from gcnn_spin.config import load_experiment
from gcnn_spin.data.images import CUTOUT_SIZE, JpegTree
from gcnn_spin.data.store import (ON_BAD, build_store, clean_rows, plan_shards, rows_digest, shard_problem,
                                  store_oversample, store_paths)
from gcnn_spin.io import marker_path, read_marker, read_parquet
from gcnn_spin.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=Path, required=True, help="parquet with dr8_id (+ catalogue columns)")
    parser.add_argument("--split", default=None, help="keep rows whose 'split' column equals this")
    parser.add_argument("--images", type=Path, required=True, help="image root holding jpg/{brickid}/{dr8_id}.jpg")
    parser.add_argument("--out", type=Path, required=True, help="the store, e.g. data/stores/train.zarr")
    parser.add_argument("--margin", action=argparse.BooleanOptionalAction, default=None,
                        help="store the rotation margin (default: yes, except for survey.zarr)")
    cli.add_config(parser)
    parser.add_argument("--cutout-size", type=int, default=CUTOUT_SIZE, help="expected JPEG side (default 424)")
    parser.add_argument("--on-bad", choices=ON_BAD, default="raise", help="bad images: stop, or zero + list them")
    parser.add_argument("--workers", type=cli.at_least(1, "--workers"), default=1,
                        help="processes building shards in parallel (`run` without --task-id; default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="delete a store made for other rows/config first")


def load_rows(path: Path, split: str | None) -> pd.DataFrame:
    """The rows of ``path`` (those of ``split`` when given), read once per version of the file."""
    if not Path(path).exists():
        raise FileNotFoundError(f"--rows {path}: no such file")
    return _load_rows(Path(path), split, Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_rows(path: Path, split: str | None, mtime_ns: int) -> pd.DataFrame:
    rows = read_parquet(path, what="rows parquet")
    if split is not None:
        if "split" not in rows.columns:
            raise UserError(f"--split {split}: {path} has no 'split' column")
        rows = rows[rows["split"] == split]
    if not len(rows):
        raise UserError(f"no rows to store from {path}" + (f" with split == {split!r}" if split else ""))
    return rows


def _margin(args) -> bool:
    return args.margin if args.margin is not None else store_paths(args.out)["store"].stem != "survey"


def _oversample(args, cfg) -> int:
    """``data.train_oversample`` for a train store with its rotation margin, else 1."""
    return store_oversample(store_paths(args.out)["store"].stem, cfg) if _margin(args) else 1


def build_shard_task(rows: str, split: str | None, images: str, out: str, margin: bool, oversample: int,
                     config: str, overrides: tuple[str, ...], cutout_size: int, on_bad: str, shard: int) -> dict:
    """One task: create the store if no task has yet, build shard ``shard``; the last shard finalises the store."""
    cfg = load_experiment(config, list(overrides)).data
    source = JpegTree(Path(images), expected_size=cutout_size)
    return build_store(out, load_rows(Path(rows), split), source, margin=margin, cfg=cfg, on_bad=on_bad,
                       shards=[shard], progress=False, oversample=oversample)


@functools.lru_cache(maxsize=4)
def _rows_input(store: str, mtime_ns: int) -> str | None:
    """The rows a finished store was made from (its marker's ``rows_input``), read once per marker version."""
    return (read_marker(store) or {}).get("rows_input")


def shard_check(store: str, k: int, rows_input: str, deep: bool = False) -> str | None:
    """Why shard ``k``'s task must run: its file no longer matches its marker (purged, truncated; with ``deep``
    any changed byte), or the finished store was made from other rows than the ones given now (a label edited
    upstream): the task then rebuilds the shard, or only finalises the store again."""
    marker = marker_path(store)
    made_from = _rows_input(store, marker.stat().st_mtime_ns) if marker.exists() else None
    if made_from not in (None, rows_input):
        return "the store's rows were made from other rows than the ones given now (labels changed upstream)"
    return shard_problem(store, k, deep)


def shard_tasks(args: argparse.Namespace) -> list[arrays.Task]:
    """One task per shard of the store; a shard is done when its marker carries the store's config hash and its
    file still matches the size the marker recorded."""
    cfg = load_experiment(args.config, args.overrides).data
    rows = load_rows(args.rows, args.split)
    out = args.out.resolve()
    existing = zarr.open_group(out, mode="r").attrs["config_hash"] if (out / "zarr.json").exists() else None
    rows_input = rows_digest(clean_rows(rows))
    common = {"rows": str(args.rows.resolve()), "split": args.split, "images": str(args.images.resolve()),
              "out": str(out), "margin": _margin(args), "oversample": _oversample(args, cfg), "config": args.config, "overrides": tuple(args.overrides),
              "cutout_size": args.cutout_size, "on_bad": args.on_bad}
    return [arrays.Task(task_id=f"{out.stem}/shard-{k:05d}", output=layout.shard_output(out, k),
                        fn=build_shard_task, identity=existing,
                        check=functools.partial(shard_check, str(out), k, rows_input),
                        kwargs={**common, "shard": k})
            for k in range(len(plan_shards(len(rows), cfg)))]


def build_all(args: argparse.Namespace, tasks: list[arrays.Task]) -> None:
    """``run`` without a task id: every shard here, in ``--workers`` processes."""
    cfg = load_experiment(args.config, args.overrides).data
    summary = build_store(args.out, load_rows(args.rows, args.split), JpegTree(args.images, args.cutout_size),
                          margin=_margin(args), cfg=cfg, workers=args.workers, on_bad=args.on_bad,
                          progress=not args.quiet, overwrite=args.overwrite, oversample=_oversample(args, cfg))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("built", "skipped", "missing")}
                     | {"built": len(summary["built"]), "skipped": len(summary["skipped"]),
                        "missing": len(summary["missing"])}, indent=2))


STAGE = stage.Stage(name="store", noun="store-build", description=__doc__, add_arguments=add_arguments,
                    tasks=shard_tasks, run_all=build_all,
                    make=(Flag("--rows", "{ROWS}"), Flag("--split", "{SPLIT}", unless=("SPLIT", "survey")),
                          Flag("--images", "{RAW}"), Flag("--out", "{DATA}/stores/{SPLIT}.zarr"), make.LOGS,
                          Flag("--config", "{CONFIG}"), make.SETTINGS),
                    make_help="build store SPLIT (train/val/test/survey) from RAW's images, one task per shard")


def main(argv: list[str] | None = None, prog: str = "python -m gcnn_spin.cluster.build_store") -> int:
    return stage.main(STAGE, argv, prog=prog)


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
