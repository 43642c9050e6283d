"""One command for every array stage (store build, training, inference, studies): the same verbs, flags, path.

    python -m gcnn_spin.cluster.<stage> run [--task-id K] ...   # here: array element K, or every task in turn
    python -m gcnn_spin.cluster.<stage> submit [--cluster a100] [--cluster-set partition=h100] [--wait] ...
    python -m gcnn_spin.cluster.<stage> status ...               # per task: done / running / failed (with log) ...
    ... --dry-run        # every task and whether it is done; nothing runs, nothing is submitted
    ... --print-array    # the sbatch --array range that `run --task-id $SLURM_ARRAY_TASK_ID` covers
    ... --deep           # with --dry-run, status, submit: hash every output, not only markers and sizes

A stage only lists its :class:`~gcnn_spin.cluster.arrays.Task` objects; where they run (this process, an sbatch
array element, a submitit array on SLURM or local processes) is decided here, from the verb and the cluster
profile. ``submit`` sends only the tasks without a valid marker, so submitting again reruns exactly the missing
and failed ones. Array element K of ``run --task-id K`` is group K of :func:`arrays.array_groups` under the
profile's ``max_array_size``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import cli
from ..artifacts import checked
from ..config import load_cluster
from . import arrays
from .make import Flag

ACTIONS = ("run", "submit", "status")


@dataclasses.dataclass(frozen=True)
class Stage:
    """What an array stage provides: its options and its task list. The rest is shared.

    ``tasks(args)`` sees the parsed options and ``args.profile``, the cluster profile. ``name`` names the log folder (``LOGS/{name}``) and the job (``gcnn_spin-{name}``); ``noun`` the tasks in
    messages. ``array_key`` keeps tasks with the same key in one array element (e.g. one inference part of
    every run). ``check`` validates the inputs before a dry run, ``run`` and ``submit`` (not ``status``), e.g.
    that the stores exist. ``prepare`` runs before ``run`` and ``submit`` (never on a dry run), e.g. to record a
    plan.
    ``run_all`` replaces running every task in turn when ``run`` has no task id (e.g. a process pool).
    ``make`` lists the flags ``make submit-{name}`` fills from make variables (:class:`~gcnn_spin.cluster.make.Flag`),
    ``make_help`` says in a line what it submits (``make help``).
    """

    name: str
    noun: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    tasks: Callable[[argparse.Namespace], list[arrays.Task]]
    default_action: str = "run"
    array_key: Callable[[arrays.Task], Any] | None = None
    check: Callable[[argparse.Namespace], None] | None = None
    prepare: Callable[[argparse.Namespace, list[arrays.Task]], None] | None = None
    run_all: Callable[[argparse.Namespace, list[arrays.Task]], None] | None = None
    make: tuple[Flag, ...] = ()
    make_help: str = ""


def build_parser(stage: Stage, prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=f"{stage.description}\n{__doc__}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=ACTIONS, default=stage.default_action,
                        help=f"run tasks here, submit them as job arrays, or report their status "
                             f"(default: {stage.default_action})")
    stage.add_arguments(parser)
    group = parser.add_argument_group("array stage (shared by every stage)")
    group.add_argument("--cluster", default="a100",
                       help="cluster profile: a shipped name (a100, local, ci) or a TOML path (default: a100)")
    group.add_argument("--cluster-set", dest="cluster_overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a cluster profile value, e.g. --cluster-set partition=h100 (repeatable)")
    group.add_argument("--logs", default=f"logs/{stage.name}",
                       help=f"submitit log folder holding submission.json (default: logs/{stage.name})")
    cli.add_task_id(group)
    cli.add_dry_run(group, "list every task and whether it is done; run and submit nothing")
    group.add_argument("--print-array", action="store_true",
                       help="print the sbatch --array range of `run --task-id` and exit")
    cli.add_quiet(group)
    group.add_argument("--wait", action="store_true", help="with submit: block until every task has finished")
    group.add_argument("--timeout-min", type=float, default=24 * 60,
                       help="with --wait: give up after this many minutes (default: 1440)")
    group.add_argument("--json", action="store_true", help="with status: print JSON instead of a table")
    cli.add_deep(group)
    cli.add_debug(group)
    return parser


def run_here(tasks: Sequence[arrays.Task], quiet: bool = False) -> None:
    """Run ``tasks`` in this process, one after another; a failed task does not stop the others (raises at end)."""
    arrays.TaskGroup(tuple(tasks))()
    if not quiet:
        for task in tasks:
            print(f"{'done' if task.done else 'open'}  {task.task_id}  {task.output}", flush=True)


def main(stage: Stage, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` and run, submit, plan or report the stage's tasks. A user error is raised, not printed:
    every entry point runs this through :func:`gcnn_spin.errors.run_command`, the one place that reports it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(stage, prog or f"python -m gcnn_spin.cluster.{stage.name}").parse_args(argv)
    args.argv = argv
    profile = args.profile = load_cluster(args.cluster, args.cluster_overrides)
    tasks = stage.tasks(args)
    arrays.check_tasks(tasks)
    if stage.check is not None and args.action != "status" and not args.print_array:
        stage.check(args)
    if args.dry_run and args.action == "submit":
        from .executor import make_executor

        make_executor(profile, args.logs, job_name=f"gcnn_spin-{stage.name}", create=False, tasks=tasks)
    groups = arrays.array_groups(tasks, profile.max_array_size, stage.array_key)
    if args.print_array:
        print(arrays.format_array(groups))
        return 0
    if args.dry_run:
        print(arrays.format_plan(arrays.plan(tasks, args.deep)))
        print(f"{len(groups)} array task(s) for `run --task-id`: --array={arrays.format_array(groups)}")
        print(checked(args.deep), file=sys.stderr)
        return 0
    if args.action == "status":
        report = arrays.status(args.logs, tasks, args.deep)
        arrays.print_status(report, args.json, args.deep)
        return 1 if any(s.state == "failed" for s in report) else 0
    if stage.prepare is not None:
        stage.prepare(args, tasks)
    if args.action == "run":
        return _run(stage, args, tasks, groups)
    return _submit(stage, args, tasks, profile)




def _run(stage: Stage, args: argparse.Namespace, tasks: list[arrays.Task], groups: list[list[arrays.Task]]) -> int:
    if args.task_id is None:
        if stage.run_all is not None:
            stage.run_all(args, tasks)
        else:
            run_here(tasks, args.quiet)
        return 0
    if not 0 <= args.task_id < len(groups):
        print(f"task {args.task_id}: only {len(groups)} array task(s), nothing to do")
        return 0
    run_here(groups[args.task_id], args.quiet)
    return 0


def _submit(stage: Stage, args: argparse.Namespace, tasks: list[arrays.Task], profile) -> int:
    from .executor import make_executor
    from .stages import command

    executor = make_executor(profile, args.logs, job_name=f"gcnn_spin-{stage.name}", tasks=tasks)
    submission = arrays.submit(tasks, executor, profile, command=command(stage.name, args.argv), deep=args.deep)
    print(f"{len(submission.jobs)} {stage.noun} tasks submitted ({executor.cluster}), {len(submission.skipped)} "
          f"already complete")
    array_ids = sorted({job.job_id.split("_")[0] for job in submission.job_list})
    if array_ids:
        print(f"job id(s): {', '.join(array_ids)}; logs: {Path(args.logs).resolve()}")
        print(f"watch: make status STAGE={stage.name}  |  python -m gcnn_spin.cluster.arrays status {args.logs}")
    if args.wait and submission.jobs:
        arrays.wait(submission, timeout_s=args.timeout_min * 60)
        report = arrays.status(args.logs, tasks, args.deep)
        print(arrays.format_status(report))
        if any(entry.state != "done" for entry in report):
            return 1
    return 0
