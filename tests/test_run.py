"""One run model: run names (the layout key, ``{model}_nr`` without rotation), the grid's runs, and a model
trained with and without rotation side by side through training, inference and the studies."""

import json

import pandas as pd
import pytest

from gcnn_spin import models
from gcnn_spin.analysis import studies
from gcnn_spin.cluster import arrays, infer, submit_train
from gcnn_spin.config import load_experiment
from gcnn_spin.errors import UserError
from gcnn_spin.io import read_marker
from gcnn_spin.run import discover_runs, finished_runs, grid_run_names, run_setup

STUDY_NR = ["lenet", "g_lenet", "resnet18", "resnet50", "ce_resnet50", "g_resnet18", "g_resnet50", "g_resnet18_c",
            "g_resnet50_c"]  # the study's Metrics/*_60_nr and *_60_cnr


def test_the_study_grid_lists_its_nr_runs_at_60_epochs():
    cfg = load_experiment("experiment")
    names = grid_run_names(cfg)
    assert names == [*cfg.grid.models, *(f"{m}_nr" for m in STUDY_NR)]
    for name in names:
        model, run_cfg = run_setup(name, cfg, models.names())
        nr = name.endswith("_nr")
        assert model == name.removesuffix("_nr") and run_cfg.train.rotate is not nr
        rotated = {"lenet": 60, "g_lenet": 60, "g_resnet18_flips": 60}.get(model, 120)
        assert run_cfg.train.epochs_for(model) == (60 if nr else rotated)
    assert grid_run_names(load_experiment("demo")) == list(load_experiment("demo").grid.models)  # no _nr there


def test_run_names_are_checked():
    cfg = load_experiment("demo")
    with pytest.raises(UserError, match="unknown model 'resnet19_nr'"):
        run_setup("resnet19_nr", cfg, models.names())
    with pytest.raises(UserError, match="unknown model 'resnet18_nr_nr'"):
        run_setup("resnet18_nr_nr", cfg, models.names())
    everything_nr = load_experiment("demo", ["train.rotate=false", "grid.no_rotation_models=['resnet18']"])
    assert grid_run_names(everything_nr) == [f"{m}_nr" for m in everything_nr.grid.models]  # resnet18_nr once


def test_train_stage_plans_the_study_grid_with_its_nr_runs_under_max_array_size(tiny_dataset, tmp_path, capsys):
    _, data_dir, _ = tiny_dataset
    cfg = load_experiment("experiment")
    tasks = submit_train.grid_tasks(data_dir, tmp_path / "runs", "experiment", [])
    n_runs = len(cfg.grid.models) + len(STUDY_NR)
    assert len(tasks) == n_runs * len(cfg.grid.seeds) == 105
    by_id = {t.task_id: t for t in tasks}
    assert len(by_id) == 105 and len({t.output for t in tasks}) == 105 and len({t.identity for t in tasks}) == 105
    nr, rotated = by_id["g_resnet50_c_nr/seed4"], by_id["g_resnet50_c/seed4"]
    assert nr.output == (tmp_path / "runs" / "g_resnet50_c_nr" / "seed4").resolve()
    assert rotated.output == (tmp_path / "runs" / "g_resnet50_c" / "seed4").resolve()
    assert nr.kwargs["run"] == "g_resnet50_c_nr" and rotated.kwargs["run"] == "g_resnet50_c"
    groups = arrays.array_groups(tasks, 50)  # 35 array elements of 3 runs each
    assert len(groups) == 35 and [t.task_id for g in groups for t in g] == [t.task_id for t in tasks]
    args = ["--data", str(data_dir), "--runs", str(tmp_path / "runs"), "--config", "experiment", "--cluster", "local",
            "--cluster-set", "max_array_size=50"]
    assert submit_train.main([*args, "--print-array"]) == 0
    assert capsys.readouterr().out.strip() == "0-34"
    assert submit_train.main([*args, "--dry-run"]) == 0
    assert "105 tasks: 0 done, 105 to run" in capsys.readouterr().out


@pytest.fixture(scope="module")
def side_by_side(tiny_dataset, tmp_path_factory):
    """resnet18 (1 epoch) and resnet18_nr (train.epochs_no_rotation = 2) seed 0, trained by the training stage."""
    _, data_dir, overrides = tiny_dataset
    root = tmp_path_factory.mktemp("nr")
    settings = [a for o in [*overrides, "train.epochs=1", "train.epochs_no_rotation=2"] for a in ("--set", o)]
    args = ["--data", str(data_dir), "--runs", str(root / "runs"), "--logs", str(root / "logs"), "--config", "demo",
            *settings, "--models", "resnet18", "resnet18_nr", "--seeds", "0", "--cluster", "local"]
    assert submit_train.main([*args, "--wait", "--timeout-min", "10"]) == 0
    return root, data_dir, args


def test_a_model_trains_with_and_without_rotation_beside_itself(side_by_side, capsys):
    root, _, args = side_by_side
    runs = root / "runs"
    for name, rotate, epochs in (("resnet18", True, 1), ("resnet18_nr", False, 2)):
        marker = read_marker(runs / name / "seed0")
        assert (marker["model"], marker["run"], marker["epochs"]) == ("resnet18", name, epochs)
        assert json.loads((runs / name / "seed0" / "config.json").read_text())["experiment"]["train"]["rotate"] is rotate
        assert len(pd.read_csv(runs / name / "seed0" / "history.csv")) == epochs
    found = finished_runs(runs)
    assert [(r.name, r.model, r.label) for r in found] == [("resnet18", "resnet18", "resnet18"),
                                                           ("resnet18_nr", "resnet18", "resnet18_nr")]
    assert found[0].identity != found[1].identity
    assert [r.name for r in finished_runs(runs, ["resnet18_nr"])] == ["resnet18_nr"]
    assert submit_train.main([*args, "--dry-run"]) == 0
    assert "2 tasks: 2 done, 0 to run" in capsys.readouterr().out


def test_inference_and_studies_keep_the_two_runs_apart(side_by_side, tmp_path):
    root, data_dir, _ = side_by_side
    runs = finished_runs(root / "runs")
    store = data_dir / "stores" / "survey.zarr"
    summary = infer.run_part(0, store, runs, tmp_path / "pred", progress=False)
    parts = {name: infer.part_path(tmp_path / "pred", name, 0, 0) for name in ("resnet18", "resnet18_nr")}
    assert sorted(summary["written"]) == sorted(str(p.resolve()) for p in parts.values())
    for name, part in parts.items():
        assert (read_marker(part)["model"], read_marker(part)["run"]) == ("resnet18", name)
    rotated, nr = (pd.read_parquet(p) for p in parts.values())
    assert rotated["dr8_id"].tolist() == nr["dr8_id"].tolist()
    assert (rotated["p_cw"] - nr["p_cw"]).abs().max() > 1e-4  # other weights, other predictions
    for run in discover_runs(root / "runs"):
        out = studies.run_recovery_task(run, tmp_path / "results", draws=2)
        assert out == tmp_path / "results" / "studies" / "recovery" / run.label / "seed0.parquet"
        assert read_marker(out)["run"] == run.name and read_marker(out)["run_identity"] == run.identity


def test_one_collect_reports_both_runs_in_their_tables(side_by_side, tmp_path):
    from gcnn_spin.analysis.collect import Settings, collect

    root, _, _ = side_by_side
    outcome = collect(Settings(runs=root / "runs", out=tmp_path / "results", progress=False, draws=2, figures=False))
    assert outcome.exit_code == 0, [i.describe() for i in outcome.issues]
    tables = tmp_path / "results" / "tables"
    t6 = pd.read_csv(tables / "table6_metrics.csv").set_index("model")
    t7 = pd.read_csv(tables / "table7_metrics_nr.csv").set_index("model")
    assert list(t6.index) == ["resnet18"] and list(t7.index) == ["resnet18_nr"]
    for t, name in ((t6, "resnet18"), (t7, "resnet18_nr")):
        metrics = json.loads((root / "runs" / name / "seed0" / "metrics.json").read_text())
        assert t.loc[name, "test_loss_mean"] == pytest.approx(metrics["test"]["loss"])
    assert "resnet18_nr" in (tmp_path / "results" / "report.md").read_text()
