"""The study-code choices of a training run: which epoch's weights the tables use, and the study's split bug."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from gcnn_spin import train as train_mod
from gcnn_spin.config import load_experiment
from gcnn_spin.data.study_split import STUDY_CODE_TRAIN_FRACTION, study_code_train_size, training_sets
from gcnn_spin.train import CheckpointError, RunSpec, train

#: Added to the real validation loss per epoch: epoch 2 is the least, the last two rise above it.
BUMPS = (10.0, 0.0, 10.0, 10.0)


def _spec(tiny_dataset, extra=()):
    _, data_dir, overrides = tiny_dataset
    return RunSpec(model="resnet18", seed=0, data_dir=str(data_dir),
                   experiment=load_experiment("demo", [*overrides, *extra]))


@pytest.fixture
def rising_val_loss(monkeypatch):
    """Validation losses as measured, plus :data:`BUMPS`; the real ones are kept in the returned list."""
    real_epoch, real = train_mod._run_epoch, []

    def bumped(model, loader, optimiser, device, cfg, train):
        loss, accuracy = real_epoch(model, loader, optimiser, device, cfg, train)
        if train:
            return loss, accuracy
        real.append(loss)
        return loss + BUMPS[len(real) - 1], accuracy

    monkeypatch.setattr(train_mod, "_run_epoch", bumped)
    return real


def _test_probabilities(run_dir):
    return pd.read_parquet(run_dir / "test_predictions.parquet")[["p_cw", "p_acw", "p_other"]].to_numpy()


@pytest.fixture(scope="module")
def two_epoch_reference(tiny_dataset, tmp_path_factory):
    """The same run stopped after epoch 2 with its final weights: what the least-val-loss run must export."""
    return train(_spec(tiny_dataset), tmp_path_factory.mktemp("ref") / "run", progress=False)


def test_least_val_loss_exports_the_best_epochs_weights(tiny_dataset, tmp_path, rising_val_loss, two_epoch_reference):
    spec = _spec(tiny_dataset, ["train.epochs=4", "train.tables_checkpoint=\"least_val_loss\""])
    out = train(spec, tmp_path / "best", progress=False)
    history = pd.read_csv(out / "history.csv")
    assert history["val_loss"].idxmin() + 1 == 2 and history["val_loss"].iloc[-1] > history["val_loss"].iloc[1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tables_checkpoint"] == "least_val_loss"
    assert metrics["weights_epoch"] == metrics["best_val_epoch"] == 2 and metrics["epochs"] == 4
    assert torch.load(out / "best_weights.pt", weights_only=False)["epoch"] == 2
    # evaluated with epoch 2's weights: its val loss is the one measured at epoch 2 (before the bump) ...
    assert metrics["val"]["loss"] == pytest.approx(rising_val_loss[1], rel=1e-4)
    assert abs(metrics["val"]["loss"] - rising_val_loss[3]) > 1e-4
    # ... and its test predictions are those of the run stopped after epoch 2
    np.testing.assert_allclose(_test_probabilities(out), _test_probabilities(two_epoch_reference), atol=1e-6)
    final = json.loads((two_epoch_reference / "metrics.json").read_text())
    assert final["tables_checkpoint"] == "final" and final["weights_epoch"] == 2
    assert not (two_epoch_reference / "best_weights.pt").exists()


@pytest.mark.parametrize("kill", ["saving_the_best", "after_epoch_3"])
def test_a_killed_least_val_loss_run_resumes_to_the_same_best(tiny_dataset, tmp_path, monkeypatch, rising_val_loss,
                                                             two_epoch_reference, kill):
    """Killed between the checkpoint and the best weights of epoch 2 (the file still holds epoch 1), or after
    epoch 3 (the checkpoint is past the best): the resumed run exports epoch 2's weights all the same."""
    spec = _spec(tiny_dataset, ["train.epochs=4", "train.tables_checkpoint=\"least_val_loss\""])
    out = tmp_path / "killed"
    real_save, real_history, calls = train_mod._save_best, train_mod._append_history, {"best": 0, "history": 0}

    def save_best(path, epoch, weights, run_hash):
        calls["best"] += 1
        if kill == "saving_the_best" and epoch == 2:
            raise KeyboardInterrupt("killed after the checkpoint of epoch 2, before its best weights")
        real_save(path, epoch, weights, run_hash)

    def history(path, rows):
        real_history(path, rows)
        calls["history"] += 1
        if kill == "after_epoch_3" and calls["history"] == 3:
            raise KeyboardInterrupt("killed after epoch 3")

    monkeypatch.setattr(train_mod, "_save_best", save_best)
    monkeypatch.setattr(train_mod, "_append_history", history)
    with pytest.raises(KeyboardInterrupt):
        train(spec, out, progress=False)
    expected_in_file = 1 if kill == "saving_the_best" else 2
    assert torch.load(out / "best_weights.pt", weights_only=False)["epoch"] == expected_in_file
    monkeypatch.setattr(train_mod, "_save_best", real_save)
    monkeypatch.setattr(train_mod, "_append_history", real_history)
    rising_val_loss[:] = rising_val_loss[:2] if kill == "saving_the_best" else rising_val_loss[:3]
    train(spec, out, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights_epoch"] == 2
    np.testing.assert_allclose(_test_probabilities(out), _test_probabilities(two_epoch_reference), atol=1e-6)


def test_a_lost_best_weights_file_is_refused_on_resume(tiny_dataset, tmp_path, monkeypatch, rising_val_loss):
    spec = _spec(tiny_dataset, ["train.epochs=4", "train.tables_checkpoint=\"least_val_loss\""])
    out = tmp_path / "lost"
    real_history = train_mod._append_history

    def history(path, rows):
        real_history(path, rows)
        if len(rows) == 3:
            raise KeyboardInterrupt("killed after epoch 3")

    monkeypatch.setattr(train_mod, "_append_history", history)
    with pytest.raises(KeyboardInterrupt):
        train(spec, out, progress=False)
    (out / "best_weights.pt").unlink()
    with pytest.raises(CheckpointError, match="epoch 2"):
        train(spec, out, progress=False)


@pytest.mark.parametrize("n", [2, 7, 10, 11, 99, 35988, 166945])
def test_the_study_split_size_is_torchs(n):
    part, _ = torch.utils.data.random_split(range(n), [STUDY_CODE_TRAIN_FRACTION, 1 - STUDY_CODE_TRAIN_FRACTION])
    assert study_code_train_size(n) == len(part)


def _stores(tiny_dataset):
    return train_mod.training_stores(tiny_dataset[1])


def _ids(store, rows=None):
    ids = store.rows["dr8_id"].to_numpy()
    return set(ids if rows is None else ids[rows])


def test_the_study_split_bug_trains_and_validates_on_the_same_20_percent(tiny_dataset):
    stores = _stores(tiny_dataset)
    cfg = load_experiment("demo", [*tiny_dataset[2], "data.study_code_split_bug=true"]).data
    sets = training_sets(stores, cfg)
    n_train, n_val = len(stores["train"]), len(stores["val"])
    assert len(sets.train_rows) == study_code_train_size(n_train + n_val)
    assert len(sets.train_rows) == pytest.approx(0.2 * (n_train + n_val), abs=1)
    assert sets.val_split == "train" and sets.on_training_galaxies
    assert _ids(stores["train"], sets.train_rows) == _ids(stores[sets.val_split], sets.val_rows)
    again = training_sets(stores, cfg)  # fixed for every model and seed, as the study's seed 42
    assert np.array_equal(again.train_rows, sets.train_rows)


def test_without_the_bug_train_and_val_are_disjoint_and_whole(tiny_dataset):
    stores = _stores(tiny_dataset)
    sets = training_sets(stores, load_experiment("demo", list(tiny_dataset[2])).data)
    assert sets.train_rows is None and sets.val_rows is None and sets.val_split == "val"
    assert not sets.on_training_galaxies
    train_ids, val_ids = _ids(stores["train"]), _ids(stores["val"])
    assert train_ids and val_ids and not train_ids & val_ids


def test_a_run_with_the_study_split_bug_validates_on_its_training_galaxies(tiny_dataset, tmp_path):
    spec = _spec(tiny_dataset, ["data.study_code_split_bug=true", "train.epochs=1"])
    out = train(spec, tmp_path / "bug", progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    stores = _stores(tiny_dataset)
    sets = training_sets(stores, spec.experiment.data)
    n_usable = int(np.asarray(stores["train"].ok)[sets.train_rows].sum())
    assert metrics["val_on_training_galaxies"] is True
    assert int(np.sum(metrics["val"]["confusion_counts"])) == n_usable < len(stores["train"])


def test_run_identity_covers_the_training_choices_but_not_the_spread_or_the_grid():
    from gcnn_spin.config import training_identity

    def identity(*changes, model="resnet18"):
        return training_identity(load_experiment("experiment", list(changes)), model)

    base = identity()
    for same in ("tables.spread_ddof=1", "tables.val_columns=\"evaluated\"", "grid.seeds=[0,1,2,3,4,5]",
                 "grid.models=[\"resnet18\"]", "name=\"other\"", "train.epochs_by_model={lenet=30}"):
        assert identity(same) == base, same
    for change in ("train.tables_checkpoint=\"least_val_loss\"", "data.study_code_split_bug=true", "train.epochs=7",
                   "train.epochs_by_model={resnet18=30}", "train.lr=0.001"):
        assert identity(change) != base, change
    assert identity(model="lenet")["train"]["epochs"] == 60 and base["train"]["epochs"] == 120
