"""The shape of every array stage: plan the tasks, submit the incomplete ones as job arrays, report status.

A :class:`Task` is one unit of work with its own output; its function writes the output atomically and
its marker (``<output>.done``, :func:`gcnn_spin.io.write_marker`) last. The same code path runs a task
under SLURM and under the local executor:

* :func:`plan` is the dry run: every task and its artifact verdict (:mod:`gcnn_spin.artifacts`: done, or
  missing / stale / damaged and why); nothing is touched.
* :func:`submit` submits only the tasks that are not done: on SLURM as job arrays of at most
  ``profile.max_array_size`` tasks (``executor.batch()``), run ``array_parallelism`` at a time; locally as
  ``array_parallelism`` background processes that each run their share of the tasks in turn. It records
  job ids, task ids and log paths in ``<log_dir>/submission.json``.
* :func:`status` reports each task as done / pending / running / failed (with its log) / stale / damaged /
  not_started, from the same verdicts, then from accounting (``sacct``, see :mod:`gcnn_spin.cluster.slurm`)
  or the local processes.

Waiting: ``job.result()`` returns (or raises) once SLURM accounting reports the job finished, also when it
was killed; submitit's polling backs off to once every 10 minutes, so use :func:`wait` to poll every few
seconds with a time limit. Without accounting (slurmdbd) a killed task would leave ``result()`` waiting.

Resuming: a :class:`ResumableTask` is requeued by submitit on timeout or preemption (it follows
``submitit.helpers.Checkpointable``); its function must pick up its own checkpoint when run again.

CLI: ``python -m gcnn_spin.cluster.arrays status LOG_DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import JobPaths

from gcnn_spin import cli
from gcnn_spin.cluster import slurm
from gcnn_spin.config import ClusterProfile
from gcnn_spin.errors import UserError
from gcnn_spin.artifacts import Artifact, Check, Verdict, checked
from gcnn_spin.io import marker_path, write_json_atomic
from gcnn_spin.ranges import at_most, chunks

SUBMISSION_FILE = "submission.json"
STATES = ("done", "pending", "running", "failed", "stale", "damaged", "not_started", "unknown")


class IncompleteTaskError(RuntimeError):
    """A task function returned without writing its completion marker."""


class TaskGroupError(RuntimeError):
    """Some tasks of a local task group failed (each one's traceback is in the group's log)."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One array task: ``fn(*args, **kwargs)`` writes ``output`` and then its marker.

    ``task_id`` names the task in plans, logs and ``submission.json`` (unique within a stage, e.g.
    ``"g_resnet18/seed3"`` or ``"resnet18/seed0/part-00012"``). ``fn`` must be importable (module level):
    submitit pickles it by reference. ``identity``: the ``config_hash`` the marker must carry for the task to
    count as done (a marker written for other inputs or settings is stale); ``None`` accepts any marker.
    ``check``: optionally, the output's own integrity check (e.g. a store shard whose file may have been purged
    since). Whether the task is done is its :class:`~gcnn_spin.artifacts.Artifact`'s verdict, nothing else.
    """

    task_id: str
    output: Path
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    identity: str | None = None
    check: Check | None = None

    @property
    def marker(self) -> Path:
        return marker_path(self.output)

    @property
    def artifact(self) -> Artifact:
        return Artifact(Path(self.output), self.identity, self.check)

    def verdict(self, deep: bool = False) -> Verdict:
        return self.artifact.verdict(deep)

    @property
    def done(self) -> bool:
        return self.verdict().done

    def __call__(self) -> Any:
        """Run the task unless it is done (its output read in full to be sure); fail if it returns without
        leaving a done output."""
        if self.verdict(deep=True).done:
            return None
        result = self.fn(*self.args, **dict(self.kwargs))
        found = self.verdict()
        if not found.done:
            raise IncompleteTaskError(f"task {self.task_id}: {self.fn.__qualname__} returned but its output is "
                                      f"not done ({found})")
        return result


class ResumableTask(Task, submitit.helpers.Checkpointable):
    """A task that submitit requeues on timeout or preemption; ``fn`` resumes from its own checkpoint."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        print(f"task {self.task_id}: interrupted, requeueing to resume", flush=True)
        return super().checkpoint(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class TaskGroup(submitit.helpers.Checkpointable):
    """Tasks run one after another in one process: how the local executor keeps to ``array_parallelism``.

    A failed task does not stop the others; the group raises :class:`TaskGroupError` at the end.
    """

    tasks: tuple[Task, ...]

    def __call__(self) -> list[Any]:
        results, failed = [], []
        for task in self.tasks:
            try:
                results.append(task())
            except Exception:  # noqa: BLE001 - reported below, after the other tasks ran
                print(f"task {task.task_id} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
                failed.append(task.task_id)
                results.append(None)
        if failed:
            raise TaskGroupError(f"{len(failed)} of {len(self.tasks)} tasks failed: {failed}")
        return results


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class PlannedTask:
    task_id: str
    output: Path
    verdict: Verdict

    @property
    def done(self) -> bool:
        return self.verdict.done


def check_tasks(tasks: Sequence[Task]) -> None:
    """Task ids and outputs must be unique: tasks never share an output file."""
    for what, key in (("task_id", lambda t: t.task_id), ("output", lambda t: str(Path(t.output).resolve()))):
        counts = Counter(key(t) for t in tasks)
        dupes = sorted(k for k, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"tasks share a {what}: {dupes[:10]}{' ...' if len(dupes) > 10 else ''}")


def plan(tasks: Sequence[Task], deep: bool = False) -> list[PlannedTask]:
    """The dry run: every task, its output and its verdict (done, or missing / stale / damaged and why), judged
    ``deep`` or not (:func:`gcnn_spin.artifacts.checked`)."""
    check_tasks(tasks)
    return [PlannedTask(t.task_id, Path(t.output), t.verdict(deep)) for t in tasks]


def format_plan(planned: Sequence[PlannedTask]) -> str:
    lines = [f"{'done' if p.done else 'todo':4}  {p.task_id}  {p.output}" + ("" if p.done else f"  ({p.verdict})")
             for p in planned]
    n_done = sum(p.done for p in planned)
    lines.append(f"{len(planned)} tasks: {n_done} done, {len(planned) - n_done} to run")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- submit


@dataclasses.dataclass
class Submission:
    """What :func:`submit` did: a job handle per submitted task (local: shared by a group), the skipped ones."""

    jobs: dict[str, submitit.Job]
    skipped: list[str]
    record: Path | None

    @property
    def job_list(self) -> list[submitit.Job]:
        return list({id(j): j for j in self.jobs.values()}.values())


def array_groups(tasks: Sequence[Task], max_array_size: int, key: Callable[[Task], Any] | None = None
                 ) -> list[list[Task]]:
    """The tasks as at most ``max_array_size`` array elements, never splitting tasks that share a ``key``.

    Consecutive tasks with the same key (e.g. every run's task of one inference part) stay in one element.
    """
    buckets: list[list[Task]] = []
    for task in tasks:
        if key is not None and buckets and key(buckets[-1][-1]) == key(task):
            buckets[-1].append(task)
        else:
            buckets.append([task])
    return [[t for bucket in group for t in bucket] for group in at_most(buckets, max_array_size)]


def format_array(groups: Sequence[Any]) -> str:
    """The ``sbatch --array`` range that covers ``groups`` ("" when there are none)."""
    return f"0-{len(groups) - 1}" if groups else ""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def submit(tasks: Sequence[Task], executor: submitit.AutoExecutor, profile: ClusterProfile,
           record: bool = True, command: Mapping[str, Any] | None = None, deep: bool = False) -> Submission:
    """Submit the tasks that are not done (judged ``deep`` or not: :func:`gcnn_spin.artifacts.checked`);
    write/merge ``<log_dir>/submission.json`` when ``record``.

    ``command``: the stage and command line that planned the tasks (:func:`gcnn_spin.cluster.stages.command`),
    recorded so that ``status`` from the log folder alone judges the tasks as the stage does.
    """
    check_tasks(tasks)
    done = {t.task_id: t.verdict(deep).done for t in tasks}
    pending = [t for t in tasks if not done[t.task_id]]
    skipped = [t.task_id for t in tasks if done[t.task_id]]
    folder = Path(executor.folder)
    entries: dict[str, dict[str, Any]] = {}
    jobs: dict[str, submitit.Job] = {}
    arrays: list[dict[str, Any]] = []
    if executor.cluster == "slurm":
        for chunk in chunks(pending, profile.max_array_size):
            with executor.batch():
                handles = [executor.submit(task) for task in chunk]
            arrays.append({"job_id": handles[0].job_id.split("_")[0], "n_tasks": len(chunk)})
            for task, job in zip(chunk, handles):
                jobs[task.task_id] = job
                entries[task.task_id] = {"job_id": job.job_id}
    elif pending:
        n_groups = max(1, min(profile.array_parallelism, len(pending)))
        for k in range(n_groups):
            group = pending[k::n_groups]
            # The local executor's time limit covers the whole group, one task after another.
            executor.update_parameters(timeout_min=profile.time_min * len(group))
            job = executor.submit(TaskGroup(tuple(group)))
            arrays.append({"job_id": job.job_id, "n_tasks": len(group)})
            for position, task in enumerate(group):
                jobs[task.task_id] = job
                entries[task.task_id] = {"job_id": job.job_id, "position": position}
        executor.update_parameters(timeout_min=profile.time_min)
    for task in pending:
        entry = entries[task.task_id]
        paths = JobPaths(folder, job_id=entry["job_id"], task_id=0)
        entry.update(output=str(Path(task.output).resolve()), stdout=str(paths.stdout),
                     stderr=str(paths.stderr), submitted_utc=_now())
    path = None
    if record:
        path = folder / SUBMISSION_FILE
        _merge_record(path, executor.cluster, folder, tasks, entries, arrays, command)
    return Submission(jobs=jobs, skipped=skipped, record=path)


def _merge_record(path: Path, backend: str, folder: Path, tasks: Sequence[Task],
                  entries: Mapping[str, Mapping[str, Any]], arrays: list[dict[str, Any]],
                  command: Mapping[str, Any] | None = None) -> None:
    old = load_record(path.parent) if path.exists() else {}
    known = dict(old.get("tasks", {}))
    for task in tasks:  # tasks done before submission are listed too, so status can count them
        known.setdefault(task.task_id, {"output": str(Path(task.output).resolve())})
    known.update(entries)
    write_json_atomic(path, {
        "backend": backend,
        "log_folder": str(folder),
        "updated_utc": _now(),
        "submissions": old.get("submissions", []) + ([{"time_utc": _now(), "arrays": arrays}] if arrays else []),
        "tasks": known,
        **({"command": dict(command)} if command is not None else
           {"command": old["command"]} if "command" in old else {}),
    })


def load_record(log_dir: str | Path) -> dict[str, Any]:
    path = Path(log_dir) / SUBMISSION_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {SUBMISSION_FILE} in {log_dir}: nothing was submitted with this log folder")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- wait and status


def wait(jobs: Sequence[submitit.Job] | Submission, timeout_s: float, poll_s: float = 2.0) -> None:
    """Block until every job is finished (completed, failed or killed), asking the cluster every ``poll_s``.

    Raises ``TimeoutError`` naming the unfinished jobs. Afterwards ``job.result()`` returns or raises at once.
    """
    if isinstance(jobs, Submission):
        jobs = jobs.job_list
    deadline = time.monotonic() + timeout_s
    while True:
        left = [j for j in jobs if not j.done(force_check=True)]
        on_slurm = [j.job_id for j in jobs if isinstance(j, submitit.SlurmJob)]
        if not left and on_slurm:  # accounting may say CANCELLED while the processes still run (COMPLETING)
            states = slurm.job_states(on_slurm)
            left = [j for j in jobs if states.get(j.job_id) in slurm.ACTIVE_STATES]
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(left)} job(s) unfinished after {timeout_s} s: {[j.job_id for j in left]}")
        time.sleep(poll_s)


@dataclasses.dataclass(frozen=True)
class TaskStatus:
    task_id: str
    state: str  # one of STATES
    job_id: str = ""
    detail: str = ""  # the scheduler's state, or why a task counts as failed
    log: str = ""  # stderr of a failed task


def _local_job_running(job_id: str) -> bool:
    """The local executor's job id is the pid of its controller process: is that process still running?"""
    try:
        stat = Path(f"/proc/{int(job_id)}/stat").read_text()
        cmdline = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"submitit.local._local" in cmdline


def status(log_dir: str | Path, tasks: Sequence[Task] | None = None, deep: bool = False) -> list[TaskStatus]:
    """Per-task state from the tasks' verdicts and ``submission.json`` in ``log_dir`` (all recorded tasks, judged
    by marker and bytes alone, when ``tasks`` is not given; the CLI passes the stage's tasks when recorded).
    ``deep``: hash every output (:func:`gcnn_spin.artifacts.checked`)."""
    record = load_record(log_dir)
    entries: Mapping[str, Mapping[str, Any]] = record.get("tasks", {})
    if tasks is None:  # only the record: any marker whose output is intact (identities need the stage's tasks)
        verdicts = {tid: Artifact(Path(e["output"])).verdict(deep) for tid, e in entries.items()}
    else:
        verdicts = {t.task_id: t.verdict(deep) for t in tasks}
    backend = record.get("backend", "slurm")
    done = {tid: v.done for tid, v in verdicts.items()}
    # a task with its marker is done whatever the scheduler says: ask it only about the others
    job_ids = sorted({e["job_id"] for tid, e in entries.items() if tid in verdicts and not done[tid] and "job_id" in e})
    if backend == "slurm":
        states = slurm.job_states(job_ids) if job_ids else {}
    else:
        states = {j: ("RUNNING" if _local_job_running(j) else "EXITED") for j in job_ids}
    # A local group runs its tasks in order: the first unfinished one runs, the rest wait.
    first_open: dict[str, int] = {}
    for tid, entry in entries.items():
        if tid in verdicts and not done[tid] and "position" in entry:
            first_open[entry["job_id"]] = min(first_open.get(entry["job_id"], 1 << 30), entry["position"])
    report = []
    for tid in verdicts:
        entry = entries.get(tid, {})
        job_id = entry.get("job_id", "")
        if done[tid]:
            report.append(TaskStatus(tid, "done", job_id))
        elif not job_id:
            found = verdicts[tid]
            report.append(TaskStatus(tid, "not_started" if found.state == "missing" else found.state, "", found.why))
        else:
            state = states.get(job_id, "UNKNOWN")
            if backend != "slurm" and state == "RUNNING":
                kind = "running" if entry.get("position") == first_open.get(job_id) else "pending"
                report.append(TaskStatus(tid, kind, job_id, "local process"))
            elif state in slurm.RUNNING_STATES:
                report.append(TaskStatus(tid, "running", job_id, state))
            elif state in slurm.PENDING_STATES:
                report.append(TaskStatus(tid, "pending", job_id, state))
            elif state == "UNKNOWN":
                report.append(TaskStatus(tid, "unknown", job_id, "no record in accounting or queue"))
            elif verdicts[tid].state in ("stale", "damaged"):  # finished once; its output no longer holds
                report.append(TaskStatus(tid, verdicts[tid].state, job_id, verdicts[tid].why))
            else:
                why = state if state in slurm.FAILED_STATES else f"{state} without its marker"
                report.append(TaskStatus(tid, "failed", job_id, why, entry.get("stderr", "")))
    return report


def format_status(report: Sequence[TaskStatus]) -> str:
    lines = []
    for s in report:
        extra = f"  {s.detail}" if s.detail else ""
        log = f"  log: {s.log}" if s.log else ""
        lines.append(f"{s.state:11}  {s.task_id}  {s.job_id}{extra}{log}")
    counts = Counter(s.state for s in report)
    lines.append(", ".join(f"{counts[k]} {k}" for k in STATES if counts[k]) or "no tasks")
    return "\n".join(lines)


def print_status(report: Sequence[TaskStatus], as_json: bool, deep: bool) -> None:
    """The status report as a table or as JSON; what was checked (:func:`artifacts.checked`) goes to stderr, so
    stdout stays the report alone."""
    print(json.dumps([dataclasses.asdict(s) for s in report], indent=2) if as_json else format_status(report))
    print(checked(deep), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gcnn_spin.cluster.arrays",
                                     description="Report the tasks of an array stage submitted from LOG_DIR.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_status = sub.add_parser("status", help="per task: done / pending / running / failed (with log) / not_started")
    p_status.add_argument("log_dir", type=Path, help="the stage's log folder (holds submission.json)")
    p_status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cli.add_deep(p_status)
    for documented in (parser, p_status):
        cli.add_debug(documented)
    args = parser.parse_args(argv)
    try:
        recorded = load_record(args.log_dir).get("command")
        tasks = None
        if recorded is not None:  # the stage's own tasks, so identities are judged as --dry-run judges them
            from .stages import recorded_tasks

            tasks = recorded_tasks(recorded)
        report = status(args.log_dir, tasks, args.deep)
    except (FileNotFoundError, slurm.SlurmError) as err:  # reported by errors.run_command, as one line
        raise UserError(str(err)) from err
    print_status(report, args.json, args.deep)
    return 1 if any(s.state == "failed" for s in report) else 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
