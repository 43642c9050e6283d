"""``make submit-NAME`` / ``make status STAGE=NAME`` for every stage of the registry, from each stage's data.

The Makefile has one pattern rule; each stage lists the make variables that fill its flags. These tests sweep
the registry, so a stage added there is checked here without another line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gcnn_spin.cluster import make, stages
from gcnn_spin.cluster.stage import Stage
from gcnn_spin.errors import EXIT_USER_ERROR, UserError

REPO = Path(__file__).resolve().parents[1]
BEFORE = REPO / "tests" / "fixtures" / "submit_targets_before.mk"
#: make variable sets the old targets were called with (the README's examples among them)
CALLS = {
    "defaults": {},
    "survey store, cluster overrides": {"SPLIT": "survey", "RAW": "/data/gz_desi",
                                        "CLUSTER_ARGS": "partition=h100 time_min=480"},
    "subset and settings": {"MODELS": "gc_resnet18 g_resnet18", "SEEDS": "0 1", "SET": "train.epochs=60 data.x=1",
                            "CLUSTER": "local", "SPLIT": "val", "DATA": "/scratch/data", "LOGS": "/scratch/logs"},
    "one study, own folders": {"STUDIES": "recovery", "RUNS": "r", "RESULTS": "res", "PRED": "p",
                               "STORE": "s/survey.zarr", "ROWS": "rows.parquet", "CONFIG": "smoke"},
}


def make_dry_run(target: str, variables: dict[str, str], *files: Path) -> list[str]:
    """The command ``make -n target`` would run (setup taken as done), split as the shell splits it."""
    makefiles = [arg for f in (REPO / "Makefile", *files) for arg in ("-f", str(f))]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}  # no DATA, STORE ... from this environment
    out = subprocess.run(["make", "-s", "-n", "-o", "setup", *makefiles, target, "PY=python",
                          *(f"{k}={v}" for k, v in variables.items())],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)
    return shlex.split(out.stdout.replace("\\\n", " "))


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("name", stages.names())
def test_make_submit_gives_the_argv_the_hand_written_target_gave(name, call):
    before = make_dry_run(f"submit-{name}", CALLS[call], BEFORE)
    assert before[:3] == ["python", "-m", stages.REGISTRY[name]]
    now = make_dry_run(f"submit-{name}", CALLS[call])
    assert now[:5] == ["python", "-m", "gcnn_spin.cluster.stages", name, "--from-make"] and now[5] == "submit"
    assert make.submit_argv(stages.get(name), make.parse_assignments(now[6:])) == before[3:]


def test_print_argv_and_status_route(tmp_path, capsys):
    words = make_dry_run("submit-infer", {"MODELS": "gc_resnet18", "STORE": "my store.zarr"})[2:]
    out = subprocess.run([sys.executable, "-m", *words, "--print-argv"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert json.loads(out.stdout) == ["submit", "--store", "my store.zarr", "--runs", "runs", "--out", "predictions",
                                      "--logs", "logs/infer", "--models", "gc_resnet18", "--cluster", "a100"]
    status = make_dry_run("status", {"STAGE": "studies", "LOGS": "/x/logs"})
    assert status[2:] == ["gcnn_spin.cluster.stages", "studies", "--from-make", "status", "LOGS=/x/logs", "DEEP="]
    assert make.main(stages.get("studies"), [*status[5:], "--print-argv"], prog="x") == 0
    assert json.loads(capsys.readouterr().out) == ["status", "/x/logs/studies"]
    deep = make_dry_run("status", {"STAGE": "infer", "DEEP": "1"})
    assert make.main(stages.get("infer"), [*deep[5:], "--print-argv"], prog="x") == 0
    assert json.loads(capsys.readouterr().out) == ["status", "logs/infer", "--deep"]


def run_make(target: str, *variables: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
    return subprocess.run(["make", "-s", "-o", "setup", target, f"PY={sys.executable}", *variables], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("target", ["submit-foo", "status"])
def test_an_unknown_stage_is_one_line_naming_the_valid_ones(target):
    out = run_make(target, "STAGE=foo")
    ours = [line for line in out.stderr.splitlines() if not line.startswith("make: ***")]  # make's own trailer
    assert out.returncode == EXIT_USER_ERROR and out.stdout == ""
    assert ours == [f"error: unknown array stage 'foo'; valid: {', '.join(stages.REGISTRY)}"]


def test_make_help_and_make_stages_list_every_stage_of_the_registry():
    out = run_make("help")
    assert out.returncode == 0, out.stderr
    for name in stages.names():
        variables = " ".join(make.variables(stages.get(name)))
        line = next(line for line in out.stdout.splitlines() if line.startswith(f"submit-{name} "))
        assert line.endswith(f"{stages.get(name).make_help} ({variables})")
    listed = run_make("stages")
    assert listed.returncode == 0 and all(f"  {name:8} {module}" in listed.stdout
                                          for name, module in stages.REGISTRY.items())


def test_every_stage_has_a_make_route_over_variables_the_makefile_hands_over():
    handed = re.search(r"^STAGE_VARIABLES := (.*)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    for name in stages.names():
        found = stages.get(name)
        assert found.make and found.make_help, name
        assert set(make.variables(found)) <= set(handed), name
        assert make.LOGS in found.make, name  # every stage logs into LOGS/NAME, where make status looks


def test_a_flag_needs_its_variable_and_a_new_variable_comes_from_the_environment(monkeypatch):
    with pytest.raises(UserError, match=r"^make submit-store: ROWS is empty; --rows needs it "
                                        r"\(e\.g\. make submit-store ROWS=\.\.\.\)$"):
        make.submit_argv(stages.get("store"), {"ROWS": " ", "RAW": "raw", "DATA": "d", "LOGS": "l", "CONFIG": "c",
                                               "SPLIT": "train", "CLUSTER": "local"})
    new = Stage(name="new", noun="new", description="", add_arguments=lambda parser: None, tasks=lambda args: [],
                make=(make.Flag("--level", "{LEVEL}"), make.LOGS))
    monkeypatch.setenv("LEVEL", "3")  # make exports the variables given on its command line
    assert make.submit_argv(new, {"LOGS": "l", "CLUSTER": "ci"}) == [
        "submit", "--level", "3", "--logs", "l/new", "--cluster", "ci"]
    with pytest.raises(UserError, match="not 'LEVEL'"):
        make.parse_assignments(["LEVEL"])


@pytest.mark.slow  # one interpreter per stage
@pytest.mark.parametrize("name", stages.names())
def test_a_user_error_of_every_stage_is_one_line_and_exit_2_and_debug_shows_the_traceback(tmp_path, name):
    """A cluster profile that does not exist, in every stage's full command line: through the make route and
    through the stage module's own ``python -m`` (its ``__main__``)."""
    variables = [f"DATA={tmp_path}", f"RUNS={tmp_path}/runs", f"LOGS={tmp_path}/logs", "CLUSTER=nosuch",
                 "CONFIG=experiment", f"ROWS={tmp_path}/rows.parquet", "RAW=raw", "SPLIT=train", "STORE=s.zarr",
                 "PRED=p", "RESULTS=r", "STUDIES=recovery"]
    own = make.submit_argv(stages.get(name), make.parse_assignments(variables))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GCNN_SPIN_DEBUG", None)
    for argv in ([sys.executable, "-m", "gcnn_spin.cluster.stages", name, "--from-make", "submit", *variables],
                 [sys.executable, "-m", stages.REGISTRY[name], *own]):
        out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == EXIT_USER_ERROR and "Traceback" not in out.stderr
        assert len(out.stderr.splitlines()) == 1 and "nosuch" in out.stderr, out.stderr
        debug = subprocess.run([*argv, "--debug"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               env=env)
        assert debug.returncode == EXIT_USER_ERROR and "Traceback" in debug.stderr
        assert debug.stderr.splitlines()[-1] == out.stderr.strip()


def test_the_docs_list_the_stages_of_the_registry():
    readme = (REPO / "README.md").read_text()
    assert set(re.findall(r"^make submit-(\w+)", readme, re.M)) == set(stages.REGISTRY)
    architecture = (REPO / "docs" / "architecture.md").read_text()
    section = architecture[architecture.index("## The shape of every array stage"):]
    section = section[:section.index("\n1. ")]
    assert re.findall(r"`(gcnn_spin\.[\w.]+)`", section) == [
        "gcnn_spin.cluster.stages.REGISTRY", *stages.REGISTRY.values(), "gcnn_spin.cluster.stage"]
