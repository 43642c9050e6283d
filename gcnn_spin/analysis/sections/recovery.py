"""Table 8 (spirals found on the S/Z test set) and the CVS-recovery fits, from each run's test predictions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from ...errors import InputError
from ...io import read_parquet
from .. import figures, recovery
from ..report import Section
from ...run import Run, model_order
from ..studies import run_recovery_task
from ..tables import Column, mean_std_cell, summary_table
from .common import Output, Written, doc_body

FOUND_COLUMNS = ["model", "seed", "n_sz", "n_found", "found_fraction", "right_spin_fraction", "n_acw_pred",
                 "n_cw_pred"]
FIT_COLUMNS = ["model", "seed", "slope", "slope_err", "intercept", "intercept_err", "n_points"]


def recovery_section(out: Output, runs: Sequence[Run], incomplete: Mapping[str, list[str]],
                     draws: int = recovery.N_DRAWS, resample_seed: int = 0) -> Written:
    """Resample each complete run's S/Z test set to set CVS levels (``RESULTS/studies/recovery``, computed when
    missing), fit predicted vs set CVS, and tabulate spirals found and the fits per model."""
    written = Written(Section("CVS recovery", doc_body(recovery)))
    section = written.section
    found_rows, fit_rows, points = [], [], {}
    for run in runs:
        try:
            path = run_recovery_task(run, out.root, draws=draws, resample_seed=resample_seed)
            table = read_parquet(path, what="CVS recovery output", fix="delete it; collect computes it again")
            found = recovery.spirals_found(run.test_predictions())
            dropped = sorted(set(recovery.CVS_LEVELS) - set(table["level"]))
            if dropped:
                section.text += (f"\n\n{run.label} seed{run.seed}: set CVS "
                                 f"{', '.join(f'{c:+g}' for c in dropped)} left out: |CVS| must stay below "
                                 f"√N for N = {found['n_sz']} S/Z galaxies.")
            fit = recovery.fit_line(table["set_cvs"], table["pred_cvs"])
        except (ValueError, InputError) as err:  # no galaxy of one spin, too few S/Z galaxies, or a damaged file
            section.text += f"\n\n{run.label} seed{run.seed}: no CVS recovery fit ({err})."
            continue
        found_rows.append({"model": run.label, "seed": run.seed, **found})
        fit_rows.append({"model": run.label, "seed": run.seed, **fit})
        if out.shows(run.label, incomplete):
            points.setdefault(run.label, []).append(table.assign(seed=run.seed))
    found = pd.DataFrame(found_rows, columns=FOUND_COLUMNS)
    fits = pd.DataFrame(fit_rows, columns=FIT_COLUMNS)
    if len(found) or incomplete:
        n_sz = ", ".join(sorted({str(n) for n in found["n_sz"]})) or "?"
        written.table(out, summary_table(
            "table8_spirals_found", "Table 8: spirals found on the S/Z test set",
            f"Of the test galaxies labelled S or Z (vote > 0.5; {n_sz} here), the share the model calls a "
            "spiral (softmax ≥ 0.5) and the share it calls with the right spin, mean ± std over seeds.",
            found, [Column("found_fraction", "called spiral %", 2, 100),
                    Column("right_spin_fraction", "right spin %", 2, 100)], incomplete, out.allow_partial,
            ddof=out.spread_ddof))
        written.table(out, summary_table(
            "cvs_recovery", "CVS recovery fit",
            "Least-squares line of predicted vs set CVS per run (ideal: slope 1, intercept 0), mean ± std "
            "over seeds.", fits, [Column("slope", "slope", 3), Column("intercept", "intercept", 3)],
            incomplete, out.allow_partial, ddof=out.spread_ddof))
    if points:
        n_runs = Counter(run.label for run in runs)  # a run without a fit counts as a missing member
        slopes = {m: mean_std_cell(fits.loc[fits["model"] == m, "slope"], 2, n_expected=n_runs[m],
                                ddof=out.spread_ddof) for m in points}
        written.figure(out, figures.recovery_plot, "cvs_recovery.png",
                       "Predicted vs set CVS of the resampled S/Z test set per model (mean ± std over seeds) "
                       "with the ideal line of slope 1." + out.partial_note(incomplete, model_order(incomplete)),
                       {m: pd.concat(t) for m, t in points.items()}, slopes)
    return written
