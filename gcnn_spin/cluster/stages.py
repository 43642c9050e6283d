"""The array stages, in one list: stage name -> the module whose ``STAGE`` (a :class:`~gcnn_spin.cluster.stage.Stage`)
lists its tasks. The launcher, ``make submit-*`` / ``make status``, the demo and docs/architecture.md read it, so a
new array stage is one module and one line here (its ``make submit-NAME`` comes from the Stage's ``make`` flags).

    python -m gcnn_spin.cluster.stages                      # the stages and their modules
    python -m gcnn_spin.cluster.stages infer submit ...     # = python -m gcnn_spin.cluster.infer submit ...
    python -m gcnn_spin.cluster.stages infer --from-make submit DATA=... # make submit-infer (gcnn_spin.cluster.make)
    python -m gcnn_spin.cluster.stages --make-help          # make help's lines for the stages

``status`` from a log folder alone (``python -m gcnn_spin.cluster.arrays status LOGS/{stage}``, ``make status``)
rebuilds the stage's tasks from the command recorded in ``submission.json`` (:func:`recorded_tasks`), so it
judges every output by the same identity as ``--dry-run`` and ``collect``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

#: name -> module defining ``STAGE``; the order is the order of the study's pipeline.
REGISTRY = {
    "store": "gcnn_spin.cluster.build_store",
    "train": "gcnn_spin.cluster.submit_train",
    "infer": "gcnn_spin.cluster.infer",
    "studies": "gcnn_spin.analysis.studies",
}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str):
    """The :class:`~gcnn_spin.cluster.stage.Stage` called ``name``; an unknown name raises listing the valid ones."""
    if name not in REGISTRY:
        raise UserError(f"unknown array stage {name!r}; valid: {', '.join(REGISTRY)}")
    found = importlib.import_module(REGISTRY[name]).STAGE
    if found.name != name:
        raise RuntimeError(f"{REGISTRY[name]}.STAGE is called {found.name!r}, registered as {name!r}")
    return found


def command(stage_name: str, argv: Sequence[str]) -> dict[str, Any]:
    """What ``submission.json`` records of a submit: the stage, its command line and where it ran."""
    return {"stage": stage_name, "argv": list(argv), "cwd": os.getcwd()}


@contextlib.contextmanager
def _in(folder: str | None):
    """Run the block in ``folder`` (relative paths of a recorded command mean what they meant there)."""
    before = os.getcwd()
    if folder and Path(folder).is_dir():
        os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def recorded_tasks(recorded: Mapping[str, Any]):
    """The tasks of the stage a ``submission.json`` recorded (:func:`command`), as they are planned now."""
    from ..config import load_cluster
    from .stage import build_parser

    found = get(str(recorded["stage"]))
    with _in(recorded.get("cwd")):
        args = build_parser(found, f"{found.name} (recorded)").parse_args(list(recorded["argv"]))
        args.profile = load_cluster(args.cluster, args.cluster_overrides)
        return found.tasks(args)


def main(argv: Sequence[str] | None = None) -> int:
    from . import make
    from .stage import main as stage_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("\n".join(f"  {name:8} {module}" for name, module in REGISTRY.items()))
        return 0
    if argv[0] == "--make-help":
        print("\n".join(make.help_lines([get(name) for name in REGISTRY])))
        return 0
    found = get(argv[0])
    if argv[1:2] == ["--from-make"]:
        return make.main(found, argv[2:], prog=f"python -m {REGISTRY[found.name]}")
    return stage_main(found, argv[1:], prog=f"python -m gcnn_spin.cluster.stages {argv[0]}")


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
