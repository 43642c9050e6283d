"""The user's cluster commands for real on the one-node cluster of jobs/local_cluster/start.sh, with faults.

``make submit-train`` trains a tiny grid on the tiny synthetic survey, ``sbatch jobs/desi_infer.sh`` and
``make submit-infer`` predict the survey store with those runs, ``make submit-studies`` runs a study of them (the
same launcher for every stage, ``make status STAGE=...`` for each); then a task is killed mid-part, one
mid-training, and tasks are given bad inputs.
Every wait has a limit; every job still active when the module ends is cancelled. Skipped without a cluster,
failed instead when GCNN_SPIN_REQUIRE_SLURM=1 (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gcnn_spin.cluster import arrays, infer, slurm
from gcnn_spin.data.store import open_store
from gcnn_spin.io import marker_path, read_marker
from gcnn_spin.layout import plan_path, study_path
from gcnn_spin.run import finished_runs

try:  # tests/ as a package (it has an __init__.py) or as a plain folder on sys.path
    from . import slurm_utils as su
    from .test_store import corrupt_shards
except ImportError:
    import slurm_utils as su
    from test_store import corrupt_shards

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
slurm_cluster = su.slurm_cluster

REPO = Path(__file__).resolve().parents[1]
PROBS = ["p_cw", "p_acw", "p_other"]
TIMEOUT_S = 180  # per wait; only reached when something is wrong (every job here takes seconds)


# ----------------------------------------------------------------------------- helpers


def job_env(**extra: str) -> dict[str, str]:
    """The environment of submitted jobs: one thread per task (two cores, shared), plus ``extra``."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def run(cmd: list[str], env: dict[str, str] | None = None, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """Run a command from the repository root, as a user would."""
    return subprocess.run(cmd, cwd=REPO, env=env or job_env(), capture_output=True, text=True, timeout=timeout_s)


def make_submit_train(data: Path, root: Path, overrides: list[str], models: str, reaper: list[str],
                      refused: bool = False):
    """``make submit-train`` on the ci profile with runs in ``root/runs`` and logs in ``root/logs``; it must
    succeed, or with ``refused`` fail before submitting anything."""
    result = run(["make", "submit-train", f"DATA={data}", f"RUNS={root / 'runs'}", f"LOGS={root / 'logs'}",
                  "CONFIG=demo", "CLUSTER=ci", f"MODELS={models}", "SEEDS=0", "SET=" + " ".join(overrides)])
    assert (result.returncode != 0) == refused, result.stdout + result.stderr
    if (root / "logs" / "train" / arrays.SUBMISSION_FILE).exists():
        record = arrays.load_record(root / "logs" / "train")
        reaper.extend(e["job_id"] for e in record["tasks"].values() if "job_id" in e)
    return result


def make_submit(target: str, record_dir: Path, reaper: list[str], *variables: str) -> subprocess.CompletedProcess:
    """``make submit-{stage} CLUSTER=ci VARIABLES...``; the submitted job ids go to the reaper."""
    result = run(["make", target, "CLUSTER=ci", *variables])
    assert result.returncode == 0, result.stdout + result.stderr
    if (record_dir / arrays.SUBMISSION_FILE).exists():
        reaper.extend(e["job_id"] for e in arrays.load_record(record_dir)["tasks"].values() if "job_id" in e)
    return result


def make_status(logs: Path, stage: str = "train") -> tuple[subprocess.CompletedProcess, dict[str, list[str]], float]:
    """``make -s status LOGS=... STAGE=...``: the result, ``task_id -> fields of its line`` and how long it took."""
    start = time.monotonic()
    result = run(["make", "-s", "status", f"LOGS={logs}", f"STAGE={stage}"], timeout_s=60)
    lines = {fields[1]: fields for fields in map(str.split, result.stdout.splitlines()) if len(fields) > 2}
    return result, lines, time.monotonic() - start


def wait_tasks(log_dir: Path, timeout_s: float = TIMEOUT_S) -> dict[str, arrays.TaskStatus]:
    """Poll the stage's status until no task is pending, running or unknown to the scheduler."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = {s.task_id: s for s in arrays.status(log_dir)}
        if not {s.state for s in report.values()} & {"pending", "running", "unknown"}:
            return report
        if time.monotonic() > deadline:
            raise TimeoutError(f"tasks in {log_dir} still active after {timeout_s} s: {report}")
        time.sleep(1)


def wait_processes_gone(job_ids: list[str], timeout_s: float = 60) -> None:
    """Wait until the controller no longer runs or cleans up the jobs (accounting says CANCELLED at once, while
    the job's processes may still run for KillWait seconds)."""
    deadline = time.monotonic() + timeout_s
    while set(slurm.squeue_states(job_ids).get(j, "") for j in job_ids) & slurm.RUNNING_STATES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs {job_ids} still running or completing after {timeout_s} s")
        time.sleep(0.5)


def wait_for(predicate, what: str, job_id: str, timeout_s: float = TIMEOUT_S, poll_s: float = 0.2) -> None:
    """Poll ``predicate`` while job ``job_id`` is still queued or running (fail at once when it ended)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        state = slurm.job_states([job_id]).get(job_id, "UNKNOWN")
        if state not in slurm.ACTIVE_STATES | {"UNKNOWN"} and not predicate():
            raise AssertionError(f"job {job_id} ended ({state}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s} s")
        time.sleep(poll_s)


#: A test job's time limit and its requeue signal (jobs/desi_infer.sh asks USR1 600 s before the limit: with a
#: limit of 10 min or less, SLURM would signal at once and the trap requeue the task).
SHORT_LIMIT = ("--time=10", "--signal=B:USR1@60")


def sbatch_infer(env: dict[str, str], array: str, log_dir: Path, reaper: list[str]) -> tuple[str, list[str]]:
    """``sbatch jobs/desi_infer.sh`` with the header's A100/GPU/64G asks overridden for the ci partition, and a
    10 min limit with the requeue signal 1 min before it (the header's 10 min before would requeue at once)."""
    log_dir.mkdir(parents=True, exist_ok=True)  # SLURM does not create the --output folder: no log, no job
    result = run(["sbatch", "--parsable", "--export=ALL", "--partition=ci", "--gres=none", "--cpus-per-task=1",
                  "--mem=1G", *SHORT_LIMIT, f"--array={array}", f"--output={log_dir}/%A_%a.out",
                  "jobs/desi_infer.sh"], env=env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split(";")[0]
    task_ids = slurm.expand_job_id(f"{job_id}_[{array}]")
    reaper.extend(task_ids)
    return job_id, task_ids


def infer_env(store: Path, runs: Path, pred: Path, **extra: str) -> dict[str, str]:
    return job_env(GCNN_SPIN_STORE=str(store), GCNN_SPIN_RUNS=str(runs), GCNN_SPIN_PRED=str(pred), **extra)


def merged_predictions(pred: Path, model: str, seed: int, n_parts: int) -> pd.DataFrame:
    """Every part of one run, each checked complete (its marker), concatenated in part order."""
    paths = [infer.part_path(pred, model, seed, i) for i in range(n_parts)]
    for path in paths:
        assert path.exists() and marker_path(path).exists(), path
    assert sorted((pred / model / f"seed{seed}").glob("part-*.parquet")) == paths  # no part past the last
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def assert_equals_whole_pass(merged: pd.DataFrame, whole: pd.DataFrame, n_ok: int) -> None:
    assert list(merged.columns) == infer.PREDICTION_COLUMNS
    assert merged["dr8_id"].is_unique and len(merged) == n_ok  # no lost, no duplicated galaxy
    assert merged["dr8_id"].tolist() == whole["dr8_id"].tolist()
    assert np.array_equal(merged[["ra", "dec"]].to_numpy(), whole[["ra", "dec"]].to_numpy())
    np.testing.assert_allclose(merged[PROBS].to_numpy(), whole[PROBS].to_numpy(), rtol=0, atol=1e-5)


def temporary_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*") if p.name.endswith(".tmp"))


def task_python_pid(job_id: str, log_dir: Path) -> int:
    """The pid of the Python process that runs submitit task ``job_id`` (not its srun or batch shell)."""
    out = run(["scontrol", "listpids", job_id], timeout_s=30)
    assert out.returncode == 0, out.stderr
    pids = []
    for line in out.stdout.splitlines()[1:]:
        pid = int(line.split()[0])
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if Path(argv[0]).name.startswith("python") and "submitit.core._submit" in argv \
                and str(log_dir.resolve()) in argv:
            pids.append(pid)
    assert len(pids) == 1, (job_id, out.stdout, pids)
    return pids[0]


#: Test-only fault injection, put first on the jobs' PYTHONPATH: in the one array task named by
#: GCNN_SPIN_TEST_SLOW_TASK every batch of the loader waits, so that the task can be killed mid-part.
#: (The tiny survey predicts a part in a fifth of a second even one image per batch.) Data are untouched.
SLOW_TASK_SITECUSTOMIZE = textwrap.dedent('''
    import os

    if os.environ.get("SLURM_ARRAY_TASK_ID") == os.environ.get("GCNN_SPIN_TEST_SLOW_TASK"):
        import time

        from gcnn_spin.data import loader

        _delay = float(os.environ["GCNN_SPIN_TEST_BATCH_DELAY"])
        _iter = loader.StoreLoader.__iter__

        def _slow_iter(self):
            for batch in _iter(self):
                time.sleep(_delay)
                yield batch

        loader.StoreLoader.__iter__ = _slow_iter
''')


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reaper(slurm_cluster):
    """Job ids submitted here; those still active at the end are cancelled (a failed test leaves no job)."""
    job_ids: list[str] = []
    yield job_ids
    if job_ids:
        states = slurm.job_states(job_ids)
        active = [j for j in job_ids if states.get(j, "UNKNOWN") in slurm.ACTIVE_STATES]
        if active:
            slurm.cancel(active)


@pytest.fixture(scope="module")
def grid(slurm_cluster, reaper, tiny_dataset, tmp_path_factory):
    """``make submit-train`` of resnet18 and gc_resnet18 (seed 0) on the tiny survey, waited for."""
    _, data_dir, overrides = tiny_dataset
    root = tmp_path_factory.mktemp("grid")
    start = time.monotonic()
    submitted = make_submit_train(data_dir, root, list(overrides), "resnet18 gc_resnet18", reaper)
    report = wait_tasks(root / "logs" / "train")
    return SimpleNamespace(root=root, runs=root / "runs", logs=root / "logs", data=data_dir, overrides=overrides,
                           submitted=submitted, report=report, seconds=time.monotonic() - start)


@pytest.fixture(scope="module")
def survey(grid):
    """The survey store, its parts, and one whole pass of every finished run over it (in this process)."""
    from gcnn_spin.predict import load_exported, predict_probabilities

    path = grid.data / "stores" / "survey.zarr"
    store = open_store(path)
    runs = [(r.model, r.seed, r.path) for r in finished_runs(grid.runs)]
    whole = {(model, seed): predict_probabilities(load_exported(run_dir), store, progress=False)
             for model, seed, run_dir in runs}
    return SimpleNamespace(path=path, n_parts=len(infer.store_parts(store)), n_ok=int(store.ok.sum()), runs=runs,
                           whole=whole)


@pytest.fixture(scope="module")
def uninterrupted(grid, survey, reaper, tmp_path_factory):
    """``sbatch --array=$(make -s infer-array STORE=... RUNS=...) jobs/desi_infer.sh`` over the grid's runs."""
    root = tmp_path_factory.mktemp("infer")
    printed = run(["make", "-s", "infer-array", f"STORE={survey.path}", f"RUNS={grid.runs}", "CLUSTER=ci"])
    assert printed.returncode == 0, printed.stderr
    start = time.monotonic()
    job_id, task_ids = sbatch_infer(infer_env(survey.path, grid.runs, root / "pred"), printed.stdout.strip(),
                                    root / "logs", reaper)
    states = slurm.wait(task_ids, timeout_s=TIMEOUT_S, poll_s=1)
    return SimpleNamespace(root=root, pred=root / "pred", logs=root / "logs", printed=printed, job_id=job_id,
                           task_ids=task_ids, states=states, seconds=time.monotonic() - start)


# ----------------------------------------------------------------------------- the commands, for real


def test_make_submit_train_trains_the_grid(grid):
    assert "2 training tasks submitted (slurm), 0 already complete" in grid.submitted.stdout
    assert {s.state for s in grid.report.values()} == {"done"}, grid.report
    record = arrays.load_record(grid.logs / "train")
    assert [a["n_tasks"] for s in record["submissions"] for a in s["arrays"]] == [2]  # one array of two tasks
    for model in ("resnet18", "gc_resnet18"):
        run_dir = grid.runs / model / "seed0"
        marker = read_marker(run_dir)
        assert marker is not None and marker["model"] == model and marker["epochs"] == 2
        assert marker["provenance"]["slurm_array_job_id"] == record["submissions"][0]["arrays"][0]["job_id"]
        for name in ("metrics.json", "model_export.pt", "history.csv", "test_predictions.parquet"):
            assert (run_dir / name).exists(), (model, name)
        assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [1, 2]
        # every SET item reached the task through make's quoting, the braces of model_options included
        experiment = json.loads((run_dir / "config.json").read_text())["experiment"]
        assert experiment["train"]["model_options"] == {"base_width": 4} and experiment["data"]["image_size"] == 33
    job_ids = [s.job_id for s in grid.report.values()]
    assert su.sacct_eventually(job_ids) == dict.fromkeys(job_ids, "COMPLETED")

    result, lines, _ = make_status(grid.logs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {k: v[0] for k, v in lines.items()} == {"resnet18/seed0": "done", "gc_resnet18/seed0": "done"}
    assert "2 done" in result.stdout

    again = run(["make", "submit-train", f"DATA={grid.data}", f"RUNS={grid.runs}", f"LOGS={grid.logs}",
                 "CONFIG=demo", "CLUSTER=ci", "MODELS=resnet18 gc_resnet18", "SEEDS=0",
                 "SET=" + " ".join(grid.overrides)])
    assert again.returncode == 0 and "0 training tasks submitted (slurm), 2 already complete" in again.stdout


def test_desi_infer_array_merges_to_one_whole_pass(grid, survey, uninterrupted):
    assert uninterrupted.printed.returncode == 0
    assert uninterrupted.printed.stdout.strip() == f"0-{survey.n_parts - 1}" and survey.n_parts >= 3
    assert uninterrupted.states == dict.fromkeys(uninterrupted.task_ids, "COMPLETED")
    assert [(m, s) for m, s, _ in survey.runs] == [("gc_resnet18", 0), ("resnet18", 0)]
    for model, seed, _ in survey.runs:
        for i in range(survey.n_parts):
            marker = read_marker(infer.part_path(uninterrupted.pred, model, seed, i))
            assert marker is not None and marker["task_id"] == i
            assert marker["provenance"]["slurm_array_job_id"] == uninterrupted.job_id
            assert marker["provenance"]["slurm_array_task_id"] == str(i)
        merged = merged_predictions(uninterrupted.pred, model, seed, survey.n_parts)
        assert_equals_whole_pass(merged, survey.whole[model, seed], survey.n_ok)
    for i in range(survey.n_parts):  # the logs went where --output said, one per task
        log = (uninterrupted.logs / f"{uninterrupted.job_id}_{i}.out").read_text()
        assert f"gcnn_spin-infer: task {i} of job {uninterrupted.job_id}" in log
    assert temporary_files(uninterrupted.pred) == []


def test_make_submit_infer_runs_the_same_stage_through_submitit(grid, survey, reaper, tmp_path):
    pred, logs = tmp_path / "pred", tmp_path / "logs"
    n_tasks = len(survey.runs) * survey.n_parts
    variables = (f"STORE={survey.path}", f"RUNS={grid.runs}", f"PRED={pred}", f"LOGS={logs}")
    submitted = make_submit("submit-infer", logs / "infer", reaper, *variables)
    assert f"{n_tasks} inference tasks submitted (slurm), 0 already complete" in submitted.stdout
    report = wait_tasks(logs / "infer")
    assert {s.state for s in report.values()} == {"done"}, report
    assert json.loads(plan_path(pred).read_text())["n_parts"] == survey.n_parts
    for model, seed, _ in survey.runs:
        merged = merged_predictions(pred, model, seed, survey.n_parts)
        assert_equals_whole_pass(merged, survey.whole[model, seed], survey.n_ok)
        marker = read_marker(infer.part_path(pred, model, seed, 0))
        assert marker["run_identity"]["config_hash"] == read_marker(grid.runs / model / f"seed{seed}")["config_hash"]
    result, lines, _ = make_status(logs, "infer")
    assert result.returncode == 0 and f"{n_tasks} done" in result.stdout
    assert lines[f"{survey.runs[0][0]}/seed0/part-00000"][0] == "done"
    again = make_submit("submit-infer", logs / "infer", reaper, *variables)
    assert f"0 inference tasks submitted (slurm), {n_tasks} already complete" in again.stdout
    assert temporary_files(pred) == []


def test_make_submit_studies_runs_a_study_through_the_same_launcher(grid, reaper, tmp_path):
    results, logs = tmp_path / "results", tmp_path / "logs"
    variables = (f"RUNS={grid.runs}", f"DATA={grid.data}", f"RESULTS={results}", f"LOGS={logs}", "STUDIES=recovery")
    submitted = make_submit("submit-studies", logs / "studies", reaper, *variables)
    assert "2 study tasks submitted (slurm), 0 already complete" in submitted.stdout
    report = wait_tasks(logs / "studies")
    assert set(report) == {"recovery/resnet18/seed0", "recovery/gc_resnet18/seed0"}
    assert {s.state for s in report.values()} == {"done"}, report
    for model in ("resnet18", "gc_resnet18"):
        marker = read_marker(study_path(results, "recovery", model, 0))
        assert (marker["model"], marker["seed"]) == (model, 0)
        assert marker["provenance"]["slurm_array_job_id"] == report[f"recovery/{model}/seed0"].job_id.split("_")[0]
        assert len(pd.read_parquet(study_path(results, "recovery", model, 0))) > 0
    result, lines, _ = make_status(logs, "studies")
    assert result.returncode == 0 and "2 done" in result.stdout


# ----------------------------------------------------------------------------- faults


def test_killed_inference_task_reruns_to_the_uninterrupted_result(grid, survey, uninterrupted, reaper, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLOW_TASK_SITECUSTOMIZE)
    pred, logs, victim = tmp_path / "pred", tmp_path / "logs", 1
    (first_model, first_seed, _), (second_model, second_seed, _) = survey.runs
    first_part = infer.part_path(pred, first_model, first_seed, victim)
    second_part = infer.part_path(pred, second_model, second_seed, victim)
    array = f"0-{survey.n_parts - 1}"
    slow = infer_env(survey.path, grid.runs, pred, GCNN_SPIN_BATCH_SIZE="8", GCNN_SPIN_TEST_SLOW_TASK=str(victim),
                     GCNN_SPIN_TEST_BATCH_DELAY="0.5",
                     PYTHONPATH=os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])))
    job_id, task_ids = sbatch_infer(slow, array, logs, reaper)
    # the victim has finished its part for the first run and is predicting the second run's (8 batches, 4 s)
    wait_for(lambda: marker_path(first_part).exists(), f"the marker of {first_part}", f"{job_id}_{victim}")
    assert not second_part.exists() and not marker_path(second_part).exists()
    slurm.cancel([f"{job_id}_{victim}"])
    states = slurm.wait(task_ids, timeout_s=TIMEOUT_S, poll_s=1)
    wait_processes_gone(task_ids)
    assert states == {t: "CANCELLED" if t == f"{job_id}_{victim}" else "COMPLETED" for t in task_ids}
    assert "CANCELLED" in (logs / f"{job_id}_{victim}.out").read_text()
    assert not second_part.exists() and not marker_path(second_part).exists()  # nothing half-written counts
    done_before = {p: p.stat().st_mtime_ns for p in pred.rglob("part-*.parquet.done")}
    assert len(done_before) == 2 * survey.n_parts - 1

    again_id, again_ids = sbatch_infer(infer_env(survey.path, grid.runs, pred), array, logs, reaper)
    assert slurm.wait(again_ids, timeout_s=TIMEOUT_S, poll_s=1) == dict.fromkeys(again_ids, "COMPLETED")
    # the rerun wrote only the missing part; every other part kept its first marker
    assert {p: p.stat().st_mtime_ns for p in done_before} == done_before
    assert read_marker(second_part)["provenance"]["slurm_array_job_id"] == again_id
    for model, seed, _ in survey.runs:
        merged = merged_predictions(pred, model, seed, survey.n_parts)
        assert_equals_whole_pass(merged, survey.whole[model, seed], survey.n_ok)
        reference = merged_predictions(uninterrupted.pred, model, seed, survey.n_parts)
        assert merged["dr8_id"].tolist() == reference["dr8_id"].tolist()
        np.testing.assert_allclose(merged[PROBS].to_numpy(), reference[PROBS].to_numpy(), rtol=0, atol=1e-6)
    assert temporary_files(pred) == []


def test_killed_training_task_resumes_from_its_checkpoint(slurm_cluster, reaper, tiny_dataset, tmp_path):
    _, data_dir, overrides = tiny_dataset
    n_epochs = 20
    settings = [*overrides, f"train.epochs={n_epochs}"]
    run_dir, logs = tmp_path / "runs" / "resnet18" / "seed0", tmp_path / "logs"
    make_submit_train(data_dir, tmp_path, settings, "resnet18", reaper)
    first = arrays.load_record(logs / "train")["tasks"]["resnet18/seed0"]
    wait_for(lambda: (run_dir / "checkpoint.pt").exists(), "the checkpoint of epoch 1", first["job_id"])
    pid = task_python_pid(first["job_id"], logs / "train")
    os.kill(pid, signal.SIGKILL)  # mid-epoch: an epoch is a few hundred ms, saving a checkpoint a few
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # gone, or a zombie for srun to reap
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.05)
    killed_epoch = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["epoch"]
    history_before = pd.read_csv(run_dir / "history.csv")
    assert 1 <= killed_epoch < n_epochs and not marker_path(run_dir).exists()

    report = wait_tasks(logs / "train")
    wait_processes_gone([first["job_id"]])
    assert (report["resnet18/seed0"].state, report["resnet18/seed0"].detail) == ("failed", "FAILED")
    result, lines, _ = make_status(logs)
    assert lines["resnet18/seed0"][:2] == ["failed", "resnet18/seed0"] and first["stderr"] in result.stdout

    resubmitted = make_submit_train(data_dir, tmp_path, settings, "resnet18", reaper)
    assert "1 training tasks submitted (slurm), 0 already complete" in resubmitted.stdout
    second = arrays.load_record(logs / "train")["tasks"]["resnet18/seed0"]
    assert second["job_id"] != first["job_id"]
    assert wait_tasks(logs / "train")["resnet18/seed0"].state == "done"
    assert read_marker(run_dir)["epochs"] == n_epochs
    assert f"resuming after epoch {killed_epoch}" in Path(second["stderr"]).read_text()
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(1, n_epochs + 1))
    # the epochs before the kill are kept as they were, not retrained
    pd.testing.assert_frame_equal(history.iloc[:len(history_before)], history_before)
    assert (run_dir / "model_export.pt").exists() and (run_dir / "metrics.json").exists()
    assert make_status(logs)[1]["resnet18/seed0"][0] == "done"


def test_failing_tasks_are_reported_failed_with_their_logs(slurm_cluster, reaper, tiny_dataset, tmp_path):
    _, data_dir, overrides = tiny_dataset
    bad_store = Path("/nonexistent/survey.zarr")
    start = time.monotonic()
    printed = run(["make", "-s", "infer-array", f"STORE={bad_store}", f"RUNS={tmp_path / 'runs'}"], timeout_s=60)
    assert printed.returncode != 0 and f"no Zarr store at {bad_store}" in printed.stderr
    assert time.monotonic() - start < 30

    # a data folder without stores is refused before anything is queued
    refused = make_submit_train(tmp_path / "no_data", tmp_path, list(overrides), "resnet18", reaper, refused=True)
    assert f"no train store at {tmp_path / 'no_data' / 'stores' / 'train.zarr'}" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "logs" / "train").exists()

    # a bad store for inference, and for training stores whose shard bytes are corrupted (opening cannot tell,
    # the task's first read does), submitted together
    damaged = tmp_path / "damaged"
    shutil.copytree(data_dir / "stores", damaged / "stores")
    corrupt_shards(damaged / "stores" / "train.zarr")
    infer_logs = tmp_path / "infer_logs"
    job_id, task_ids = sbatch_infer(infer_env(bad_store, tmp_path / "runs", tmp_path / "pred"), "0-1",
                                    infer_logs, reaper)
    make_submit_train(damaged, tmp_path, list(overrides), "resnet18", reaper)

    assert slurm.wait(task_ids, timeout_s=TIMEOUT_S, poll_s=1) == dict.fromkeys(task_ids, "FAILED")
    for task_id in task_ids:
        log = (infer_logs / f"{task_id}.out").read_text()
        assert f"no Zarr store at {bad_store}" in log
    assert not (tmp_path / "pred").exists()

    report = wait_tasks(tmp_path / "logs" / "train")
    assert report["resnet18/seed0"].state == "failed"
    result, lines, seconds = make_status(tmp_path / "logs")
    assert seconds < 30 and result.returncode != 0  # status answers promptly and says something failed
    fields = lines["resnet18/seed0"]
    assert fields[:2] == ["failed", "resnet18/seed0"] and "FAILED" in fields and "log:" in fields
    log = Path(fields[fields.index("log:") + 1])
    assert log == Path(report["resnet18/seed0"].log) and log.exists()
    train_store = (damaged / "stores" / "train.zarr").resolve()
    assert re.search(rf"store {re.escape(str(train_store))}: shard \d+ \(rows \d+-\d+\) is unusable: reading it "
                     r"failed: .*; rebuild it with: python data_prep/build_store\.py ", log.read_text())
    assert "1 failed" in result.stdout
    assert not marker_path(tmp_path / "runs" / "resnet18" / "seed0").exists()


def sbatch_ci(env: dict[str, str], *options: str) -> str:
    """``sbatch [OPTIONS] jobs/desi_infer.sh`` on the ci partition (no GPU); its job id."""
    result = run(["sbatch", "--parsable", "--export=ALL", "--partition=ci", "--gres=none", "--cpus-per-task=1",
                  "--mem=1G", *options, "jobs/desi_infer.sh"], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def test_desi_infer_requeues_a_task_at_its_time_limit_and_redoes_its_part(grid, survey, reaper, tmp_path):
    """--signal=B:USR1 before the time limit: the trap requeues the task, which redoes the part it was writing."""
    shim = tmp_path / "shim"
    shim.mkdir()
    # Slow (5 s a batch) only before the first requeue: the first run cannot finish part 0 within its limit.
    (shim / "sitecustomize.py").write_text('import os\nif os.environ.get("SLURM_RESTART_COUNT", "0") != "0":\n'
                                           '    os.environ["GCNN_SPIN_TEST_SLOW_TASK"] = "none"\n'
                                           + SLOW_TASK_SITECUSTOMIZE)
    pred, logs = tmp_path / "pred", tmp_path / "logs"
    logs.mkdir()
    env = infer_env(survey.path, grid.runs, pred, GCNN_SPIN_BATCH_SIZE="8", GCNN_SPIN_TEST_SLOW_TASK="0",
                    GCNN_SPIN_TEST_BATCH_DELAY="5", GCNN_SPIN_CLUSTER="ci",
                    PYTHONPATH=os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])))
    # A 2 min limit and USR1 70 s before it (SLURM signals up to a minute early: at 0-50 s of the first run).
    job_id = sbatch_ci(env, "--array=0", "--time=2", "--signal=B:USR1@70", f"--output={logs}/%A_%a.out")
    reaper.append(f"{job_id}_0")
    assert slurm.wait([f"{job_id}_0"], timeout_s=480, poll_s=2) == {f"{job_id}_0": "COMPLETED"}
    log = (logs / f"{job_id}_0.out").read_text()
    assert "time limit near: requeueing task 0" in log and "(restart 1)" in log, log
    part = infer.store_parts(open_store(survey.path))[0]
    for model, seed, _ in survey.runs:
        path = infer.part_path(pred, model, seed, 0)
        marker = read_marker(path)
        assert marker is not None and marker["provenance"]["slurm_array_job_id"] == job_id
        predicted = pd.read_parquet(path)
        whole = survey.whole[model, seed]
        expected = whole[whole["dr8_id"].isin(predicted["dr8_id"])]
        assert len(predicted) == len(expected) > 0 and len(predicted) <= len(part.rows)
        np.testing.assert_allclose(predicted[PROBS].to_numpy(), expected[PROBS].to_numpy(), rtol=0, atol=1e-5)
    assert temporary_files(pred) == []  # the killed first run left nothing half-written


def test_plain_sbatch_of_desi_infer_queues_one_task_per_part(grid, survey, reaper, tmp_path):
    """Without --array, the job submits the script again as an array of exactly the planned parts and ends."""
    pred, logs = tmp_path / "pred", tmp_path / "logs"
    logs.mkdir()
    env = infer_env(survey.path, grid.runs, pred, GCNN_SPIN_CLUSTER="ci", SBATCH_OUTPUT=f"{logs}/%A_%a.out")
    launcher = sbatch_ci(env, *SHORT_LIMIT)
    reaper.append(launcher)
    assert slurm.wait([launcher], timeout_s=TIMEOUT_S, poll_s=1) == {launcher: "COMPLETED"}
    launcher_log = "".join(p.read_text() for p in logs.glob(f"{launcher}_*.out"))
    assert f"--array=0-{survey.n_parts - 1}%64" in launcher_log, launcher_log
    array_id = re.search(r"Submitted batch job (\d+)", launcher_log).group(1)
    task_ids = slurm.expand_job_id(f"{array_id}_[0-{survey.n_parts - 1}]")
    reaper.extend(task_ids)
    assert slurm.wait(task_ids, timeout_s=TIMEOUT_S, poll_s=1) == dict.fromkeys(task_ids, "COMPLETED")
    accounted = run(["sacct", "-n", "-X", "-P", "-j", array_id, "-o", "JobID"]).stdout.split()
    assert sorted(accounted) == sorted(task_ids)  # not one task more than there are parts
    for model, seed, _ in survey.runs:
        merged = merged_predictions(pred, model, seed, survey.n_parts)
        assert_equals_whole_pass(merged, survey.whole[model, seed], survey.n_ok)
