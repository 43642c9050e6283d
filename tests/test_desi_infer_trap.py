"""The requeue trap of ``jobs/desi_infer.sh`` as an array task, without a cluster.

SLURM sends USR1 to the batch script before the time limit (``--signal=B:USR1@600``). Whenever it comes after the
trap is set, the task must requeue itself exactly once, stop the stage and exit 0. Here ``scontrol`` only records its
arguments and the stage is a script that records its pid and sleeps; the signal comes at random moments of the start
(set-up, start line, starting the stage) and while the stage runs.
"""

import calendar
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DESI_INFER = Path(__file__).resolve().parents[1] / "jobs" / "desi_infer.sh"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads signal masks from /proc")

#: The stage: records its pid, then sleeps far longer than a test waits.
FAKE_STAGE = '#!/bin/bash\necho "$$" >> "$STAGE_PIDS"\nexec sleep 60\n'
#: Start-up signals per case (about 10 ms each). With command substitutions in the start line after the trap, about
#: half of those sent within 2 ms of the trap and one in ten within 12 ms ended on bash's "unexpected EOF" instead.
STARTUP_TRIES = 100
#: Longest random delays after the trap is set (s), alternating: the start line and starting the stage take a few ms.
STARTUP_SPREADS_S = (0.002, 0.012)
#: Variables the script refuses (a site may set them); a test must not inherit them.
UNPREFIXED = {"STORE", "RUNS", "PRED", "CLUSTER", "MODELS", "SEEDS", "BATCH_SIZE"}


@pytest.fixture
def task(tmp_path):
    """Environment of array task 3 of job 42 with a recording scontrol, and the stage as interpreter or container."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text('#!/bin/sh\necho "$*" >> "$SCONTROL_CALLS"\n')
    for name in ("python", "apptainer"):
        (fake / name).write_text(FAKE_STAGE)
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "GCNN_SPIN_")) and k not in UNPREFIXED}
    env.update(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_JOB_ID="42",
               SLURM_JOB_ID="42", GCNN_SPIN_PYTHON=str(fake / "python"), GCNN_SPIN_PRED=str(tmp_path / "pred"))
    return env


def catches_usr1(pid: int) -> bool:
    """Whether process ``pid`` has a handler for USR1 (its trap is set)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signal.SIGUSR1 - 1) & 1)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a stage the task killed has been reaped by the task's wait)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, timeout_s: float = 5.0) -> None:
    """Poll ``condition()`` every half millisecond until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.0005)


def signal_task(env: dict[str, str], folder: Path, when) -> tuple[int, str, list[str], list[int]]:
    """Run the script in ``folder``, send USR1 once ``when(process, folder)`` returns; exit status, stderr, the
    ``scontrol`` calls and the stage pids. A stage left running is killed, so that a failure leaves nothing behind."""
    folder.mkdir()
    env = {**env, "SCONTROL_CALLS": str(folder / "scontrol.txt"), "STAGE_PIDS": str(folder / "stage.txt")}
    with open(folder / "out.txt", "w") as out, open(folder / "err.txt", "w") as err:
        task = subprocess.Popen(["bash", str(DESI_INFER)], cwd=folder, env=env, stdout=out, stderr=err)
        try:
            when(task, folder)
            task.send_signal(signal.SIGUSR1)
            status = task.wait(timeout=10)
        finally:
            task.kill()
    calls = (folder / "scontrol.txt").read_text().splitlines() if (folder / "scontrol.txt").exists() else []
    pids = [int(p) for p in (folder / "stage.txt").read_text().split()] if (folder / "stage.txt").exists() else []
    left_running = [pid for pid in pids if alive(pid)]
    for pid in left_running:
        os.kill(pid, signal.SIGKILL)
    assert not left_running, f"the stage {left_running} outlived the task"
    return status, (folder / "err.txt").read_text(), calls, pids


@pytest.mark.parametrize("runner", ["interpreter", "container"])
def test_usr1_at_any_moment_of_the_start_requeues_once_and_exits_0(task, tmp_path, runner):
    if runner == "container":
        task["GCNN_SPIN_IMAGE"] = str(tmp_path / "gcnn_spin.sif")  # the set-up then runs realpath, sort and paste
    delays = random.Random(0)

    def after_the_trap(process, _folder):
        wait_for(lambda: catches_usr1(process.pid) or process.poll() is not None)
        time.sleep(delays.uniform(0, spread_s))

    for attempt in range(STARTUP_TRIES):
        spread_s = STARTUP_SPREADS_S[attempt % len(STARTUP_SPREADS_S)]
        status, stderr, calls, pids = signal_task(task, tmp_path / f"try{attempt}", after_the_trap)
        assert (status, stderr, calls) == (0, "", ["requeue 42"]), f"try {attempt}"
        assert len(pids) <= 1


def test_usr1_while_the_stage_runs_requeues_once_and_stops_it(task, tmp_path):
    def while_the_stage_runs(_process, folder):
        wait_for(lambda: (folder / "stage.txt").exists())

    status, stderr, calls, pids = signal_task(task, tmp_path / "task", while_the_stage_runs)
    assert (status, stderr, calls) == (0, "", ["requeue 42"])
    assert len(pids) == 1  # started, and (signal_task checks) no longer running
    log = (tmp_path / "task" / "out.txt").read_text()
    assert "gcnn_spin-infer: task 3 of job 42 on " in log and "(restart 0)" in log
    assert "time limit near: requeueing task 3 (job 42)" in log


def test_a_second_usr1_does_not_requeue_again(task, tmp_path):
    def twice(process, folder):
        wait_for(lambda: (folder / "stage.txt").exists())
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.001)

    status, stderr, calls, _ = signal_task(task, tmp_path / "task", twice)
    assert (status, stderr, calls) == (0, "", ["requeue 42"])


def test_the_start_line_names_the_host_and_the_utc_time(task, tmp_path):
    task["GCNN_SPIN_PYTHON"] = "true"
    result = subprocess.run(["bash", str(DESI_INFER)], cwd=tmp_path, env={**task, "TZ": "America/New_York"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    line, = result.stdout.splitlines()
    started = line.split(f" on {os.uname().nodename} at ")[1].split()[0]
    started_s = calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(started_s - time.time()) < 60  # UTC, whatever the task's time zone
