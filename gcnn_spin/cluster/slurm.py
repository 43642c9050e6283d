"""Thin helpers over SLURM's command-line tools: job states (sacct, squeue), waiting, cancelling.

States come from accounting (``sacct``, i.e. slurmdbd), which remembers finished, failed and cancelled
jobs long after ``squeue`` forgets them (``MinJobAge``), overlaid with the controller's live view
(``squeue --states=all``) because accounting lags by a moment (an array's tasks appear there only after
they start). Poll these instead of ``sbatch --wait``, whose own polling slows to every 32 s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterable

#: Job states in which the job still holds or waits for resources.
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING",
                            "SUSPENDED", "STOPPED"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
#: Terminal states other than COMPLETED.
FAILED_STATES = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                           "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"})
ACTIVE_STATES = PENDING_STATES | RUNNING_STATES


class SlurmError(RuntimeError):
    """A SLURM command failed or is missing."""


def _run(cmd: list[str], timeout_s: float = 30) -> str:
    if shutil.which(cmd[0]) is None:
        raise SlurmError(f"{cmd[0]} not found: is this a SLURM host (slurm-client installed)?")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise SlurmError(f"{' '.join(cmd)} did not answer within {timeout_s} s") from err
    if out.returncode != 0:
        lines = [line for line in (out.stderr + out.stdout).splitlines() if line.strip(" *")]
        raise SlurmError(f"{' '.join(cmd)} failed ({out.returncode}): {lines[0].strip() if lines else 'no output'}")
    return out.stdout


def _base_ids(job_ids: Iterable[str]) -> list[str]:
    """``["12_3", "12_4", "15"]`` -> ``["12", "15"]``: one query per array covers all its tasks."""
    return sorted({str(j).split("_")[0] for j in job_ids}, key=lambda s: (len(s), s))


def expand_job_id(job_id: str) -> list[str]:
    """``"12_[0-2,5%4]"`` -> ``["12_0", "12_1", "12_2", "12_5"]``; plain ids are returned as they are."""
    match = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job_id)
    if match is None:
        return [job_id]
    base, ranges = match.groups()
    out = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        out.extend(f"{base}_{k}" for k in range(int(lo), int(hi or lo) + 1))
    return out


def _parse_states(text: str) -> dict[str, str]:
    states: dict[str, str] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job_id, state = line.split("|", 1)
        if "." in job_id:  # job steps (12.batch, 12.0)
            continue
        state = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0" -> "CANCELLED"
        for one in expand_job_id(job_id.strip()):
            states[one] = state
    return states


def sacct_states(job_ids: Iterable[str]) -> dict[str, str]:
    """State of every job (and array task) of ``job_ids`` that accounting knows, keyed ``"12"``/``"12_3"``."""
    ids = _base_ids(job_ids)
    if not ids:
        return {}
    return _parse_states(_run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)]))


def squeue_states(job_ids: Iterable[str]) -> dict[str, str]:
    """State of the jobs among ``job_ids`` that the controller still knows (finished ones for ``MinJobAge``)."""
    ids = _base_ids(job_ids)
    if not ids:
        return {}
    try:
        text = _run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T", "-j", ",".join(ids)])
    except SlurmError:  # squeue fails when it has forgotten every one of the ids
        return {}
    return _parse_states(text)


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """The state of every job or array task of ``job_ids``: the controller's where it still knows the job,
    else accounting's (and accounting's final state over the controller's COMPLETING)."""
    job_ids = [str(j) for j in job_ids]
    states = sacct_states(job_ids)
    for job_id, live in squeue_states(job_ids).items():
        # The controller's state wins while it knows the job. COMPLETING included: accounting may already say
        # CANCELLED while the task's processes still run (until KillWait), and a resubmission then would put two
        # processes in one output folder.
        states[job_id] = live
    return states


def wait(job_ids: Iterable[str], timeout_s: float, poll_s: float = 2.0) -> dict[str, str]:
    """Poll until no job of ``job_ids`` is pending or running; their final states. Raises ``TimeoutError``."""
    job_ids = [str(j) for j in job_ids]
    deadline = time.monotonic() + timeout_s
    while True:
        states = job_states(job_ids)
        active = [j for j in job_ids if states.get(j, "UNKNOWN") in ACTIVE_STATES | {"UNKNOWN"}]
        if not active:
            return {j: states[j] for j in job_ids}
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still active after {timeout_s} s: "
                               + ", ".join(f"{j} ({states.get(j, 'UNKNOWN')})" for j in active))
        time.sleep(poll_s)


def cancel(job_ids: Iterable[str]) -> None:
    """``scancel`` the given jobs or array tasks."""
    ids = [str(j) for j in job_ids]
    if ids:
        _run(["scancel", *ids])
