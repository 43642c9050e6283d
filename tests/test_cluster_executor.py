"""The executor layer without a SLURM cluster: profile mapping, sbatch rendering, array splitting, the
local executor end to end, status reports, and the sacct parsing helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle
import shlex
import sys
from pathlib import Path

import pytest
import submitit
from submitit.slurm import slurm as submitit_slurm

import slurm_utils as su
from gcnn_spin.cluster import arrays, executor, slurm
from gcnn_spin.cluster.arrays import IncompleteTaskError, ResumableTask, Task
from gcnn_spin.config import ClusterProfile, ConfigError, load_cluster
from gcnn_spin.errors import UserError
from gcnn_spin.io import marker_path, write_marker
from gcnn_spin.run import Run

job_pythonpath = su.job_pythonpath

A100 = ClusterProfile(name="a100", executor="slurm", partition="a100", account="astro", qos="high",
                      gpus_per_task=1, cpus_per_task=8, mem_gb=64, time_min=720, array_parallelism=2,
                      extra_sbatch={"constraint": "a100_80gb", "signal_delay_s": 120})


@pytest.fixture
def fake_slurm(monkeypatch):
    """Pretend sbatch/srun exist so that submitit builds (but never submits) SLURM jobs."""
    real_which = executor.shutil.which
    monkeypatch.setattr(executor.shutil, "which",
                        lambda name: f"/usr/bin/{name}" if name in ("sbatch", "srun") else real_which(name))
    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 2))


@pytest.fixture
def no_slurm(monkeypatch):
    real_which = executor.shutil.which
    monkeypatch.setattr(executor.shutil, "which",
                        lambda name: None if name in ("sbatch", "srun") else real_which(name))


def values(tmp_path: Path, n: int, fn=su.write_value) -> list[Task]:
    return [Task(f"v{i}", tmp_path / "out" / f"v{i}.txt", fn, (tmp_path / "out" / f"v{i}.txt", i))
            for i in range(n)]


# ----------------------------------------------------------------------------- backend and parameters


def test_auto_picks_slurm_only_where_sbatch_exists(fake_slurm):
    assert executor.resolve_backend(ClusterProfile(executor="auto")) == "slurm"
    assert executor.resolve_backend(ClusterProfile(executor="local")) == "local"


def test_auto_falls_back_to_local_and_slurm_without_sbatch_raises(no_slurm):
    assert executor.resolve_backend(ClusterProfile(executor="auto")) == "local"
    with pytest.raises(RuntimeError, match="sbatch"):
        executor.resolve_backend(ClusterProfile(executor="slurm"))


def test_unknown_executor_names_the_valid_ones():
    with pytest.raises(ConfigError, match="executor='slrum': must be one of auto, slurm, local"):
        load_cluster("local", ["executor=slrum"])


def test_profile_maps_to_namespaced_parameters():
    params = executor.executor_parameters(A100, "train")
    assert params["slurm_partition"] == "a100"
    assert params["slurm_gpus_per_task"] == 1
    assert params["slurm_account"] == "astro" and params["slurm_qos"] == "high"
    assert params["slurm_constraint"] == "a100_80gb" and params["slurm_signal_delay_s"] == 120
    assert (params["timeout_min"], params["mem_gb"], params["cpus_per_task"]) == (720, 64, 8)
    assert params["slurm_array_parallelism"] == 2 and params["name"] == "train"
    cpu = executor.executor_parameters(load_cluster("ci"), "x")
    assert "slurm_gpus_per_task" not in cpu and "slurm_account" not in cpu and "slurm_qos" not in cpu


def test_sbatch_script_carries_the_profile(fake_slurm, tmp_path):
    ex = executor.make_executor(A100, tmp_path / "logs", "train")
    assert ex.cluster == "slurm"
    script = ex._executor._make_submission_file_text("CMD", "uid")
    for flag in ("--partition=a100", "--gpus-per-task=1", "--time=720", "--mem=64GB", "--cpus-per-task=8",
                 "--account=astro", "--qos=high", "--constraint=a100_80gb", "--signal=USR2@120",
                 "--job-name=train"):
        assert f"#SBATCH {flag}\n" in script, flag
    assert "--gpus-per-node" not in script  # the local executor's GPU setting stays local
    array = submitit_slurm._make_sbatch_string(command="CMD", folder=tmp_path, map_count=7,
                                               **ex._executor.parameters)
    assert "#SBATCH --array=0-6%2\n" in array
    # No container: the task runs in this interpreter (the project's venv).
    assert ex._executor._submitit_command_str.startswith(shlex.quote(sys.executable) + " -u -m submitit")


def test_misspelt_extra_sbatch_key_raises_with_valid_names(tmp_path):
    profile = dataclasses.replace(load_cluster("local"), extra_sbatch={"partiton": "x"})
    with pytest.raises(ConfigError, match="cluster profile 'local': .*partiton.*Valid arguments"):
        executor.make_executor(profile, tmp_path, "x")


def test_container_python_command(tmp_path):
    image = tmp_path / "gcnn_spin.sif"
    image.write_bytes(b"")
    gpu = dataclasses.replace(A100, container_image=str(image), bind=("/data", "/scratch"))
    (tmp_path / "logs").mkdir()
    cmd = shlex.split(executor.python_command(gpu, tmp_path / "logs"))
    assert cmd[:3] == ["apptainer", "exec", "--nv"]
    assert cmd[cmd.index("--bind") + 1] == f"{(tmp_path / 'logs').resolve()},/data,/scratch"
    assert cmd[-2:] == [str(image.resolve()), "python"]
    cpu = dataclasses.replace(gpu, gpus_per_task=0)
    assert "--nv" not in shlex.split(executor.python_command(cpu, tmp_path))
    assert executor.python_command(load_cluster("ci"), tmp_path) is None


def test_container_command_reaches_the_sbatch_script(fake_slurm, tmp_path):
    image = tmp_path / "gcnn_spin.sif"
    image.write_bytes(b"")
    ex = executor.make_executor(dataclasses.replace(A100, container_image=str(image)), tmp_path / "l", "t")
    assert ex._executor._submitit_command_str.startswith("apptainer exec --nv --bind ")
    assert f"{image} python -u -m submitit.core._submit" in ex._executor._submitit_command_str


def stage_folders(tmp_path):
    """DATA with a store, RUNS with a finished run, PRED and LOGS, all outside the working tree."""
    data, runs, pred, logs = (tmp_path / name for name in ("data", "runs", "pred", "logs"))
    (data / "stores" / "survey.zarr").mkdir(parents=True)
    (runs / "resnet18" / "seed0").mkdir(parents=True)
    logs.mkdir()
    run = Run("resnet18", "resnet18", 0, runs / "resnet18" / "seed0", {"config_hash": "x"})
    tasks = [arrays.Task(task_id="resnet18/seed0/part-00000", output=pred / "resnet18" / "seed0" / "part-00000.parquet",
                         fn=print, kwargs={"store_path": str(data / "stores" / "survey.zarr"), "run": run,
                                           "config": "experiment", "rows": (0, 64)})]
    return tasks, data, runs, pred, logs


def test_container_binds_every_folder_the_tasks_read_and_write(tmp_path):
    tasks, data, runs, pred, logs = stage_folders(tmp_path)
    paths = executor.task_paths(tasks)
    assert paths == sorted([data / "stores" / "survey.zarr", runs / "resnet18" / "seed0",
                            pred / "resnet18" / "seed0" / "part-00000.parquet"])
    pred.mkdir()
    profile = dataclasses.replace(A100, bind=("/site/scratch",))
    # Each artifact's folder: a store's rows and shard markers, a run's marker and a part's lie beside them.
    assert executor.container_binds(profile, logs, paths) == [
        str(data / "stores"), str(logs), str(pred), str(runs / "resnet18"), "/site/scratch"]
    assert executor.container_binds(profile, tmp_path, paths) == [str(tmp_path), "/site/scratch"]  # nested: one
    with pytest.raises(UserError, match="would have to bind /"):
        executor.container_binds(profile, logs, [Path("/no_such_top_folder/x")])


def test_make_executor_creates_the_output_folders_it_binds(fake_slurm, tmp_path):
    tasks, data, runs, pred, logs = stage_folders(tmp_path)
    image = tmp_path / "gcnn_spin.sif"
    image.write_bytes(b"")
    ex = executor.make_executor(dataclasses.replace(A100, container_image=str(image)), logs, "t", tasks=tasks)
    assert (pred / "resnet18" / "seed0").is_dir()
    command = shlex.split(ex._executor._submitit_command_str)
    assert command[command.index("--bind") + 1].split(",") == [
        str(data / "stores"), str(logs), str(pred / "resnet18" / "seed0"), str(runs / "resnet18")]


def test_podman_runtime_runs_the_image_read_only_with_the_same_binds(tmp_path):
    tasks, data, runs, pred, logs = stage_folders(tmp_path)
    profile = dataclasses.replace(A100, container_image="localhost/gcnn_spin:cuda13", container_runtime="podman",
                                  container_command="/opt/site/podman-wrapper --flag")
    cmd = shlex.split(executor.python_command(profile, logs, executor.task_paths(tasks)))
    assert cmd[:5] == ["/opt/site/podman-wrapper", "--flag", "run", "--rm", "--read-only"]
    volumes = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--volume"]
    assert volumes == [f"{b}:{b}" for b in executor.container_binds(profile, logs, executor.task_paths(tasks))]
    envs = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--env"]
    assert {"SLURM_*", "SUBMITIT_*", "CUDA_VISIBLE_DEVICES"} <= set(envs)
    assert cmd[cmd.index("--device") + 1] == "nvidia.com/gpu=all"
    assert cmd[-3:] == ["--entrypoint", "python", "localhost/gcnn_spin:cuda13"]
    cpu = dataclasses.replace(profile, gpus_per_task=0, container_command="")
    cmd = shlex.split(executor.python_command(cpu, logs))
    assert cmd[0] == "podman" and "--device" not in cmd
    with pytest.raises(ConfigError, match="container_runtime='docker': must be one of apptainer, podman"):
        dataclasses.replace(profile, container_runtime="docker")


def test_missing_container_image_raises(tmp_path):
    profile = dataclasses.replace(load_cluster("local"), container_image=str(tmp_path / "none.sif"))
    with pytest.raises(FileNotFoundError, match="none.sif.*make container"):
        executor.make_executor(profile, tmp_path, "x")


def test_ci_profile_is_small_and_gpu_free():
    ci = load_cluster("ci")
    assert (ci.executor, ci.partition, ci.gpus_per_task) == ("slurm", "ci", 0)
    assert ci.mem_gb <= 2 and ci.time_min <= 30 and ci.max_array_size <= 1000


# ----------------------------------------------------------------------------- tasks and plans


def test_task_skips_when_done_and_fails_without_marker(tmp_path):
    out = tmp_path / "a.txt"
    with pytest.raises(IncompleteTaskError, match="forget_marker.*a.txt.done"):
        Task("a", out, su.forget_marker, (out,))()
    write_marker(out)
    assert Task("a", out, su.fail, (out, "must not run"))() is None


def test_plan_is_a_dry_run(tmp_path):
    tasks = values(tmp_path, 3)
    su.write_value(tasks[1].output, 1)
    before = sorted(tmp_path.rglob("*"))
    planned = arrays.plan(tasks)
    assert [(p.task_id, p.done) for p in planned] == [("v0", False), ("v1", True), ("v2", False)]
    assert sorted(tmp_path.rglob("*")) == before
    assert arrays.format_plan(planned).splitlines()[-1] == "3 tasks: 1 done, 2 to run"


def test_tasks_never_share_an_output(tmp_path):
    tasks = values(tmp_path, 2)
    with pytest.raises(ValueError, match="output.*v0.txt"):
        arrays.plan([tasks[0], dataclasses.replace(tasks[1], output=tasks[0].output)])
    with pytest.raises(ValueError, match="task_id.*v0"):
        arrays.plan([tasks[0], dataclasses.replace(tasks[1], task_id="v0")])


def test_resumable_task_is_checkpointable_and_pickles(tmp_path):
    task = ResumableTask("r", tmp_path / "r.txt", su.write_value, (tmp_path / "r.txt", 3))
    assert isinstance(task, submitit.helpers.Checkpointable)
    again = pickle.loads(pickle.dumps(task))
    assert again == task
    delayed = task.checkpoint()
    assert delayed.function is task and delayed.result() == 9


def test_chunks():
    assert arrays.chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert arrays.chunks([], 3) == []
    with pytest.raises(ValueError):
        arrays.chunks([1], 0)


class FakeJob:
    def __init__(self, job_id: str):
        self.job_id = job_id


class FakeSlurmExecutor:
    """Records how tasks are grouped into arrays (``batch()`` blocks) without a scheduler."""

    cluster = "slurm"

    def __init__(self, folder: Path):
        self.folder = folder
        self.arrays: list[list[Task]] = []
        self._open: list[Task] | None = None

    @contextlib.contextmanager
    def batch(self):
        self._open = []
        yield
        self.arrays.append(self._open)
        self._open = None

    def submit(self, task):
        assert self._open is not None, "submitted outside executor.batch()"
        self._open.append(task)
        return FakeJob(f"{100 + len(self.arrays)}_{len(self._open) - 1}")


def test_submit_splits_incomplete_tasks_into_arrays_of_max_size(tmp_path):
    tasks = values(tmp_path, 9)
    for done in (tasks[0], tasks[4]):
        su.write_value(done.output, 0)
    ex = FakeSlurmExecutor(tmp_path / "logs")
    profile = dataclasses.replace(load_cluster("ci"), max_array_size=3)
    sub = arrays.submit(tasks, ex, profile)
    assert [[t.task_id for t in a] for a in ex.arrays] == [["v1", "v2", "v3"], ["v5", "v6", "v7"], ["v8"]]
    assert sub.skipped == ["v0", "v4"]
    record = json.loads((tmp_path / "logs" / "submission.json").read_text())
    assert record["submissions"][0]["arrays"] == [{"job_id": "100", "n_tasks": 3}, {"job_id": "101", "n_tasks": 3},
                                                  {"job_id": "102", "n_tasks": 1}]
    assert record["tasks"]["v6"]["job_id"] == "101_1"
    assert record["tasks"]["v6"]["stderr"] == str(tmp_path / "logs" / "101_1_0_log.err")
    assert "job_id" not in record["tasks"]["v0"]  # done before: listed, never submitted


# ----------------------------------------------------------------------------- the local executor


def test_local_executor_runs_pending_tasks_in_parallel_groups(tmp_path, job_pythonpath):
    profile = dataclasses.replace(load_cluster("local"), array_parallelism=2)
    ex = executor.make_executor(profile, tmp_path / "logs", "values")
    assert ex.cluster == "local"
    tasks = values(tmp_path, 5)
    sub = arrays.submit(tasks, ex, profile)
    assert len(sub.job_list) == 2
    arrays.wait(sub, timeout_s=60, poll_s=0.2)
    assert sorted(r for job in sub.job_list for r in job.result()) == [0, 1, 4, 9, 16]
    report = arrays.status(tmp_path / "logs")
    assert [(s.task_id, s.state) for s in report] == [(f"v{i}", "done") for i in range(5)]
    again = arrays.submit(tasks, ex, profile)  # a relaunch runs only the tasks without a marker
    assert again.jobs == {} and again.skipped == [t.task_id for t in tasks]


def test_local_failures_are_reported_with_their_log(tmp_path, job_pythonpath):
    profile = load_cluster("local")  # array_parallelism 1: one process runs the tasks in turn
    ex = executor.make_executor(profile, tmp_path / "logs", "mixed")
    out = tmp_path / "out"
    tasks = [Task("boom", out / "boom.txt", su.fail, (out / "boom.txt", "boom!")),
             Task("half", out / "half.txt", su.forget_marker, (out / "half.txt",)),
             Task("ok", out / "ok.txt", su.write_value, (out / "ok.txt", 2))]
    sub = arrays.submit(tasks, ex, profile)
    arrays.wait(sub, timeout_s=60, poll_s=0.2)
    with pytest.raises(submitit.core.utils.FailedJobError, match="2 of 3 tasks failed"):
        sub.jobs["ok"].result()
    report = {s.task_id: s for s in arrays.status(tmp_path / "logs")}
    assert report["ok"].state == "done"  # a failed task does not stop the others
    assert report["boom"].state == report["half"].state == "failed"
    log = Path(report["boom"].log).read_text()
    assert "ValueError: boom!" in log and "IncompleteTaskError" in log


def test_status_lists_unsubmitted_tasks_as_not_started(tmp_path):
    tasks = values(tmp_path, 3)
    ex = FakeSlurmExecutor(tmp_path / "logs")
    arrays.submit(tasks[:1], ex, load_cluster("ci"))
    su.write_value(tasks[0].output, 0)  # finished: no scheduler needed to call it done
    report = arrays.status(tmp_path / "logs", tasks)
    assert [s.state for s in report] == ["done", "not_started", "not_started"]


def test_status_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        arrays.main(["--help"])
    assert exit_info.value.code == 0
    with pytest.raises(UserError, match="no submission.json"):
        arrays.main(["status", str(tmp_path)])
    tasks = values(tmp_path, 2)
    arrays.submit(tasks, FakeSlurmExecutor(tmp_path / "logs"), load_cluster("ci"))
    for task in tasks:
        su.write_value(task.output, 1)
    assert arrays.main(["status", str(tmp_path / "logs")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 done"
    assert arrays.main(["status", str(tmp_path / "logs"), "--json"]) == 0
    assert [s["state"] for s in json.loads(capsys.readouterr().out)] == ["done", "done"]


# ----------------------------------------------------------------------------- sacct parsing


def test_expand_job_ids():
    assert slurm.expand_job_id("12_[0-2,5%4]") == ["12_0", "12_1", "12_2", "12_5"]
    assert slurm.expand_job_id("12_3") == ["12_3"]
    assert slurm.expand_job_id("12") == ["12"]


def test_parse_sacct_states():
    text = "12_0|COMPLETED\n12_1|CANCELLED by 0\n12_[2-3]|PENDING\n12_0.batch|COMPLETED\n13|FAILED\n"
    assert slurm._parse_states(text) == {"12_0": "COMPLETED", "12_1": "CANCELLED", "12_2": "PENDING",
                                         "12_3": "PENDING", "13": "FAILED"}
    assert slurm._base_ids(["12_3", "12_4", "9", "100"]) == ["9", "12", "100"]


def test_marker_path_matches_io():
    assert Task("a", Path("x/a.parquet"), su.write_value).marker == marker_path(Path("x/a.parquet"))


# ----------------------------------------------------------------------------- status on any machine


@pytest.mark.parametrize("machine", ["no SLURM packages", "packages but no cluster", "a sacct that hangs"])
def test_status_of_finished_and_unsubmitted_tasks_needs_no_scheduler(tmp_path, monkeypatch, machine):
    """`make status` on a newcomer's machine: finished tasks are done by their markers, without asking SLURM."""
    from conftest import SLURM_QUERY_TOOLS, write_fake_tools

    bin_dir = tmp_path / "bin"
    if machine == "packages but no cluster":
        write_fake_tools(bin_dir, SLURM_QUERY_TOOLS, 'echo "sacct: error: Problem talking to the database" >&2; exit 1')
    elif machine == "a sacct that hangs":
        write_fake_tools(bin_dir, SLURM_QUERY_TOOLS, "sleep 600")
    bin_dir.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(bin_dir))  # nothing else: no real SLURM tool can be found
    tasks = values(tmp_path, 3)
    arrays.submit(tasks[:2], FakeSlurmExecutor(tmp_path / "logs"), load_cluster("ci"))
    for task in tasks[:2]:
        su.write_value(task.output, 0)
    assert [s.state for s in arrays.status(tmp_path / "logs", tasks)] == ["done", "done", "not_started"]
    assert arrays.main(["status", str(tmp_path / "logs")]) == 0
