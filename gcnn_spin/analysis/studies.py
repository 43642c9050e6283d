"""Per-(model, seed) study tasks with the shape of every array stage: plan, run task *i*, skip done, marker last.

Outputs: ``RESULTS/studies/{study}/{label}/seed{k}.parquet`` and its ``.done`` marker (``label``: the run's table
label, ``_nr`` included, so a model's rotated and ``_nr`` runs keep their outputs apart). A task is skipped when its marker was written for the same inputs and settings.

    python -m gcnn_spin.analysis.studies submit --runs runs --data data --out results --cluster a100   # both
    python analysis/rotation_study.py --runs runs --data data --out results --dry-run
    python analysis/rotation_study.py --runs runs --data data --out results --task-id 3   # or $SLURM_ARRAY_TASK_ID
    python analysis/recovery_study.py --runs runs --out results                           # every task in turn
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..run import Run, discover_runs
from .. import cli, layout
from ..cluster import arrays, make, stage
from ..cluster.make import Flag
from ..errors import InputError, UserError
from ..artifacts import Verdict, is_done, verdict
from ..io import config_hash, file_digest, read_marker, read_parquet, write_marker, write_parquet_atomic
from . import recovery, rotation
from .runs import Issue

log = logging.getLogger("gcnn_spin.analysis.studies")
STUDIES = ("rotation", "recovery")


def study_path(results: str | Path, study: str, model: str, seed: int) -> Path:
    """``RESULTS/studies/{study}/{label}/seed{k}.parquet`` (see :mod:`gcnn_spin.layout`)."""
    return layout.study_path(results, study, model, seed)


def plan_tasks(runs_root: str | Path, models: Sequence[str] | None = None,
               seeds: Sequence[int] | None = None) -> list[Run]:
    """The complete runs a study covers, in a fixed order."""
    return [r for r in discover_runs(runs_root) if r.complete and (not models or r.label in models or
                                                                   r.name in models)
            and (seeds is None or r.seed in seeds)]


def _write(table: pd.DataFrame, out: Path, identity: dict[str, Any], run: Run) -> Path:
    write_parquet_atomic(table, out)
    write_marker(out, identity, model=run.label, run=run.name, seed=run.seed, n_rows=len(table), run_identity=run.identity)
    return out


def recovery_identity(run: Run, levels=recovery.CVS_LEVELS, draws: int = recovery.N_DRAWS,
                      resample_seed: int = 0) -> dict[str, Any]:
    return {"study": "recovery", "test_predictions": file_digest(run.path / layout.RUN_TEST_PREDICTIONS)[:16],
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


def rotation_identity(run: Run, store, n_images: int = 1000, n_passes: int = rotation.N_PASSES,
                      angles_deg=rotation.ANGLES_DEG, select_seed: int = 0, kde: str = "reflected") -> dict[str, Any]:
    """The run's training (config hash + completion time), the test store's content and the study settings
    (head-only sampling is left out: it draws the same samples)."""
    identity = {"study": "rotation", "run": run.identity,
                "store": layout.store_identity(store), "n_images": n_images, "n_passes": n_passes,
                "angles_deg": [float(a) for a in angles_deg], "select_seed": select_seed}
    return identity if kde == "reflected" else {**identity, "kde": kde}  # older outputs stay valid


def run_rotation_task(run: Run, results: str | Path, test_store: str | Path, n_images: int = 1000,
                      n_passes: int = rotation.N_PASSES, angles_deg=rotation.ANGLES_DEG, select_seed: int = 0,
                      batch_images: int = 8, device: str | None = None, rotate=None, progress: bool = True,
                      kde: str = "reflected", head_only: bool = True) -> Path:
    """The MC-dropout rotation study of one run on ``n_images`` images of the test store."""
    import torch

    from ..data.store import open_store
    from ..predict import load_exported

    out = study_path(results, "rotation", run.label, run.seed)
    store = open_store(test_store)
    identity = rotation_identity(run, store, n_images, n_passes, angles_deg, select_seed, kde)
    if is_done(out, identity):
        return out
    rows = rotation.select_images(store.rows, n_images, select_seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    module = load_exported(run.path, dev)
    table = rotation.rotation_table(module, store, rows, tuple(angles_deg), n_passes, batch_images, dev, rotate,
                                    seed=1000 * select_seed + run.seed, progress=progress, kde=kde,
                                    head_only=head_only)
    return _write(table, out, identity, run)


def load_study(results: str | Path, study: str, runs: Sequence[Run]) -> tuple[dict[tuple[str, int], pd.DataFrame],
                                                                           list[Issue]]:
    """Finished outputs of ``study`` for ``runs``; an output without its marker, changed since written
    (:func:`gcnn_spin.artifacts.verdict`) or made from an earlier training of its run is reported, never read."""
    tables, issues = {}, []
    for run in runs:
        out = study_path(results, study, run.label, run.seed)
        found = verdict(out)
        made_from = (read_marker(out) or {}).get("run_identity") if found.done else None
        if found.done and made_from not in (None, run.identity):
            found = Verdict("stale", "made from an earlier training of this run (retrained since)")
        if found.done:
            try:
                tables[(run.label, run.seed)] = read_parquet(out, what=f"{study} study output",
                                                             fix="delete it; the next studies submit redoes it")
                continue
            except InputError as err:  # e.g. a page checksum that does not match: reported, never read
                found = Verdict("damaged", str(err))
        if found.state != "missing":
            issues.append(Issue("study", run.label, run.seed, f"{study} study output {out.name}: {found}"))
        elif out.exists():
            issues.append(Issue("study", run.label, run.seed, f"{study} study output {out.name} has no marker"))
    return tables, issues


# ----------------------------------------------------------------------------- the stage


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", nargs="+", choices=STUDIES, default=list(STUDIES),
                        help="which studies (default: both)")
    parser.add_argument("--runs", default="runs", help="runs root holding {run}/seed{k} (default: runs)")
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--models", nargs="*", default=None, help="only these runs, by name or table label (default: every finished run)")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="only these seeds")
    rot = parser.add_argument_group("rotation study (settings: the config's [rotation_study])")
    cli.add_config(rot)
    rot.add_argument("--data", default=None, help="dataset folder holding stores/test.zarr")
    rot.add_argument("--store", default=None, help="test store (default: DATA/stores/test.zarr)")
    rot.add_argument("--n-images", type=cli.at_least(1, "--n-images"), default=None,
                     help="test images to study (default: rotation_study.n_images, 1000)")
    rot.add_argument("--passes", type=cli.at_least(1, "--passes"), default=None,
                     help=f"MC-dropout passes per angle (default: rotation_study.n_passes, {rotation.N_PASSES})")
    rot.add_argument("--select-seed", type=int, default=0, help="seed of the image selection (default: 0)")
    cli.add_batch_size(rot, 8, "test images per forward batch (x 9 angles x passes)")
    cli.add_device(rot)
    rec = parser.add_argument_group("recovery study")
    rec.add_argument("--draws", type=cli.at_least(1, "--draws"), default=recovery.N_DRAWS,
                     help=f"resampled sets per CVS level (default: {recovery.N_DRAWS})")
    rec.add_argument("--resample-seed", type=int, default=0, help="seed of the resampling (default: 0)")


def _test_store(args: argparse.Namespace) -> Path:
    if args.store:
        return Path(args.store)
    if args.data:
        return layout.store_path(args.data, "test")
    raise UserError("the rotation study needs the test store: pass --data DATA or --store DATA/stores/test.zarr")


def rotation_settings(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The rotation study's identity settings and whether to sample head-only: the config's ``[rotation_study]``,
    ``--n-images``/``--passes`` on top."""
    from ..config import load_experiment

    cfg = load_experiment(args.config, args.overrides).rotation_study
    return {"n_images": cfg.n_images if args.n_images is None else args.n_images,
            "n_passes": cfg.n_passes if args.passes is None else args.passes, "select_seed": args.select_seed,
            "angles_deg": tuple(cfg.angles_deg), "kde": cfg.kde}, cfg.head_only


def study_tasks(args: argparse.Namespace) -> list[arrays.Task]:
    """One task per (study, complete run): ``RESULTS/studies/{study}/{label}/seed{k}.parquet``."""
    runs = plan_tasks(args.runs, args.models, args.seeds)
    if not runs:
        raise FileNotFoundError(f"no finished runs under {args.runs} (looked for {args.runs}/<run>/seed<k>.done)")
    results = Path(args.out).resolve()
    tasks = []
    if "rotation" in args.study:
        from ..data.store import open_store

        store_path = _test_store(args).resolve()
        store = open_store(store_path)
        settings, head_only = rotation_settings(args)
        for run in runs:
            tasks.append(arrays.Task(
                task_id=f"rotation/{run.label}/seed{run.seed}", output=study_path(results, "rotation", run.label,
                                                                                  run.seed),
                fn=run_rotation_task, identity=config_hash(rotation_identity(run, store, **settings)),
                kwargs={"run": run, "results": results, "test_store": store_path, **settings,
                        "batch_images": args.batch_size, "device": args.device, "progress": not args.quiet,
                        "head_only": head_only}))
    if "recovery" in args.study:
        for run in runs:
            identity = recovery_identity(run, draws=args.draws, resample_seed=args.resample_seed)
            tasks.append(arrays.Task(
                task_id=f"recovery/{run.label}/seed{run.seed}", output=study_path(results, "recovery", run.label,
                                                                                  run.seed),
                fn=run_recovery_task, identity=config_hash(identity),
                kwargs={"run": run, "results": results, "draws": args.draws, "resample_seed": args.resample_seed}))
    return tasks


STAGE = stage.Stage(name="studies", noun="study", description=f"{rotation.__doc__}\n{recovery.__doc__}\n{__doc__}",
                    add_arguments=_add_arguments, tasks=study_tasks,
                    make=(Flag("--study", "{STUDIES}", words=True), Flag("--runs", "{RUNS}"), Flag("--data", "{DATA}"),
                          Flag("--out", "{RESULTS}"), make.LOGS, *make.SUBSET),
                    make_help="rotation and recovery studies (STUDIES=...) of every finished run, one task per "
                              "(study, run)")


def main(argv: Sequence[str] | None = None, study: str | None = None) -> int:
    """The studies stage; ``study`` fixes ``--study`` (the ``analysis/{study}_study.py`` entry points)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m gcnn_spin.analysis.studies"
    if study is not None:
        argv, prog = [*argv, "--study", study], f"python analysis/{study}_study.py"
    return stage.main(STAGE, argv, prog=prog)


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
