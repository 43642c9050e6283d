"""analysis/collect.py on tiny fake runs and prediction parts written by the tests themselves."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.analysis.collect import EXIT_INCOMPLETE, Settings, collect, main
from gcnn_spin.analysis.runs import check_completeness
from gcnn_spin.run import discover_runs
from gcnn_spin.analysis.studies import study_path
from gcnn_spin.conventions import ACW, CW, OTHER
from gcnn_spin.errors import UserError
from gcnn_spin.io import write_json_atomic, write_marker

REPO = Path(__file__).resolve().parents[1]


def fake_test_predictions(rng, n=500, hit_rate=0.8):
    """The same labelled test galaxies for every run (40 % S/Z) and the probabilities of a model that finds a
    spiral with ``hit_rate`` (its own ``rng``)."""
    true = np.random.default_rng(2024).choice([CW, ACW, OTHER], size=n, p=[0.2, 0.2, 0.6])
    truth = np.full((n, 3), 0.05)
    truth[np.arange(n), true] = 0.9
    called = np.where((true != OTHER) & (rng.random(n) > hit_rate), OTHER, true)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), called] = 0.8
    return pd.DataFrame({"row": np.arange(n), "dr8_id": [f"100_{i}" for i in range(n)], "ra": rng.uniform(0, 360, n),
                         "dec": rng.uniform(-30, 60, n), "p_cw_true": truth[:, 0], "p_acw_true": truth[:, 1],
                         "p_other_true": truth[:, 2], "p_cw": probs[:, 0], "p_acw": probs[:, 1],
                         "p_other": probs[:, 2]})


def write_run(root, model, seed, *, val=(0.6, 0.84), test=(0.38, 0.94), rotate=True, marker=True, epochs=3,
              rng=None, extra_metrics=None, name=None):
    """A run folder in the layout of gcnn_spin.train (config, history, test predictions, metrics, marker); with
    ``name``, the run's name (its folder, recorded in the marker beside the model) differs from the model's."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    run = Path(root) / (name or model) / f"seed{seed}"
    run.mkdir(parents=True)
    write_json_atomic(run / "config.json", {"model": model, "seed": seed,
                                            "experiment": {"train": {"rotate": rotate}}})
    history = pd.DataFrame({"epoch": np.arange(1, epochs + 1), "train_loss": np.linspace(1.0, 0.5, epochs),
                            "train_accuracy": np.linspace(0.5, 0.8, epochs),
                            "val_loss": np.linspace(1.0, val[0], epochs),
                            "val_accuracy": np.linspace(0.5, val[1], epochs), "lr": 1e-4, "seconds": 10.0})
    history.to_csv(run / "history.csv", index=False)
    table = fake_test_predictions(rng)
    table.to_parquet(run / "test_predictions.parquet", index=False)
    counts = np.zeros((3, 3), int)
    np.add.at(counts, (table[["p_cw_true", "p_acw_true", "p_other_true"]].to_numpy().argmax(1),
                       table[["p_cw", "p_acw", "p_other"]].to_numpy().argmax(1)), 1)
    confusion = (counts / np.maximum(counts.sum(1, keepdims=True), 1)).tolist()
    part = {"confusion": confusion, "confusion_counts": counts.tolist(), "spirals": {}}
    metrics = {"model": model, "seed": seed, "epochs": epochs, "val": {"loss": val[0], "accuracy": val[1], **part},
               "test": {"loss": test[0], "accuracy": test[1], **part}, "best_val_epoch": epochs,
               "train_seconds": 30.0, **(extra_metrics or {})}
    write_json_atomic(run / "metrics.json", metrics)
    if marker:
        write_marker(run, {"model": model, "seed": seed}, model=model, seed=seed, epochs=epochs,
                     **({"run": name} if name else {}))
    return run


def write_parts(pred_root, model, seed, n_parts=4, rows=300, *, skip=(), unmarked=(), rng=None):
    """Survey prediction parts (dr8_id, ra, dec, p_cw, p_acw, p_other) with markers, some left out on purpose."""
    rng = rng if rng is not None else np.random.default_rng(100 + seed)
    folder = Path(pred_root) / model / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_parts):
        if i in skip:
            continue
        probs = rng.dirichlet([0.3, 0.3, 2.0], size=rows)
        table = pd.DataFrame({"dr8_id": [f"{i}_{k}" for k in range(rows)], "ra": rng.uniform(0, 360, rows),
                              "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, rows))), "p_cw": probs[:, 0],
                              "p_acw": probs[:, 1], "p_other": probs[:, 2]})
        path = folder / f"part-{i:05d}.parquet"
        table.to_parquet(path, index=False)
        if i not in unmarked:
            write_marker(path, {"part": i})
    return folder


@pytest.fixture
def study(tmp_path):
    """Three complete resnet18 seeds and two g_resnet18 seeds with known metrics, and their survey parts."""
    runs, preds = tmp_path / "runs", tmp_path / "predictions"
    for seed, acc in enumerate([0.90, 0.92, 0.94]):
        write_run(runs, "resnet18", seed, test=(0.40 + 0.01 * seed, acc), val=(0.62, 0.84 + 0.01 * seed))
        write_parts(preds, "resnet18", seed)
    for seed, acc in enumerate([0.95, 0.97]):
        write_run(runs, "g_resnet18", seed, test=(0.37, acc))
        write_parts(preds, "g_resnet18", seed)
    return runs, preds


def run_collect(tmp_path, runs, preds=None, figures=False, **kwargs):
    """collect() into tmp_path/results; figures only where a test looks at them (they cost ~1 s each)."""
    settings = Settings(runs=runs, out=tmp_path / "results", predictions=preds, progress=False, draws=2,
                        figures=figures, **kwargs)
    return collect(settings)


def table(tmp_path, stem):
    return pd.read_csv(tmp_path / "results" / "tables" / f"{stem}.csv").set_index("model")


def test_mean_and_std_over_seeds(tmp_path, study):
    outcome = run_collect(tmp_path, *study)
    assert outcome.exit_code == 0 and not outcome.issues
    t6 = table(tmp_path, "table6_metrics")
    assert list(t6.index) == ["resnet18", "g_resnet18"]  # the study's model order
    assert t6.loc["resnet18", "test_accuracy_mean"] == pytest.approx(0.92)
    assert t6.loc["resnet18", "test_accuracy_std"] == pytest.approx(0.02)  # sample std of .90, .92, .94
    assert t6.loc["resnet18", "test_loss_mean"] == pytest.approx(0.41)
    assert t6.loc["resnet18", "val_accuracy_std"] == pytest.approx(0.01)
    assert t6.loc["g_resnet18", "test_accuracy_std"] == pytest.approx(np.std([0.95, 0.97], ddof=1))
    assert t6.loc["g_resnet18", "n_seeds"] == 2 and t6.loc["resnet18", "seeds"] == "0,1,2"
    markdown = (tmp_path / "results" / "tables" / "table6_metrics.md").read_text()
    assert "92.00 ± 2.00" in markdown and "0.4100 ± 0.0100" in markdown
    assert not (tmp_path / "results" / "tables" / "table7_metrics_nr.csv").exists()


def test_runs_without_rotation_are_table7(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "resnet18", 0)
    write_run(runs, "resnet18_nr", 0, test=(0.44, 0.93))
    write_run(runs, "lenet", 0, rotate=False, test=(0.55, 0.90))  # the name stays "lenet": config says rotate=false
    assert {r.label for r in discover_runs(runs)} == {"resnet18", "resnet18_nr", "lenet_nr"}
    run_collect(tmp_path, runs)
    assert list(table(tmp_path, "table6_metrics").index) == ["resnet18"]
    t7 = table(tmp_path, "table7_metrics_nr")
    assert list(t7.index) == ["lenet_nr", "resnet18_nr"]
    assert t7.loc["lenet_nr", "test_loss_mean"] == pytest.approx(0.55)


def test_a_model_trained_with_and_without_rotation_in_one_runs_folder(tmp_path):
    """RUNS/resnet18/seed{k} and RUNS/resnet18_nr/seed{k} (marker: model resnet18, run resnet18_nr) with their
    parts in PRED/resnet18 and PRED/resnet18_nr: one collect puts each in its own tables, none mixed."""
    runs, preds = tmp_path / "runs", tmp_path / "predictions"
    for seed in (0, 1):
        write_run(runs, "resnet18", seed, test=(0.38 + 0.01 * seed, 0.94))
        write_run(runs, "resnet18", seed, name="resnet18_nr", rotate=False, test=(0.44 + 0.01 * seed, 0.93),
                  epochs=2)
        write_parts(preds, "resnet18", seed, rng=np.random.default_rng(10 + seed))
        write_parts(preds, "resnet18_nr", seed, rng=np.random.default_rng(20 + seed))
    found = discover_runs(runs)
    assert [(r.name, r.model, r.label, r.seed) for r in found] == [
        ("resnet18", "resnet18", "resnet18", 0), ("resnet18", "resnet18", "resnet18", 1),
        ("resnet18_nr", "resnet18", "resnet18_nr", 0), ("resnet18_nr", "resnet18", "resnet18_nr", 1)]
    outcome = run_collect(tmp_path, runs, preds)
    assert outcome.exit_code == 0 and not outcome.issues
    assert not outcome.completeness.notes  # 3 and 2 epochs, but under two labels: no mean mixes them
    t6, t7 = table(tmp_path, "table6_metrics"), table(tmp_path, "table7_metrics_nr")
    assert list(t6.index) == ["resnet18"] and list(t7.index) == ["resnet18_nr"]
    assert t6.loc["resnet18", "test_loss_mean"] == pytest.approx(0.385)
    assert t7.loc["resnet18_nr", "test_loss_mean"] == pytest.approx(0.445)
    per_seed = pd.read_csv(tmp_path / "results" / "tables" / "survey_per_seed.csv")
    for label in ("resnet18", "resnet18_nr"):  # each label's counts come from its own parts
        for seed in (0, 1):
            parts = pd.concat(pd.read_parquet(p) for p in sorted((preds / label / f"seed{seed}").glob("*.parquet")))
            row = per_seed[(per_seed["model"] == label) & (per_seed["seed"] == seed)]
            assert row["n_acw"].item() == int((parts["p_acw"] >= 0.5).sum())
    assert set(table(tmp_path, "table9_survey_counts").index) == {"resnet18", "resnet18_nr"}


def test_two_runs_under_one_name_are_refused(tmp_path):
    """A marker naming the run of another folder would share its predictions and study outputs."""
    runs = tmp_path / "runs"
    write_run(runs, "resnet18", 0, name="resnet18_nr", rotate=False)
    write_run(runs, "resnet18", 0, name="copy", rotate=False)
    marker = runs / "copy" / "seed0.done"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "run": "resnet18_nr"}))
    with pytest.raises(UserError, match="two runs share the name resnet18_nr seed0"):
        discover_runs(runs)


def test_missing_marker_is_named_and_not_averaged(tmp_path, study):
    runs, preds = study
    write_run(runs, "resnet18", 3, test=(0.9, 0.10), marker=False)  # a crashed run: would drag the mean down
    outcome = run_collect(tmp_path, runs, preds)
    assert outcome.exit_code == EXIT_INCOMPLETE
    incomplete = pd.read_csv(tmp_path / "results" / "tables" / "incomplete.csv")
    assert incomplete[["kind", "model", "seed"]].values.tolist() == [["run", "resnet18", 3]]
    assert "no completion marker" in incomplete["problem"][0]
    t6 = table(tmp_path, "table6_metrics")
    assert t6.loc["resnet18", "status"] == "partial" and math.isnan(t6.loc["resnet18", "test_accuracy_mean"])
    assert "seed3" in t6.loc["resnet18", "missing"]
    assert t6.loc["g_resnet18", "status"] == "complete"  # the complete model is still reported
    assert t6.loc["g_resnet18", "test_accuracy_mean"] == pytest.approx(0.96)
    report = (tmp_path / "results" / "report.md").read_text()
    assert "| run | resnet18 | 3 |" in report and "**partial**" in report


def test_failed_training_task_is_named_with_its_log(tmp_path, study):
    runs, preds = study
    write_run(runs, "g_resnet18", 2, marker=False)
    log_dir = runs.parent / "logs" / "train"  # a stage log folder beside the runs root
    log_dir.mkdir(parents=True)
    write_json_atomic(log_dir / "submission.json", {"backend": "slurm", "tasks": {
        "g_resnet18/seed2": {"job_id": "41_7", "stderr": "logs/train/41_7_0_log.err"}}})
    (issue,) = check_completeness(runs, preds).issues
    assert (issue.kind, issue.model, issue.seed, issue.log) == ("run", "g_resnet18", 2, "logs/train/41_7_0_log.err")
    assert "g_resnet18 seed2" in issue.describe() and "41_7_0_log.err" in issue.describe()


def test_expected_parts_from_the_survey_store(tmp_path, study, monkeypatch):
    import gcnn_spin.cluster.infer as infer
    import gcnn_spin.data.store as store

    monkeypatch.setattr(store, "open_store", lambda path: {"path": path})
    monkeypatch.setattr(infer, "store_parts", lambda opened: list(range(5)))  # the store has 5 parts
    found = check_completeness(*study, store=tmp_path / "survey.zarr")
    assert found.n_parts == 5 and "survey store" in found.parts_source
    assert {i.part for i in found.issues} == {4}  # the last part is missing in every set
    assert len(found.issues) == 5


def test_allow_partial_leaves_the_incomplete_run_out_and_says_so(tmp_path, study):
    runs, preds = study
    write_run(runs, "resnet18", 3, test=(0.9, 0.10), marker=False)
    outcome = run_collect(tmp_path, runs, preds, allow_partial=True)
    assert outcome.exit_code == 0
    t6 = table(tmp_path, "table6_metrics")
    assert t6.loc["resnet18", "test_accuracy_mean"] == pytest.approx(0.92)  # seeds 0-2 only
    assert t6.loc["resnet18", "n_seeds"] == 3 and t6.loc["resnet18", "status"] == "partial, left out"
    assert "seed3" in t6.loc["resnet18", "missing"]
    markdown = (tmp_path / "results" / "tables" / "table6_metrics.md").read_text()
    assert "resnet18 (left out): seed3" in markdown


def test_missing_and_unmarked_parts_are_named_with_their_logs(tmp_path, study):
    runs, preds = study
    folder = preds / "g_resnet18" / "seed1"
    for path in (folder / "part-00002.parquet", folder / "part-00002.parquet.done", folder / "part-00003.parquet.done"):
        path.unlink()  # task 2 failed before writing; task 3 died between its output and its marker
    log_dir = tmp_path / "logs" / "infer"
    log_dir.mkdir(parents=True)
    part2 = (preds / "g_resnet18" / "seed1" / "part-00002.parquet").resolve()
    write_json_atomic(log_dir / "submission.json", {"backend": "slurm", "tasks": {
        "part-00002": {"job_id": "77_2", "output": str(part2), "stderr": "logs/infer/77_2_0_log.err"}}})
    outcome = run_collect(tmp_path, runs, preds)
    assert outcome.exit_code == EXIT_INCOMPLETE
    named = {(i.model, i.seed, i.part): i for i in outcome.issues}
    assert set(named) == {("g_resnet18", 1, 2), ("g_resnet18", 1, 3)}
    assert named[("g_resnet18", 1, 2)].log == "logs/infer/77_2_0_log.err"
    assert "no marker" in named[("g_resnet18", 1, 3)].problem
    t10 = table(tmp_path, "table10_survey_cvs")
    assert t10.loc["g_resnet18", "status"] == "partial" and t10.loc["resnet18", "status"] == "complete"
    # the run itself is complete: its metrics still count
    assert table(tmp_path, "table6_metrics").loc["g_resnet18", "status"] == "complete"
    outcome = run_collect(tmp_path, runs, preds, allow_partial=True)
    t10 = table(tmp_path, "table10_survey_cvs")
    assert outcome.exit_code == 0 and t10.loc["g_resnet18", "n_seeds"] == 1
    per_seed = pd.read_csv(tmp_path / "results" / "tables" / "survey_per_seed.csv")
    assert t10.loc["g_resnet18", "cvs_mean"] == pytest.approx(
        per_seed.query("model == 'g_resnet18' and seed == 0")["cvs"].iloc[0])


def test_expected_parts_from_the_largest_index_or_given(tmp_path, study):
    runs, preds = study
    write_parts(preds, "resnet18", 0, n_parts=6, rng=np.random.default_rng(9))  # one run got 6 parts
    found = check_completeness(runs, preds)
    assert found.n_parts == 6 and "largest part index" in found.parts_source
    missing = {(i.model, i.seed, i.part) for i in found.issues}
    assert ("resnet18", 1, 4) in missing and ("g_resnet18", 1, 5) in missing and len(missing) == 8
    assert check_completeness(runs, preds, n_parts=4).issues[0].problem.startswith("parts 4-5 beyond")


def test_unreadable_metrics_make_a_run_incomplete(tmp_path, study):
    runs, _ = study
    (runs / "g_resnet18" / "seed1" / "metrics.json").write_text('{"val": {"loss": 0.5}')
    (runs / "resnet18" / "seed2" / "config.json").write_text("{not json")  # cannot tell whether it is _nr
    issues = {(i.model, i.seed): i.problem for i in check_completeness(runs).issues}
    assert set(issues) == {("g_resnet18", 1), ("resnet18", 2)}
    assert "metrics.json unreadable" in issues[("g_resnet18", 1)]
    assert "config.json unreadable" in issues[("resnet18", 2)]


def test_finished_run_without_predictions_is_named(tmp_path, study):
    runs, preds = study
    write_run(runs, "g_resnet18", 2)
    found = check_completeness(runs, preds)
    assert [(i.kind, i.model, i.seed) for i in found.issues] == [("predictions", "g_resnet18", 2)]


def test_report_shows_every_table_and_figure(tmp_path, study):
    runs, preds = study
    write_run(runs, "gc_resnet18", 0, test=(0.36, 0.96), extra_metrics={"equivariance_error": 2e-8})
    write_parts(preds, "gc_resnet18", 0)
    rng = np.random.default_rng(0)
    for label in ("resnet18", "g_resnet18"):  # a finished rotation study for seed 0 of two models
        rows = np.repeat(np.arange(12), 9)
        frame = pd.DataFrame({"row": rows, "label": np.repeat(rng.integers(0, 3, 12), 9),
                              "angle_deg": np.tile(np.linspace(0, 180, 9), 12),
                              **{k: rng.uniform(0, 1, rows.size) for k in ("eta_sz", "eta_zn", "eta_sn")},
                              **{f"{c}_{s}": rng.uniform(0, 0.3, rows.size) for c in ("p_cw", "p_acw", "p_other")
                                 for s in ("mean", "std")}})
        out = study_path(tmp_path / "results", "rotation", label, 0)
        out.parent.mkdir(parents=True)
        frame.to_parquet(out)
        write_marker(out, {"x": 1})
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame({"true_label": rng.choice([CW, ACW, OTHER], 5000)}).to_parquet(raw / "truth.parquet")
    outcome = run_collect(tmp_path, runs, preds, figures=True, truth=raw / "truth.parquet")
    assert outcome.exit_code == 0
    results = tmp_path / "results"
    report = (results / "report.md").read_text()
    written = sorted(p.relative_to(results).as_posix() for p in [*results.glob("figures/*.png"),
                                                                  *results.glob("tables/*.md")])
    assert len(written) >= 15
    for rel in written:
        assert rel in report, f"report.md does not show {rel}"
    for name in ("training_curves", "confusion_matrices", "confusion_reflection", "cvs_recovery", "rotation_eta",
                 "rotation_probabilities", "survey_counts_cvs", "sky_split", "validation_cvs"):
        png = results / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    for stem in ("table6_metrics", "table8_spirals_found", "table9_survey_counts", "table10_survey_cvs",
                 "cvs_recovery", "reflection", "rotation_overlap", "rotation_overlap_study_code", "rotation_comparison",
                 "sky_split", "validation"):
        assert (results / "tables" / f"{stem}.csv").exists(), stem
    assert "Validation against the synthetic truth" in report
    assert "docs/study_deviations.md" in report
    validation = pd.read_csv(results / "tables" / "validation.csv").set_index("source")
    truth = pd.read_parquet(raw / "truth.parquet")["true_label"]
    assert validation.loc["truth: every galaxy", "cvs"] == pytest.approx(
        ((truth == ACW).sum() - (truth == CW).sum()) / np.sqrt(((truth == ACW) | (truth == CW)).sum()))
    assert validation.loc["predicted: gc_resnet18 (seeds: 1 of 1)", "equivariance_error"] == pytest.approx(2e-8)
    assert np.isnan(validation.loc["predicted: resnet18 (seeds: 3 of 3)", "equivariance_error"])
    assert not list(results.rglob("*.tmp"))  # atomic writes leave nothing behind
    run_collect(tmp_path, runs)  # again, tables only and no survey: older files must not linger unreported
    report = (results / "report.md").read_text()
    assert not list(results.glob("figures/*.png")) and not (results / "tables" / "table9_survey_counts.csv").exists()
    assert all(p.relative_to(results).as_posix() in report for p in results.glob("tables/*.md"))


def test_members_without_a_value_are_counted_where_seeds_are_averaged(tmp_path, study, monkeypatch):
    from gcnn_spin.analysis import figures, recovery

    runs, preds = study
    for seed, error in enumerate([2e-8, None, 4e-8]):  # seed 1 recorded no equivariance error
        write_run(runs, "gc_resnet18", seed, extra_metrics={} if error is None else {"equivariance_error": error})
        write_parts(preds, "gc_resnet18", seed)
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame({"true_label": np.random.default_rng(0).choice([CW, ACW, OTHER], 500)}).to_parquet(
        raw / "truth.parquet")
    order = [(run.label, run.seed) for run in discover_runs(runs)]  # the order collect fits the runs in
    fit_line, fits = recovery.fit_line, []

    def fit_without_a_slope_for_one_resnet18(set_cvs, pred_cvs):
        fits.append(fit_line(set_cvs, pred_cvs))
        return {**fits[-1], "slope": math.nan} if order[len(fits) - 1] == ("resnet18", 1) else fits[-1]

    slope_labels = {}
    monkeypatch.setattr(recovery, "fit_line", fit_without_a_slope_for_one_resnet18)
    monkeypatch.setattr(figures, "recovery_plot", lambda points, slopes, path: slope_labels.update(slopes) or path)
    for name in ("training_curves", "confusion_grid", "eta_histograms", "rotation_probabilities", "survey_plot",
                 "sky_split_plot", "validation_plot"):  # drawing them costs seconds; this test reads labels only
        monkeypatch.setattr(figures, name, lambda *args, path, **kwargs: path)
    assert run_collect(tmp_path, runs, preds, figures=True, truth=raw / "truth.parquet").exit_code == 0
    validation = pd.read_csv(tmp_path / "results" / "tables" / "validation.csv").set_index("source")
    row = validation.loc["predicted: gc_resnet18 (seeds: 3 of 3); equivariance error (n=2 of 3)"]
    assert row["equivariance_error"] == pytest.approx(3e-8)
    assert "predicted: g_resnet18 (seeds: 2 of 2)" in validation.index  # complete: no mark
    assert slope_labels["resnet18"].endswith(" (n=2 of 3)") and "(n=" not in slope_labels["g_resnet18"]
    resnet18_slopes = [fit["slope"] for fit, run in zip(fits, order) if run in (("resnet18", 0), ("resnet18", 2))]
    assert slope_labels["resnet18"].startswith(f"{np.mean(resnet18_slopes):.2f} ± ")


def test_a_corrupt_survey_cache_entry_is_named_with_what_to_delete(tmp_path, study):
    from gcnn_spin.errors import InputError

    run_collect(tmp_path, *study)
    entry = tmp_path / "results" / "cache" / "survey" / "resnet18" / "seed1.json"
    assert "cvs" in json.loads(entry.read_text())["row"]  # the entry collect reads back on a rerun
    for garbage in (b'{"identity": "ab', b"[1, 2]"):  # cut short; valid JSON of the wrong shape
        entry.write_bytes(garbage)
        with pytest.raises(InputError, match=rf"^{entry}: cannot read this survey cache entry \(.*\); delete "
                                             rf"{entry} and rerun"):
            run_collect(tmp_path, *study)
    entry.unlink()
    assert run_collect(tmp_path, *study).exit_code == 0  # deleted: recomputed


def test_survey_table_matches_per_seed_values(tmp_path, study):
    run_collect(tmp_path, *study)
    per_seed = pd.read_csv(tmp_path / "results" / "tables" / "survey_per_seed.csv")
    t9, t10 = table(tmp_path, "table9_survey_counts"), table(tmp_path, "table10_survey_cvs")
    r18 = per_seed[per_seed["model"] == "resnet18"]
    assert t9.loc["resnet18", "n_acw_mean"] == pytest.approx(r18["n_acw"].mean())
    assert t10.loc["resnet18", "cvs_std"] == pytest.approx(r18["cvs"].std(ddof=1))
    assert r18["n_total"].tolist() == [1200, 1200, 1200]


def test_cli_help_and_exit_status(tmp_path, study):
    runs, preds = study
    done = subprocess.run([sys.executable, str(REPO / "analysis" / "collect.py"), "--help"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0 and "--allow-partial" in done.stdout
    write_run(runs, "resnet18", 3, marker=False)
    args = ["--runs", str(runs), "--predictions", str(preds), "--out", str(tmp_path / "out"), "-q",
            "--draws", "1", "--no-figures"]
    assert main(args) == EXIT_INCOMPLETE
    assert main([*args, "--allow-partial"]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o2"), "--no-figures"]) == 2
    assert json.loads(json.dumps(pd.read_csv(tmp_path / "out" / "tables" / "incomplete.csv").to_dict()))


def test_dry_run_lists_what_is_incomplete_and_writes_nothing(tmp_path, study, capsys):
    runs, preds = study
    write_run(runs, "resnet18", 3, marker=False)
    out = tmp_path / "out"
    assert main(["--runs", str(runs), "--predictions", str(preds), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "5 of 6 runs complete" in printed and "resnet18 seed3" in printed
    assert not out.exists()


def test_quiet_prints_nothing_on_success_and_every_option_has_help(tmp_path, study, capsys):
    from gcnn_spin.analysis.collect import build_parser

    runs, preds = study
    args = ["--runs", str(runs), "--predictions", str(preds), "--out", str(tmp_path / "out"), "--draws", "1",
            "--no-figures", "-q"]
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "out" / "report.md").exists()
    options = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
    assert options and all(a.help for a in options), [a.dest for a in options if not a.help]


def test_a_failing_figure_is_reported_and_the_tables_still_written(tmp_path, study, monkeypatch):
    from gcnn_spin.analysis import figures
    from gcnn_spin.analysis.sections.common import Output
    from gcnn_spin.analysis.sections.reflection import reflection_section

    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(figures, "confusion_grid", broken)
    runs = check_completeness(study[0]).complete_runs()
    out = Output(tmp_path / "results")
    written = reflection_section(out, runs, {})
    assert [t.stem for t in written.section.items] == ["reflection"]  # the table, no figure
    assert (out.tables_dir / "reflection.csv").exists() and not out.figures_dir.exists()
    assert written.figure_errors == ["confusion_matrices.png: RuntimeError: no ink",
                                     "confusion_reflection.png: RuntimeError: no ink"]
    outcome = run_collect(tmp_path, *study, figures=True)
    report = outcome.report.read_text()
    assert "Figures that could not be drawn: confusion_matrices.png: RuntimeError: no ink" in report
    assert (tmp_path / "results" / "figures" / "training_curves.png").exists()


def test_a_mean_over_seeds_trained_for_different_epochs_or_configs_is_noted(tmp_path, capsys):
    runs, preds = tmp_path / "runs", tmp_path / "predictions"
    for seed, epochs in enumerate([3, 3, 5]):
        write_run(runs, "resnet18", seed, epochs=epochs)
    write_run(runs, "g_resnet18", 0)
    other = write_run(runs, "g_resnet18", 1)
    config = json.loads((other / "config.json").read_text())
    config["experiment"]["train"]["lr"] = 0.5
    write_json_atomic(other / "config.json", config)
    notes = check_completeness(runs).notes
    assert notes == ["resnet18: its seeds were trained for different numbers of epochs (seed0: 3, seed1: 3, "
                     "seed2: 5); the means mix them",
                     "g_resnet18: its seeds were trained with 2 different configs (seeds 0 | 1); the means mix them"]
    assert main(["--runs", str(runs), "--out", str(tmp_path / "results"), "--no-figures", "-q"]) == 0
    err = capsys.readouterr().err
    assert "note: resnet18: its seeds were trained for different numbers of epochs" in err
    assert "Means over members that differ: resnet18" in (tmp_path / "results" / "report.md").read_text()
