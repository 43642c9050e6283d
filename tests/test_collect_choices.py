"""collect shows which study-code choices its numbers follow: the spread's ddof, the weights, the split."""

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.analysis import collect as collect_mod
from gcnn_spin.analysis.collect import build_parser, settings_from_args

from test_collect import run_collect, table, write_run

ACCURACIES = (0.90, 0.92, 0.95)


@pytest.fixture
def runs(tmp_path):
    """Three resnet18 seeds with final weights, two g_resnet18 seeds evaluated at their least-val-loss epoch
    (one of them validated on its training galaxies, the study code's split)."""
    root = tmp_path / "runs"
    for seed, acc in enumerate(ACCURACIES):
        write_run(root, "resnet18", seed, test=(0.40, acc))
    for seed in (0, 1):
        write_run(root, "g_resnet18", seed, epochs=5, extra_metrics={
            "tables_checkpoint": "least_val_loss", "weights_epoch": 3, "val_on_training_galaxies": seed == 1})
    return root


@pytest.mark.parametrize("ddof", [0, 1])
def test_collect_spreads_follow_the_configured_ddof_and_the_report_says_which(tmp_path, runs, ddof):
    outcome = run_collect(tmp_path, runs, spread_ddof=ddof)
    assert outcome.exit_code == 0
    assert table(tmp_path, "table6_metrics").loc["resnet18", "test_accuracy_std"] == \
        pytest.approx(np.std(ACCURACIES, ddof=ddof), rel=1e-12)
    report = outcome.report.read_text()
    assert collect_mod.spread_note(ddof) in report and f"ddof {ddof}" in report
    assert f"ddof {1 - ddof}" not in report


def test_the_spread_is_read_from_the_config(tmp_path):
    parse = build_parser().parse_args
    base = ["--runs", str(tmp_path), "--predictions", "predictions"]
    assert settings_from_args(parse(base)).spread_ddof == 0  # the study config: the study code's np.std
    assert settings_from_args(parse([*base, "--set", "tables.spread_ddof=1"])).spread_ddof == 1
    with pytest.raises(ValueError, match="spread_ddof"):
        settings_from_args(parse([*base, "--set", "tables.spread_ddof=2"]))
    assert settings_from_args(parse(base)).val_columns == "least_val_loss_epoch"  # the study code's val columns
    assert settings_from_args(parse([*base, "--set", "tables.val_columns=evaluated"])).val_columns == "evaluated"
    with pytest.raises(ValueError, match="val_columns"):
        settings_from_args(parse([*base, "--set", "tables.val_columns=best"]))


def write_history(run, val_loss, val_accuracy):
    """Replace a run's history.csv with these per-epoch validation numbers."""
    n = len(val_loss)
    pd.DataFrame({"epoch": np.arange(1, n + 1), "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": val_loss,
                  "val_accuracy": val_accuracy, "lr": 1e-4, "seconds": 1.0}).to_csv(run / "history.csv", index=False)


def test_val_columns_from_the_epoch_of_least_validation_loss(tmp_path):
    """The study code's Table 6: val columns at the least-val-loss epoch of the history (the first on ties), test
    columns from the evaluated final weights; "evaluated" takes both from metrics.json."""
    root = tmp_path / "runs"
    write_history(write_run(root, "resnet18", 0, val=(0.6, 0.84)), [0.9, 0.5, 0.7], [0.60, 0.80, 0.70])
    write_history(write_run(root, "resnet18", 1, val=(0.6, 0.84)), [0.8, 0.4, 0.4], [0.65, 0.90, 0.95])
    run_collect(tmp_path / "study", root, val_columns="least_val_loss_epoch", spread_ddof=0)
    study = table(tmp_path / "study", "table6_metrics").loc["resnet18"]
    assert study["val_loss_mean"] == pytest.approx(0.45) and study["val_accuracy_mean"] == pytest.approx(0.85)
    assert study["val_loss_std"] == pytest.approx(np.std([0.5, 0.4]))
    assert study["test_loss_mean"] == pytest.approx(0.38)  # write_run's metrics.json: the final weights
    per_seed = pd.read_csv(tmp_path / "study" / "results" / "tables" / "metrics_per_seed.csv")
    assert list(per_seed["val_epoch"]) == [2, 2]
    markdown = (tmp_path / "study" / "results" / "tables" / "table6_metrics.md").read_text()
    assert "Test columns: the final epoch (train.tables_checkpoint)." in markdown
    assert "Val columns: the training history at the epoch of least validation loss" in markdown
    run_collect(tmp_path / "ours", root, val_columns="evaluated")
    ours = table(tmp_path / "ours", "table6_metrics").loc["resnet18"]
    assert ours["val_loss_mean"] == pytest.approx(0.6) and ours["val_accuracy_mean"] == pytest.approx(0.84)
    assert list(pd.read_csv(tmp_path / "ours" / "results" / "tables" / "metrics_per_seed.csv")["val_epoch"]) == [3, 3]


def test_table6_says_whose_weights_and_which_validation_galaxies(tmp_path, runs):
    run_collect(tmp_path, runs)
    markdown = (tmp_path / "results" / "tables" / "table6_metrics.md").read_text()
    assert ("Weights (train.tables_checkpoint): the final epoch for resnet18; the epoch of least validation loss "
            "for g_resnet18.") in markdown
    assert "Validation on the training galaxies (the study code's split, data.study_code_split_bug) for: " \
           "g_resnet18." in markdown
    per_seed = pd.read_csv(tmp_path / "results" / "tables" / "metrics_per_seed.csv")
    g = per_seed[per_seed["model"] == "g_resnet18"]
    assert list(g["weights_epoch"]) == [3, 3] and list(g["epochs"]) == [5, 5]
    assert list(per_seed.loc[per_seed["model"] == "resnet18", "weights_epoch"]) == [3, 3, 3]  # final = epochs


def test_one_choice_for_every_run_is_one_sentence(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "resnet18", 0)
    run_collect(tmp_path, root)
    markdown = (tmp_path / "results" / "tables" / "table6_metrics.md").read_text()
    assert "Weights: the final epoch (train.tables_checkpoint)." in markdown
    assert "training galaxies" not in markdown
