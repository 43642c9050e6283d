"""The training stage: one task per (model, seed) of the grid, submitted as SLURM job arrays or local processes.

    python -m gcnn_spin.cluster.submit_train [submit] --data data [--config experiment] [--cluster a100]
        [--models gc_resnet18 g_resnet18] [--seeds 0 1] [--set train.epochs=60] [--cluster-set partition=h100]
        [--runs runs] [--logs logs/train] [--dry-run] [--wait]
    python -m gcnn_spin.cluster.submit_train status --data data     # per run: done / running / failed (with log)

Each task trains one (model, seed) into ``RUNS/{model}/seed{k}/``. A run with its completion marker is skipped;
an unfinished one resumes from its checkpoint; on timeout or preemption SLURM requeues the task and it resumes.
This is what ``make submit-train`` runs on the login node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import cli
from ..config import load_experiment
from ..errors import UserError
from ..io import config_hash
from ..layout import run_dir, store_path
from ..train import TRAINING_SPLITS, RunSpec, check_run, training_stores
from . import arrays, stage
from .stage import Stage


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


def check_stores(data_dir: str | Path) -> dict:
    """The opened training stores of ``--data``; refuses a missing, unfinished or damaged one (before any task is
    queued) and says how to build it."""
    for split in TRAINING_SPLITS:
        path = store_path(data_dir, split)
        if not path.exists():
            raise UserError(f"--data {data_dir}: no {split} store at {path}; build the stores first "
                            "(python data_prep/build_dataset.py ... --out DATA)")
    return training_stores(data_dir)  # raises naming an unfinished store or a lost or damaged shard


def grid_tasks(data_dir: str | Path, runs_root: str | Path, config: str, overrides: list[str],
               models: list[str] | None = None, seeds: list[int] | None = None) -> list[arrays.Task]:
    """One resumable task per (model, seed) of the config's grid (or the given subsets).

    A task is done when its run's marker carries the run's identity: config and the content of the stores it
    trains on, so a label edited in a store makes every run trained on it stale.
    """
    experiment = load_experiment(config, overrides)
    models = list(models or experiment.grid.models)
    seeds = list(experiment.grid.seeds if seeds is None else seeds)
    for model in models:
        for seed in seeds:
            check_run(model, seed, experiment)
    stores = check_stores(data_dir)
    data_dir = str(Path(data_dir).resolve())
    tasks = []
    for model in models:
        for seed in seeds:
            out = run_dir(Path(runs_root).resolve(), model, seed)
            spec = RunSpec(model=model, seed=seed, data_dir=data_dir, experiment=experiment)
            tasks.append(arrays.ResumableTask(
                task_id=f"{model}/seed{seed}", output=out, fn=train_task, identity=config_hash(spec.identity(stores)),
                kwargs={"model": model, "seed": seed, "data_dir": data_dir, "out_dir": str(out),
                        "config": str(config), "overrides": tuple(overrides)}))
    return tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (holds stores/{train,val,test}.zarr)")
    parser.add_argument("--runs", default="runs", help="runs root (default: runs)")
    cli.add_config(parser)
    parser.add_argument("--models", nargs="*", default=None, help="subset of the grid's models")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="subset of the grid's seeds")


STAGE = Stage(name="train", noun="training", description=__doc__, add_arguments=add_arguments,
              tasks=lambda args: grid_tasks(args.data, args.runs, args.config, args.overrides, args.models,
                                            args.seeds),
              default_action="submit")


def main(argv: list[str] | None = None) -> int:
    return stage.main(STAGE, argv, prog="python -m gcnn_spin.cluster.submit_train")


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
