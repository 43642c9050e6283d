"""CVS recovery: resampling at constant total, the line fit, and predictors whose slope is known."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.analysis.recovery import (CVS_LEVELS, N_SET, fit_line, possible_levels, recovery_points, resample,
                                         run_recovery, spiral_set, spirals_found)
from gcnn_spin.run import discover_runs
from gcnn_spin.analysis.studies import run_recovery_task, study_path
from gcnn_spin.conventions import ACW, CW, OTHER
from gcnn_spin.io import read_marker, write_marker


def labelled(true, called):
    """A test_predictions table: vote fractions from ``true`` classes, probabilities from ``called`` ones."""
    n = len(true)
    votes, probs = np.full((n, 3), 0.1), np.full((n, 3), 0.1)
    votes[np.arange(n), true] = 0.8
    probs[np.arange(n), called] = 0.8
    return pd.DataFrame({"row": np.arange(n), "p_cw_true": votes[:, 0], "p_acw_true": votes[:, 1],
                         "p_other_true": votes[:, 2], "p_cw": probs[:, 0], "p_acw": probs[:, 1],
                         "p_other": probs[:, 2]})


METRICS = json.dumps({split: {"loss": 0.4, "accuracy": 0.9} for split in ("val", "test")})


def finished_run(run_dir, test_predictions):
    """The files of a finished run that the recovery study and run discovery read."""
    run_dir.mkdir(parents=True)
    test_predictions.to_parquet(run_dir / "test_predictions.parquet")
    (run_dir / "metrics.json").write_text(METRICS)
    (run_dir / "history.csv").write_text("epoch\n")
    write_marker(run_dir, {"run": str(run_dir)}, model=run_dir.parent.name, seed=int(run_dir.name[4:]))


def population(rng, n_spirals=4000, n_other=1000):
    true = np.concatenate([rng.choice([CW, ACW], n_spirals), np.full(n_other, OTHER)])
    return rng.permutation(true)


def test_resampled_sets_keep_the_total_and_hit_the_set_cvs(rng):
    true = population(rng)[:3000]
    table = spiral_set(labelled(true, true))
    n = len(table)
    assert n == int(((true == CW) | (true == ACW)).sum())
    sets = resample(table["true_class"].to_numpy(), draws=2, seed=3, n_set=None)
    assert [s["level"] for s in sets[::2]] == list(CVS_LEVELS)
    for s in sets:
        drawn = table["true_class"].to_numpy()[s["indices"]]
        assert len(drawn) == n
        assert (drawn == ACW).sum() == s["n_acw"] and (drawn == CW).sum() == s["n_cw"]
        assert s["set_cvs"] == pytest.approx(s["level"], abs=1.5 / math.sqrt(n))  # up to rounding one galaxy
    again = resample(table["true_class"].to_numpy(), draws=2, seed=3, n_set=None)
    assert all(np.array_equal(a["indices"], b["indices"]) for a, b in zip(sets, again))  # same sets for every run


def test_sets_hold_the_study_n_and_draw_without_replacement_where_a_class_is_large_enough():
    """The study's test set (1,753 ACW, 1,580 CW) gives sets of 2,333 with no galaxy drawn twice at any level."""
    true = np.array([ACW] * 1753 + [CW] * 1580 + [OTHER] * 500)
    assert N_SET == 2333
    sets = resample(true, draws=2, seed=0)
    assert [s["level"] for s in sets[::2]] == list(CVS_LEVELS)
    for s in sets:
        assert len(s["indices"]) == N_SET and len(np.unique(s["indices"])) == N_SET
        assert not s["acw_with_replacement"] and not s["cw_with_replacement"]
        assert set(true[s["indices"]]) <= {ACW, CW}


def test_a_class_too_small_for_its_share_is_drawn_with_replacement_and_flagged():
    true = np.array([ACW] * 1200 + [CW] * 3000)  # +12 needs 1,456 ACW in a set of 2,333
    points = recovery_points(true, resample(true, draws=1, seed=0))
    flagged = points.set_index("level")
    assert flagged.loc[12.0, "acw_with_replacement"] and not flagged.loc[12.0, "cw_with_replacement"]
    assert not flagged.loc[0.0, ["acw_with_replacement", "cw_with_replacement"]].any()
    assert (points["n_acw_set"] + points["n_cw_set"] == N_SET).all()


def test_perfect_predictor_recovers_slope_one(rng):
    true = population(rng)
    points = run_recovery(labelled(true, true), draws=3)
    assert np.allclose(points["pred_cvs"], points["set_cvs"])
    fit = fit_line(points["set_cvs"], points["pred_cvs"])
    assert fit["slope"] == pytest.approx(1.0) and fit["intercept"] == pytest.approx(0.0, abs=1e-9)


def test_predictor_missing_a_fraction_of_spirals_has_slope_sqrt_q(rng):
    # Each spiral is found (right spin) with probability q, else called Other: both counts scale by q, so the
    # predicted CVS is q·(n_A − n_C)/sqrt(q·N) = sqrt(q) × set CVS. The misses are fixed per galaxy, so the
    # realised hit rates q_A, q_C of the two spin pools differ a little, which shifts the line: expected
    # predicted CVS = (q_A·n_A − q_C·n_C)/sqrt(q_A·n_A + q_C·n_C) for a set of n_A ACW and n_C CW galaxies.
    q = 0.64
    true = population(rng, n_spirals=20000)
    called = np.where((true != OTHER) & (rng.random(len(true)) > q), OTHER, true)
    points = run_recovery(labelled(true, called), draws=20, seed=1)
    fit = fit_line(points["set_cvs"], points["pred_cvs"])
    assert fit["slope"] == pytest.approx(math.sqrt(q), abs=0.03)
    assert fit["slope"] < 1 - 5 * fit["slope_err"]
    q_a, q_c = ((called == k)[true == k].mean() for k in (ACW, CW))
    n_a, n_c = points["n_acw_set"].to_numpy(), points["n_cw_set"].to_numpy()
    expected = fit_line(points["set_cvs"], (q_a * n_a - q_c * n_c) / np.sqrt(q_a * n_a + q_c * n_c))
    assert fit["slope"] == pytest.approx(expected["slope"], abs=4 * fit["slope_err"])
    assert fit["intercept"] == pytest.approx(expected["intercept"], abs=4 * fit["intercept_err"])


def test_mirrored_predictor_has_slope_minus_one(rng):
    true = population(rng)
    mirrored = np.where(true == CW, ACW, np.where(true == ACW, CW, true))
    fit = fit_line(*run_recovery(labelled(true, mirrored), draws=2)[["set_cvs", "pred_cvs"]].to_numpy().T)
    assert fit["slope"] == pytest.approx(-1.0)


def test_fit_line_standard_errors():
    x = np.arange(10.0)
    y = 2.0 + 0.5 * x + np.array([1, -1] * 5, dtype=float)
    fit = fit_line(x, y)
    design = np.column_stack([np.ones(10), x])
    resid = y - design @ np.array([fit["intercept"], fit["slope"]])
    cov = resid @ resid / 8 * np.linalg.inv(design.T @ design)
    assert fit["slope_err"] == pytest.approx(math.sqrt(cov[1, 1]))
    assert fit["intercept_err"] == pytest.approx(math.sqrt(cov[0, 0]))
    with pytest.raises(ValueError):
        fit_line([1, 1, 1], [1, 2, 3])


def test_small_sets_drop_the_levels_they_cannot_reach():
    assert possible_levels(100) == [-9.0, -6.0, -3.0, 0.0, 3.0, 6.0, 9.0]  # |CVS| < sqrt(100) = 10
    assert possible_levels(10_000) == list(CVS_LEVELS)
    with pytest.raises(ValueError, match="S/Z galaxies"):
        resample(np.array([CW, ACW, CW, ACW]), n_set=None)
    with pytest.raises(ValueError, match="both spins"):
        resample(np.array([CW, CW, CW]))


def test_recovery_points_count_predicted_spirals():
    predicted = np.array([CW, ACW, OTHER, ACW])
    sets = [{"level": 0.0, "draw": 0, "indices": np.array([0, 1, 2, 3, 3]), "n_acw": 3, "n_cw": 2,
             "set_cvs": 1 / math.sqrt(5), "acw_with_replacement": True, "cw_with_replacement": False}]
    row = recovery_points(predicted, sets).iloc[0]
    assert (row["n_acw_pred"], row["n_cw_pred"]) == (3, 1) and row["pred_cvs"] == pytest.approx(2 / 2)
    assert row["acw_with_replacement"] and not row["cw_with_replacement"]


def test_spirals_found_on_the_sz_set():
    true = np.array([CW, CW, ACW, ACW, OTHER, OTHER])
    called = np.array([CW, OTHER, CW, ACW, CW, OTHER])
    found = spirals_found(labelled(true, called))
    assert found["n_sz"] == 4 and found["n_found"] == 3
    assert found["found_fraction"] == pytest.approx(0.75) and found["right_spin_fraction"] == pytest.approx(0.5)


def test_recovery_task_is_idempotent_and_reruns_on_new_predictions(tmp_path, rng):
    run_dir = tmp_path / "runs" / "resnet18" / "seed0"
    true = population(rng, 500, 100)
    finished_run(run_dir, labelled(true, true))
    (run,) = discover_runs(tmp_path / "runs")
    assert run.complete
    out = run_recovery_task(run, tmp_path / "results", draws=1)
    assert out == study_path(tmp_path / "results", "recovery", "resnet18", 0)
    first = read_marker(out)
    assert run_recovery_task(run, tmp_path / "results", draws=1) == out and read_marker(out) == first  # skipped
    labelled(true, np.where(true == OTHER, OTHER, CW)).to_parquet(run_dir / "test_predictions.parquet")
    run_recovery_task(run, tmp_path / "results", draws=1)
    assert read_marker(out)["config_hash"] != first["config_hash"]
    assert (pd.read_parquet(out)["n_acw_pred"] == 0).all()
    assert not list((tmp_path / "results").rglob("*.tmp"))


def test_recovery_cli_plans_and_runs_every_task(tmp_path, rng, capsys):
    from gcnn_spin.analysis.studies import main

    for seed in (0, 1):
        true = population(rng, 400, 100)
        finished_run(tmp_path / "runs" / "gc_resnet18" / f"seed{seed}", labelled(true, true))
    args = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "results"), "--draws", "1", "-q"]
    assert main([*args, "--print-array"], study="recovery") == 0 and capsys.readouterr().out.strip() == "0-1"
    assert main(["run", *args, "--task-id", "1"], study="recovery") == 0
    assert not study_path(tmp_path / "results", "recovery", "gc_resnet18", 0).exists()
    assert study_path(tmp_path / "results", "recovery", "gc_resnet18", 1).exists()
    capsys.readouterr()
    assert main([*args, "--dry-run"], study="recovery") == 0
    plan = capsys.readouterr().out.splitlines()
    assert plan[0].startswith("todo  recovery/gc_resnet18/seed0") and plan[1].startswith("done  recovery/gc_resnet18/seed1")
    assert "2 tasks: 1 done, 1 to run" in plan
