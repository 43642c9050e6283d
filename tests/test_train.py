"""Training on the tiny synthetic dataset: artifacts, exact resume after a kill, NaN and corrupt checkpoints."""

import json

import pandas as pd
import pytest
import torch

from gcnn_spin import models
from gcnn_spin import train as train_mod
from gcnn_spin.config import load_experiment
from gcnn_spin.io import marker_path
from gcnn_spin.train import CheckpointError, RunSpec, TrainingDiverged, model_options_for, train


def _spec(tiny_dataset, model="resnet18", seed=0, extra=()):
    _, data_dir, overrides = tiny_dataset
    return RunSpec(model=model, seed=seed, data_dir=str(data_dir),
                   experiment=load_experiment("demo", list(overrides) + list(extra)))


def _weights(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    return state["model"]


def test_train_writes_every_artifact_and_marker_last(tiny_dataset, tmp_path):
    out = train(_spec(tiny_dataset), tmp_path / "resnet18" / "seed0", progress=False)
    for name in ("config.json", "history.csv", "checkpoint.pt", "model_export.pt", "metrics.json",
                 "test_predictions.parquet"):
        assert (out / name).exists(), name
    assert marker_path(out).exists()
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["equivariance"]["mirror"] > 1e-4  # a plain ResNet does not swap CW and ACW under a mirror
    table = pd.read_parquet(out / "test_predictions.parquet")
    assert {"dr8_id", "p_cw", "p_acw", "p_other", "p_cw_true"} <= set(table.columns)
    assert table[["p_cw", "p_acw", "p_other"]].sum(axis=1).sub(1).abs().max() < 1e-5
    assert models.load_exported(out / "model_export.pt").image_field == "inscribed"  # its train store's field
    # a second run does nothing: the marker says the run is complete
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    train(_spec(tiny_dataset), out, progress=False)
    assert (out / "checkpoint.pt").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("model", ["resnet18", "gc_resnet18"])
def test_killed_after_epoch_resumes_to_identical_weights(tiny_dataset, tmp_path, monkeypatch, model):
    spec = _spec(tiny_dataset, model=model, extra=["train.epochs=3"])
    reference = train(spec, tmp_path / "uninterrupted", progress=False)

    real_history = train_mod._append_history
    calls = {"n": 0}

    def killed_after_first_epoch(path, rows):
        real_history(path, rows)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(train_mod, "_append_history", killed_after_first_epoch)
    resumed_dir = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(spec, resumed_dir, progress=False)
    assert not marker_path(resumed_dir).exists()
    assert torch.load(resumed_dir / "checkpoint.pt", weights_only=False)["epoch"] == 1
    train(spec, resumed_dir, progress=False)

    expected, got = _weights(reference), _weights(resumed_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert pd.read_csv(resumed_dir / "history.csv")["train_loss"].tolist() == \
        pd.read_csv(reference / "history.csv")["train_loss"].tolist()
    if model.startswith("gc_"):  # trained, exported and evaluated on real images: still exactly chiral
        errors = json.loads((reference / "metrics.json").read_text())["equivariance"]
        assert errors["mirror"] < 1e-5 and errors["rot90"] < 1e-5, errors


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    state = {"after_epoch_one": False}
    real_loss, real_history = train_mod.soft_cross_entropy, train_mod._append_history

    def loss_nan_in_epoch_two(logits, targets):
        loss = real_loss(logits, targets)
        return loss * float("nan") if state["after_epoch_one"] else loss

    def history_then_switch(path, rows):
        real_history(path, rows)
        state["after_epoch_one"] = True

    monkeypatch.setattr(train_mod, "soft_cross_entropy", loss_nan_in_epoch_two)
    monkeypatch.setattr(train_mod, "_append_history", history_then_switch)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="nan"):
        train(_spec(tiny_dataset), out, progress=False)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not marker_path(out).exists()


def test_corrupt_checkpoint_is_a_clear_error(tiny_dataset, tmp_path):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        train(_spec(tiny_dataset), out, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # never overwritten


def test_a_store_damaged_after_it_was_finished_fails_training_naming_the_shard(tiny_dataset, tmp_path):
    """What a training task on the cluster meets when a shard's bytes are corrupted: an error, not bad images."""
    import shutil

    from test_store import corrupt_shards

    from gcnn_spin.data.store import ShardError

    raw, data_dir, overrides = tiny_dataset
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "stores", copy / "stores")
    corrupt_shards(copy / "stores" / "train.zarr")
    with pytest.raises(ShardError, match=rf"store {copy / 'stores' / 'train.zarr'}: shard \d+ \(rows \d+-\d+\) is "
                                         r"unusable: reading it failed: .* --task-id \d+$"):
        train(_spec((raw, copy, overrides)), tmp_path / "run", progress=False)


def test_checkpoint_of_another_config_is_refused(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "other"
    train(_spec(tiny_dataset, extra=["train.epochs=1"]), out, progress=False)
    marker_path(out).unlink()
    with pytest.raises(CheckpointError, match="different config"):
        train(_spec(tiny_dataset, extra=["train.lr=0.5"]), out, progress=False)


def test_model_options_reach_only_models_that_take_them():
    assert model_options_for("resnet18", {"base_width": 8}) == {"base_width": 8}
    assert model_options_for("lenet", {"base_width": 8}) == {}
    with pytest.raises(ValueError, match="base_widht"):
        model_options_for("resnet18", {"base_widht": 8})
    assert set(models.names()) >= {"resnet18", "gc_resnet18"}


def test_cli_help():
    with pytest.raises(SystemExit) as exit_info:
        train_mod.main(["--help"])
    assert exit_info.value.code == 0


def test_quiet_training_shows_no_progress_bar_and_zero_epochs_are_refused(tiny_dataset, tmp_path, capfd):
    from gcnn_spin.errors import UserError

    _, data_dir, overrides = tiny_dataset
    settings = [a for o in [*overrides, "train.epochs=1"] for a in ("--set", o)]
    common = ["--model", "resnet18", "--seed", "0", "--data", str(data_dir), "--config", "demo", *settings]
    assert train_mod.main([*common, "--out", str(tmp_path / "run"), "-q"]) == 0
    assert "%|" not in capfd.readouterr().err  # neither the epoch bar nor the evaluation's
    with pytest.raises(UserError, match=r"train.epochs=0 for resnet18: a run needs at least one epoch"):
        train_mod.main([*common, "--set", "train.epochs=0", "--out", str(tmp_path / "zero")])
    assert not (tmp_path / "zero").exists() and not marker_path(tmp_path / "zero").exists()
