"""Train one run (model, seed) into ``RUNS/{run}/seed{k}/``: resumable, atomic checkpoints, a marker when done.

    python -m gcnn_spin.train --model gc_resnet18 --seed 0 --data DATA --out runs/gc_resnet18/seed0 \
        [--config demo] [--set train.epochs=3 ...] [--no-resume] [-q]

A run killed after epoch k and resumed ends with the same weights as one never killed: the checkpoint holds the
model, optimiser, scheduler and every RNG state, and the loader derives its order and angles from (seed, epoch).

``train.tables_checkpoint = "least_val_loss"``: the metrics, test predictions and export come from the weights
of the epoch of least validation loss, kept in ``best_weights.pt``. It is written after the checkpoint whenever
an epoch improves on every earlier one, so after a kill the best epoch is either the one in ``best_weights.pt``
or the checkpoint's own (whose weights are then copied over on resume): nothing is lost.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import cli, layout, models
from .config import ExperimentConfig, load_experiment, training_identity
from .crop import crop_for
from .errors import UserError
from .data.study_split import training_sets
from .evaluate import evaluate_run, least_val_loss_epoch
from .artifacts import verdict
from .io import (atomic_path, config_hash, marker_path, read_marker, remove_stale_temporaries, write_json_atomic,
                 write_marker)
from .metrics import n_correct, soft_cross_entropy
from .run import run_name, run_setup
from .runtime import autocast, channels_last, pick_device, set_cpu_threads

log = logging.getLogger("gcnn_spin.train")

HISTORY_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read (never silently restart from scratch)."""


TRAINING_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run. Its identity (:meth:`identity`, hashed into its marker) is model, seed, the science
    config and the identity of every store it trains and is tested on (their images and rows, labels included).
    Where the data folder lies is not part of it, so moving the data does not retrain anything."""

    model: str
    seed: int
    data_dir: str
    experiment: ExperimentConfig

    @property
    def name(self) -> str:
        """The run's name, its folder under RUNS: :func:`gcnn_spin.run.run_name` (``{model}_nr`` without rotation)."""
        return run_name(self.model, self.experiment.train.rotate)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "seed": self.seed, "experiment": training_identity(self.experiment, self.model)}

    def identity(self, stores: dict[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`as_dict` plus the identities of the opened ``stores`` (default: open the training stores)."""
        stores = training_stores(self.data_dir) if stores is None else stores
        return {**self.as_dict(), "stores": {split: store.identity for split, store in sorted(stores.items())}}


def training_stores(data_dir: str | Path) -> dict[str, Any]:
    """The opened train, val and test stores of ``data_dir`` (a missing, unfinished or damaged one is named)."""
    from .data.store import open_store

    return {split: open_store(layout.store_path(data_dir, split)) for split in TRAINING_SPLITS}


def check_run(model: str, seed: int, cfg: ExperimentConfig, seed_from: str = "grid.seeds") -> None:
    """Refuse a run no stage could use: an unknown model, a seed that names no folder (``seed_from``: where the
    seed came from, for the message), zero epochs, a batch size below 1."""
    if model not in models.names():
        raise UserError(f"unknown model {model!r}; valid: {', '.join(models.names())}")
    layout.check_seed(seed, seed_from)
    epochs = cfg.train.epochs_for(model)
    if epochs < 1:
        raise UserError(f"train.epochs={epochs} for {model}: a run needs at least one epoch (it would be marked "
                        "finished with untrained weights)")
    if cfg.train.batch_size < 1:
        raise UserError(f"train.batch_size={cfg.train.batch_size}: must be at least 1")


def model_options_for(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The config's ``model_options`` that ``model`` accepts (e.g. ``base_width`` reaches only ResNets).

    An option that no registered model accepts is a typo and raises, naming the valid ones.
    """
    known = set().union(*(models.options(name) for name in models.names()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"train.model_options: unknown option(s) {unknown}; valid: {sorted(known)}")
    accepted = models.options(model)
    return {k: v for k, v in options.items() if k in accepted}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _append_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``history.csv`` atomically from the checkpointed history (never out of step with it)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(
            f"checkpoint {path} exists but cannot be read ({type(err).__name__}: {err}). It is not overwritten: "
            f"move it away to restart this run from scratch, or restore it from a backup."
        ) from None


def _save_best(path: Path, epoch: int, weights: dict[str, Any], run_hash: str) -> None:
    with atomic_path(path) as tmp:
        torch.save({"epoch": epoch, "model": weights, "config_hash": run_hash}, tmp)


def _resume_best(path: Path, state: dict[str, Any]) -> None:
    """Make ``best_weights.pt`` hold the least-val-loss epoch of the resumed checkpoint ``state``'s history.

    The checkpoint is written first: when its own epoch is the best, a kill may have come before the copy, so it is
    copied again; any other best epoch must be the one the file holds (else the file was lost or replaced).
    """
    best = least_val_loss_epoch(state["history"])
    if best == state["epoch"]:
        _save_best(path, best, state["model"], state["config_hash"])
        return
    saved = load_training_checkpoint(path) if path.exists() else {}
    if saved.get("epoch") != best or saved.get("config_hash") != state["config_hash"]:
        raise CheckpointError(f"{path} should hold the weights of epoch {best} (least validation loss) of this "
                              f"run but holds {saved.get('epoch', 'nothing')}: delete {path.parent} to train it "
                              "again, or set train.tables_checkpoint = \"final\"")


def _run_epoch(model, loader, optimiser, device, cfg, train: bool) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy). Raises TrainingDiverged on a NaN loss."""
    model.train(train)
    total_loss, total_correct, total_n = 0.0, 0, 0
    max_batches = cfg.train.max_train_batches if train else 0
    for i, batch in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        images = batch.images.to(device, non_blocking=True)
        targets = batch.targets.to(device, non_blocking=True)
        images = channels_last(images, device, cfg.train.channels_last)
        with torch.set_grad_enabled(train), autocast(device, cfg.train.bf16):
            logits = model(images)
            loss = soft_cross_entropy(logits, targets)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at batch {i} ({'train' if train else 'val'})")
        if train:
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        n = len(targets)
        total_loss += float(loss.detach()) * n
        total_correct += n_correct(logits.detach(), targets)
        total_n += n
    if total_n == 0:
        raise RuntimeError("the loader yielded no galaxies: is the store empty or every row marked bad?")
    return total_loss / total_n, total_correct / total_n


def train(spec: RunSpec, out_dir: str | Path, resume: bool = True, device: str | None = None,
          progress: bool = True) -> Path:
    """Train (or resume, or skip if complete) one run. Returns the run directory."""
    from .data.loader import StoreLoader  # data stack imported only when training

    out = Path(out_dir)
    cfg = spec.experiment
    check_run(spec.model, spec.seed, cfg)
    read_marker(out)  # an unreadable marker is named (with what to do) before anything else
    stores = training_stores(spec.data_dir)
    run_config = spec.identity(stores)
    run_hash = config_hash(run_config)
    found = verdict(out, run_hash)
    if found.done:
        log.info("%s: complete (marker %s), nothing to do", out, marker_path(out))
        return out
    if found.state == "stale":  # a finished run made from other settings or data: train it again from scratch
        log.warning("%s: %s; training it again", out, found)
        marker_path(out).unlink()
        (out / layout.RUN_CHECKPOINT).unlink(missing_ok=True)
        (out / layout.RUN_BEST_WEIGHTS).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / layout.RUN_CONFIG, {**run_config, "config_hash": run_hash, "data_dir": str(spec.data_dir)})

    dev = pick_device(device)
    set_cpu_threads(cfg.train.num_threads)
    seed_everything(spec.seed)
    train_store = stores["train"]
    sets = training_sets(stores, cfg.data)
    image_size = crop_for(spec.model, train_store)
    model = models.build(spec.model, image_size=image_size, dropout=cfg.train.dropout,
                         **model_options_for(spec.model, cfg.train.model_options)).to(dev)
    model.image_field = train_store.field  # the field it learns; inference refuses stores of another (crop.py)
    model = channels_last(model, dev, cfg.train.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg.train.step_size, gamma=cfg.train.gamma)

    train_loader = StoreLoader(train_store, batch_size=cfg.train.batch_size, shuffle=True, seed=spec.seed,
                               image_size=image_size, rotate=cfg.train.rotate, device=dev, rows=sets.train_rows)
    val_loader = StoreLoader(stores[sets.val_split], batch_size=cfg.train.batch_size, shuffle=False, seed=spec.seed,
                             image_size=image_size, rotate=False, device=dev, rows=sets.val_rows)

    ckpt_path, best_path = out / layout.RUN_CHECKPOINT, out / layout.RUN_BEST_WEIGHTS
    keep_best = cfg.train.tables_checkpoint == "least_val_loss"
    for path in (ckpt_path, best_path):
        remove_stale_temporaries(path)  # a task killed while saving leaves one; the run's folder is its own
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{ckpt_path} exists; pass --resume (default) to continue or choose another --out")
        state = load_training_checkpoint(ckpt_path)
        if state.get("config_hash") != run_hash:
            raise CheckpointError(f"{ckpt_path} was written for a different config (settings, or the content of "
                                  "the stores it trained on); refusing to resume it: delete it to train this run "
                                  "from scratch")
        models.load_model_state(model, state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        start_epoch = state["epoch"]
        _set_rng_state(state["rng"])
        if keep_best:
            _resume_best(best_path, state)
        log.info("%s: resuming after epoch %d", out, start_epoch)
    else:
        best_path.unlink(missing_ok=True)  # left by a checkpoint deleted to restart: never a fresh run's best

    n_epochs = cfg.train.epochs_for(spec.model)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_epochs, initial=start_epoch, desc=f"{spec.model} seed{spec.seed}", unit="epoch",
                   dynamic_ncols=True, file=sys.stderr)
    for epoch in range(start_epoch, n_epochs):
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        lr = optimiser.param_groups[0]["lr"]
        train_loss, train_acc = _run_epoch(model, train_loader, optimiser, dev, cfg, train=True)
        val_loss, val_acc = _run_epoch(model, val_loader, None, dev, cfg, train=False)
        scheduler.step()
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                        "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
                        "seconds": round(time.perf_counter() - t0, 3)})
        state = {"epoch": epoch + 1, "model": models.model_state_dict(model), "optimiser": optimiser.state_dict(),
                 "scheduler": scheduler.state_dict(), "history": history, "rng": _rng_state(),
                 "config_hash": run_hash, "model_name": spec.model}
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        if keep_best and least_val_loss_epoch(history) == epoch + 1:
            _save_best(best_path, epoch + 1, state["model"], run_hash)
        _append_history(out / layout.RUN_HISTORY, history)
        if bar is not None:
            bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()

    weights_epoch = n_epochs
    if keep_best:
        best = load_training_checkpoint(best_path)
        models.load_model_state(model, best["model"])
        weights_epoch = best["epoch"]
    exported = models.export(model.eval())
    models.save_exported(exported, out / layout.RUN_EXPORT)
    metrics = evaluate_run(out, spec, exported, dev, history, progress=progress, sets=sets,
                           weights_epoch=weights_epoch)
    write_marker(out, run_config, model=spec.model, run=spec.name, seed=spec.seed, epochs=n_epochs,
                 test_accuracy=metrics["test"]["accuracy"])
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gcnn_spin.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(models.names())}; <model>_nr trains it "
                                                       "without rotation (train.epochs_no_rotation epochs)")
    parser.add_argument("--seed", type=int, required=True, help="training seed (weights, shuffling, angles)")
    parser.add_argument("--data", required=True, help="dataset folder (holds stores/{train,val,test}.zarr)")
    parser.add_argument("--out", required=True, help="run folder, by convention runs/{model}/seed{k} (runs/{model}_nr/... "
                                                     "without rotation)")
    cli.add_config(parser)
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="refuse to continue an existing run")
    cli.add_device(parser)
    cli.add_quiet(parser)
    cli.add_debug(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    model, cfg = run_setup(args.model, load_experiment(args.config, args.overrides), models.names())
    check_run(model, args.seed, cfg, "--seed")
    spec = RunSpec(model=model, seed=args.seed, data_dir=str(Path(args.data).resolve()), experiment=cfg)
    try:
        out = train(spec, args.out, resume=args.resume, device=args.device, progress=not args.quiet)
    except (TrainingDiverged, CheckpointError) as err:
        log.error("%s", err)
        return 2
    summary = json.loads((out / layout.RUN_METRICS).read_text())
    print(f"{out}: test accuracy {summary['test']['accuracy']:.4f}, test loss {summary['test']['loss']:.4f}")
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
