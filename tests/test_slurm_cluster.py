"""The array layer on the real one-node cluster of jobs/local_cluster/start.sh (the ``ci`` profile).

Skipped without a cluster; failed instead when GCNN_SPIN_REQUIRE_SLURM=1 (CI). Every wait has a limit.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

import slurm_utils as su
from gcnn_spin.cluster import arrays, make_executor, slurm
from gcnn_spin.cluster.arrays import ResumableTask, Task

pytestmark = pytest.mark.slurm
slurm_cluster = su.slurm_cluster
job_pythonpath = su.job_pythonpath


def values(tmp_path: Path, n: int) -> list[Task]:
    return [Task(f"v{i}", tmp_path / "out" / f"v{i}.txt", su.write_value, (tmp_path / "out" / f"v{i}.txt", i))
            for i in range(n)]


def test_sbatch_array_and_sacct(slurm_cluster, tmp_path):
    """The cluster itself: a plain job and an array run, and accounting remembers them."""
    submit = ["sbatch", "--parsable", f"--partition={slurm_cluster.partition}", "--mem=100M",
              f"--output={tmp_path}/%x-%A_%a.out"]
    single = subprocess.run(submit + ["--job-name=host", "--wrap", "hostname"], check=True, capture_output=True,
                            text=True).stdout.strip()
    array = subprocess.run(submit + ["--job-name=arr", "--array=0-2", "--wrap", "echo $SLURM_ARRAY_TASK_ID"],
                           check=True, capture_output=True, text=True).stdout.strip()
    ids = [single, f"{array}_0", f"{array}_1", f"{array}_2"]
    assert slurm.wait(ids, timeout_s=60, poll_s=0.5) == dict.fromkeys(ids, "COMPLETED")
    assert {p.read_text().strip() for p in tmp_path.glob("arr-*.out")} == {"0", "1", "2"}


def test_job_array_through_the_ci_profile(slurm_cluster, tmp_path, job_pythonpath):
    ex = make_executor(slurm_cluster, tmp_path / "logs", "values")
    assert ex.cluster == "slurm"
    tasks = values(tmp_path, 3) + [Task("python", tmp_path / "out" / "py.txt", su.report_python,
                                        (tmp_path / "out" / "py.txt",))]
    sub = arrays.submit(tasks, ex, slurm_cluster)
    job_ids = [sub.jobs[t.task_id].job_id for t in tasks]
    assert len({j.split("_")[0] for j in job_ids}) == 1  # one array
    arrays.wait(sub, timeout_s=90, poll_s=0.5)
    assert [sub.jobs[t.task_id].result() for t in tasks[:3]] == [0, 1, 4]
    assert sub.jobs["python"].result() == sys.executable  # the venv's interpreter, not the system's
    assert su.sacct_eventually(job_ids) == dict.fromkeys(job_ids, "COMPLETED")
    assert {s.state for s in arrays.status(tmp_path / "logs")} == {"done"}


def test_arrays_are_split_under_max_array_size(slurm_cluster, tmp_path, job_pythonpath):
    profile = dataclasses.replace(slurm_cluster, max_array_size=2)
    sub = arrays.submit(values(tmp_path, 5), make_executor(profile, tmp_path / "logs", "split"), profile)
    by_array: dict[str, list[str]] = {}
    for task_id, job in sub.jobs.items():
        by_array.setdefault(job.job_id.split("_")[0], []).append(task_id)
    assert sorted(map(len, by_array.values())) == [1, 2, 2]
    arrays.wait(sub, timeout_s=90, poll_s=0.5)
    job_ids = [j.job_id for j in sub.job_list]
    assert su.sacct_eventually(job_ids) == dict.fromkeys(job_ids, "COMPLETED")  # accounting has every task


def test_tasks_with_markers_are_skipped_on_resubmission(slurm_cluster, tmp_path, job_pythonpath):
    ex = make_executor(slurm_cluster, tmp_path / "logs", "resubmit")
    tasks = values(tmp_path, 3)
    first = arrays.submit(tasks, ex, slurm_cluster)
    arrays.wait(first, timeout_s=90, poll_s=0.5)
    tasks[1].marker.unlink()  # as if task v1 had died before its marker
    second = arrays.submit(tasks, ex, slurm_cluster)
    assert list(second.jobs) == ["v1"] and second.skipped == ["v0", "v2"]
    assert second.jobs["v1"].job_id != first.jobs["v1"].job_id
    arrays.wait(second, timeout_s=90, poll_s=0.5)
    assert second.jobs["v1"].result() == 1
    report = {s.task_id: s for s in arrays.status(tmp_path / "logs")}
    assert {s.state for s in report.values()} == {"done"}
    assert report["v1"].job_id == second.jobs["v1"].job_id
    assert len(arrays.load_record(tmp_path / "logs")["submissions"]) == 2


@pytest.mark.slow
def test_cancelled_task_is_failed_and_result_does_not_hang(slurm_cluster, tmp_path, job_pythonpath):
    ex = make_executor(slurm_cluster, tmp_path / "logs", "cancel")
    out = tmp_path / "out"
    tasks = [Task("slow", out / "slow.txt", su.sleep_then_write, (out / "slow.txt", 600)),
             Task("quick", out / "quick.txt", su.write_value, (out / "quick.txt", 3))]
    sub = arrays.submit(tasks, ex, slurm_cluster)
    su.wait_for_file(out / "slow.txt.started", timeout_s=60)
    assert {s.task_id: s.state for s in arrays.status(tmp_path / "logs")}["slow"] == "running"
    slurm.cancel([sub.jobs["slow"].job_id])
    arrays.wait(sub, timeout_s=60, poll_s=0.5)
    report = {s.task_id: s for s in arrays.status(tmp_path / "logs")}
    assert report["quick"].state == "done"
    assert (report["slow"].state, report["slow"].detail) == ("failed", "CANCELLED")
    assert report["slow"].log.endswith("_0_log.err") and "CANCELLED" in Path(report["slow"].log).read_text()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        future = pool.submit(sub.jobs["slow"].result)
        with pytest.raises(submitit.core.utils.UncompletedJobError, match="CANCELLED"):
            future.result(timeout=60)  # submitit waits up to 15 s for a result file, then gives up
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_preempted_resumable_task_is_requeued_and_resumes(slurm_cluster, tmp_path, job_pythonpath):
    ex = make_executor(slurm_cluster, tmp_path / "logs", "resume")
    out = tmp_path / "out" / "r.txt"
    sub = arrays.submit([ResumableTask("r", out, su.resume_from_checkpoint, (out, 600))], ex, slurm_cluster)
    su.wait_for_file(Path(f"{out}.ckpt"), timeout_s=60)
    sub.jobs["r"]._interrupt()  # what SLURM sends on preemption: SIGTERM, then the USR2 that submitit traps
    arrays.wait(sub, timeout_s=120, poll_s=1)  # requeued jobs wait cred_expire (10 s here) before restarting
    assert sub.jobs["r"].result() == 2  # second run, resumed from the first run's checkpoint
    assert [s.state for s in arrays.status(tmp_path / "logs")] == ["done"]
    assert "requeueing to resume" in Path(sub.jobs["r"].paths.stdout).read_text()
