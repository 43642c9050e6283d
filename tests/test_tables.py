"""Summaries over seeds: a cell averaged over fewer members than the row's seeds says so."""

import math

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.analysis.tables import Column, mean_std, mean_std_cell, summary_table

COLUMNS = [Column("cvs", "CVS", 2), Column("accuracy", "acc %", 1, 100)]


def per_run() -> pd.DataFrame:
    """Five seeds of one model; the CVS of seeds 1 and 3 could not be computed (NaN)."""
    return pd.DataFrame({"model": ["resnet18"] * 5, "seed": [0, 1, 2, 3, 4],
                         "cvs": [1.0, math.nan, 3.0, math.nan, 5.0],
                         "accuracy": [0.90, 0.91, 0.92, 0.93, 0.94]})


def test_mean_std_counts_only_the_values_it_averaged():
    assert mean_std([1.0, math.nan, 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert mean_std_cell([1.0, math.nan, 3.0], 1) == "2.0 ± 1.4 (n=2 of 3)"
    assert mean_std_cell([1.0, 3.0], 1) == "2.0 ± 1.4"
    assert mean_std_cell([1.0, 3.0], 1, n_expected=3) == "2.0 ± 1.4 (n=2 of 3)"  # a member gave no value at all
    assert mean_std_cell([math.nan], 1, n_expected=2) == "— (n=0 of 2)"


def test_a_seed_dropped_as_nan_is_shown_in_the_cell_the_csv_and_the_notes():
    table = summary_table("t", "T", "caption", per_run(), COLUMNS)
    row = table.frame.set_index("model").loc["resnet18"]
    assert row["n_seeds"] == 5 and row["cvs_n"] == 3 and row["accuracy_n"] == 5
    assert row["cvs_mean"] == pytest.approx(3.0) and row["no_value"] == "CVS: seeds 1, 3"
    line = next(line for line in table.markdown.splitlines() if line.startswith("| resnet18"))
    assert line == "| resnet18 | 5 | 3.00 ± 2.00 (n=3 of 5) | 92.0 ± 1.6 | complete |"
    assert "- resnet18 (averaged over fewer seeds, no value for): CVS: seeds 1, 3" in table.markdown


def test_a_cell_with_no_value_at_all_still_says_how_many_it_expected():
    runs = per_run().assign(cvs=np.nan)
    table = summary_table("t", "T", "caption", runs, COLUMNS)
    assert "| — (n=0 of 5) |" in table.markdown
    assert table.frame.loc[0, "cvs_n"] == 0


def test_complete_cells_are_not_marked():
    runs = per_run().assign(cvs=[1.0, 2.0, 3.0, 4.0, 5.0])
    table = summary_table("t", "T", "caption", runs, COLUMNS)
    assert "(n=" not in table.markdown and table.frame.loc[0, "no_value"] == ""


@pytest.mark.parametrize("ddof", [0, 1])
def test_the_spread_over_seeds_is_numpys_std_with_the_chosen_ddof(ddof):
    """tables.spread_ddof: 0 is the study's np.std, 1 the sample std; NaN members are left out before either."""
    values = per_run()["accuracy"].to_numpy()
    assert mean_std(values, ddof)[1] == pytest.approx(np.std(values, ddof=ddof), rel=1e-12)
    assert mean_std([1.0, math.nan, 3.0], ddof)[1] == pytest.approx(np.std([1.0, 3.0], ddof=ddof))
    assert math.isnan(mean_std([2.0], ddof)[1])  # one seed has no spread under either
    frame = summary_table("t", "T", "caption", per_run(), COLUMNS, ddof=ddof).frame.iloc[0]
    assert frame["accuracy_std"] == pytest.approx(np.std(values, ddof=ddof), rel=1e-12)
    assert frame["cvs_std"] == pytest.approx(np.std([1.0, 3.0, 5.0], ddof=ddof), rel=1e-12)
    # for 5 seeds the two differ by sqrt(5/4) = 1.118 (the factor docs/study_deviations.md quotes)
    ratio = mean_std(values, 1)[1] / mean_std(values, 0)[1]
    assert ratio == pytest.approx(math.sqrt(5 / 4), rel=1e-12)
    assert mean_std_cell([1.0, 3.0], 1, ddof=ddof) == ("2.0 ± 1.0" if ddof == 0 else "2.0 ± 1.4")
