"""The survey inference stage: one task per (finished run, part); a part is a contiguous block of store shards.

    python -m gcnn_spin.cluster.infer run --store data/stores/survey.zarr --runs runs --out predictions --task-id 7
    python -m gcnn_spin.cluster.infer submit --store data/stores/survey.zarr --cluster a100
    python -m gcnn_spin.cluster.infer --store data/stores/survey.zarr --runs runs --print-array   # -> 0-943
    python -m gcnn_spin.cluster.infer --store data/stores/survey.zarr --runs runs --out predictions --dry-run

Task (run, part i) writes ``PRED/{run}/seed{k}/part-{i:05d}.parquet`` (``{run}``: the run's name, its folder
under RUNS, e.g. ``resnet18_nr`` for a run trained without rotation) (dr8_id, ra, dec, p_cw, p_acw, p_other)
atomically, then its marker. A part's identity (:func:`part_identity`) is what it read (its rows, the SHA-256 of
its shards and of the store's rows) and the run's identity (its config hash, which covers the stores it trained
on, and its completion time), so a run retrained in place, or retrained on edited labels, has its parts redone. The part plan (store
identity and the rows of every part) is recorded in ``PRED/plan.json`` before anything runs; predictions of
another store in the same folder are refused. Array element *i* of ``run --task-id i`` predicts part *i* for every
run (parts are planned under ``max_array_size``), so ``sbatch jobs/desi_infer.sh`` needs one task per part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from .. import cli, layout
from ..errors import UserError
from ..io import config_hash, remove_stale_temporaries, write_json_atomic, write_marker, write_parquet_atomic
from ..layout import part_path, store_identity
from ..run import Run, finished_run, finished_runs
from . import arrays, make, stage
from .make import Flag

log = logging.getLogger("gcnn_spin.infer")

PREDICTION_COLUMNS = ["dr8_id", "ra", "dec", "p_cw", "p_acw", "p_other"]
DEFAULT_MAX_ARRAY_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class InferencePart:
    """Part ``task_id`` covers store shards ``shards`` = rows ``rows``."""

    task_id: int
    shards: range
    rows: range


def plan_parts(n_rows: int, shard_images: int, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE) -> list[InferencePart]:
    """Group shards into at most ``max_array_size`` contiguous parts (whole shards: no two tasks share one)."""
    if n_rows <= 0:
        return []
    groups = arrays.at_most(range(-(-n_rows // shard_images)), max_array_size)
    return [InferencePart(i, range(g[0], g[-1] + 1),
                          range(g[0] * shard_images, min((g[-1] + 1) * shard_images, n_rows)))
            for i, g in enumerate(groups)]


def store_parts(store, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE) -> list[InferencePart]:
    return plan_parts(len(store), int(store.attrs["shard_images"]), max_array_size)


def part_source(store, part: InferencePart) -> str:
    """What part ``part`` reads: its rows, the SHA-256 of each of its shards and of the store's rows parquet."""
    return config_hash({"rows": [part.rows.start, part.rows.stop], "shards": store.shard_digests(part.shards),
                        "store_rows": store.rows_sha256})


def plan_sources(store, parts_rows: list[list[int]]) -> list[str]:
    """:func:`part_source` of every part of a recorded plan (``[[start, stop], ...]``), from the store as it is."""
    shard = int(store.attrs["shard_images"])
    return [part_source(store, InferencePart(i, range(a // shard, -(-b // shard)), range(a, b)))
            for i, (a, b) in enumerate(parts_rows)]


def part_plan(store, store_path: str | Path, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE) -> dict[str, Any]:
    """The content of ``PRED/plan.json``: the store's identity, the rows of every part and what each reads
    (``sources``: :func:`part_source`), so that ``collect`` judges parts as the inference stage does."""
    parts = store_parts(store, max_array_size)
    return {"store": store_identity(store), "store_path": str(Path(store_path).resolve()),
            "n_parts": len(parts), "parts": [[p.rows.start, p.rows.stop] for p in parts],
            "sources": [part_source(store, p) for p in parts]}


def record_plan(pred_root: str | Path, plan: dict[str, Any]) -> Path:
    """Write ``PRED/plan.json`` unless the same plan is there. The same store whose content changed since (an
    edited label, a rebuilt shard) gets its plan rewritten, its parts then being stale; a plan for another store
    or another grouping of the parts is refused."""
    path = layout.plan_path(pred_root)
    if path.exists():
        old = read_plan(pred_root)
        if old == {**plan, "store_path": old.get("store_path")}:
            return path
        if old.get("parts") != plan["parts"] or old.get("store_path") != plan["store_path"]:
            raise UserError(f"{path} records predictions of another store or part plan ({old.get('store_path')}, "
                             f"{old.get('n_parts')} parts): use another predictions folder, or delete it to start over")
    write_json_atomic(path, plan)
    return path


def read_plan(pred_root: str | Path) -> dict[str, Any]:
    path = layout.plan_path(pred_root)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise UserError(f"inference plan {path} unreadable ({type(err).__name__}: {err}); delete it and rerun "
                         "`python -m gcnn_spin.cluster.infer --dry-run` to see the plan") from None


def part_identity(source: str, run) -> str:
    """What a part is made from: what it reads (:func:`part_source`) and ``run``'s identity (its config hash,
    which covers the stores it trained on, and its completion time). The inference stage and ``collect`` both
    judge a part by this."""
    return config_hash({"source": source, "run": run.identity})


def predict_part(store_path: str, part: int, rows: tuple[int, int], run_dir: str, out: str,
                 identity: str, batch_size: int = 512, device: str | None = None,
                 progress: bool = True, timings: dict[str, float] | None = None) -> int:
    """One task: predict ``rows`` of the store with one run, write the part, then its marker. Returns its length."""
    from ..data.store import open_store
    from ..predict import load_exported, predict_probabilities
    from ..runtime import pick_device, set_cpu_threads

    output = Path(out)
    remove_stale_temporaries(output)  # left by a task killed while writing this part
    store = open_store(store_path)
    run = finished_run(run_dir)
    dev = pick_device(device)
    set_cpu_threads()
    timings = {"read": 0.0, "compute": 0.0, "write": 0.0} if timings is None else timings
    module = load_exported(run_dir, dev)
    table = predict_probabilities(module, store, range(*rows), batch_size, dev, progress=progress,
                                  desc=f"{run.name} seed{run.seed} part {part}", timings=timings)
    t0 = time.perf_counter()
    write_parquet_atomic(table[PREDICTION_COLUMNS], output)
    write_marker(output, model=run.model, run=run.name, seed=run.seed, task_id=part, part=part, n_rows=len(table),
                 n_skipped_bad=rows[1] - rows[0] - len(table), run_identity=run.identity, config_hash=identity)
    timings["write"] += time.perf_counter() - t0
    return len(table)


def part_tasks(store_path: str | Path, runs: list[Run], pred_root: str | Path,
               max_array_size: int = DEFAULT_MAX_ARRAY_SIZE, batch_size: int = 512, device: str | None = None,
               progress: bool = True) -> list[arrays.Task]:
    """One task per (part, run), part by part: array element *i* holds part *i* of every run."""
    from ..data.store import open_store

    store = open_store(store_path)
    parts = store_parts(store, max_array_size)
    sources = [part_source(store, p) for p in parts]
    tasks = []
    for part in parts:
        for run in runs:
            out = part_path(Path(pred_root).resolve(), run.name, run.seed, part.task_id)
            identity = part_identity(sources[part.task_id], run)
            tasks.append(arrays.Task(
                task_id=f"{run.name}/seed{run.seed}/part-{part.task_id:05d}", output=out, fn=predict_part,
                identity=identity,
                kwargs={"store_path": str(Path(store_path).resolve()), "part": part.task_id,
                        "rows": (part.rows.start, part.rows.stop), "run_dir": str(run.path.resolve()),
                        "out": str(out), "identity": identity, "batch_size": batch_size, "device": device,
                        "progress": progress}))
    return tasks


def run_part(task_id: int, store_path: str | Path, runs: list[Run], pred_root: str | Path,
             max_array_size: int = DEFAULT_MAX_ARRAY_SIZE, batch_size: int = 512, device: str | None = None,
             progress: bool = True) -> dict:
    """Part ``task_id`` for every run, in this process; returns timings (read/compute/write seconds) and counts."""
    tasks = [t for t in part_tasks(store_path, runs, pred_root, max_array_size, batch_size, device, progress)
             if t.kwargs["part"] == task_id]
    summary = {"task_id": task_id, "written": [], "skipped": [], "n_images": 0,
               "timings": {"read": 0.0, "compute": 0.0, "write": 0.0}}
    for task in tasks:
        if task.done:
            summary["skipped"].append(str(task.output))
            continue
        summary["n_images"] += predict_part(**task.kwargs, timings=summary["timings"])
        summary["written"].append(str(task.output))
    return summary


# ----------------------------------------------------------------------------- the stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="survey Zarr store, e.g. data/stores/survey.zarr")
    parser.add_argument("--runs", default="runs", help="runs root holding {run}/seed{k} (default: runs)")
    parser.add_argument("--out", default="predictions", help="predictions root (default: predictions)")
    parser.add_argument("--models", nargs="*", default=None, help="only these runs, by name or table label (default: every finished run)")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="only these seeds")
    cli.add_batch_size(parser, 512)
    cli.add_device(parser)


def _tasks(args: argparse.Namespace) -> list[arrays.Task]:
    from ..data.store import open_store

    open_store(args.store)  # a missing or unfinished store is named before anything else
    runs = finished_runs(args.runs, args.models, args.seeds)
    if not runs:
        raise FileNotFoundError(f"no finished runs under {args.runs} (looked for {args.runs}/<run>/seed<k>.done)")
    return part_tasks(args.store, runs, args.out, args.profile.max_array_size, args.batch_size, args.device,
                      not args.quiet)


def _prepare(args: argparse.Namespace, tasks: list[arrays.Task]) -> None:
    from ..data.store import open_store

    record_plan(args.out, part_plan(open_store(args.store), args.store, args.profile.max_array_size))


STAGE = stage.Stage(name="infer", noun="inference", description=__doc__, add_arguments=add_arguments, tasks=_tasks,
                    array_key=lambda task: task.kwargs["part"], prepare=_prepare,
                    make=(Flag("--store", "{STORE}"), Flag("--runs", "{RUNS}"), Flag("--out", "{PRED}"), make.LOGS,
                          *make.SUBSET),
                    make_help="survey inference of every finished run (STORE=...), one task per (run, part)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return stage.main(STAGE, argv)


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
