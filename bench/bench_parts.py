"""The cost of page checksums in prediction parts: writing and merging parts with page CRCs vs without, side by side.

    python bench/bench_parts.py [--parts 40] [--rows-per-part 8700] [--repeats 5]

Writes ``--parts`` prediction parts of the survey's shape (8.7 M galaxies in 1,000 parts is 8,700 a part:
``dr8_id, ra, dec, p_cw, p_acw, p_other``) twice into a temporary folder, once as inference writes them
(:func:`gcnn_spin.io.write_parquet`, a CRC on every page) and once without CRCs, then merges each set as ``collect``
does (:func:`gcnn_spin.analysis.survey.merge_parts`, which verifies the CRCs where a file has them). Prints the
best of ``--repeats`` for each and the ratios checked / unchecked.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gcnn_spin.analysis.survey import merge_parts
from gcnn_spin.io import write_parquet


def survey_part(rng: np.random.Generator, rows: int, first: int) -> pd.DataFrame:
    probs = rng.dirichlet([0.4, 0.5, 1.5], size=rows).astype(np.float32)
    return pd.DataFrame({"dr8_id": [f"{300000 + i // 4000}_{i % 4000}" for i in range(first, first + rows)],
                         "ra": rng.uniform(0, 360, rows), "dec": rng.uniform(-20, 80, rows),
                         "p_cw": probs[:, 0], "p_acw": probs[:, 1], "p_other": probs[:, 2]})


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=40)
    parser.add_argument("--rows-per-part", type=int, default=8700)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    tables = [survey_part(rng, args.rows_per_part, k * args.rows_per_part) for k in range(args.parts)]
    writers = {"checked": write_parquet, "unchecked": lambda table, path: table.to_parquet(path, index=False)}
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, write in writers.items():
            folder = Path(tmp) / name
            folder.mkdir()
            paths = [folder / f"part-{k:05d}.parquet" for k in range(args.parts)]
            write_s = best_of(args.repeats, lambda: [write(t, p) for t, p in zip(tables, paths)])
            merge_s = best_of(args.repeats, lambda: merge_parts(paths, progress=False))
            results[name] = (write_s, merge_s, sum(p.stat().st_size for p in paths))
    print(f"{args.parts} parts x {args.rows_per_part:,} rows, best of {args.repeats}; {platform.processor() or '?'}, "
          f"{platform.python_version()}")
    print(f"{'parts':<10} {'write s':>8} {'merge s':>8} {'MB':>7}")
    for name, (write_s, merge_s, size) in results.items():
        print(f"{name:<10} {write_s:8.3f} {merge_s:8.3f} {size / 1e6:7.2f}")
    (cw, cm, cs), (uw, um, us) = results["checked"], results["unchecked"]
    print(f"checked / unchecked: write {cw / uw:.2f}, merge {cm / um:.2f}, size {cs / us:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
