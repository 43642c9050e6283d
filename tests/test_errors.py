"""One way every command fails: an error the user caused is one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gcnn_spin.errors import EXIT_USER_ERROR, InputError, UserError, commands, reading

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["-m", "gcnn_spin.train", "--model", "resnet18", "--seed", "0", "--out", "{tmp}/run"]

#: command line (``{tmp}``: the test's folder) -> what its one line must say
BAD_CALLS = {
    "train: missing data folder": (TRAIN + ["--data", "{tmp}/nowhere"], "{tmp}/nowhere/stores/train.zarr"),
    "train: bad TOML": (TRAIN + ["--data", "{tmp}", "--config", "{tmp}/bad.toml"],
                        "{tmp}/bad.toml: not valid TOML: .* line 2"),
    "train: unknown --set key": (TRAIN + ["--data", "{tmp}", "--set", "train.epoch=3"],
                                 r"--set train.epoch=3: train: unknown key\(s\) \['epoch'\]"),
    "train: wrong value type": (TRAIN + ["--data", "{tmp}", "--set", "train.epochs=many"],
                                "--set train.epochs=many: train.epochs: expected an integer, got 'many'"),
    "train: a name that is not a choice": (TRAIN + ["--data", "{tmp}", "--set", "train.tables_checkpoint=best"],
                                           "--set train.tables_checkpoint=best: train.tables_checkpoint='best': "
                                           "must be one of final, least_val_loss"),
    "train: unknown model": (["-m", "gcnn_spin.train", "--model", "resnet19", "--seed", "0", "--data", "{tmp}",
                              "--out", "{tmp}/run"], "unknown model 'resnet19'; valid: "),
    "predict: missing store": (["-m", "gcnn_spin.predict", "--run", "{tmp}/run", "--store", "{tmp}/none.zarr",
                                "--out", "{tmp}/p.parquet", "--device", "cpu"], "no Zarr store at {tmp}/none.zarr"),
    "submit_train: --data without stores": (["-m", "gcnn_spin.cluster.submit_train", "--data", "{tmp}",
                                             "--cluster", "local", "--dry-run"],
                                            "--data {tmp}: no train store at {tmp}/stores/train.zarr"),
    "submit_train dry run: misspelt --cluster-set": (
        ["-m", "gcnn_spin.cluster.submit_train", "--data", "{tmp}", "--cluster", "local", "--dry-run",
         "--cluster-set", "partiton=h100"], r"--cluster-set partiton=h100: .*unknown key\(s\) \['partiton'\]"),
    "submit_train dry run: a cluster name that is not a choice": (
        ["-m", "gcnn_spin.cluster.submit_train", "--data", "{tmp}", "--cluster", "local", "--dry-run",
         "--cluster-set", "executor=slrum"],
        "--cluster-set executor=slrum: executor='slrum': must be one of auto, slurm, local"),
    "build_store: corrupt rows parquet": (["data_prep/build_store.py", "--rows", "{tmp}/garbage.parquet", "--images",
                                           "{tmp}", "--out", "{tmp}/stores/train.zarr"],
                                          "{tmp}/garbage.parquet: cannot read this rows parquet"),
    "build_dataset: corrupt GZ1 CSV": (["data_prep/build_dataset.py", "--gz1", "{tmp}/garbage.csv", "--desi-index",
                                        "{tmp}/garbage.parquet", "--images", "{tmp}", "--out", "{tmp}/data"],
                                       "{tmp}/garbage.csv: cannot read this GZ1 CSV"),
    "collect: missing runs": (["analysis/collect.py", "--runs", "{tmp}/noruns", "--out", "{tmp}/results"],
                              "FileNotFoundError: runs folder {tmp}/noruns does not exist"),
    "train: corrupt marker": (["-m", "gcnn_spin.train", "--model", "resnet18", "--seed", "0", "--data", "{tmp}",
                               "--out", "{tmp}/runs/resnet18/seed0"],
                              "{tmp}/runs/resnet18/seed0.done: cannot read this completion marker .*; "
                              r"delete {tmp}/runs/resnet18/seed0.done \(its output is then redone\)"),
    "infer: missing store": (["-m", "gcnn_spin.cluster.infer", "--store", "{tmp}/survey.zarr", "--runs",
                              "{tmp}/runs", "--out", "{tmp}/pred", "--task-id", "0"], "{tmp}/survey.zarr"),
    "train: zero epochs": (TRAIN + ["--data", "{tmp}", "--set", "train.epochs=0"],
                           "train.epochs=0 for resnet18: a run needs at least one epoch"),
    "train: negative seed": (["-m", "gcnn_spin.train", "--model", "resnet18", "--seed", "-1", "--data", "{tmp}",
                              "--out", "{tmp}/run"], r"--seed: -1 is not a seed \(an integer >= 0"),
    "submit_train: grid.seeds=[-1]": (["-m", "gcnn_spin.cluster.submit_train", "--data", "{tmp}", "--cluster",
                                       "local", "--dry-run", "--set", "grid.seeds=[-1]"],
                                      r"grid.seeds: -1 is not a seed \(an integer >= 0 naming a seed\{k\} folder\)"),
    "infer: negative --batch-size": (["-m", "gcnn_spin.cluster.infer", "--store", "{tmp}/survey.zarr",
                                      "--batch-size", "-5"], "--batch-size -5: expected an integer >= 1"),
    "rotation study: --n-images 0": (["analysis/rotation_study.py", "--runs", "{tmp}/runs", "--n-images", "0"],
                                     "--n-images 0: expected an integer >= 1"),
    "build_store: --task-id abc": (["data_prep/build_store.py", "--rows", "{tmp}/garbage.parquet", "--images",
                                    "{tmp}", "--out", "{tmp}/stores/train.zarr", "--task-id", "abc"],
                                   "--task-id abc: expected an integer >= 0"),
    "status: nothing submitted": (["-m", "gcnn_spin.cluster.arrays", "status", "{tmp}"], "no submission.json"),
    "python -m on a package": (["-m", "gcnn_spin.cluster"], "gcnn_spin.cluster is not a command; the commands are"),
    "python -m on a library module": (["-m", "gcnn_spin.evaluate"], "gcnn_spin.evaluate is not a command"),
}
if not torch.cuda.is_available():
    BAD_CALLS["predict: --device cuda without CUDA"] = (
        ["-m", "gcnn_spin.predict", "--run", "{tmp}/run", "--store", "{tmp}/none.zarr", "--out", "{tmp}/p.parquet",
         "--device", "cuda"], "--device cuda: CUDA is not usable here: ")


def bad_inputs(tmp: Path) -> None:
    """The files the bad calls point at: a TOML with a syntax error, garbage CSV/parquet, a run, a bad marker."""
    (tmp / "bad.toml").write_text("[train]\nepochs = \n")
    garbage = bytes(range(256)) * 8
    (tmp / "garbage.parquet").write_bytes(garbage)
    (tmp / "garbage.csv").write_bytes(garbage)
    run = tmp / "runs" / "resnet18" / "seed0"
    run.mkdir(parents=True)
    (run.parent / "seed0.done").write_text('{"model": "resnet18", "se')  # cut short


def run_command_line(args: list[str], tmp: Path, *extra: str, env: dict | None = None):
    argv = [a.replace("{tmp}", str(tmp)) for a in args] + list(extra)
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.slow  # one interpreter (most import torch) per call: ~3 s each on an idle core
@pytest.mark.parametrize("call", list(BAD_CALLS))
def test_a_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, call):
    args, says = BAD_CALLS[call]
    bad_inputs(tmp_path)
    out = run_command_line(args, tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == EXIT_USER_ERROR, out.stderr
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    assert re.search(says.replace("{tmp}", re.escape(str(tmp_path))), lines[0]), lines[0]


@pytest.mark.slow
def test_a_task_id_variable_that_is_not_a_number_is_one_line(tmp_path):
    out = run_command_line(["-m", "gcnn_spin.cluster.infer", "--store", "{tmp}/survey.zarr"], tmp_path,
                           env={"SLURM_ARRAY_TASK_ID": "3a"})
    assert out.returncode == EXIT_USER_ERROR and out.stderr.splitlines() == [
        "error: $SLURM_ARRAY_TASK_ID='3a' is not an array task number (an integer >= 0); unset it or pass --task-id K"]


@pytest.mark.parametrize("how", ["a write that fills the disk", "the rename of a finished write"])
def test_a_full_disk_is_one_line_naming_what_was_written_and_the_space_left(tmp_path, monkeypatch, capsys, how):
    """ENOSPC simulated where a full disk strikes: a write through atomic_path, or anywhere else in a command."""
    import errno

    import gcnn_spin.io as io
    from gcnn_spin.errors import run_command

    target = tmp_path / "results" / "table.json"

    def main(argv):
        if how == "a write that fills the disk":
            monkeypatch.setattr(io.Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, "No space left on device")))
            io.write_json_atomic(target, {"a": 1})
        else:
            monkeypatch.setattr(io.os, "replace", lambda *a: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, "No space left on device", str(target))))
            io.write_json_atomic(target, {"a": 1})
        return 0

    with pytest.raises(SystemExit) as exit_:
        run_command(main, [])
    assert exit_.value.code == EXIT_USER_ERROR
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"error: disk full while writing {re.escape(str(target))} \([\d.]+ GB left on the file "
                        rf"system of {re.escape(str(target.parent))}\); free some space or write elsewhere, then "
                        r"rerun \(finished outputs are kept, the unfinished one is redone\)", line), line
    assert list(target.parent.iterdir()) == []  # no temporary file left behind


def test_a_full_disk_outside_an_atomic_write_names_the_file(tmp_path, capsys):
    import errno

    from gcnn_spin.errors import run_command

    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "store.zarr" / "c" / "0"))

    with pytest.raises(SystemExit):
        run_command(main, [])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: disk full while writing {tmp_path / 'store.zarr' / 'c' / '0'} (")


def test_the_launcher_leaves_a_stage_error_to_run_command_which_shows_its_traceback_under_debug(tmp_path, capsys,
                                                                                                 monkeypatch):
    from gcnn_spin.cluster import infer
    from gcnn_spin.errors import DEBUG_VARIABLE, run_command

    argv = ["--store", str(tmp_path / "survey.zarr"), "--dry-run", "--cluster", "local"]
    with pytest.raises(UserError, match="no Zarr store at"):  # raised, not printed: one door reports it
        infer.main(argv)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(DEBUG_VARIABLE, "0")  # recorded, so the "1" that --debug sets is undone after the test
    with pytest.raises(SystemExit) as exit_:
        run_command(infer.main, [*argv, "--debug"])
    err = capsys.readouterr().err
    assert exit_.value.code == EXIT_USER_ERROR and "Traceback" in err
    assert err.splitlines()[-1] == f"error: no Zarr store at {tmp_path / 'survey.zarr'}"


def test_debug_shows_the_traceback(tmp_path):
    args, _ = BAD_CALLS["train: unknown --set key"]
    bad_inputs(tmp_path)
    for out in (run_command_line(args, tmp_path, "--debug"),
                run_command_line(args, tmp_path, env={"GCNN_SPIN_DEBUG": "1"})):
        assert out.returncode == EXIT_USER_ERROR and "Traceback" in out.stderr
        assert out.stderr.splitlines()[-1].startswith("error: --set train.epoch=3")


@pytest.mark.parametrize("command", [["analysis/collect.py"], ["data_prep/build_store.py"],
                                     ["-m", "gcnn_spin.cluster.arrays", "status"]])
def test_help_documents_debug(tmp_path, command):
    out = run_command_line([*command, "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"--debug\s+on an error, print the traceback too \(or set\s+GCNN_SPIN_DEBUG=1\)", out.stdout), \
        out.stdout


def test_reading_names_the_file_and_the_fix(tmp_path):
    import pandas as pd

    path = tmp_path / "part-00001.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(InputError, match=rf"^{path}: cannot read this prediction part \(.*\); delete it$"):
        with reading(path, "prediction part", "delete it"):
            pd.read_parquet(path)
    with pytest.raises(UserError, match="kept as is"):  # an error that already names its input is not rewrapped
        with reading(path):
            raise UserError("kept as is")


def test_every_command_runs_through_the_one_runner():
    modules = [c.split()[-1] for c in commands()]
    assert {"gcnn_spin.train", "gcnn_spin.predict", "gcnn_spin.demo", "gcnn_spin.cluster.submit_train"} <= set(modules)
    scripts = sorted((REPO / "data_prep").glob("*.py")) + sorted((REPO / "analysis").glob("*.py"))
    for script in scripts:
        assert "run_command(" in script.read_text(), script
