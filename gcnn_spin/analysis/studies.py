"""Per-(model, seed) study tasks with the shape of every array stage: plan, run task *i*, skip done, marker last.

Outputs: ``RESULTS/studies/{study}/{model}/seed{k}.parquet`` and its ``.done`` marker (``model`` is the table
label, ``_nr`` included). A task is skipped when its marker was written for the same inputs and settings.

    python analysis/rotation_study.py --runs runs --data data --out results --plan
    python analysis/rotation_study.py --runs runs --data data --out results --task-id 3   # or $SLURM_ARRAY_TASK_ID
    python analysis/recovery_study.py --runs runs --out results                           # every task in turn
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..io import config_hash, is_done, read_marker, write_marker, write_parquet_atomic
from . import recovery, rotation
from .runs import Issue, Run, discover_runs

log = logging.getLogger("gcnn_spin.analysis.studies")
STUDIES = ("rotation", "recovery")


def study_path(results: str | Path, study: str, model: str, seed: int) -> Path:
    """``RESULTS/studies/{study}/{model}/seed{k}.parquet`` — the one place that spells the layout."""
    return Path(results) / "studies" / study / model / f"seed{seed}.parquet"


def plan_tasks(runs_root: str | Path, models: Sequence[str] | None = None,
               seeds: Sequence[int] | None = None) -> list[Run]:
    """The complete runs a study covers, in a fixed order: array task *i* is run *i*."""
    return [r for r in discover_runs(runs_root) if r.complete and (not models or r.label in models or
                                                                   r.dir_name in models)
            and (seeds is None or r.seed in seeds)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _write(table: pd.DataFrame, out: Path, identity: dict[str, Any], run: Run) -> Path:
    write_parquet_atomic(table, out)
    write_marker(out, identity, model=run.label, seed=run.seed, n_rows=len(table))
    return out


def recovery_identity(run: Run, levels=recovery.CVS_LEVELS, draws: int = recovery.N_DRAWS,
                      resample_seed: int = 0) -> dict[str, Any]:
    return {"study": "recovery", "test_predictions": _sha256(run.path / "test_predictions.parquet"),
            "levels": list(levels), "draws": draws, "resample_seed": resample_seed, "n_set": recovery.N_SET}


def run_recovery_task(run: Run, results: str | Path, levels=recovery.CVS_LEVELS, draws: int = recovery.N_DRAWS,
                      resample_seed: int = 0) -> Path:
    """CVS recovery of one run from its test predictions (cheap: no model is run)."""
    out = study_path(results, "recovery", run.label, run.seed)
    identity = recovery_identity(run, levels, draws, resample_seed)
    if is_done(out, identity):
        return out
    table = recovery.run_recovery(run.test_predictions(), levels, draws, resample_seed)
    return _write(table, out, identity, run)


def run_rotation_task(run: Run, results: str | Path, test_store: str | Path, n_images: int = 1000,
                      n_passes: int = rotation.N_PASSES, angles_deg=rotation.ANGLES_DEG, select_seed: int = 0,
                      batch_images: int = 8, device: str | None = None, rotate=None, progress: bool = True) -> Path:
    """The MC-dropout rotation study of one run on ``n_images`` images of the test store."""
    import torch

    from ..predict import load_exported

    out = study_path(results, "rotation", run.label, run.seed)
    run_marker = read_marker(run.path) or {}
    identity = {"study": "rotation", "run": config_hash(run_marker), "store": str(Path(test_store).resolve()),
                "n_images": n_images, "n_passes": n_passes, "angles_deg": [float(a) for a in angles_deg],
                "select_seed": select_seed}
    if is_done(out, identity):
        return out
    from ..data.store import open_store

    store = open_store(test_store)
    rows = rotation.select_images(store.rows, n_images, select_seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    module = load_exported(run.path, dev)
    table = rotation.rotation_table(module, store, rows, tuple(angles_deg), n_passes, batch_images, dev, rotate,
                                    seed=1000 * select_seed + run.seed, progress=progress)
    return _write(table, out, identity, run)


def load_study(results: str | Path, study: str, runs: Sequence[Run]) -> tuple[dict[tuple[str, int], pd.DataFrame],
                                                                           list[Issue]]:
    """Finished outputs of ``study`` for ``runs``; an output without its marker is reported, never read."""
    tables, issues = {}, []
    for run in runs:
        out = study_path(results, study, run.label, run.seed)
        if read_marker(out) is not None and out.exists():
            tables[(run.label, run.seed)] = pd.read_parquet(out)
        elif out.exists():
            issues.append(Issue("study", run.label, run.seed, f"{study} study output {out.name} has no marker"))
    return tables, issues


# ----------------------------------------------------------------------------- CLI


def build_parser(study: str) -> argparse.ArgumentParser:
    doc = {"rotation": rotation.__doc__, "recovery": recovery.__doc__}[study]
    parser = argparse.ArgumentParser(prog=f"python analysis/{study}_study.py",
                                     description=f"{doc}\n{__doc__}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="runs root holding {model}/seed{k} (default: runs)")
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--models", nargs="*", default=None, help="only these models (default: every finished run)")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="only these seeds")
    parser.add_argument("--task-id", type=int, default=None,
                        help="task to run (default: $SLURM_ARRAY_TASK_ID; with neither, every task in turn)")
    parser.add_argument("--plan", action="store_true", help="dry run: list the tasks and which are done, then exit")
    parser.add_argument("--print-array", action="store_true", help="print the sbatch --array range and exit")
    if study == "rotation":
        parser.add_argument("--data", default=None, help="dataset folder holding stores/test.zarr")
        parser.add_argument("--store", default=None, help="test store (default: DATA/stores/test.zarr)")
        parser.add_argument("--images", type=int, default=1000, help="test images to study (default: 1000)")
        parser.add_argument("--passes", type=int, default=rotation.N_PASSES, help="MC-dropout passes per angle")
        parser.add_argument("--select-seed", type=int, default=0, help="seed of the image selection (default: 0)")
        parser.add_argument("--batch-images", type=int, default=8,
                            help="images per forward batch (x 9 angles x passes; default: 8)")
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
        parser.add_argument("--no-progress", dest="progress", action="store_false")
    else:
        parser.add_argument("--draws", type=int, default=recovery.N_DRAWS, help="resampled sets per CVS level")
        parser.add_argument("--resample-seed", type=int, default=0, help="seed of the resampling (default: 0)")
    return parser


def _test_store(args) -> Path:
    if args.store:
        return Path(args.store)
    if args.data:
        return Path(args.data) / "stores" / "test.zarr"
    raise UserError("the rotation study needs the test store: pass --data DATA or --store DATA/stores/test.zarr")


def main(study: str, argv: Sequence[str] | None = None) -> int:
    args = build_parser(study).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tasks = plan_tasks(args.runs, args.models, args.seeds)
    if args.print_array:
        print(f"0-{len(tasks) - 1}" if tasks else "")
        return 0
    if not tasks:
        print(f"no finished runs under {args.runs} (looked for {args.runs}/<model>/seed<k>.done)", file=sys.stderr)
        return 2
    if args.plan:
        for i, run in enumerate(tasks):
            out = study_path(args.out, study, run.label, run.seed)
            print(f"task {i:4d}: {run.label} seed{run.seed} -> {out} ({'done' if read_marker(out) else 'to do'})")
        return 0
    task_id = args.task_id if args.task_id is not None else os.environ.get("SLURM_ARRAY_TASK_ID")
    chosen = range(len(tasks)) if task_id is None else [int(task_id)]
    for i in chosen:
        if not 0 <= i < len(tasks):
            print(f"task {i}: only {len(tasks)} tasks, nothing to do")
            continue
        run = tasks[i]
        if study == "rotation":
            out = run_rotation_task(run, args.out, _test_store(args), args.images, args.passes,
                                    select_seed=args.select_seed, batch_images=args.batch_images, device=args.device,
                                    progress=args.progress)
        else:
            out = run_recovery_task(run, args.out, draws=args.draws, resample_seed=args.resample_seed)
        print(f"task {i}: {run.label} seed{run.seed} -> {out}")
    return 0
