"""Find survey prediction parts beside the training runs (:mod:`gcnn_spin.run`), and say which are incomplete and
why.

A prediction set ``PRED/{run}/seed{k}/`` (``{run}``: the run's name) is complete when every expected ``part-{i:05d}.parquet`` exists with
its ``.done`` marker and every part was made from the run as it is now (the run identity in the part's marker
matches the run's marker: a run retrained in place makes its old parts stale). The expected number of parts
comes from the inference plan ``PRED/plan.json`` (recorded when inference runs or is submitted), else from the
survey store when it is given, else from the largest part index seen (which cannot see parts missing at the end).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import UserError
from ..artifacts import Verdict, verdict
from ..io import read_marker
from ..run import Run, discover_runs
from ..ranges import format_ranges

@dataclasses.dataclass(frozen=True)
class PredictionSet:
    """Survey predictions of one run: ``PRED/{name}/seed{k}/part-*.parquet`` (``name``: the run's name)."""

    name: str
    seed: int
    path: Path
    done: dict[int, Path]  # part index -> parquet with a marker
    unmarked: tuple[int, ...]  # parts written but without a marker (task died before finishing?)
    run_identities: dict[int, dict | None] = dataclasses.field(default_factory=dict)  # part -> run it was made from


@dataclasses.dataclass(frozen=True)
class Issue:
    """Something incomplete, named precisely enough to rerun it."""

    kind: str  # "run", "predictions" or "study"
    model: str
    seed: int | None
    problem: str
    part: int | None = None
    log: str | None = None

    def describe(self) -> str:
        where = f"{self.model} seed{self.seed}" if self.seed is not None else self.model
        if self.part is not None:
            where += f" part {self.part}"
        text = f"{self.kind}: {where}: {self.problem}"
        return text + (f" (log: {self.log})" if self.log else "")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def discover_predictions(pred_root: str | Path) -> list[PredictionSet]:
    """Every ``{run}/seed{k}/`` prediction folder under ``pred_root`` with its finished and unmarked parts."""
    root = Path(pred_root)
    if not root.is_dir():
        raise FileNotFoundError(f"predictions folder {root} does not exist")
    sets = []
    for seed_dir in sorted(root.glob("*/seed*")):
        seed = layout.seed_of(seed_dir.name)
        if seed is None or not seed_dir.is_dir():
            continue
        done, unmarked, identities = {}, [], {}
        for part in seed_dir.glob("part-*.parquet"):
            index = layout.part_index(part)
            if index is None:
                continue
            marker = read_marker(part)
            if marker is not None:
                done[index] = part
                identities[index] = marker.get("run_identity")
            else:
                unmarked.append(index)
        sets.append(PredictionSet(seed_dir.parent.name, seed, seed_dir, dict(sorted(done.items())),
                                  tuple(sorted(unmarked)), identities))
    return sets


def part_problems(predictions: PredictionSet, run: Run, sources: list[str], deep: bool = False) -> dict[int, Verdict]:
    """The finished parts that are not done, with the artifact verdict the inference stage gives them: stale
    (made from another training of the run, or from other shards or rows) or damaged (bytes changed since
    written). Judged by :func:`gcnn_spin.cluster.infer.part_identity` where ``sources`` says what each part
    reads (:func:`expected_sources`); otherwise by the run identity the part's marker records. ``deep``: hash
    every part (:func:`gcnn_spin.artifacts.checked`)."""
    from ..cluster.infer import part_identity

    if not run.marker:  # unfinished: the run itself is the issue
        return {}
    found = {}
    for i, part in predictions.done.items():
        if i < len(sources):
            found[i] = verdict(part, part_identity(sources[i], run), deep=deep)
        else:
            made_from = predictions.run_identities.get(i)
            found[i] = (Verdict("stale", "made from an earlier training of this run (retrained since)")
                        if made_from is not None and made_from != run.identity else verdict(part, deep=deep))
    return {i: v for i, v in sorted(found.items()) if not v.done}


def read_part_plan(pred_root: str | Path | None) -> dict[str, Any] | None:
    """``PRED/plan.json`` (the part plan inference recorded), or ``None`` when there is none."""
    path = layout.plan_path(pred_root) if pred_root is not None else None
    if path is None or not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
        int(plan["n_parts"])
        return plan
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"inference plan {path} unreadable ({type(err).__name__}: {err}): delete it and rerun "
                         "inference's --dry-run, or pass --n-parts") from None


def expected_parts(sets: list[PredictionSet], store: str | Path | None = None,
                   n_parts: int | None = None, plan: dict[str, Any] | None = None) -> tuple[int, str]:
    """``(number of parts, where that number comes from)``: ``n_parts``, the recorded plan, the survey store,
    or the parts seen."""
    if n_parts is not None:
        return n_parts, "given on the command line"
    if plan is not None:
        return int(plan["n_parts"]), f"the inference plan {layout.PLAN_FILE}"
    if store is not None:
        from ..cluster.infer import store_parts
        from ..data.store import open_store

        return len(store_parts(open_store(store))), f"the survey store {Path(store).name} (its shard count)"
    seen = [i for s in sets for i in (*s.done, *s.unmarked)]
    return (max(seen) + 1 if seen else 0), "the largest part index seen across runs (pass --store to be sure)"


# ----------------------------------------------------------------------------- submission records


SUBMISSION_FILE = "submission.json"  # written by gcnn_spin.cluster.arrays.submit into each stage's log folder


@dataclasses.dataclass
class TaskLogs:
    """Log path of each submitted array task, from ``submission.json`` records (empty when there are none).

    A record maps ``task_id`` to ``{"output", "job_id", "stdout", "stderr", ...}``; a failure is matched to its
    task by the task's output path, or by a task id such as ``part-00007`` or ``resnet18/seed3``.
    """

    by_output: dict[str, str] = dataclasses.field(default_factory=dict)
    by_task_id: dict[str, str] = dataclasses.field(default_factory=dict)

    def find(self, output: str | Path | None = None, task_ids: Iterable[str] = ()) -> str | None:
        if output is not None:
            log = self.by_output.get(str(Path(output).resolve()))
            if log:
                return log
        return next((self.by_task_id[t] for t in task_ids if t in self.by_task_id), None)


def submission_logs(folders: Iterable[str | Path]) -> TaskLogs:
    """Read every ``submission.json`` in ``folders`` and one level below them (unreadable records are skipped:
    logs only help to name a failure, they never decide one)."""
    logs = TaskLogs()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob(SUBMISSION_FILE), *folder.glob(f"*/{SUBMISSION_FILE}")]):
            try:
                tasks = json.loads(path.read_text()).get("tasks", {})
            except (OSError, json.JSONDecodeError, AttributeError):
                continue
            for task_id, entry in tasks.items() if isinstance(tasks, dict) else ():
                log = isinstance(entry, dict) and (entry.get("stderr") or entry.get("stdout"))
                if not log:
                    continue
                logs.by_task_id[str(task_id)] = str(log)
                if entry.get("output"):
                    logs.by_output[str(Path(entry["output"]).resolve())] = str(log)
    return logs


def default_log_folders(*roots: str | Path | None) -> list[Path]:
    """Where stage log folders usually are: each root itself, ``root/logs`` and a ``logs`` folder beside it."""
    out = []
    for root in roots:
        if root is not None:
            root = Path(root)
            out += [root, root / "logs", root.parent / "logs"]
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------- completeness


@dataclasses.dataclass
class Completeness:
    """Everything found and everything missing. ``incomplete(kind)`` maps a label to its members left out;
    ``notes``: models whose complete seeds differ in epochs or config (their means mix them)."""

    runs: list[Run]
    predictions: list[PredictionSet]
    issues: list[Issue]
    n_parts: int
    parts_source: str
    labels_of_predictions: dict[tuple[str, int], str]  # (run name, seed) -> table label
    notes: list[str] = dataclasses.field(default_factory=list)
    part_sources: list[str] = dataclasses.field(default_factory=list)  # what each planned part must have read

    def complete_runs(self) -> list[Run]:
        return [r for r in self.runs if r.complete]

    def complete_prediction_sets(self) -> list[tuple[str, PredictionSet]]:
        bad = {(i.model, i.seed) for i in self.issues if i.kind in ("predictions", "run")}
        return [(self.labels_of_predictions[(s.name, s.seed)], s) for s in self.predictions
                if (self.labels_of_predictions[(s.name, s.seed)], s.seed) not in bad]

    def incomplete(self, kinds: tuple[str, ...]) -> dict[str, list[str]]:
        return group_issues(self.issues, kinds)

    def survey_incomplete(self) -> dict[str, list[str]]:
        """Members missing from survey tables: prediction issues, and incomplete runs that have predictions."""
        with_predictions = {self.labels_of_predictions[(s.name, s.seed)] for s in self.predictions}
        out = self.incomplete(("predictions",))
        for label, items in self.incomplete(("run",)).items():
            if label in with_predictions:
                out.setdefault(label, []).extend(items)
        return out


def mixed_members(runs: Iterable[Run]) -> list[str]:
    """One note per table label whose complete seeds were trained for different numbers of epochs or with
    another science config (``config.json``'s ``experiment``, the seed aside): a mean over them mixes them."""
    groups: dict[str, list[tuple[int, Any, str]]] = {}
    for run in runs:
        if not run.complete:
            continue
        try:
            experiment = run.config().get("experiment", {})
        except (OSError, ValueError, AttributeError):
            experiment = {}
        experiment = {k: v for k, v in experiment.items() if k != "grid"}  # the grid lists seeds, not settings
        groups.setdefault(run.label, []).append((run.seed, run.marker.get("epochs"), json.dumps(experiment,
                                                                                                 sort_keys=True)))
    notes = []
    for label, members in groups.items():
        if len({epochs for _, epochs, _ in members}) > 1:
            notes.append(f"{label}: its seeds were trained for different numbers of epochs ("
                         + ", ".join(f"seed{seed}: {epochs}" for seed, epochs, _ in members) + "); the means mix them")
        configs = list(dict.fromkeys(config for _, _, config in sorted(members)))  # in seed order
        if len(configs) > 1:
            by_config = {c: [seed for seed, _, cc in members if cc == c] for c in configs}
            notes.append(f"{label}: its seeds were trained with {len(configs)} different configs (seeds "
                         + " | ".join(", ".join(map(str, sorted(v))) for v in by_config.values())
                         + "); the means mix them")
    return notes


def group_issues(issues: Iterable[Issue], kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """``{model: ["seed3: no completion marker ...", ...]}`` for the issues of the given kinds."""
    out: dict[str, list[str]] = {}
    for issue in issues:
        if issue.kind in kinds:
            text = f"seed{issue.seed}" + (f" part {issue.part}" if issue.part is not None else "")
            out.setdefault(issue.model, []).append(f"{text}: {issue.problem}")
    return out


def expected_sources(plan: dict[str, Any] | None, store: str | Path | None) -> list[str]:
    """What each planned part must have read (:func:`gcnn_spin.cluster.infer.part_source`): from the survey store
    as it is now when given (a store rebuilt since the plan makes the parts stale, as inference sees it), else as
    the plan recorded. A plan for a store of another size raises :class:`UserError`."""
    if plan is None:
        return []
    if store is None:
        return list(plan.get("sources") or [])
    from ..cluster.infer import plan_sources
    from ..data.store import open_store

    opened = open_store(store)
    if plan.get("store", {}).get("n_images") != len(opened):
        raise UserError(f"the predictions in {plan.get('store_path')!r}'s plan ({layout.PLAN_FILE}: "
                        f"{plan.get('store')}) were made for another store than {store} ({len(opened)} images)")
    return plan_sources(opened, plan["parts"])


def check_completeness(runs_root: str | Path, pred_root: str | Path | None = None, store: str | Path | None = None,
                       n_parts: int | None = None, log_folders: Iterable[str | Path] | None = None,
                       max_named_parts: int = 20, deep: bool = False) -> Completeness:
    """Discover runs and predictions under the roots and list every incomplete run, part and failed task.

    Missing parts are named one by one (with their array task's log when a submission record says where it
    is) up to ``max_named_parts`` per prediction set; beyond that they are reported as ranges. Logs are looked
    up in the ``submission.json`` of ``log_folders`` (default: :func:`default_log_folders` of both roots).
    Parts are judged as ``status`` and ``--dry-run`` judge them, ``deep`` or not (:func:`artifacts.checked`).
    """
    runs = discover_runs(runs_root)
    logs = submission_logs(default_log_folders(runs_root, pred_root) if log_folders is None else log_folders)
    issues = [Issue("run", r.label, r.seed, r.problem, log=logs.find(r.path, [f"{r.name}/seed{r.seed}"]))
              for r in runs if not r.complete]
    by_dir = {(r.name, r.seed): r for r in runs}
    sets = discover_predictions(pred_root) if pred_root is not None and Path(pred_root).is_dir() else []
    plan = read_part_plan(pred_root)
    total, source = (0, "no predictions")
    if sets or store is not None or n_parts is not None or plan is not None:
        total, source = expected_parts(sets, store, n_parts, plan)
    sources = expected_sources(plan, store)
    labels = {}
    for s in sets:
        run = by_dir.get((s.name, s.seed))
        label = run.label if run is not None else s.name
        labels[(s.name, s.seed)] = label
        if run is None:
            issues.append(Issue("predictions", label, s.seed,
                                f"predictions at {s.path} but no run {s.name}/seed{s.seed}"))
        problems = part_problems(s, run, sources, deep) if run is not None else {}
        for i, found in list(problems.items())[:max_named_parts]:
            issues.append(Issue("predictions", label, s.seed, f"{found}: rerun inference to redo it", part=i))
        if len(problems) > max_named_parts:
            rest = list(problems)[max_named_parts:]
            issues.append(Issue("predictions", label, s.seed, f"{len(rest)} more parts not done (stale or damaged): "
                                                              f"{format_ranges(rest)}; rerun inference to redo them"))
        missing = [i for i in range(total) if i not in s.done]
        extra = [i for i in s.done if i >= total]
        if extra:
            issues.append(Issue("predictions", label, s.seed, f"parts {format_ranges(extra)} beyond the {total} expected "
                                                              f"(from {source}): predictions of another store?"))
        for i in missing[:max_named_parts]:
            what = ("part file written but no marker (task died before finishing)" if i in s.unmarked
                    else "part missing (array task failed or not run)")
            part = s.path / f"part-{i:05d}.parquet"
            log = logs.find(part, [f"part-{i:05d}", str(i), f"{s.name}/seed{s.seed}/part-{i:05d}"])
            issues.append(Issue("predictions", label, s.seed, what, part=i, log=log))
        if len(missing) > max_named_parts:
            rest = missing[max_named_parts:]
            issues.append(Issue("predictions", label, s.seed, f"{len(rest)} more parts missing: {format_ranges(rest)}"))
    # A finished run whose other seeds have predictions, but which has none itself.
    names_with_predictions = {s.name for s in sets}
    have = {(s.name, s.seed) for s in sets}
    for r in runs:
        if r.complete and r.name in names_with_predictions and (r.name, r.seed) not in have:
            issues.append(Issue("predictions", r.label, r.seed, "no survey predictions for this finished run"))
            labels[(r.name, r.seed)] = r.label
    return Completeness(runs, sets, issues, total, source, labels, mixed_members(runs), sources)
