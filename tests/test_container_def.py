"""The image recipes, checked without building: containers/gcnn_spin.def (Apptainer) and containers/Containerfile
(OCI) run the one install script, which installs exactly a lock (no pins of its own that could drift); both copy
what the package build and the commands need; the escnn check really passes (and fails on a broken net); and the
image's command is gcnn-spin, the package's own entry point. `make image-test` builds and runs the real image."""

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
CONTAINERS = ROOT / "containers"
DEF_FILE = CONTAINERS / "gcnn_spin.def"
CONTAINERFILE = CONTAINERS / "Containerfile"
INSTALL = CONTAINERS / "install.sh"
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


def containerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of containers/Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    return [(line.split()[0].upper(), line.split(None, 1)[1] if len(line.split()) > 1 else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalise(name)] = version.strip()
    return pins


def drift(text: str, lock: dict[str, str]) -> list[str]:
    """Every version a recipe names that is not exactly the lock's pin."""
    problems = []
    for name, op, version in PIN.findall(text):
        if lock.get(normalise(name)) != version or op != "==":
            problems.append(f"{name}{op}{version} (lock: {lock.get(normalise(name), 'not pinned')})")
    return problems


def pip_installs(script: str) -> list[list[str]]:
    """The arguments after ``pip install`` of every install command in a shell script."""
    joined = re.sub(r"\\\n", " ", script)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line.split(" #")[0]) if "pip" in line and not line.lstrip().startswith("#") else []
        for i in range(len(words) - 1):
            if words[i].endswith(("pip", "pip3")) and words[i + 1] == "install":
                commands.append(words[i + 2:])
                break
    return commands


@pytest.fixture(scope="module")
def definition() -> tuple[dict[str, str], dict[str, str]]:
    return parse_def(DEF_FILE.read_text())


def arguments(definition) -> dict[str, str]:
    return dict(line.strip().split("=", 1) for line in definition[1]["arguments"].splitlines() if "=" in line)


def test_both_recipes_default_to_the_projects_python_on_bookworm(definition):
    header, sections = definition
    assert header["bootstrap"] == "docker" and header["from"] == "{{ BASE }}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=\s*3\.(\d+)", requires).group(1)
    base = arguments(definition)["BASE"]
    assert base == f"python:3.{minor}-slim-bookworm"
    from_args = [args for kind, args in containerfile_instructions() if kind == "ARG" and args.startswith("BASE=")]
    assert from_args == [f"BASE=docker.io/library/{base}"]
    assert {"files", "post", "environment", "test", "runscript", "help", "labels", "arguments"} <= set(sections)


def test_both_recipes_run_the_one_install_script_and_nothing_else(definition):
    post = [line.strip() for line in definition[1]["post"].splitlines() if line.strip()]
    runs = [args for kind, args in containerfile_instructions() if kind == "RUN"]
    steps = ["sh /opt/gcnn_spin/containers/install.sh deps /opt/gcnn_spin/requirements.lock",
             "sh /opt/gcnn_spin/containers/install.sh package"]
    assert post == ["set -eu", *steps]
    assert runs == steps
    assert pip_installs(definition[1]["post"]) == [] and "pip" not in CONTAINERFILE.read_text()


def test_install_script_installs_exactly_a_lock_and_the_project():
    installs = pip_installs(INSTALL.read_text())
    assert installs == [["--no-deps", "-r", "$2"], ["--no-deps", "--no-build-isolation", "$home"]]


def test_both_recipes_copy_the_same_sources_and_the_lock_they_are_given(definition):
    files = dict(line.strip().rsplit(None, 1) for line in definition[1]["files"].splitlines() if line.strip())
    copies = {}
    for kind, args in containerfile_instructions():
        if kind == "COPY":
            *sources, dest = args.split()
            copies.update({s: dest + s if dest.endswith("/") else dest for s in sources})
    assert files.pop("{{ LOCK }}") == "/opt/gcnn_spin/requirements.lock"
    assert copies.pop("${LOCK}") == "/opt/gcnn_spin/requirements.lock"
    assert arguments(definition)["LOCK"] == "requirements.lock"
    assert set(files) == set(copies)
    for src, dest in files.items():
        assert (ROOT / src).exists(), f"the recipes copy {src}, which is not in the repository"
        assert dest == f"/opt/gcnn_spin/{src}" == copies[src]
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert all(f"!{src}" in ignore for src in files), "the build context leaves out a copied source"


def test_install_layer_comes_before_the_source_copies():
    order = [args for kind, args in containerfile_instructions() if kind in ("COPY", "RUN")]
    deps = order.index("sh /opt/gcnn_spin/containers/install.sh deps /opt/gcnn_spin/requirements.lock")
    assert all("gcnn_spin /opt" not in step for step in order[:deps])  # a source change reuses the torch layer


@pytest.mark.parametrize("recipe", [DEF_FILE, CONTAINERFILE, INSTALL])
def test_recipes_name_no_version_other_than_the_locks(recipe):
    lock = read_lock()
    assert lock["torch"] == "2.14.1"  # the lock this project pins; no recipe may name another
    assert drift(recipe.read_text(), lock) == []


def test_drift_checker_catches_a_stale_pin():
    lock = read_lock()
    assert drift("pip install torch==2.3.0 numpy==1.26.4", lock) == ["torch==2.3.0 (lock: 2.14.1)"]
    assert drift("pip install 'escnn>=1.0'", lock) == ["escnn>=1.0 (lock: 1.0.11)"]
    assert pip_installs("python -m pip install --no-deps scipy\n") == [["--no-deps", "scipy"]]


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(CONTAINERS / "escnn_check.py"), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_test_section_runs_the_escnn_check_which_passes(definition):
    assert definition[1]["test"].split() == ["/opt/gcnn_spin/venv/bin/python",
                                             "/opt/gcnn_spin/containers/escnn_check.py"]
    out = run_check()
    assert out.returncode == 0, out.stderr
    assert "escnn D8 check passed" in out.stdout


def test_escnn_check_fails_on_a_net_that_is_not_chiral():
    out = run_check("--irrep", "0", "0")  # invariant, not chiral
    assert out.returncode == 1 and "mirror did not flip" in out.stderr


def test_the_images_command_is_the_packages_entry_point(definition):
    assert definition[1]["runscript"].split() == ["exec", "/opt/gcnn_spin/venv/bin/gcnn-spin", '"$@"']
    assert ("ENTRYPOINT", '["gcnn-spin"]') in containerfile_instructions()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gcnn-spin"] == "gcnn_spin.commands:entry"
