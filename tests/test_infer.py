"""Sharded survey inference: planning under MaxArraySize, parts equal one whole pass, kill and rerun."""

import pandas as pd
import pytest

from gcnn_spin.cluster import infer
from gcnn_spin.config import load_experiment
from gcnn_spin.data.store import open_store
from gcnn_spin.io import marker_path
from gcnn_spin.layout import finished_runs
from gcnn_spin.predict import load_exported, predict_probabilities
from gcnn_spin.train import RunSpec, run_dir_for, train


def test_plan_parts_groups_whole_shards_under_max_array_size():
    parts = infer.plan_parts(n_rows=8_700_000, shard_images=1024, max_array_size=1000)
    assert len(parts) <= 1000
    assert parts[0].rows.start == 0 and parts[-1].rows.stop == 8_700_000
    for a, b in zip(parts, parts[1:]):
        assert a.rows.stop == b.rows.start and a.shards.stop == b.shards.start
        assert a.rows.start % 1024 == 0
    small = infer.plan_parts(n_rows=130, shard_images=64, max_array_size=1000)
    assert [(p.rows.start, p.rows.stop) for p in small] == [(0, 64), (64, 128), (128, 130)]
    assert infer.plan_parts(0, 64) == []


@pytest.fixture(scope="module")
def trained_runs(tiny_dataset, tmp_path_factory):
    _, data_dir, overrides = tiny_dataset
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_experiment("demo", list(overrides) + ["train.epochs=1"])
    for seed in (0, 1):
        spec = RunSpec(model="resnet18", seed=seed, data_dir=str(data_dir), experiment=cfg)
        train(spec, run_dir_for(runs, "resnet18", seed), progress=False)
    return runs


def _merge(pred_root, model, seed):
    parts = sorted((pred_root / model / f"seed{seed}").glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def test_parts_merge_to_one_whole_pass_and_rerun_skips(tiny_dataset, trained_runs, tmp_path):
    _, data_dir, _ = tiny_dataset
    store_path = data_dir / "stores" / "survey.zarr"
    store = open_store(store_path)
    parts = infer.store_parts(store)
    assert len(parts) >= 3, "the tiny survey should span several parts"
    runs = finished_runs(trained_runs)
    assert [(r.model, r.seed) for r in runs] == [("resnet18", 0), ("resnet18", 1)]
    pred = tmp_path / "pred"
    for part in parts:
        summary = infer.run_part(part.task_id, store_path, runs, pred, progress=False)
        assert len(summary["written"]) == 2
    merged = _merge(pred, "resnet18", 0)
    assert list(merged.columns) == infer.PREDICTION_COLUMNS
    whole = predict_probabilities(load_exported(runs[0].path), store, progress=False)
    assert merged["dr8_id"].tolist() == whole["dr8_id"].tolist()
    assert (merged[["p_cw", "p_acw", "p_other"]].to_numpy() - whole[["p_cw", "p_acw", "p_other"]].to_numpy()).max() < 1e-5
    assert merged["dr8_id"].is_unique and len(merged) == int(store.ok.sum())
    again = infer.run_part(0, store_path, runs, pred, progress=False)
    assert again["written"] == [] and len(again["skipped"]) == 2
    beyond = infer.run_part(len(parts) + 5, store_path, runs, pred, progress=False)
    assert beyond["written"] == [] and beyond["skipped"] == []


def test_kill_mid_part_leaves_nothing_and_rerun_completes(tiny_dataset, trained_runs, tmp_path, monkeypatch):
    _, data_dir, _ = tiny_dataset
    store_path = data_dir / "stores" / "survey.zarr"
    runs = finished_runs(trained_runs, seeds=[0])
    pred = tmp_path / "pred"
    real_write = pd.DataFrame.to_parquet

    def dies_while_writing(self, path, *args, **kwargs):
        real_write(self, path, *args, **kwargs)
        raise KeyboardInterrupt("killed after writing the temporary file")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        infer.run_part(1, store_path, runs, pred, progress=False)
    out = infer.part_path(pred, "resnet18", 0, 1)
    assert not out.exists() and not marker_path(out).exists()
    assert list(out.parent.iterdir()) == []  # no temporary file left behind
    monkeypatch.undo()
    infer.run_part(1, store_path, runs, pred, progress=False)
    assert out.exists() and marker_path(out).exists()


def test_print_array_dry_run_and_missing_runs(tiny_dataset, trained_runs, tmp_path, capsys):
    _, data_dir, _ = tiny_dataset
    store_path = str(data_dir / "stores" / "survey.zarr")
    n_parts = len(infer.store_parts(open_store(store_path)))
    args = ["--store", store_path, "--runs", str(trained_runs), "--out", str(tmp_path), "--cluster", "local"]
    assert infer.main([*args, "--print-array"]) == 0
    assert capsys.readouterr().out.strip() == f"0-{n_parts - 1}"  # one array element per part, every run in it
    assert infer.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{2 * n_parts} tasks: 0 done, {2 * n_parts} to run" in out and "resnet18/seed1/part-00000" in out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing, not even the plan
    assert infer.main(["--store", store_path, "--runs", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err
