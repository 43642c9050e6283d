"""Every array stage through the one launcher: dry run, run task K, submit on the local executor, status.

Inference and training go through the same path in tests/test_infer.py (they need trained runs).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.cluster import arrays, build_store, stage
from gcnn_spin.config import load_cluster
from gcnn_spin.data.store import open_store, store_paths
from gcnn_spin.io import read_marker
from gcnn_spin.layout import shard_output, study_path

from test_recovery import finished_run, labelled, population
from test_store import make_rows, write_jpeg_tree

STORE_SETTINGS = ["--set", "data.image_size=16", "--set", "data.chunk_images=4", "--set", "data.shard_images=8",
                  "--cutout-size", "40", "-q"]


@pytest.fixture
def store_inputs(tmp_path):
    rows = make_rows(20)  # 3 shards of 8
    rows.to_parquet(tmp_path / "rows.parquet")
    write_jpeg_tree(tmp_path / "raw", rows)
    return ["--rows", str(tmp_path / "rows.parquet"), "--images", str(tmp_path / "raw"),
            "--out", str(tmp_path / "stores" / "train.zarr"), *STORE_SETTINGS]


def test_at_most_groups_consecutively_and_array_groups_keep_keys_together():
    assert arrays.at_most(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert arrays.at_most(list(range(3)), 10) == [[0], [1], [2]]
    assert arrays.at_most([], 5) == []
    with pytest.raises(ValueError):
        arrays.at_most([1], 0)
    tasks = [arrays.Task(f"r{r}/p{p}", f"/x/{r}/{p}", print, kwargs={"part": p}) for p in range(3) for r in range(2)]
    groups = arrays.array_groups(tasks, 1000, key=lambda t: t.kwargs["part"])
    assert [[t.task_id for t in g] for g in groups] == [["r0/p0", "r1/p0"], ["r0/p1", "r1/p1"], ["r0/p2", "r1/p2"]]
    assert [len(g) for g in arrays.array_groups(tasks, 2)] == [3, 3]
    assert arrays.format_array(groups) == "0-2" and arrays.format_array([]) == ""


def test_store_stage_dry_run_task_and_print_array(tmp_path, store_inputs, capsys):
    store = tmp_path / "stores" / "train.zarr"
    assert build_store.main([*store_inputs, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 tasks: 0 done, 3 to run" in out and "train/shard-00002" in out
    assert not (tmp_path / "stores").exists()  # a dry run touches nothing
    small = [*store_inputs, "--cluster", "local", "--cluster-set", "max_array_size=2"]
    assert build_store.main([*small, "--print-array"]) == 0 and capsys.readouterr().out.strip() == "0-1"
    assert build_store.main(["run", *small, "--task-id", "1"]) == 0  # group 1 = shard 2 only
    assert read_marker(shard_output(store, 2)) is not None
    assert read_marker(shard_output(store, 0)) is None and read_marker(store) is None
    assert build_store.main(["run", *small, "--task-id", "0"]) == 0  # the last group finalises the store
    assert read_marker(store)["n_images"] == 20 and len(open_store(store)) == 20
    assert build_store.main(["run", *small, "--task-id", "7"]) == 0
    assert "only 2 array task(s), nothing to do" in capsys.readouterr().out
    # labels edited upstream (same galaxies): every shard task is due, names why, and only finalises again
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    rows["label"] = (rows["label"] + 1) % 3
    rows.to_parquet(tmp_path / "rows.parquet")
    shard_files = {p: p.stat().st_mtime_ns for p in (store / "images").rglob("*") if p.is_file()}
    assert build_store.main([*small, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 tasks: 0 done, 3 to run" in out and "made from other rows than the ones given now" in out
    assert build_store.main(["run", *small, "--task-id", "0"]) == 0
    assert list(open_store(store).rows["label"]) == list(rows["label"])
    assert {p: p.stat().st_mtime_ns for p in shard_files} == shard_files  # no image was rebuilt
    assert build_store.main([*small, "--dry-run"]) == 0 and "3 tasks: 3 done" in capsys.readouterr().out


def test_store_stage_submits_on_the_local_executor_and_reports_status(tmp_path, store_inputs, capsys):
    logs = tmp_path / "logs" / "store"
    args = [*store_inputs, "--cluster", "local", "--logs", str(logs)]
    assert build_store.main(["submit", *args, "--wait", "--timeout-min", "5"]) == 0
    out = capsys.readouterr().out
    assert "3 store-build tasks submitted (local), 0 already complete" in out
    assert read_marker(tmp_path / "stores" / "train.zarr")["n_images"] == 20
    assert store_paths(tmp_path / "stores" / "train.zarr")["rows"].exists()
    assert build_store.main(["status", *args]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 done"
    assert build_store.main(["submit", *args]) == 0  # a relaunch submits only what is missing: nothing
    assert "0 store-build tasks submitted (local), 3 already complete" in capsys.readouterr().out


def test_a_byte_flipped_in_a_shard_is_seen_by_a_deep_check_and_each_check_says_what_it_read(tmp_path, store_inputs,
                                                                                             capsys):
    from gcnn_spin.artifacts import checked
    from gcnn_spin.data.store import shard_file

    store = tmp_path / "stores" / "train.zarr"
    assert build_store.main(["run", *store_inputs]) == 0
    capsys.readouterr()
    shard = shard_file(open_store(store).images, store, 1)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # the middle of the data, the same size
    shard.write_bytes(bytes(data))
    assert build_store.main([*store_inputs, "--dry-run"]) == 0  # by default: markers and sizes only
    out, err = capsys.readouterr()
    assert "3 tasks: 3 done, 0 to run" in out and err.strip() == checked(False)
    assert build_store.main([*store_inputs, "--dry-run", "--deep"]) == 0
    out, err = capsys.readouterr()
    assert "3 tasks: 2 done, 1 to run" in out and err.strip() == checked(True)
    (line,) = [line for line in out.splitlines() if line.startswith("todo")]
    assert "train/shard-00001" in line and "(damaged: " in line
    assert build_store.main(["run", *store_inputs, "--task-id", "1", "--cluster-set", "max_array_size=3"]) == 0
    assert build_store.main([*store_inputs, "--dry-run", "--deep"]) == 0  # the task read it all, rebuilt it
    assert "3 tasks: 3 done, 0 to run" in capsys.readouterr().out


def test_store_stage_names_a_bad_input_in_one_line(tmp_path, store_inputs, capsys):
    from gcnn_spin.errors import run_command

    with pytest.raises(SystemExit) as exit_:
        run_command(build_store.main, [*store_inputs, "--split", "train", "--dry-run"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: --split train: {tmp_path / 'rows.parquet'} has no 'split' column"


@pytest.fixture
def recovery_runs(tmp_path):
    rng = np.random.default_rng(5)
    for seed in (0, 1):
        true = population(rng, 400, 100)
        finished_run(tmp_path / "runs" / "gc_resnet18" / f"seed{seed}", labelled(true, true))
    return tmp_path / "runs"


def test_studies_stage_submits_on_the_local_executor(tmp_path, recovery_runs, capsys):
    from gcnn_spin.analysis.studies import main

    logs = tmp_path / "logs" / "studies"
    args = ["--study", "recovery", "--runs", str(recovery_runs), "--out", str(tmp_path / "results"), "--draws", "1",
            "--cluster", "local", "--logs", str(logs)]
    assert main([*args, "--dry-run"]) == 0
    assert "2 tasks: 0 done, 2 to run" in capsys.readouterr().out
    assert main(["submit", *args, "--wait", "--timeout-min", "5"]) == 0
    assert "2 study tasks submitted (local), 0 already complete" in capsys.readouterr().out
    for seed in (0, 1):
        marker = read_marker(study_path(tmp_path / "results", "recovery", "gc_resnet18", seed))
        assert (marker["model"], marker["seed"]) == ("gc_resnet18", seed)
    record = json.loads((logs / arrays.SUBMISSION_FILE).read_text())
    assert sorted(record["tasks"]) == ["recovery/gc_resnet18/seed0", "recovery/gc_resnet18/seed1"]
    assert main(["status", *args]) == 0 and capsys.readouterr().out.splitlines()[-1] == "2 done"
    # new test predictions make the outputs stale: a relaunch redoes exactly those
    true = population(np.random.default_rng(6), 400, 100)
    labelled(true, true).to_parquet(recovery_runs / "gc_resnet18" / "seed1" / "test_predictions.parquet")
    assert main([*args, "--dry-run"]) == 0
    assert "todo  recovery/gc_resnet18/seed1" in capsys.readouterr().out


def test_every_stage_speaks_the_same_dialect(capsys):
    """A sweep of the registry: a stage added there is checked here without another line."""
    from gcnn_spin.cluster import stages

    assert stages.names() == ["store", "train", "infer", "studies"]
    for name in stages.names():
        module = importlib.import_module(stages.REGISTRY[name])
        parser = stage.build_parser(stages.get(name), "x")
        flags = {opt for action in parser._actions for opt in action.option_strings}
        assert {"--dry-run", "-q", "--quiet", "--task-id", "--cluster", "--cluster-set", "--logs",
                "--print-array", "--debug"} <= flags, name
        assert "--plan" not in flags and "--no-progress" not in flags
        if name != "store":  # the store's --images is its image folder; elsewhere no --images (a count is --n-images)
            assert "--images" not in flags, name
        assert all(action.help for action in parser._actions), name  # every option says what it does
        assert module.STAGE.name == name


def test_the_registry_names_its_stages_and_refuses_others(capsys):
    from gcnn_spin.cluster import stages
    from gcnn_spin.errors import UserError

    with pytest.raises(UserError, match="unknown array stage 'inference'; valid: store, train, infer, studies"):
        stages.get("inference")
    assert stages.main([]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name:8} {module}" in listed for name, module in stages.REGISTRY.items())


# ----------------------------------------------------------------------------- sbatch jobs/desi_infer.sh

DESI_INFER = Path(__file__).resolve().parents[1] / "jobs" / "desi_infer.sh"


def sbatch_header(path: Path) -> dict[str, str]:
    lines = [line.removeprefix("#SBATCH ").strip() for line in path.read_text().splitlines()
             if line.startswith("#SBATCH ")]
    return dict(opt.split("=", 1) if "=" in opt else (opt, "") for opt in lines)


def test_desi_infer_header_is_the_a100_profile_and_appends_its_log():
    profile = load_cluster("a100")
    header = sbatch_header(DESI_INFER)
    assert header["--partition"] == profile.partition and header["--cpus-per-task"] == str(profile.cpus_per_task)
    assert header["--mem"] == f"{profile.mem_gb}G" and header["--time"] == str(profile.time_min)
    assert header["--gres"] == f"gpu:{profile.gpus_per_task}"
    # No --array: the script submits itself with one task per planned part, as many at once as the profile runs.
    assert f"GCNN_SPIN_PARALLELISM:-{profile.array_parallelism}" in DESI_INFER.read_text()
    assert header["--open-mode"] == "append" and "--requeue" in header  # a requeue must not truncate its log
    signal, _, before = header["--signal"].partition("@")
    assert signal == "B:USR1" and 0 < int(before) < 60 * profile.time_min  # the trap requeues before the limit
    assert set(header) == {"--job-name", "--partition", "--gres", "--cpus-per-task", "--mem", "--time", "--signal",
                           "--requeue", "--open-mode", "--output"}


def test_desi_infer_runs_the_stage_in_the_container_with_the_data_paths_bound(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$APPTAINER_ARGS"\n')
    (fake / "apptainer").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "3",
           "APPTAINER_ARGS": str(tmp_path / "args.txt"), "GCNN_SPIN_IMAGE": str(tmp_path / "gcnn_spin.sif"),
           "GCNN_SPIN_STORE": str(tmp_path / "data" / "stores" / "survey.zarr"),
           "GCNN_SPIN_RUNS": str(tmp_path / "scratch" / "runs"), "GCNN_SPIN_PRED": str(tmp_path / "out" / "pred"),
           "GCNN_SPIN_MODELS": "gc_resnet18 resnet18", "GCNN_SPIN_BATCH_SIZE": "64"}
    result = subprocess.run(["bash", str(DESI_INFER)], cwd=DESI_INFER.parents[1], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "args.txt").read_text().splitlines()
    binds = set(argv[argv.index("--bind") + 1].split(","))
    assert binds == {str(DESI_INFER.parents[1]), str(tmp_path / "data" / "stores"), str(tmp_path / "scratch" / "runs"),
                     str(tmp_path / "out" / "pred")}
    python = argv[argv.index(str(tmp_path / "gcnn_spin.sif")) + 1:]
    assert python[:3] == ["python", "-m", "gcnn_spin.cluster.infer"] and "run" in python
    assert python[python.index("--task-id") + 1] == "3" and python[python.index("--batch-size") + 1] == "64"
    assert python[python.index("--models") + 1:python.index("--models") + 3] == ["gc_resnet18", "resnet18"]


@pytest.mark.parametrize("planned", ["0-2", ""])
def test_desi_infer_outside_an_array_submits_itself_with_the_planned_range(tmp_path, planned):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$SBATCH_ARGS"\n')
    (fake / "python").write_text(f'#!/bin/bash\n[[ " $* " == *" --print-array "* ]] && echo "{planned}"\nexit 0\n')
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", SBATCH_ARGS=str(tmp_path / "args.txt"),
               GCNN_SPIN_PYTHON=str(fake / "python"), GCNN_SPIN_PARALLELISM="8")
    result = subprocess.run(["bash", str(DESI_INFER), "--partition=h100", "--account=astro"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    if planned:
        assert (tmp_path / "args.txt").read_text().split() == [
            "--array=0-2%8", "--partition=h100", "--account=astro", str(DESI_INFER)]
    else:
        assert "nothing submitted" in result.stdout and not (tmp_path / "args.txt").exists()


@pytest.mark.parametrize("old", ["STORE", "RUNS", "PRED", "CLUSTER", "MODELS"])
def test_desi_infer_refuses_the_unprefixed_variables_in_one_line(tmp_path, old):
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", old: "x"}
    result = subprocess.run(["bash", str(DESI_INFER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"${old} is not read" in result.stderr
    assert "GCNN_SPIN_STORE" in result.stderr and "GCNN_SPIN_CLUSTER" in result.stderr
    both = subprocess.run(["bash", str(DESI_INFER)], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={**env, f"GCNN_SPIN_{old}": "y", "GCNN_SPIN_PYTHON": "false"})
    assert "is not read" not in both.stderr  # the prefixed name wins; a site's own variable is left alone


def test_single_run_commands_speak_the_same_dialect():
    from gcnn_spin import demo, predict, train

    for module in (train, predict, demo):
        parser = module.build_parser()
        flags = {opt for action in parser._actions for opt in action.option_strings}
        assert "--no-progress" not in flags and "--plan" not in flags, module.__name__
        assert all(action.help for action in parser._actions), module.__name__
    for module in (train, predict):
        flags = {opt for action in module.build_parser()._actions for opt in action.option_strings}
        assert {"-q", "--quiet", "--device", "--debug"} <= flags
    assert predict.build_parser().parse_args(["--run", "r", "--store", "s", "--out", "o", "-q"]).quiet
