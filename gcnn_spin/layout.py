"""The on-disk layout, in one place: where DATA, RUNS, PRED, RESULTS and LOGS keep each artifact, and discovery.

    DATA/stores/{split}.zarr              Zarr store (+ {split}.parquet rows, {split}.bad.csv,
                                          {split}.fetch_failed.csv)
    DATA/stores/{split}.zarr.shards/shard-{k:05d}.done   shard k built (resumable and array builds)
    RUNS/{run}/seed{k}/                   training run (+ marker RUNS/{run}/seed{k}.done)
    PRED/plan.json                        the inference part plan: store identity + row range of every part
    PRED/{run}/seed{k}/part-{i:05d}.parquet   survey predictions of part i (+ .done)
    RESULTS/studies/{study}/{label}/seed{k}.parquet   per-run study output (+ .done)
    LOGS/{stage}/submission.json          what an array stage submitted (job ids, task ids, log paths)

``{run}`` is a run's name: its model, or ``{model}_nr`` for the model trained without rotation; ``{label}`` its
table label (:mod:`gcnn_spin.run`, which reads name, model and seed from a run's completion marker, never from
folder names). Every other module asks here instead of spelling a path.
"""

from __future__ import annotations

import re
from pathlib import Path

from .io import MARKER_SUFFIX
from .errors import UserError

SPLITS = ("train", "val", "test", "survey")
PLAN_FILE = "plan.json"
_PART_RE = re.compile(r"^part-(\d{5})\.parquet$")
_SEED_RE = re.compile(r"^seed(\d+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


def check_name(name: object, what: str = "model") -> str:
    """``name`` if it can be one path component (letters, digits, ``_.+-``; no separator, not ``..``), else
    :class:`UserError` naming ``what`` and the value. Every model name read from a marker or flag passes here
    before it becomes a path."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise UserError(f"{what} {name!r} cannot name a folder: use letters, digits and _ . + - only")
    return name


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int >= 0 (what a ``seed{k}`` folder can hold and discovery finds), else :class:`UserError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"{what}: {seed!r} is not a seed (an integer >= 0 naming a seed{{k}} folder)")
    return seed


def store_path(data: str | Path, split: str) -> Path:
    """``DATA/stores/{split}.zarr``."""
    return Path(data) / "stores" / f"{split}.zarr"


def store_rows_path(data: str | Path, split: str) -> Path:
    """``DATA/stores/{split}.parquet``: the store's rows in store order."""
    return store_path(data, split).with_suffix(".parquet")


STORE_REPORTS = ("bad", "fetch_failed")


def store_report_path(data: str | Path, split: str, report: str) -> Path:
    """``DATA/stores/{split}.{report}.csv``: the rows the store builder could not use (``bad``) or fetch."""
    if report not in STORE_REPORTS:
        raise ValueError(f"unknown store report {report!r}; known: {', '.join(STORE_REPORTS)}")
    return store_path(data, split).with_suffix(f".{report}.csv")


def shard_output(store: str | Path, shard: int) -> Path:
    """The (virtual) output whose marker ``{split}.zarr.shards/shard-{k:05d}.done`` says shard k is built."""
    store = Path(store)
    return store.with_name(store.name + ".shards") / f"shard-{shard:05d}"


#: The files of a run folder ``RUNS/{run}/seed{k}/`` (written by :mod:`gcnn_spin.train`), named here only.
RUN_CONFIG = "config.json"  # resolved experiment, model, seed and the stores' identities
RUN_HISTORY = "history.csv"
RUN_CHECKPOINT = "checkpoint.pt"
RUN_BEST_WEIGHTS = "best_weights.pt"  # train.tables_checkpoint = "least_val_loss": that epoch's weights
RUN_EXPORT = "model_export.pt"  # the exported plain-PyTorch module every inference loads
RUN_METRICS = "metrics.json"
RUN_TEST_PREDICTIONS = "test_predictions.parquet"
#: What a finished run must hold for the tables (besides its marker).
RUN_RESULTS = (RUN_METRICS, RUN_HISTORY, RUN_TEST_PREDICTIONS)


def run_identity(marker: dict) -> dict:
    """What ties an output to one training of a run, from its marker: its config hash (model, seed, config and
    the stores it trained on) and completion time; a run retrained in place gets a new identity."""
    return {"config_hash": marker.get("config_hash"), "completed_utc": marker.get("provenance", {}).get("time_utc")}


def run_dir(runs: str | Path, run: str, seed: int) -> Path:
    """``RUNS/{run}/seed{k}``."""
    return Path(runs) / check_name(run, "run") / f"seed{check_seed(seed)}"


def part_path(pred: str | Path, run: str, seed: int, part: int) -> Path:
    """``PRED/{run}/seed{k}/part-{i:05d}.parquet``."""
    folder = Path(pred) / check_name(run, "run") / f"seed{check_seed(seed)}"
    return folder / f"part-{check_seed(part, 'part'):05d}.parquet"


def part_index(path: str | Path) -> int | None:
    """The part number in a ``part-{i:05d}.parquet`` file name, or ``None`` for any other name."""
    match = _PART_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def plan_path(pred: str | Path) -> Path:
    """``PRED/plan.json``: the part plan inference was run with."""
    return Path(pred) / PLAN_FILE


def study_path(results: str | Path, study: str, label: str, seed: int) -> Path:
    """``RESULTS/studies/{study}/{label}/seed{k}.parquet``."""
    folder = Path(results) / "studies" / check_name(study, "study") / check_name(label, "run")
    return folder / f"seed{check_seed(seed)}.parquet"


def store_identity(store) -> dict:
    """What an output made from an opened store depends on: its content (shard digests and rows, labels
    included: :attr:`gcnn_spin.data.store.Store.identity`) and size, not where it lies."""
    return {"content": store.identity, "n_images": len(store)}


def stage_logs(logs: str | Path, stage: str) -> Path:
    """``LOGS/{stage}``: a stage's submitit folder and ``submission.json``."""
    return Path(logs) / stage


def bind_roots(paths) -> list[Path]:
    """The fewest existing folders holding every artifact at ``paths`` together with what lies beside it (its
    marker, temporaries, a store's rows and shard markers): each path's parent, or its nearest existing
    ancestor, without the folders inside another one. A container that binds them sees all a task touches."""
    folders = set()
    for path in paths:
        path = Path(path).resolve().parent
        while not path.is_dir() and path != path.parent:
            path = path.parent
        folders.add(path)
    return sorted(f for f in folders if not any(o != f and o in f.parents for o in folders))


def seed_of(name: str) -> int | None:
    """``k`` of a ``seed{k}`` folder or marker name, or ``None``."""
    match = _SEED_RE.match(name.removesuffix(MARKER_SUFFIX))
    return int(match.group(1)) if match else None


def run_candidates(runs: str | Path) -> list[Path]:
    """Every ``RUNS/*/seed{k}`` folder or marker, as run folders (a marker without its folder included)."""
    found = {path.with_name(path.name.removesuffix(MARKER_SUFFIX)) for path in Path(runs).glob("*/seed*")
             if seed_of(path.name) is not None and (path.is_dir() or path.name.endswith(MARKER_SUFFIX))}
    return sorted(found)
