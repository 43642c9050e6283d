"""Every command of the project under one name, the same in a pip-installed package and in the image.

    gcnn-spin COMMAND [ARGS...]      e.g. gcnn-spin train --help; in the image: podman run IMAGE train --help,
    gcnn-spin-COMMAND [ARGS...]      apptainer run gcnn_spin.sif train --help

Each command runs its module's ``main`` (or its script), with the same --help and errors as ``python -m``.
The two data_prep/ scripts are not part of the package: they are found under $GCNN_SPIN_HOME (the image sets it)
or beside the package in a checkout.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
from pathlib import Path

from .errors import EXIT_USER_ERROR, UserError, run_command

MODULES = {  # command: the module whose main(argv) it runs
    "train": "gcnn_spin.train",
    "predict": "gcnn_spin.predict",
    "infer": "gcnn_spin.cluster.infer",
    "submit-train": "gcnn_spin.cluster.submit_train",
    "build-store": "gcnn_spin.cluster.build_store",
    "studies": "gcnn_spin.analysis.studies",
    "collect": "gcnn_spin.analysis.collect",
    "status": "gcnn_spin.cluster.arrays",
    "stage": "gcnn_spin.cluster.stages",  # any array stage of the registry: gcnn-spin stage NAME submit ...
    "demo": "gcnn_spin.demo",
}
SCRIPTS = {
    "make-synthetic": "data_prep/make_synthetic.py",
    "build-dataset": "data_prep/build_dataset.py",
}
HOME_VARIABLE = "GCNN_SPIN_HOME"


def names() -> list[str]:
    return sorted([*MODULES, *SCRIPTS])


def script_path(command: str) -> Path:
    """The data_prep script of ``command``: under $GCNN_SPIN_HOME, else in the checkout holding the package."""
    home = Path(os.environ.get(HOME_VARIABLE) or Path(__file__).resolve().parents[1])
    path = home / SCRIPTS[command]
    if not path.is_file():
        raise UserError(f"gcnn-spin {command}: {path} not found; set {HOME_VARIABLE} to a checkout of the project")
    return path


def run(command: str, args: list[str]) -> int:
    """Run ``command`` with ``args``: its module's ``main(args)``, or its script as ``python SCRIPT`` would."""
    if command in MODULES:
        return importlib.import_module(MODULES[command]).main(args) or 0
    path = script_path(command)
    sys.argv = [str(path), *args]
    runpy.run_path(str(path), run_name="__main__")  # the script's own run_command exits with its status
    return 0


def usage() -> str:
    return f"usage: gcnn-spin {{{','.join(names())},python}} [ARGS...]  (each command has --help)"


def main(argv: list[str] | None = None) -> int:
    """``gcnn-spin COMMAND ARGS``; ``gcnn-spin python ARGS`` is the environment's Python (the image's, in it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return EXIT_USER_ERROR
    if argv[0] in ("-h", "--help", "help"):
        print(f"{usage()}\n\n{__doc__}")
        return 0
    command, args = argv[0], argv[1:]
    if command == "python":
        os.execv(sys.executable, [sys.executable, *args])
    if command not in MODULES and command not in SCRIPTS:
        raise UserError(f"gcnn-spin: unknown command {command!r}; {usage().removeprefix('usage: ')}")
    return run(command, args)


def entry() -> None:
    """The console entry point ``gcnn-spin``."""
    run_command(main)


def __getattr__(name: str):
    """``gcnn_spin.commands.train`` etc.: the console entry point ``gcnn-spin-train`` of each command."""
    command = name.replace("_", "-")
    if command in MODULES or command in SCRIPTS:
        return lambda: run_command(lambda args: main([command, *args]))
    raise AttributeError(name)


if __name__ == "__main__":
    entry()
