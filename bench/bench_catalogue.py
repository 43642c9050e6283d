"""The spin catalogue at survey scale: time and peak memory of the streaming writer, extrapolated to 8.7 M galaxies.

    python bench/bench_catalogue.py [--parts 4 8 16] [--rows-per-part 8700] [--models 11] [--seeds 5]

Writes a synthetic prediction set of the real survey's shape — ``--models`` x ``--seeds`` members, parts of
``--rows-per-part`` galaxies (8.7 M galaxies in 1,000 parts is 8,700 a part) with ``dr8_id, ra, dec, p_cw, p_acw,
p_other`` — in a temporary folder, then runs :func:`gcnn_spin.analysis.catalogue.write_catalogue` over the first
*k* parts for each *k* of ``--parts``, each in a fresh process, and prints its wall time and peak RSS (the process's
``ru_maxrss``, the Python interpreter and its imports included). A straight line through the sizes gives the
time and memory per galaxy; its extrapolation to 8.7 M galaxies is the figure to check against the target
(peak RSS <= 8 GB, time linear in the number of galaxies). Generating the parts is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SURVEY_SIZE = 8_700_000
GRID = ["lenet", "g_lenet", "resnet18", "resnet50", "ce_resnet50", "g_resnet18", "g_resnet50", "g_resnet18_c",
        "g_resnet50_c", "gc_resnet18", "gc_resnet50", "g_resnet18_flips"]


def write_parts(root: Path, n_parts: int, rows: int, models: list[str], seeds: int) -> None:
    """Survey rows (dr8_id, ra, dec, ok) and every member's parts, as inference writes them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = n_parts * rows
    ids = np.array([f"{300000 + i // 4000}_{i % 4000}" for i in range(n)])
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-0.3, 1, n)))
    pd.DataFrame({"dr8_id": ids, "ra": ra, "dec": dec, "ok": True}).to_parquet(root / "survey.parquet", index=False)
    for model in models:
        for seed in range(seeds):
            folder = root / "predictions" / model / f"seed{seed}"
            folder.mkdir(parents=True)
            probs = rng.dirichlet([0.05, 0.05, 1.0], size=n).astype(np.float32)
            for i in range(n_parts):
                block = slice(i * rows, (i + 1) * rows)
                pd.DataFrame({"dr8_id": ids[block], "ra": ra[block], "dec": dec[block], "p_cw": probs[block, 0],
                              "p_acw": probs[block, 1], "p_other": probs[block, 2]}).to_parquet(
                    folder / f"part-{i:05d}.parquet", index=False)


def measure(root: Path, n_parts: int, rows: int) -> dict:
    """One size, in this process: write the catalogue of the first ``n_parts`` parts; wall seconds and peak RSS."""
    import pyarrow.parquet as pq

    from gcnn_spin.analysis import catalogue

    t0 = time.perf_counter()
    table = pq.read_table(root / "survey.parquet").slice(0, n_parts * rows)
    members = {}
    for folder in sorted((root / "predictions").glob("*/seed*")):
        parts = {i: folder / f"part-{i:05d}.parquet" for i in range(n_parts)}
        members.setdefault(folder.parent.name, []).append(
            catalogue.Member(folder.parent.name, int(folder.name[4:]), parts))
    out = root / f"out{n_parts}"
    result = catalogue.write_catalogue(out, table, [(i * rows, (i + 1) * rows) for i in range(n_parts)], members,
                                       {"PACKAGE": "bench"})
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in result.paths)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    return {"n_galaxies": n_parts * rows, "seconds": seconds, "peak_rss_bytes": peak, "output_bytes": size}


def fit(xs, ys) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of ``ys`` against ``xs``."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(intercept), float(slope)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_catalogue.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, nargs="+", default=[4, 8, 16], help="sizes, in parts (default: 4 8 16)")
    parser.add_argument("--rows-per-part", type=int, default=8700, help="galaxies per part (default: 8700)")
    parser.add_argument("--models", type=int, default=11, help="models (default: 11, the study's grid + ours)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per model (default: 5)")
    parser.add_argument("--measure", nargs=2, metavar=("ROOT", "PARTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # the child process: one size
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]), args.rows_per_part)))
        return 0
    models = GRID[:args.models]
    with tempfile.TemporaryDirectory(prefix="bench_catalogue_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_parts(root, max(args.parts), args.rows_per_part, models, args.seeds)
        print(f"synthetic prediction set: {len(models)} models x {args.seeds} seeds, {max(args.parts)} parts of "
              f"{args.rows_per_part:,} galaxies ({time.perf_counter() - t0:.0f} s to write; not timed below)")
        rows = []
        for n_parts in args.parts:
            cmd = [sys.executable, __file__, "--rows-per-part", str(args.rows_per_part), "--measure", str(root),
                   str(n_parts)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    n = [r["n_galaxies"] for r in rows]
    t_fit, m_fit = fit(n, [r["seconds"] for r in rows]), fit(n, [r["peak_rss_bytes"] for r in rows])
    print(f"\n{platform.node()} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}); timings on a shared machine "
          f"are noisy\n")
    print("| galaxies | fraction of 8.7 M | seconds | µs / galaxy | peak RSS MB | output MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n_galaxies']:,} | {r['n_galaxies'] / SURVEY_SIZE:.2%} | {r['seconds']:.1f} | "
              f"{1e6 * r['seconds'] / r['n_galaxies']:.0f} | {r['peak_rss_bytes'] / 1e6:.0f} | "
              f"{r['output_bytes'] / 1e6:.0f} |")
    marginal = [1e6 * (b["seconds"] - a["seconds"]) / (b["n_galaxies"] - a["n_galaxies"])
                for a, b in zip(rows, rows[1:])]
    print(f"\nmarginal time per galaxy between consecutive sizes (equal when linear): "
          f"{', '.join(f'{m:.0f}' for m in marginal)} µs")
    print(f"fit: time = {t_fit[0]:.1f} s + {1e6 * t_fit[1]:.1f} µs x galaxies; peak RSS = {m_fit[0] / 1e6:.0f} MB + "
          f"{m_fit[1]:.0f} B x galaxies")
    hours = (t_fit[0] + t_fit[1] * SURVEY_SIZE) / 3600
    peak_gb = (m_fit[0] + m_fit[1] * SURVEY_SIZE) / 1e9
    print(f"extrapolated to {SURVEY_SIZE / 1e6:.1f} M galaxies x {len(models)} models x {args.seeds} seeds: "
          f"{hours:.1f} h, peak RSS {peak_gb:.2f} GB (target <= 8 GB), FITS + parquet "
          f"{rows[-1]['output_bytes'] / n[-1] * SURVEY_SIZE / 1e9:.0f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
