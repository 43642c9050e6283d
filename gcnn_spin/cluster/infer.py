"""Sharded, resumable survey inference: array task *i* predicts one contiguous block of store shards.

    python -m gcnn_spin.cluster.infer --store data/stores/survey.zarr --runs runs --out predictions --task-id 7
    python -m gcnn_spin.cluster.infer --store data/stores/survey.zarr --print-array   # -> 0-943 for sbatch --array
    python -m gcnn_spin.cluster.infer --store data/stores/survey.zarr --runs runs --out predictions --plan

Each task reads its block once per run and writes ``PRED/{model}/seed{k}/part-{i:05d}.parquet`` (dr8_id, ra, dec,
p_cw, p_acw, p_other) atomically, then its ``.done`` marker; a rerun skips parts that have a marker. The task grid
is planned against ``max_array_size`` so that one array always covers a survey (tasks past the last part exit 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path


from ..io import is_done, read_marker, remove_stale_temporaries, write_marker, write_parquet_atomic
from ..runtime import pick_device, set_cpu_threads

log = logging.getLogger("gcnn_spin.infer")

PREDICTION_COLUMNS = ["dr8_id", "ra", "dec", "p_cw", "p_acw", "p_other"]
DEFAULT_MAX_ARRAY_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class InferencePart:
    """Task ``task_id`` covers store shards ``shards`` = rows ``rows``."""

    task_id: int
    shards: range
    rows: range


def plan_parts(n_rows: int, shard_images: int, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE) -> list[InferencePart]:
    """Group shards into at most ``max_array_size`` contiguous parts (whole shards: no two tasks share one)."""
    if n_rows <= 0:
        return []
    n_shards = math.ceil(n_rows / shard_images)
    per_part = math.ceil(n_shards / max_array_size)
    parts = []
    for task_id, first in enumerate(range(0, n_shards, per_part)):
        shards = range(first, min(first + per_part, n_shards))
        rows = range(shards.start * shard_images, min(shards.stop * shard_images, n_rows))
        parts.append(InferencePart(task_id, shards, rows))
    return parts


def part_path(pred_root: str | Path, model: str, seed: int, task_id: int) -> Path:
    return Path(pred_root) / model / f"seed{seed}" / f"part-{task_id:05d}.parquet"


def finished_runs(runs_root: str | Path, models: list[str] | None = None,
                  seeds: list[int] | None = None) -> list[tuple[str, int, Path]]:
    """``(model, seed, run_dir)`` of every run under ``RUNS/{model}/seed{k}`` with a completion marker."""
    found = []
    for marker in sorted(Path(runs_root).glob("*/seed*.done")):
        run_dir = marker.with_suffix("")
        model, seed = run_dir.parent.name, int(run_dir.name.removeprefix("seed"))
        if (models and model not in models) or (seeds is not None and seed not in seeds):
            continue
        found.append((model, seed, run_dir))
    return found


def store_parts(store, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE) -> list[InferencePart]:
    return plan_parts(len(store), int(store.attrs["shard_images"]), max_array_size)


def run_part(task_id: int, store_path: str | Path, runs: list[tuple[str, int, Path]], pred_root: str | Path,
             max_array_size: int = DEFAULT_MAX_ARRAY_SIZE, batch_size: int = 512, device: str | None = None,
             progress: bool = True) -> dict:
    """Predict part ``task_id`` for every run; returns timings (read/compute/write seconds) and counts."""
    from ..data.store import open_store
    from ..predict import load_exported, predict_probabilities

    store = open_store(store_path)
    parts = store_parts(store, max_array_size)
    summary = {"task_id": task_id, "n_parts": len(parts), "written": [], "skipped": [],
               "timings": {"read": 0.0, "compute": 0.0, "write": 0.0}, "n_images": 0}
    if task_id >= len(parts):
        log.info("task %d: the store has only %d parts, nothing to do", task_id, len(parts))
        return summary
    part = parts[task_id]
    dev = pick_device(device)
    set_cpu_threads()
    for model, seed, run_dir in runs:
        out = part_path(pred_root, model, seed, task_id)
        identity = {"store": str(Path(store_path).resolve()), "rows": [part.rows.start, part.rows.stop],
                    "run": str(Path(run_dir).resolve())}
        if is_done(out, identity):
            summary["skipped"].append(str(out))
            continue
        remove_stale_temporaries(out)  # left by a task killed while writing this part
        module = load_exported(run_dir, dev)
        table = predict_probabilities(module, store, part.rows, batch_size, dev, progress=progress,
                                      desc=f"{model} seed{seed} part {task_id}", timings=summary["timings"])
        t0 = time.perf_counter()
        write_parquet_atomic(table[PREDICTION_COLUMNS], out)
        write_marker(out, identity, model=model, seed=seed, task_id=task_id, n_rows=len(table),
                     n_skipped_bad=len(part.rows) - len(table))
        summary["timings"]["write"] += time.perf_counter() - t0
        summary["written"].append(str(out))
        summary["n_images"] += len(table)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gcnn_spin.cluster.infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="survey Zarr store, e.g. data/stores/survey.zarr")
    parser.add_argument("--runs", default="runs", help="runs root holding {model}/seed{k} (default: runs)")
    parser.add_argument("--out", default="predictions", help="predictions root (default: predictions)")
    parser.add_argument("--models", nargs="*", default=None, help="only these models (default: every finished run)")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="only these seeds")
    parser.add_argument("--task-id", type=int, default=None,
                        help="part to run (default: $SLURM_ARRAY_TASK_ID; with neither, every part in turn)")
    parser.add_argument("--max-array-size", type=int, default=DEFAULT_MAX_ARRAY_SIZE)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default=None)
    parser.add_argument("--print-array", action="store_true", help="print the sbatch --array range and exit")
    parser.add_argument("--plan", action="store_true", help="dry run: list parts and which are done, then exit")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..data.store import open_store

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = open_store(args.store)
    parts = store_parts(store, args.max_array_size)
    if args.print_array:
        print(f"0-{len(parts) - 1}" if parts else "")
        return 0
    runs = finished_runs(args.runs, args.models, args.seeds)
    if not runs:
        print(f"no finished runs under {args.runs} (looked for {args.runs}/<model>/seed<k>.done)", file=sys.stderr)
        return 2
    if args.plan:
        for part in parts:
            done = sum(read_marker(part_path(args.out, m, s, part.task_id)) is not None for m, s, _ in runs)
            print(f"part {part.task_id:5d}: shards {part.shards.start}-{part.shards.stop - 1}, rows "
                  f"{part.rows.start}-{part.rows.stop - 1}, {done}/{len(runs)} runs done")
        return 0
    task_id = args.task_id if args.task_id is not None else os.environ.get("SLURM_ARRAY_TASK_ID")
    task_ids = [int(task_id)] if task_id is not None else [p.task_id for p in parts]
    for tid in task_ids:
        summary = run_part(tid, args.store, runs, args.out, args.max_array_size, args.batch_size, args.device,
                           args.progress)
        print(json.dumps({k: summary[k] for k in ("task_id", "n_parts", "n_images", "timings")}))
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
