"""The training stage: one task per (run, seed) of the grid, submitted as SLURM job arrays or local processes.

    python -m gcnn_spin.cluster.submit_train [submit] --data data [--config experiment] [--cluster a100]
        [--models gc_resnet18 g_resnet18] [--seeds 0 1] [--set train.epochs=60] [--cluster-set partition=h100]
        [--runs runs] [--logs logs/train] [--dry-run] [--wait]
    python -m gcnn_spin.cluster.submit_train status --data data     # per run: done / running / failed (with log)

A run is a model of ``grid.models``, or one of ``grid.no_rotation_models`` trained without rotation as the run
``{model}_nr`` (``train.epochs_no_rotation`` epochs); ``--models`` takes run names of either kind. Each task
trains one (run, seed) into ``RUNS/{run}/seed{k}/``. A run with its completion marker is skipped;
an unfinished one resumes from its checkpoint; on timeout or preemption SLURM requeues the task and it resumes.
This is what ``make submit-train`` runs on the login node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import cli
from .. import models as registry
from ..config import load_experiment
from ..errors import UserError
from ..io import config_hash
from ..layout import run_dir, store_path
from ..run import grid_run_names, run_name, run_setup
from ..train import TRAINING_SPLITS, RunSpec, check_run, training_stores
from . import arrays, make, stage
from .make import Flag
from .stage import Stage


def train_task(run: str, seed: int, data_dir: str, out_dir: str, config: str, overrides: tuple[str, ...]) -> str:
    """One array task: (re)load the config where the task runs, then train or resume run ``run``."""
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
    model, experiment = run_setup(run, load_experiment(config, list(overrides)), registry.names())
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
    """One resumable task per (run, seed) of the config's grid (:func:`gcnn_spin.run.grid_run_names`), or of the
    given run names and seeds.

    A task is done when its run's marker carries the run's identity: config and the content of the stores it
    trains on, so a label edited in a store makes every run trained on it stale.
    """
    experiment = load_experiment(config, overrides)
    names = list(dict.fromkeys(models or grid_run_names(experiment)))
    seeds = list(experiment.grid.seeds if seeds is None else seeds)
    setups = {}  # run name -> (model, experiment); a name given twice, or as model and as {model}_nr alike, once
    for name in names:
        model, cfg = run_setup(name, experiment, registry.names())
        setups.setdefault(run_name(model, cfg.train.rotate), (model, cfg))
    for model, cfg in setups.values():
        for seed in seeds:
            check_run(model, seed, cfg)
    stores = check_stores(data_dir)
    data_dir = str(Path(data_dir).resolve())
    tasks = []
    for model, cfg in setups.values():
        for seed in seeds:
            spec = RunSpec(model=model, seed=seed, data_dir=data_dir, experiment=cfg)
            out = run_dir(Path(runs_root).resolve(), spec.name, seed)
            tasks.append(arrays.ResumableTask(
                task_id=f"{spec.name}/seed{seed}", output=out, fn=train_task,
                identity=config_hash(spec.identity(stores)),
                kwargs={"run": spec.name, "seed": seed, "data_dir": data_dir, "out_dir": str(out),
                        "config": str(config), "overrides": tuple(overrides)}))
    return tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (holds stores/{train,val,test}.zarr)")
    parser.add_argument("--runs", default="runs", help="runs root (default: runs)")
    cli.add_config(parser)
    parser.add_argument("--models", nargs="*", default=None,
                        help="these runs instead of the grid's: model names, <model>_nr for one without rotation")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="subset of the grid's seeds")


STAGE = Stage(name="train", noun="training", description=__doc__, add_arguments=add_arguments,
              tasks=lambda args: grid_tasks(args.data, args.runs, args.config, args.overrides, args.models,
                                            args.seeds),
              default_action="submit",
              make=(Flag("--data", "{DATA}"), Flag("--runs", "{RUNS}"), make.LOGS, Flag("--config", "{CONFIG}"),
                    *make.SUBSET, make.SETTINGS),
              make_help="the training grid (models x seeds of CONFIG, or MODELS x SEEDS), one task per run")


def main(argv: list[str] | None = None) -> int:
    return stage.main(STAGE, argv, prog="python -m gcnn_spin.cluster.submit_train")


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
