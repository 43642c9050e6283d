"""The embedded default, end to end on a laptop: synthetic survey -> data pipeline -> Zarr stores -> training grid
(through the same submitit path as the cluster, local executor) -> survey inference (the code jobs/desi_infer.sh
runs) -> rotation study -> ``analysis/collect.py`` -> ``DEMO/results/report.md``.

    python -m gcnn_spin.demo [--out demo_out] [--n-gz1 3000] [--n-survey 2000] [--workers 2] [--set train.epochs=8]

The synthetic labels carry an injected S-wise (ACW) vote bias while the true sky is mirror-symmetric, so the
report can show which models inherit the bias (a survey CVS > 0) and which cannot (the chirality-equivariant
``_c`` and ``gc_`` models). Every step reuses finished work, so a rerun after an interruption continues.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import cli, layout
from .config import load_cluster, load_experiment


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"    ({time.perf_counter() - t0:.0f} s)", flush=True)


def wait_with_progress(tasks, submission, timeout_s: float) -> None:
    """Poll the tasks' completion markers with a progress bar until every job has finished."""
    from tqdm.auto import tqdm

    jobs = submission.job_list
    deadline = time.monotonic() + timeout_s
    with tqdm(total=len(tasks), desc="training runs", unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            n_done = sum(t.done for t in tasks)
            bar.update(n_done - bar.n)
            if all(job.done() for job in jobs):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"training did not finish within {timeout_s:.0f} s")
            time.sleep(2.0)
        bar.update(sum(t.done for t in tasks) - bar.n)
    failed = [t.task_id for t in tasks if not t.done]
    if failed:
        logs = Path(submission.record).parent if submission.record else "?"
        raise RuntimeError(f"training failed for {failed}; logs: {logs} "
                           f"(python -m gcnn_spin.cluster.arrays status {logs})")


def run_demo(out: Path, n_gz1: int, n_survey: int, workers: int, config: str, overrides: list[str],
             swise_bias: float, rotation_images: int) -> Path:
    from .analysis.collect import Settings, collect
    from .cluster import arrays, infer
    from .cluster.executor import make_executor
    from .cluster.submit_train import grid_tasks
    from .data.pipeline import Inputs, build_dataset
    from .data.synthetic import generate_survey

    out = out.resolve()
    cfg = load_experiment(config, overrides)
    started = time.perf_counter()

    t0 = _step(f"1/6 synthetic survey: {n_gz1} GZ1 galaxies + {n_survey} survey-only, S-wise vote bias {swise_bias}")
    # A ~9 x 9 deg patch across the galactic plane, so the report's north/south split has galaxies on both sides.
    raw = generate_survey(out / "raw", n_gz1=n_gz1, n_survey_only=n_survey, seed=0, swise_bias=swise_bias,
                          ra_center=103.0, dec_center=0.0, density_per_deg2=60.0, workers=workers)
    _done(t0)

    t0 = _step("2/6 data pipeline: GZ1 -> DESI match -> SDSS cuts -> splits -> Zarr stores")
    inputs = Inputs(gz1=raw["gz1"], desi_index=raw["desi_index"], images=raw["jpg_root"],
                    sdss_photometry=raw["sdss_photometry"])
    data = out / "data"
    build_dataset(data, inputs, cfg.data, workers=workers)
    print((data / "counts.md").read_text())
    _done(t0)

    t0 = _step(f"3/6 training grid {list(cfg.grid.models)} x seeds {list(cfg.grid.seeds)} (submitit, local executor)")
    runs = out / "runs"
    tasks = grid_tasks(data, runs, config, overrides)
    profile = load_cluster("local", [f"array_parallelism={workers}"])
    executor = make_executor(profile, out / "logs" / "train", job_name="gcnn_spin-train")
    submission = arrays.submit(tasks, executor, profile)
    print(f"    {len(submission.jobs)} runs submitted, {len(submission.skipped)} already complete; logs in "
          f"{out / 'logs' / 'train'}")
    if submission.jobs:
        wait_with_progress(tasks, submission, timeout_s=6 * 3600)
    _done(t0)

    t0 = _step("4/6 survey inference (the code jobs/desi_infer.sh runs, one task per part)")
    predictions = out / "predictions"
    store = layout.store_path(data, "survey")
    infer.main(["run", "--store", str(store), "--runs", str(runs), "--out", str(predictions), "--cluster", "local",
                "--quiet"])
    _done(t0)

    t0 = _step(f"5/6 rotation study: MC dropout, 9 angles x 10 passes, {rotation_images} test images per run")
    from .analysis import studies

    studies.main(["run", "--runs", str(runs), "--data", str(data), "--out", str(out / "results"), "--cluster",
                  "local", "--n-images", str(rotation_images), "--quiet"], study="rotation")
    _done(t0)

    t0 = _step("6/6 analysis/collect.py")
    outcome = collect(Settings(runs=runs, out=out / "results", predictions=predictions, data=data,
                               truth=raw["truth"], logs=(out / "logs",)))
    print(f"    {outcome.report}: {len(outcome.tables)} tables, {len(outcome.figures)} figures")
    _done(t0)
    if outcome.exit_code:
        raise SystemExit(f"collect exited with status {outcome.exit_code}; see {outcome.report}")
    report = out / "results" / "report.md"
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Report: {report}")
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gcnn_spin.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="demo folder (default: demo_out)")
    parser.add_argument("--n-gz1", type=int, default=3000, help="labelled (GZ1) galaxies (default: 3000)")
    parser.add_argument("--n-survey", type=int, default=2000, help="survey-only galaxies (default: 2000)")
    parser.add_argument("--swise-bias", type=float, default=0.15,
                        help="fraction of Z-wise votes cast S-wise, as in GZ1 (default: 0.15)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    cli.add_config(parser, default="demo")
    parser.add_argument("--rotation-images", type=int, default=100, help="test images in the rotation study")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_demo(Path(args.out), args.n_gz1, args.n_survey, args.workers, args.config, args.overrides,
             args.swise_bias, args.rotation_images)
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
