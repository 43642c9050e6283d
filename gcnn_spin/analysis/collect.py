"""Collect finished runs, survey predictions and study outputs into ``RESULTS/``: tables, figures, ``report.md``.

    python analysis/collect.py --runs runs --predictions predictions --store data/stores/survey.zarr \\
        --data data --out results [--allow-partial] [--truth raw/truth.parquet] [--set tables.spread_ddof=1]

Layout: ``RESULTS/tables/{stem}.csv`` + ``.md``, ``RESULTS/figures/*.png`` (both hold exactly what the last
collect wrote: older files it did not rewrite are removed), ``RESULTS/studies/{study}/{label}/seed{k}.parquet``
(the CVS recovery is computed here when missing; the rotation study is read when ``analysis/rotation_study.py``
has run), ``RESULTS/cache/survey/`` (merged survey counts, reused while the parts' markers are unchanged),
``RESULTS/catalogue/spin_catalogue.{fits,parquet}`` (the spin catalogue: one row per survey galaxy with every
model's mean probabilities over seeds, streamed part by part; see docs/catalogue.md), ``RESULTS/report.md``.

Each group of tables and figures is one section module under ``gcnn_spin/analysis/sections/``: a function of
explicit inputs that writes its files and returns what it wrote; :func:`collect` runs them in report order.

Completeness policy: a run without its marker, a missing prediction part and a failed array task are named
(model, seed, part, log) in ``tables/incomplete.csv`` and in the report.

- default: everything complete is written; a model row whose set has an incomplete member is marked
  ``partial`` and shows no mean (partial sets are never averaged), that model is left out of the figures, and
  the command exits with status 3 after writing, listing what is incomplete;
- ``--allow-partial``: incomplete members are left out, rows are averaged over the complete members and say
  which were left out, and the command exits 0.

The catalogue is strict too: it is not written while a prediction set is incomplete, or when a member did not
predict a galaxy of its part; with ``--allow-partial`` it is written from the parts that exist and each row
counts the seeds that predicted it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import cli
from ..artifacts import checked
from ..config import ChoicesChecked, SpreadDdof, ValColumns, load_experiment
from ..layout import store_path
from .recovery import N_DRAWS
from .report import Figure, write_report

#: Where the report says how this reproduction differs from the study (its code and its text).
DEVIATIONS_NOTE = ("Every remaining difference from the study's code and text, and its expected effect on these "
                   "tables and figures: `docs/study_deviations.md` in the gcnn_spin repository.")
from .runs import Completeness, Issue, check_completeness, group_issues
from .sections.attribution import attribution_section
from .sections.common import Output, Written
from .sections.catalogue import CatalogueInputs, catalogue_section
from .sections.completeness import completeness_section
from .sections.metrics import metrics_section, per_run_metrics
from .sections.recovery import recovery_section
from .sections.reflection import reflection_section
from .sections.rotation import rotation_section
from .sections.survey import survey_section
from .sections.validation import validation_section
from .tables import Table

log = logging.getLogger("gcnn_spin.analysis.collect")

EXIT_INCOMPLETE = 3


@dataclasses.dataclass(frozen=True)
class Settings(ChoicesChecked):
    """What to collect and where to write it. ``store``: the survey store, for the expected number of parts
    (default: ``DATA/stores/survey.zarr`` when ``data`` has one); ``truth``: synthetic surveys only;
    ``spread_ddof`` and ``val_columns``: as the config's ``[tables]``, checked the same way."""

    runs: Path
    out: Path
    predictions: Path | None = None
    store: Path | None = None
    data: Path | None = None
    truth: Path | None = None
    allow_partial: bool = False
    n_parts: int | None = None
    logs: tuple[Path, ...] | None = None
    draws: int = N_DRAWS
    resample_seed: int = 0
    progress: bool = True
    figures: bool = True
    spread_ddof: SpreadDdof = 1
    val_columns: ValColumns = "evaluated"  # tables.val_columns (gcnn_spin.analysis.sections.metrics.VAL_COLUMNS)
    deep: bool = False  # hash every prediction part (artifacts.checked), not only markers and sizes

    def survey_store(self) -> Path | None:
        """``store``, else the dataset's survey store when it exists."""
        if self.store is not None:
            return Path(self.store)
        default = store_path(self.data, "survey") if self.data else None
        return default if default is not None and default.exists() else None


@dataclasses.dataclass
class Outcome:
    completeness: Completeness
    tables: list[Table]
    figures: list[Figure]
    report: Path
    issues: list[Issue]
    exit_code: int


#: The spreads over seeds ``collect`` can show (keys: the choices of ``tables.spread_ddof``), as the report names
#: them.
SPREADS = {1: "sample standard deviations over seeds (ddof 1)",
           0: "standard deviations over seeds with ddof 0 (the study's np.std: sqrt((n-1)/n) times the sample one)"}


def spread_note(ddof: int) -> str:
    """The report's sentence on what every ± is."""
    return f"Spreads (±) are {SPREADS[ddof]}."


def table_settings(cfg) -> dict:
    """The :class:`Settings` fields an experiment config's ``[tables]`` sets (checked when it was loaded)."""
    tables = cfg.tables
    return {"spread_ddof": tables.spread_ddof, "val_columns": tables.val_columns}


def prune_stale(out: Output, tables: Sequence[Table], figures: Sequence[Figure]) -> list[Path]:
    """Remove tables and figures an earlier collect wrote that this one did not (so the folders match the report)."""
    kept = {Path(f.path).resolve() for f in figures}
    kept |= {(out.tables_dir / f"{t.stem}{ext}").resolve() for t in tables for ext in (".csv", ".md")}
    stale = [p for pattern, folder in (("*.png", out.figures_dir), ("*.csv", out.tables_dir), ("*.md", out.tables_dir))
             for p in folder.glob(pattern) if p.resolve() not in kept]
    for path in stale:
        log.info("removing %s: not written by this collect", path)
        path.unlink()
    return stale


def completeness_of(settings: Settings) -> tuple[Path | None, Completeness]:
    """The survey store and what :func:`collect` would find complete; no runs at all is an error."""
    store = settings.survey_store()
    completeness = check_completeness(settings.runs, settings.predictions, store, settings.n_parts, settings.logs,
                                      deep=settings.deep)
    if not completeness.runs:
        raise FileNotFoundError(f"no runs under {settings.runs} (looked for {settings.runs}/<run>/seed<k>)")
    return store, completeness


def collect(settings: Settings) -> Outcome:
    """Write every section's tables and figures and ``report.md``; the exit code follows the completeness policy."""
    store, completeness = completeness_of(settings)
    out = Output(Path(settings.out), settings.allow_partial, settings.figures, settings.spread_ddof,
                 settings.val_columns)
    runs = completeness.complete_runs()
    run_incomplete = group_issues(completeness.issues, ("run",))
    per_run = per_run_metrics(runs, settings.val_columns)
    metrics = metrics_section(out, runs, run_incomplete, per_run)
    reflection = reflection_section(out, runs, run_incomplete)
    recovery = recovery_section(out, runs, run_incomplete, settings.draws, settings.resample_seed)
    rotation = rotation_section(out, runs, completeness.issues)
    survey = survey_section(out, completeness, settings.predictions, settings.progress)
    attribution = attribution_section(out, runs, run_incomplete, settings.data)
    catalogue = catalogue_section(out, completeness, CatalogueInputs(store, settings.predictions, settings.data,
                                                                     settings.truth), survey.per_seed)
    written: list[Written] = [metrics, reflection, recovery, rotation, attribution, survey.written, catalogue]
    if settings.truth is not None:
        written.append(validation_section(out, Path(settings.truth), settings.data, per_run, survey.per_seed,
                                          survey.incomplete))
    issues = [*completeness.issues, *rotation.issues, *catalogue.issues]
    written.append(completeness_section(out, completeness, issues,
                                        [e for w in written for e in w.figure_errors]))
    sections = [written[-1].section, *(w.section for w in written[:-1])]  # completeness first in the report
    mode = "--allow-partial" if settings.allow_partial else "strict"
    preamble = (f"Runs: `{settings.runs}`; predictions: `{settings.predictions}`; survey store: `{store}`; "
                f"completeness mode: {mode}. {spread_note(settings.spread_ddof)} {DEVIATIONS_NOTE}")
    report = write_report(sections, out.root, "gcnn_spin results", preamble)
    items = [item for w in written for item in w.section.items]
    tables = [t for t in items if isinstance(t, Table)]
    figures = [f for f in items if isinstance(f, Figure)]
    prune_stale(out, tables, figures)
    exit_code = EXIT_INCOMPLETE if issues and not settings.allow_partial else 0
    return Outcome(completeness, tables, figures, report, issues, exit_code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python analysis/collect.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="runs root holding {run}/seed{k} (default: runs)")
    parser.add_argument("--predictions", default="predictions",
                        help="survey predictions root holding {run}/seed{k}/part-*.parquet (default: predictions)")
    parser.add_argument("--store", default=None, help="survey store, for the expected number of parts "
                                                      "(default: DATA/stores/survey.zarr when --data has one)")
    parser.add_argument("--data", default=None, help="dataset folder (stores' rows; validation's labelled set)")
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="leave incomplete runs/parts out of the averages (and say so) instead of exiting 3")
    parser.add_argument("--n-parts", type=int, default=None, help="expected parts per run (overrides --store)")
    parser.add_argument("--logs", nargs="*", default=None,
                        help="stage log folders holding submission.json (default: the roots, their logs/ and a "
                             "logs/ folder beside them)")
    parser.add_argument("--truth", default=None, help="synthetic surveys only: RAW/truth.parquet for the "
                                                      "validation section")
    parser.add_argument("--draws", type=int, default=N_DRAWS,
                        help=f"CVS recovery draws per level (default: {N_DRAWS})")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="tables and report only")
    cli.add_config(parser.add_argument_group("summaries (settings: the config's [tables]: spread_ddof, val_columns)"))
    cli.add_deep(parser)
    cli.add_dry_run(parser, "list the runs, prediction sets and what is incomplete; write nothing")
    cli.add_quiet(parser, "warnings and errors only (no progress bars)")
    cli.add_debug(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed arguments; a ``--predictions`` folder that does not exist raises (except the default)."""
    predictions = Path(args.predictions) if args.predictions and Path(args.predictions).is_dir() else None
    if args.predictions and predictions is None and args.predictions != "predictions":
        raise FileNotFoundError(f"predictions folder {args.predictions} does not exist")
    return Settings(runs=Path(args.runs), out=Path(args.out), predictions=predictions,
                    store=Path(args.store) if args.store else None, data=Path(args.data) if args.data else None,
                    truth=Path(args.truth) if args.truth else None, allow_partial=args.allow_partial,
                    n_parts=args.n_parts, logs=tuple(Path(p) for p in args.logs) if args.logs is not None else None,
                    draws=args.draws, progress=not args.quiet, figures=args.figures, deep=args.deep,
                    **table_settings(load_experiment(args.config, args.overrides)))


def dry_run(settings: Settings) -> int:
    """Print what :func:`collect` would read and what is incomplete, without writing anything."""
    _, found = completeness_of(settings)
    print(f"{len(found.complete_runs())} of {len(found.runs)} runs complete under {settings.runs}; "
          f"{len(found.predictions)} prediction sets, {found.n_parts} parts each expected (from "
          f"{found.parts_source}); would write {settings.out}")
    for issue in found.issues:
        print(f"  incomplete: {issue.describe()}")
    for note in found.notes:
        print(f"  note: {note}")
    print(checked(settings.deep), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from ..data.store import StoreError

    try:
        settings = settings_from_args(args)
        if args.dry_run:
            return dry_run(settings)
        outcome = collect(settings)
    except (FileNotFoundError, StoreError, ValueError) as err:  # missing inputs, an unfinished store, name clashes
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{outcome.report}: {len(outcome.tables)} tables, {len(outcome.figures)} figures")
    print(f"prediction parts {checked(settings.deep)}", file=sys.stderr)
    for note in outcome.completeness.notes:
        print(f"note: {note}", file=sys.stderr)
    if outcome.issues:
        verb = "left out (--allow-partial)" if settings.allow_partial else "incomplete"
        print(f"{len(outcome.issues)} {verb}:", file=sys.stderr)
        for issue in outcome.issues:
            print(f"  {issue.describe()}", file=sys.stderr)
        if outcome.exit_code:
            print("rows with incomplete members are marked partial; pass --allow-partial to average the complete "
                  "members", file=sys.stderr)
    return outcome.exit_code
