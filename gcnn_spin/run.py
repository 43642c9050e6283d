"""The one model of a training run, for every stage: discovery, why a run is incomplete, what outputs made from it
record (its identity), its table label, and readers of its files (their names are in :mod:`gcnn_spin.layout`).

A run lives in ``RUNS/{name}/seed{k}/``. Its name is the layout key: the model, with ``_nr`` added when it trains
without rotation (:func:`run_name`), so one runs folder holds a model trained with and without rotation side by
side; inference files its parts under ``PRED/{name}/seed{k}`` and the studies under
``RESULTS/studies/{study}/{label}/seed{k}``. Name, model and seed are read from the completion marker (a marker
written before runs had names gives its model as the name), and every one passes :func:`layout.check_name` /
:func:`layout.check_seed` before it becomes a path. A folder without a marker is known by its folder names.

A run is complete when its marker and ``metrics.json``, ``history.csv`` and ``test_predictions.parquet`` are in
place and the metrics hold val/test loss and accuracy. A run trained without rotation
(``experiment.train.rotate = false`` in ``config.json``) is labelled ``{name}_nr`` in every table, whatever its
folder is called.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import layout
from .config import ExperimentConfig, GridConfig
from .errors import UserError, reading
from .io import marker_path, read_parquet

NR_SUFFIX = "_nr"


def run_name(model: str, rotate: bool) -> str:
    """The run name (layout key) of ``model`` trained with or without rotation: ``model`` or ``{model}_nr``."""
    return layout.check_name(model if rotate else model + NR_SUFFIX, "run")


def run_label(name: str, rotate: bool) -> str:
    """Table name of a run: its name, with ``_nr`` added when it was trained without rotation."""
    return name if rotate or name.endswith(NR_SUFFIX) else name + NR_SUFFIX


def is_nr(label: str) -> bool:
    return label.endswith(NR_SUFFIX)


def run_setup(name: str, cfg: ExperimentConfig, known_models: Iterable[str]) -> tuple[str, ExperimentConfig]:
    """``(model, experiment)`` that run ``name`` trains: a model of ``known_models`` with ``cfg`` as it is, or
    ``{model}_nr``: the model with ``train.rotate = false`` (its epochs: ``train.epochs_no_rotation``)."""
    known = list(known_models)
    if name in known:
        return name, cfg
    model = name.removesuffix(NR_SUFFIX)
    if model != name and model in known:
        return model, dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, rotate=False))
    raise UserError(f"unknown model {name!r}; valid: {', '.join(known)} (a run name may add {NR_SUFFIX}: the "
                    "model trained without rotation)")


def grid_run_names(cfg: ExperimentConfig) -> list[str]:
    """Every run the config's grid trains: each of ``grid.models`` (``_nr`` when the config trains without
    rotation), then each of ``grid.no_rotation_models`` as ``{model}_nr``; no name twice."""
    names = [run_name(m, cfg.train.rotate) for m in cfg.grid.models]
    return list(dict.fromkeys(names + [run_name(m, False) for m in cfg.grid.no_rotation_models]))


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run in ``RUNS/{name}/seed{k}``: ``name`` (layout key), ``model`` (registry name), ``seed``,
    its marker (empty when unfinished), whether it trained with rotation, and ``problem``: why it is incomplete
    (empty when complete)."""

    name: str
    model: str
    seed: int
    path: Path
    marker: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    rotate: bool = True
    problem: str = ""

    @property
    def label(self) -> str:
        """The run's name in tables: :func:`run_label`."""
        return run_label(self.name, self.rotate)

    @property
    def complete(self) -> bool:
        return not self.problem

    @property
    def identity(self) -> dict:
        """:func:`gcnn_spin.layout.run_identity` of the marker: what outputs made from this run record (outputs
        made from older weights count as stale)."""
        return layout.run_identity(self.marker)

    @property
    def flips(self) -> bool:
        """Runs of a model registered with reflections (any name containing "flip")."""
        return "flip" in self.model.lower()

    def config(self) -> dict[str, Any]:
        return json.loads((self.path / layout.RUN_CONFIG).read_text())

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / layout.RUN_METRICS).read_text())

    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.path / layout.RUN_HISTORY)

    def test_predictions(self) -> pd.DataFrame:
        return read_parquet(self.path / layout.RUN_TEST_PREDICTIONS, what="test predictions",
                            fix=f"delete {self.path} and train the run again")


def _from_marker(path: Path) -> tuple[str, str, int, dict] | None:
    """``(name, model, seed, marker)`` from the marker of the run at ``path`` (``None`` without one), each value
    checked before it can name a folder; an unreadable marker or one without model and seed raises
    :class:`UserError` naming it."""
    marker_file = marker_path(path)
    if not marker_file.exists():
        return None
    with reading(marker_file, "run marker", f"delete {marker_file} (the run is then trained again)"):
        marker = json.loads(marker_file.read_text())
    if not isinstance(marker, dict) or "model" not in marker or "seed" not in marker:
        raise UserError(f"run marker {marker_file} does not record the model and seed (written by an old "
                        f"version?): retrain the run or add \"model\" and \"seed\" to it")
    model = layout.check_name(marker["model"], f"run marker {marker_file}: model")
    name = layout.check_name(marker.get("run", model), f"run marker {marker_file}: run")
    return name, model, layout.check_seed(marker["seed"], f"run marker {marker_file}: seed"), marker


def _read_rotate(path: Path) -> tuple[bool, str]:
    """``(experiment.train.rotate, problem)`` from the run's config.json; rotate is True when not recorded. An
    unreadable config is a problem: it alone says whether the run belongs in the ``_nr`` table."""
    config = path / layout.RUN_CONFIG
    if not config.exists():
        return True, ""
    try:
        return bool(json.loads(config.read_text()).get("experiment", {}).get("train", {}).get("rotate", True)), ""
    except (OSError, ValueError, AttributeError) as err:
        return True, f"config.json unreadable ({type(err).__name__}: {err})"


def _metrics_problems(path: Path) -> list[str]:
    """Why ``metrics.json`` cannot feed the tables (unreadable, or without val/test loss and accuracy)."""
    try:
        metrics = json.loads(path.read_text())
        for split in ("val", "test"):
            float(metrics[split]["loss"]), float(metrics[split]["accuracy"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{path.name} unreadable or incomplete ({type(err).__name__}: {err})"]
    return []


def _problems(path: Path) -> list[str]:
    """Why the run folder ``path`` (whose marker reads) is not complete."""
    if not path.is_dir():
        return [f"marker {marker_path(path).name} but no run folder"]
    if not marker_path(path).exists():
        return [f"no completion marker {marker_path(path).name} (training unfinished or failed)"]
    missing = [f for f in layout.RUN_RESULTS if not (path / f).exists()]
    if missing:
        return [f"marker present but {', '.join(missing)} missing"]
    return _metrics_problems(path / layout.RUN_METRICS)


def read_run(path: str | Path) -> Run:
    """The run at ``path`` (a ``RUNS/{name}/seed{k}`` folder, finished or not) with every problem named; a marker
    that cannot be read is a problem, not an error."""
    path = Path(path)
    name, model, seed, marker = path.parent.name, path.parent.name, layout.seed_of(path.name), {}
    problems = []
    try:
        found = _from_marker(path)
        if found is not None:
            name, model, seed, marker = found
        else:
            layout.check_name(name, f"run folder {path.parent}:")
    except UserError as err:
        problems.append(f"marker {marker_path(path).name} unreadable or without model and seed ({err})"
                        if marker_path(path).exists() else str(err))
    problems += [] if problems else _problems(path)
    rotate, config_problem = _read_rotate(path) if path.is_dir() else (True, "")
    problems += [config_problem] if config_problem else []
    return Run(name, model, seed, path, marker, rotate, "; ".join(problems))


def finished_run(path: str | Path) -> Run | None:
    """The run at ``path`` when it has a completion marker (``None`` without one); a marker that cannot be read,
    or names a model or seed that cannot be a folder, raises :class:`UserError` naming it."""
    found = _from_marker(Path(path))
    if found is None:
        return None
    name, model, seed, marker = found
    rotate, _ = _read_rotate(Path(path))
    return Run(name, model, seed, Path(path), marker, rotate, "" if Path(path).is_dir() else "no run folder")


def _check_unique(runs: Sequence[Run]) -> None:
    """Two runs under one name (two folders whose markers say the same run, or a rotated and an ``_nr`` run
    labelled alike) would share their predictions and study outputs: refused."""
    for key in ("name", "label"):
        seen: dict[tuple[str, int], Run] = {}
        for run in runs:
            other = seen.setdefault((getattr(run, key), run.seed), run)
            if other is not run:
                raise UserError(f"two runs share the {key} {getattr(run, key)} seed{run.seed}: {other.path} and "
                                f"{run.path}")


def discover_runs(runs_root: str | Path) -> list[Run]:
    """Every ``{name}/seed{k}`` under ``runs_root`` (with or without marker), sorted by model order and seed."""
    root = Path(runs_root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder {root} does not exist")
    runs = [read_run(path) for path in layout.run_candidates(root)]
    _check_unique(runs)
    order = {label: i for i, label in enumerate(model_order({r.label for r in runs}))}
    return sorted(runs, key=lambda r: (order[r.label], r.seed))


def finished_runs(runs_root: str | Path, names: Sequence[str] | None = None,
                  seeds: Sequence[int] | None = None) -> list[Run]:
    """Every run under ``RUNS`` with a completion marker (optionally only those whose name or label is in
    ``names``, and only ``seeds``), sorted by (name, seed). A marker that cannot be read raises."""
    found = []
    for path in layout.run_candidates(runs_root):
        run = finished_run(path) if path.is_dir() else None
        if run is None or (names and not {run.name, run.label} & set(names)) or (seeds is not None and
                                                                                run.seed not in seeds):
            continue
        found.append(run)
    _check_unique(found)
    return sorted(found, key=lambda r: (r.name, r.seed))


def model_order(labels: Iterable[str]) -> list[str]:
    """The study's model order (the default grid), each ``_nr`` label after its model; unknown names last, sorted."""
    grid = list(GridConfig().models)

    def key(label: str):
        base = label.removesuffix(NR_SUFFIX)
        return (grid.index(base) if base in grid else len(grid), base, is_nr(label))

    return sorted(set(labels), key=key)
