"""containers/gcnn_spin.def, checked without apptainer: it installs exactly requirements.lock (no pins of its own
that could drift), copies what the package build and the runscript need, its %test equivariance check really
passes (and would fail on a broken net), and %runscript dispatches to the CLIs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEF_FILE = ROOT / "containers" / "gcnn_spin.def"
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"(?<![\w.\-/])([A-Za-z0-9][A-Za-z0-9._\-]*)(?:\[[^\]]*\])?\s*(===|==|~=|>=|<=|!=)\s*"
                 r"([0-9][^\s,;'\"\\)]*)")


def parse_def(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Header keywords and section bodies, split as apptainer does: a line whose first word starts with %."""
    header: dict[str, str] = {}
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        words = line.split()
        if words and words[0].startswith("%"):
            current = words[0][1:].lower()
            sections.setdefault(current, "")
        elif current is not None:
            sections[current] += line + "\n"
        elif words and not words[0].startswith("#"):
            key, _, value = line.split("#")[0].partition(":")
            header[key.strip().lower()] = value.strip()
    return header, sections


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalise(name)] = version.strip()
    return pins


def drift(text: str, lock: dict[str, str]) -> list[str]:
    """Every version the def names that is not exactly the lock's pin."""
    problems = []
    for name, op, version in PIN.findall(text):
        if lock.get(normalise(name)) != version or op != "==":
            problems.append(f"{name}{op}{version} (lock: {lock.get(normalise(name), 'not pinned')})")
    return problems


def pip_installs(post: str) -> list[list[str]]:
    """The arguments after ``pip install`` of every install command in %post."""
    joined = re.sub(r"\\\n", " ", post)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line.split(" #")[0]) if "pip" in line else []
        for i in range(len(words) - 1):
            if words[i].endswith(("pip", "pip3")) and words[i + 1] == "install":
                commands.append(words[i + 2:])
                break
    return commands


@pytest.fixture(scope="module")
def definition() -> tuple[dict[str, str], dict[str, str]]:
    return parse_def(DEF_FILE.read_text())


def files_map(files: str) -> dict[str, str]:
    pairs = [line.split() for line in files.splitlines() if line.strip() and not line.strip().startswith("#")]
    return {p[0]: p[1] for p in pairs}


def test_header_is_docker_with_the_projects_python(definition):
    header, sections = definition
    assert header["bootstrap"] == "docker"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=\s*3\.(\d+)", requires).group(1)
    assert re.match(rf"python:3\.{minor}(\.\d+)?-", header["from"]), header["from"]
    assert {"files", "post", "environment", "test", "runscript", "help", "labels"} <= set(sections)


def test_files_bring_what_the_build_and_runscript_need(definition):
    files = files_map(definition[1]["files"])
    needed = {"requirements.lock", "pyproject.toml", "README.md", "gcnn_spin", "analysis", "data_prep"}
    assert needed <= set(files), needed - set(files)
    for src in files:
        assert (ROOT / src).exists(), f"%files copies {src}, which is not in the repository"
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    assert readme is None or readme in files  # setuptools fails without the readme pyproject names


def test_post_installs_exactly_the_lock(definition):
    files = files_map(definition[1]["files"])
    lock_dest, project_dir = files["requirements.lock"], str(Path(files["gcnn_spin"]).parent)
    installs = pip_installs(definition[1]["post"])
    assert len(installs) == 2, installs
    for args in installs:
        assert "--no-deps" in args, f"pip install without --no-deps: {args}"
    assert any(args[args.index("-r") + 1] in (lock_dest, Path(lock_dest).name) for args in installs if "-r" in args)
    for args in installs:
        positional = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "-r")]
        assert all(a in (project_dir, ".") for a in positional), f"installs something not in the lock: {positional}"


def test_def_names_no_version_other_than_the_locks():
    lock = read_lock()
    assert lock["torch"] == "2.14.1"  # the lock this project pins; the def must not name another
    assert drift(DEF_FILE.read_text(), lock) == []


def test_drift_checker_catches_a_stale_pin():
    lock = read_lock()
    assert drift("pip install torch==2.3.0 numpy==1.26.4", lock) == ["torch==2.3.0 (lock: 2.14.1)"]
    assert drift("pip install 'escnn>=1.0'", lock) == ["escnn>=1.0 (lock: 1.0.11)"]
    assert drift("pip install py3nj==0.2.1", lock) == ["py3nj==0.2.1 (lock: not pinned)"]
    assert pip_installs("python -m pip install --no-deps scipy\n") == [["--no-deps", "scipy"]]


def run_test_section(body: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["sh", "-c", body], capture_output=True, text=True, env=env, timeout=120)


def test_test_section_equivariance_check_passes(definition):
    body = definition[1]["test"]
    assert "escnn" in body and "irrep(1, 0)" in body
    out = run_test_section(body)
    assert out.returncode == 0, out.stderr
    assert "escnn D8 check passed" in out.stdout


def test_test_section_fails_on_a_net_that_is_not_chiral(definition):
    broken = definition[1]["test"].replace("irrep(1, 0)", "irrep(0, 0)")  # invariant, not chiral
    out = run_test_section(broken)
    assert out.returncode != 0 and "mirror did not flip" in out.stderr


@pytest.mark.parametrize("command, expected", [
    ("train --help", "-m gcnn_spin.train --help"),
    ("predict --run r", "-m gcnn_spin.predict --run r"),
    ("infer --part 3", "-m gcnn_spin.cluster.infer --part 3"),
    ("collect", "/opt/gcnn_spin/analysis/collect.py"),
    ("build-dataset --raw raw", "/opt/gcnn_spin/data_prep/build_dataset.py --raw raw"),
    ("python -m pytest -q", "-m pytest -q"),
])
def test_runscript_dispatches_to_the_clis(definition, tmp_path, command, expected):
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(["sh", "-c", definition[1]["runscript"], "sh", *command.split()],
                         capture_output=True, text=True, env=env, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
    target = expected.split()[0]
    if target.startswith("/opt/gcnn_spin/"):
        assert (ROOT / target.removeprefix("/opt/gcnn_spin/")).exists()


def test_runscript_rejects_unknown_commands(definition):
    for args in ([], ["trian"]):
        out = subprocess.run(["sh", "-c", definition[1]["runscript"], "sh", *args],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and "usage:" in out.stderr
