"""Submit the training grid (models × seeds) as one SLURM job array — or local processes on a laptop.

    python -m gcnn_spin.cluster.submit_train --data data [--config experiment] [--cluster a100]
        [--models gc_resnet18 g_resnet18] [--seeds 0 1] [--set train.epochs=60] [--cluster-set partition=h100]
        [--runs runs] [--logs logs/train] [--dry-run] [--wait]

Each task trains one (model, seed) into ``RUNS/{model}/seed{k}/``. A run with its completion marker is skipped;
an unfinished one resumes from its checkpoint; on timeout or preemption SLURM requeues the task and it resumes.
This is what ``make submit-train`` runs on the login node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import load_cluster, load_experiment
from ..errors import UserError
from ..train import RunSpec, run_dir_for
from . import arrays
from .executor import make_executor


def train_task(model: str, seed: int, data_dir: str, out_dir: str, config: str, overrides: tuple[str, ...]) -> str:
    """One array task: (re)load the config where the task runs, then train or resume the run."""
    import logging

    from ..train import train

    # A task starts with logging unconfigured: without a handler, train's INFO lines ("resuming after epoch k")
    # never reach the task's log. Only the package's logger, so submitit's own lines are not doubled.
    package_log = logging.getLogger("gcnn_spin")
    if not package_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        package_log.addHandler(handler)
        package_log.setLevel(logging.INFO)
    experiment = load_experiment(config, list(overrides))
    spec = RunSpec(model=model, seed=seed, data_dir=data_dir, experiment=experiment)
    return str(train(spec, out_dir, resume=True, progress=False))


#: The stores every training task reads (``DATA/stores/{split}.zarr``).
TRAINING_STORES = ("train", "val", "test")


def check_stores(data_dir: str | Path) -> None:
    """Refuse to submit when ``--data`` lacks a finished, intact training store (before any task is queued)."""
    from ..data.store import open_store

    for split in TRAINING_STORES:
        path = Path(data_dir) / "stores" / f"{split}.zarr"
        if not path.exists():
            raise UserError(f"--data {data_dir}: no {split} store at {path}; build the stores first "
                            "(python data_prep/build_dataset.py ... --out DATA)")
        open_store(path)  # raises naming an unfinished store or a lost or damaged shard


def grid_tasks(data_dir: str | Path, runs_root: str | Path, config: str, overrides: list[str],
               models: list[str] | None = None, seeds: list[int] | None = None) -> list[arrays.Task]:
    """One resumable task per (model, seed) of the config's grid (or the given subsets)."""
    from .. import models as registry

    experiment = load_experiment(config, overrides)
    models = list(models or experiment.grid.models)
    seeds = list(experiment.grid.seeds if seeds is None else seeds)
    unknown = sorted(set(models) - set(registry.names()))
    if unknown:
        raise UserError(f"unknown model(s) {unknown}; valid: {', '.join(registry.names())}")
    data_dir = str(Path(data_dir).resolve())
    tasks = []
    for model in models:
        for seed in seeds:
            out = run_dir_for(Path(runs_root).resolve(), model, seed)
            tasks.append(arrays.ResumableTask(
                task_id=f"{model}/seed{seed}", output=out, fn=train_task,
                kwargs={"model": model, "seed": seed, "data_dir": data_dir, "out_dir": str(out),
                        "config": str(config), "overrides": tuple(overrides)}))
    return tasks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gcnn_spin.cluster.submit_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder (holds stores/{train,val,test}.zarr)")
    parser.add_argument("--runs", default="runs", help="runs root (default: runs)")
    parser.add_argument("--logs", default="logs/train", help="submitit log folder (default: logs/train)")
    parser.add_argument("--config", default="experiment", help="science config: shipped name or TOML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--cluster", default="a100", help="cluster profile: shipped name or TOML path (default: a100)")
    parser.add_argument("--cluster-set", dest="cluster_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a cluster profile value, e.g. --cluster-set partition=h100")
    parser.add_argument("--models", nargs="*", default=None, help="subset of the grid's models")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="subset of the grid's seeds")
    parser.add_argument("--dry-run", action="store_true", help="list the tasks and which are done; submit nothing")
    parser.add_argument("--wait", action="store_true", help="block until every task has finished")
    parser.add_argument("--timeout-min", type=float, default=24 * 60, help="with --wait: give up after this long")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tasks = grid_tasks(args.data, args.runs, args.config, args.overrides, args.models, args.seeds)
    profile = load_cluster(args.cluster, args.cluster_overrides)  # a dry run checks the profile like a real run
    check_stores(args.data)
    if args.dry_run:
        make_executor(profile, args.logs, job_name="gcnn_spin-train", create=False)
        print(arrays.format_plan(arrays.plan(tasks)))
        return 0
    executor = make_executor(profile, args.logs, job_name="gcnn_spin-train")
    submission = arrays.submit(tasks, executor, profile)
    jobs = submission.job_list
    print(f"{len(submission.jobs)} training tasks submitted ({executor.cluster}), {len(submission.skipped)} already "
          f"complete")
    array_ids = sorted({job.job_id.split("_")[0] for job in jobs})
    if array_ids:
        print(f"job id(s): {', '.join(array_ids)}; logs: {Path(args.logs).resolve()}")
        watch = "squeue --me" if executor.cluster == "slurm" else "make status"
        print(f"watch: {watch}  |  per run: python -m gcnn_spin.cluster.arrays status {args.logs}")
    if args.wait and jobs:
        arrays.wait(submission, timeout_s=args.timeout_min * 60)
        report = arrays.status(args.logs, tasks)
        print(arrays.format_status(report))
        if any(entry.state != "done" for entry in report):
            return 1
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
