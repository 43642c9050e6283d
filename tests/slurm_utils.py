"""Fixtures and task functions for the cluster tests.

The task functions live at module level because submitit pickles them by reference: the job's Python
imports this module, so the ``job_pythonpath`` fixture puts this folder on the jobs' PYTHONPATH (the
local executor and ``sbatch`` both pass the environment on).

``slurm_cluster`` checks that the one-node cluster of ``jobs/local_cluster/start.sh`` answers and that
accounting works; otherwise it skips with the reason, or fails when ``GCNN_SPIN_REQUIRE_SLURM=1`` (CI).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from gcnn_spin.cluster import slurm
from gcnn_spin.config import ClusterProfile, load_cluster
from gcnn_spin.io import write_marker, write_text_atomic

TESTS_DIR = Path(__file__).resolve().parent
REQUIRE_ENV = "GCNN_SPIN_REQUIRE_SLURM"


@dataclasses.dataclass(frozen=True)
class ClusterCheck:
    ok: bool
    reason: str


def check_cluster(partition: str | None = None, timeout_s: float = 10) -> ClusterCheck:
    """Is there a controller that answers, an idle or busy node (in ``partition``), and working accounting?"""
    try:
        ping = slurm._run(["scontrol", "ping"], timeout_s)
        if "UP" not in ping:
            return ClusterCheck(False, f"slurmctld is not up: {ping.strip()}")
        cmd = ["sinfo", "-h", "-o", "%P|%a|%T"] + (["-p", partition] if partition else [])
        rows = [line.split("|") for line in slurm._run(cmd, timeout_s).splitlines() if line.strip()]
        if not rows:
            return ClusterCheck(False, f"sinfo lists no partition {partition or ''}".strip())
        usable = [r for r in rows if r[1] == "up" and r[2].rstrip("*~#$@+") in
                  {"idle", "mixed", "allocated", "completing"}]
        if not usable:
            return ClusterCheck(False, f"no usable node: sinfo says {rows}")
        slurm._run(["sacct", "-n", "-X", "-S", "now-1minutes", "-o", "JobID"], timeout_s)
    except slurm.SlurmError as err:
        return ClusterCheck(False, str(err))
    return ClusterCheck(True, f"partition {partition or rows[0][0].rstrip('*')} up, accounting answers")


@pytest.fixture(scope="session")
def slurm_cluster() -> ClusterProfile:
    """The ``ci`` cluster profile, once its partition takes jobs and ``sacct`` answers."""
    profile = load_cluster("ci")
    check = check_cluster(profile.partition)
    if not check.ok:
        reason = f"no usable SLURM cluster ({check.reason}); start one with jobs/local_cluster/start.sh"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return profile


@pytest.fixture
def job_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the jobs import this module (the task functions below)."""
    old = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS_DIR), old) if p))


# ----------------------------------------------------------------------------- task functions


def write_value(output: Path, value: int) -> int:
    """The shape of a real task: output atomically, marker last; returns ``value ** 2``."""
    write_text_atomic(output, f"{value}\n")
    write_marker(output, {"value": value})
    return value * value


def fail(output: Path, message: str) -> None:
    raise ValueError(message)


def forget_marker(output: Path) -> None:
    """Writes the output but not the marker: the task layer must call that a failure."""
    write_text_atomic(output, "half\n")


def sleep_then_write(output: Path, seconds: float) -> int:
    """A task that takes long enough to be cancelled while running."""
    write_text_atomic(Path(f"{output}.started"), str(os.getpid()))
    time.sleep(seconds)
    return write_value(output, 1)


def resume_from_checkpoint(output: Path, seconds: float) -> int:
    """Resumable: the first run leaves a checkpoint and waits to be interrupted; a rerun finishes from it."""
    checkpoint = Path(str(output) + ".ckpt")
    if checkpoint.exists():
        n_runs = int(checkpoint.read_text()) + 1
        write_text_atomic(checkpoint, str(n_runs))
        write_text_atomic(output, f"{n_runs}\n")
        write_marker(output)
        return n_runs
    write_text_atomic(checkpoint, "1")
    time.sleep(seconds)
    raise RuntimeError("was not interrupted")


def wait_for_file(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.2)


def sacct_eventually(job_ids: list[str], timeout_s: float = 20) -> dict[str, str]:
    """Accounting's final states of the jobs (slurmdbd records a job's end a moment after the controller)."""
    deadline = time.monotonic() + timeout_s
    while True:
        known = slurm.sacct_states(job_ids)
        states = {j: known.get(j, "MISSING") for j in job_ids}
        if not set(states.values()) & (slurm.ACTIVE_STATES | {"MISSING"}) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def report_python(output: Path) -> str:
    """The interpreter that runs the task (it must be the project's venv, not the system Python)."""
    write_value(output, 0)
    return sys.executable
