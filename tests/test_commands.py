"""gcnn-spin: one command name for the image and a pip-installed package; [project.scripts] covers every command."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gcnn_spin import commands

ROOT = Path(__file__).resolve().parents[1]


def gcnn_spin(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gcnn_spin.commands", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=120)


def test_every_command_has_a_console_script_that_resolves():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"gcnn-spin"} | {f"gcnn-spin-{name}" for name in commands.names()}
    for target in scripts.values():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), target
    with pytest.raises(AttributeError):
        commands.no_such_command  # noqa: B018
    for name, module in commands.MODULES.items():
        assert callable(importlib.import_module(module).main), name
    for name in commands.SCRIPTS:
        assert commands.script_path(name).is_file()


@pytest.mark.parametrize("name", ["train", "infer", "collect", "make-synthetic", "build-dataset"])
def test_a_command_runs_with_its_own_help(name):
    out = gcnn_spin(name, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--debug" in out.stdout


def test_unknown_command_and_no_command_are_one_line_errors():
    out = gcnn_spin("trian")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown command 'trian'" in out.stderr
    empty = gcnn_spin()
    assert empty.returncode == 2 and empty.stderr.startswith("usage: gcnn-spin {build-dataset,")
    assert gcnn_spin("--help").returncode == 0


def test_python_is_the_environments_interpreter():
    out = gcnn_spin("python", "-c", "import sys; print(sys.executable)")
    assert out.returncode == 0 and Path(out.stdout.strip()).resolve() == Path(sys.executable).resolve()


def test_a_script_command_without_the_checkout_names_GCNN_SPIN_HOME(tmp_path):
    out = gcnn_spin("make-synthetic", "--help", GCNN_SPIN_HOME=str(tmp_path))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "GCNN_SPIN_HOME" in out.stderr and str(tmp_path / "data_prep" / "make_synthetic.py") in out.stderr


def test_every_registered_stage_is_a_command():
    """gcnn-spin stage NAME: each array stage of the registry, with its own --help; an unknown stage is one line."""
    from gcnn_spin.cluster import stages

    for name in stages.names():
        out = gcnn_spin("stage", name, "--help")
        assert out.returncode == 0 and out.stdout.startswith("usage:"), (name, out.stderr)
    out = gcnn_spin("stage", "nosuch", "submit")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown array stage 'nosuch'" in out.stderr
