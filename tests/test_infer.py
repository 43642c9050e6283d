"""Sharded survey inference: planning under MaxArraySize, parts equal one whole pass, kill and rerun, stale
parts, the recorded plan; the training and inference stages through the launcher on the local executor."""

import json
import shutil

import pandas as pd
import pytest

from conftest import flip_byte_in_column
from gcnn_spin.analysis.runs import check_completeness
from gcnn_spin.analysis.survey import merge_parts
from gcnn_spin.cluster import infer, submit_train
from gcnn_spin.data.store import open_store
from gcnn_spin.errors import InputError, UserError
from gcnn_spin.io import marker_path, read_marker, write_json_atomic
from gcnn_spin.layout import plan_path
from gcnn_spin.run import finished_runs
from gcnn_spin.predict import load_exported, predict_probabilities


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


def train_stage_args(data_dir, runs, logs, overrides):
    settings = [a for o in [*overrides, "train.epochs=1"] for a in ("--set", o)]
    return ["--data", str(data_dir), "--runs", str(runs), "--logs", str(logs), "--config", "demo", *settings,
            "--models", "resnet18", "--seeds", "0", "1", "--cluster", "local"]


@pytest.fixture(scope="module")
def trained_runs(tiny_dataset, tmp_path_factory):
    """Two resnet18 seeds trained by the training stage on the local executor (make submit-train CLUSTER=local)."""
    _, data_dir, overrides = tiny_dataset
    root = tmp_path_factory.mktemp("train")
    args = train_stage_args(data_dir, root / "runs", root / "logs", overrides)
    assert submit_train.main([*args, "--wait", "--timeout-min", "10"]) == 0  # submit is this stage's default
    return root / "runs"


def test_train_stage_status_and_a_moved_data_folder_retrains_nothing(tiny_dataset, trained_runs, tmp_path,
                                                                     capsys):
    _, data_dir, overrides = tiny_dataset
    logs = trained_runs.parent / "logs"
    assert submit_train.main(["status", *train_stage_args(data_dir, trained_runs, logs, overrides)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 done"
    shutil.copytree(data_dir, tmp_path / "moved" / "data")  # the same stores in another folder
    moved = train_stage_args(tmp_path / "moved" / "data", trained_runs, logs, overrides)
    assert submit_train.main([*moved, "--dry-run"]) == 0
    assert "2 tasks: 2 done, 0 to run" in capsys.readouterr().out
    other = train_stage_args(data_dir, trained_runs, logs, [*overrides, "train.lr=0.01"])
    assert submit_train.main([*other, "--dry-run"]) == 0  # another config is another run: both to redo
    assert "2 tasks: 0 done, 2 to run" in capsys.readouterr().out


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
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        infer.main(["--store", store_path, "--runs", str(tmp_path / "none"), "--out", str(tmp_path)])


def local_infer_args(tiny_dataset, runs, tmp_path):
    """The survey store, its part count, the predictions and log folders, and the infer stage's flags (local)."""
    _, data_dir, _ = tiny_dataset
    store_path = data_dir / "stores" / "survey.zarr"
    n_parts = len(infer.store_parts(open_store(store_path)))
    pred, logs = tmp_path / "pred", tmp_path / "logs"
    args = ["--store", str(store_path), "--runs", str(runs), "--out", str(pred), "--logs", str(logs),
            "--cluster", "local", "-q"]
    return store_path, n_parts, pred, logs, args


def test_infer_stage_on_the_local_executor_records_its_plan_and_redoes_stale_parts(tiny_dataset, trained_runs,
                                                                                   tmp_path, capsys):
    store_path, n_parts, pred, logs, args = local_infer_args(tiny_dataset, trained_runs, tmp_path)
    assert infer.main(["submit", *args, "--wait", "--timeout-min", "5"]) == 0
    assert f"{2 * n_parts} inference tasks submitted (local), 0 already complete" in capsys.readouterr().out
    plan = json.loads(plan_path(pred).read_text())
    assert plan["n_parts"] == n_parts and plan["store"]["n_images"] == len(open_store(store_path))
    assert infer.main(["status", *args]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{2 * n_parts} done"
    found = check_completeness(trained_runs, pred, store=store_path)
    assert found.issues == [] and found.n_parts == n_parts and "inference plan" in found.parts_source

    # seed 1 is retrained in place (same config, new completion): its parts are stale, seed 0's are not
    run1 = trained_runs / "resnet18" / "seed1"
    retrained = read_marker(run1)
    retrained["provenance"]["time_utc"] = "2030-01-01T00:00:00+00:00"
    write_json_atomic(marker_path(run1), retrained)
    issues = check_completeness(trained_runs, pred, store=store_path).issues
    assert {(i.model, i.seed, i.part) for i in issues} == {("resnet18", 1, k) for k in range(n_parts)}
    assert all(i.problem.startswith("stale: made from ") for i in issues)
    assert infer.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{n_parts} done, {n_parts} to run" in out and "todo  resnet18/seed1/part-00000" in out
    assert infer.main(["run", *args]) == 0  # every stale task in this process
    assert check_completeness(trained_runs, pred, store=store_path).issues == []


def test_missing_trailing_parts_are_named_from_the_recorded_plan(tiny_dataset, trained_runs, tmp_path):
    _, data_dir, _ = tiny_dataset
    store_path = data_dir / "stores" / "survey.zarr"
    n_parts = len(infer.store_parts(open_store(store_path)))
    pred = tmp_path / "pred"
    args = ["run", "--store", str(store_path), "--runs", str(trained_runs), "--out", str(pred), "--cluster", "local",
            "-q"]
    for task_id in range(n_parts - 1):  # the array's last element never ran, for any run
        assert infer.main([*args, "--task-id", str(task_id)]) == 0
    found = check_completeness(trained_runs, pred)  # no --store: the plan alone knows how many parts there are
    assert found.n_parts == n_parts
    assert {(i.model, i.seed, i.part) for i in found.issues} == {("resnet18", s, n_parts - 1) for s in (0, 1)}
    other = json.loads(plan_path(pred).read_text())
    other["store"]["n_images"] += 1
    other["store_path"] = str(tmp_path / "elsewhere" / "survey.zarr")
    plan_path(pred).write_text(json.dumps(other))
    with pytest.raises(UserError, match="made for another store"):
        check_completeness(trained_runs, pred, store=store_path)
    with pytest.raises(UserError, match="records predictions of another store"):  # inference refuses to mix stores
        infer.main([*args, "--task-id", str(n_parts - 1)])


def test_status_dry_run_and_collect_agree_on_stale_damaged_and_missing_parts(tiny_dataset, trained_runs, tmp_path,
                                                                             capsys):
    """The same outputs judged three ways (make status, --dry-run, collect), by default and with --deep: the same
    parts are not done, for the same reasons, and each says what it checked. Seed 1 is retrained in place (every
    part stale), part 0 of seed 0 has one byte of its p_cw values flipped (same size: only --deep and the part's
    page checksums see it), part 1 of seed 0 is deleted with its marker, part 2 of seed 0 is one byte shorter (every
    check sees a size)."""
    from gcnn_spin.artifacts import checked
    from gcnn_spin.cluster import arrays

    runs = tmp_path / "runs"
    shutil.copytree(trained_runs, runs)
    store_path, n_parts, pred, logs, args = local_infer_args(tiny_dataset, runs, tmp_path)
    assert n_parts >= 3
    assert infer.main(["submit", *args, "--wait", "--timeout-min", "5"]) == 0
    capsys.readouterr()

    run1 = runs / "resnet18" / "seed1"
    retrained = read_marker(run1)
    retrained["provenance"]["time_utc"] = "2031-06-01T00:00:00+00:00"  # unlike any other test's
    write_json_atomic(marker_path(run1), retrained)
    flipped = infer.part_path(pred, "resnet18", 0, 0)
    flip_byte_in_column(flipped, "p_cw")
    with pytest.raises(InputError, match=rf"^{flipped}: cannot read this prediction part \(.*checksum"):
        merge_parts([flipped], progress=False)  # the default check passes it; its page checksum does not
    missing = infer.part_path(pred, "resnet18", 0, 1)
    missing.unlink()
    marker_path(missing).unlink()
    shorter = infer.part_path(pred, "resnet18", 0, 2)
    shorter.write_bytes(shorter.read_bytes()[:-1])
    expected = {("resnet18/seed0/part-00001", "missing"), ("resnet18/seed0/part-00002", "damaged"),
                *{(f"resnet18/seed1/part-{k:05d}", "stale") for k in range(n_parts)}}
    deep_expected = expected | {("resnet18/seed0/part-00000", "damaged")}

    for deep, want in ((False, expected), (True, deep_expected)):
        flag = ["--deep"] if deep else []
        assert infer.main([*args, "--dry-run", *flag]) == 0
        out, err = capsys.readouterr()
        planned = {line.split()[1]: line.split("(", 1)[1].split(":")[0] for line in out.splitlines()
                   if line.startswith("todo")}
        assert set(planned.items()) == want and err.strip() == checked(deep)

        # `make status STAGE=infer [DEEP=1]`: the log folder alone; 1: a failure
        assert arrays.main(["status", str(logs), *flag]) == 1
        out, err = capsys.readouterr()
        status = {line.split()[1]: line.split()[0] for line in out.splitlines()[:-1]}
        not_done = {task: state for task, state in status.items() if state != "done"}
        assert set(not_done) == set(planned) and err.strip() == checked(deep)
        assert {t: s for t, s in not_done.items() if s in ("stale", "damaged")} == \
            {t: s for t, s in planned.items() if s != "missing"}
        assert not_done["resnet18/seed0/part-00001"] == "failed"  # its job finished without leaving the part

        issues = check_completeness(runs, pred, store=store_path, deep=deep).issues
        found = {(f"{i.model}/seed{i.seed}/part-{i.part:05d}",
                  "missing" if "part missing" in i.problem else i.problem.split(":")[0]) for i in issues}
        assert found == want

    assert infer.main(["submit", *args, "--wait", "--timeout-min", "5"]) == 0  # redoes exactly those it saw
    assert f"{len(expected)} inference tasks submitted" in capsys.readouterr().out
    assert check_completeness(runs, pred, store=store_path).issues == []
    assert infer.main(["submit", *args, "--deep", "--wait", "--timeout-min", "5"]) == 0  # and the flipped one
    assert "1 inference tasks submitted" in capsys.readouterr().out
    assert check_completeness(runs, pred, store=store_path, deep=True).issues == []


def test_a_label_edited_in_a_store_makes_the_runs_trained_on_it_stale(tiny_dataset, trained_runs, tmp_path,
                                                                        capsys):
    """Identity is content: the same stores with one label changed are other stores, so the runs trained on
    them are stale (named as such) and so is every part predicted by those runs."""
    _, data_dir, overrides = tiny_dataset
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    logs = tmp_path / "logs"
    args = train_stage_args(data, trained_runs, logs, overrides)
    assert submit_train.main([*args, "--dry-run"]) == 0
    assert "2 tasks: 2 done, 0 to run" in capsys.readouterr().out
    rows_path = data / "stores" / "train.parquet"
    rows = pd.read_parquet(rows_path)
    rows.loc[rows.index[0], "p_cw"] = 1.0 - rows.loc[rows.index[0], "p_cw"]
    rows.to_parquet(rows_path)
    assert submit_train.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 tasks: 0 done, 2 to run" in out and "(stale: made from " in out
