"""The embedded default, end to end on a laptop: synthetic survey -> data pipeline -> Zarr stores -> training grid
(through the same submitit path as the cluster, local executor) -> survey inference (the code jobs/desi_infer.sh
runs) and the rotation study side by side -> ``analysis/collect.py`` -> ``DEMO/results/report.md``. At the end it
prints the wall and CPU seconds of every step (also in ``DEMO/timings.csv``).

    python -m gcnn_spin.demo [--out demo_out] [--n-gz1 3000] [--n-survey 2000] [--workers 2] [--set train.epochs=8]

The synthetic labels carry an injected S-wise (ACW) vote bias while the true sky is mirror-symmetric, so the
report can show which models inherit the bias (a survey CVS > 0) and which cannot (the chirality-equivariant
``_c`` and ``gc_`` models). Every step reuses finished work, so a rerun after an interruption continues.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import cli, layout
from .config import load_cluster, load_experiment

#: Centre (RA, Dec in deg) of the demo's sky patch.
DEMO_SKY = (84.0, 32.4)


def cpu_seconds(children: bool = True) -> float:
    """User + system CPU seconds of this process (and of its finished, reaped children)."""
    who = [resource.RUSAGE_SELF] + ([resource.RUSAGE_CHILDREN] if children else [])
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, who))


def _step(name: str, title: str) -> tuple[str, float, float]:
    print(f"\n=== {title}", flush=True)
    return name, time.perf_counter(), cpu_seconds()


def _done(t0: tuple[str, float, float]) -> dict:
    """The step's row of the timing table: wall and CPU seconds (CPU includes the step's child processes)."""
    name, wall0, cpu0 = t0
    row = {"step": name, "wall_s": time.perf_counter() - wall0, "cpu_s": cpu_seconds() - cpu0}
    print(f"    ({row['wall_s']:.0f} s wall, {row['cpu_s']:.0f} s CPU)", flush=True)
    return row


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _timed(fn, *args) -> tuple[int, float, float]:
    """``fn(*args)`` in a worker: (exit status, wall seconds, CPU seconds of the worker)."""
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    status = fn(*args)
    return status, time.perf_counter() - wall0, cpu_seconds() - cpu0


def side_by_side(jobs: dict[str, tuple]) -> list[dict]:
    """Run each ``name: (fn, *args)`` in its own one-thread process at the same time; one timing row each.

    Two one-thread processes keep two cores busy; one process with two torch threads left a third of them idle
    on these small models. Raises when a job exits non-zero.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process that has started OpenMP threads
    with ProcessPoolExecutor(len(jobs), mp_context=context, initializer=_one_thread) as pool:
        futures = {name: pool.submit(_timed, *job) for name, job in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    failed = {name: status for name, (status, _, _) in results.items() if status}
    if failed:
        raise RuntimeError(f"exit status {failed}; see the lines above")
    return [{"step": f"  {name} (one thread)", "wall_s": wall, "cpu_s": cpu}
            for name, (_, wall, cpu) in results.items()]


def timing_table(rows: list[dict]) -> str:
    """The per-step breakdown as Markdown, with the machine's load average."""
    lines = [f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)",
             "| step | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |" for r in rows]
    return "\n".join(lines)


def write_timings(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "wall_s", "cpu_s"])
        writer.writeheader()
        writer.writerows({**r, "step": r["step"].strip(), "wall_s": round(r["wall_s"], 1),
                          "cpu_s": round(r["cpu_s"], 1)} for r in rows)


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
    from .analysis.collect import Settings, collect, table_settings
    from .cluster import arrays, stages
    from .cluster.executor import make_executor
    from .cluster.submit_train import grid_tasks
    from .data.pipeline import Inputs, build_dataset
    from .data.synthetic import generate_survey

    out = out.resolve()
    cfg = load_experiment(config, overrides)
    started = _step("whole demo", f"gcnn_spin demo in {out}")
    timings = []

    t0 = _step("synthetic survey", f"1/5 synthetic survey: {n_gz1} GZ1 galaxies + {n_survey} survey-only, "
                                   f"S-wise vote bias {swise_bias}")
    # A ~9 x 9 deg patch where the galactic plane crosses Dec 32.375 deg, so the report's galactic north/south
    # split and the imaging regions (north = BASS/MzLS above that Dec north of the plane) all hold galaxies.
    raw = generate_survey(out / "raw", n_gz1=n_gz1, n_survey_only=n_survey, seed=0, swise_bias=swise_bias,
                          ra_center=DEMO_SKY[0], dec_center=DEMO_SKY[1], density_per_deg2=60.0, workers=workers)
    timings.append(_done(t0))

    t0 = _step("data pipeline", "2/5 data pipeline: GZ1 -> DESI match -> SDSS cuts -> splits -> Zarr stores")
    inputs = Inputs(gz1=raw["gz1"], desi_index=raw["desi_index"], images=raw["jpg_root"],
                    sdss_photometry=raw["sdss_photometry"])
    data = out / "data"
    build_dataset(data, inputs, cfg.data, workers=workers)
    print((data / "counts.md").read_text())
    timings.append(_done(t0))

    t0 = _step("training grid", f"3/5 training grid {list(cfg.grid.models)} x seeds {list(cfg.grid.seeds)} "
                                f"(submitit, local executor)")
    runs = out / "runs"
    tasks = grid_tasks(data, runs, config, overrides)
    profile = load_cluster("local", [f"array_parallelism={workers}"])
    executor = make_executor(profile, out / "logs" / "train", job_name="gcnn_spin-train")
    submission = arrays.submit(tasks, executor, profile)
    print(f"    {len(submission.jobs)} runs submitted, {len(submission.skipped)} already complete; logs in "
          f"{out / 'logs' / 'train'}")
    if submission.jobs:
        wait_with_progress(tasks, submission, timeout_s=6 * 3600)
    timings.append(_done(t0))

    predictions = out / "predictions"
    t0 = _step("survey inference + rotation study",
               f"4/5 side by side: survey inference (the code jobs/desi_infer.sh runs, one task per part) and the "
               f"rotation study (MC dropout, 9 angles x 10 passes, {rotation_images} test images per run)")
    steps = side_by_side({
        "survey inference": (stages.main, ["infer", "run", "--store", str(layout.store_path(data, "survey")),
                                           "--runs", str(runs), "--out", str(predictions), "--cluster", "local",
                                           "--quiet"]),
        "rotation study": (stages.main, ["studies", "run", "--study", "rotation", "--runs", str(runs), "--data",
                                         str(data), "--out", str(out / "results"), "--cluster", "local",
                                         "--n-images", str(rotation_images), "--config", config,
                                         "--quiet"]),
    })
    timings += [_done(t0), *steps]

    t0 = _step("collect", "5/5 analysis/collect.py")
    outcome = collect(Settings(runs=runs, out=out / "results", predictions=predictions, data=data,
                               truth=raw["truth"], logs=(out / "logs",), **table_settings(cfg)))
    print(f"    {outcome.report}: {len(outcome.tables)} tables, {len(outcome.figures)} figures")
    timings.append(_done(t0))
    if outcome.exit_code:
        raise SystemExit(f"collect exited with status {outcome.exit_code}; see {outcome.report}")
    report = out / "results" / "report.md"
    timings.append(_done(started))
    write_timings(timings, out / "timings.csv")
    print(f"\nTime per step (also in {out / 'timings.csv'}):\n{timing_table(timings)}")
    print(f"\nDemo finished in {timings[-1]['wall_s']:.0f} s. Report: {report}")
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
    parser.add_argument("--rotation-images", type=int, default=40,
                        help="test images per run in the rotation study (default: 40)")
    cli.add_debug(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_demo(Path(args.out), args.n_gz1, args.n_survey, args.workers, args.config, args.overrides,
             args.swise_bias, args.rotation_images)
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
