"""The study's Table 1 kept as data: internally consistent, and named like our stages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcnn_spin.conventions import cvs
from gcnn_spin.data.selection import STAGES
from gcnn_spin.data.study import beside_study, study_table1


def test_table1_is_the_studys_arithmetic():
    table = study_table1()
    assert list(table.index) == list(STAGES[:7])
    assert (table["ACW"] + table["CW"] + table["Other"] == table["total"]).all()
    recomputed = (table["ACW"] - table["CW"]) / np.sqrt(table["ACW"] + table["CW"])
    np.testing.assert_allclose(recomputed, table["CVS"], atol=0.01)  # the printed CVS, to its 2 decimals
    np.testing.assert_allclose([cvs(a, c) for a, c in zip(table["ACW"], table["CW"])], recomputed, rtol=1e-12)
    assert table.loc["SDSS-queried (1″ cut)", "total"] == 213_744 and table.loc["matched to DESI", "total"] == 647_837
    # every galaxy with m > 0.3 is kept by downsampling: the spirals are the same before and after
    before, after = table.loc["train/val before downsampling"], table.loc["train/val after downsampling"]
    assert (before["ACW"], before["CW"]) == (after["ACW"], after["CW"])


def test_beside_study_gives_the_ratio_and_leaves_our_extra_stages_blank():
    ours = pd.DataFrame({"total": [667_944, 323_918, 10]}, index=["Galaxy Zoo 1", "matched to DESI", "train"])
    out = beside_study(ours)
    assert out.loc["Galaxy Zoo 1", "ratio"] == 1.0
    assert out.loc["matched to DESI", "ratio"] == 323_918 / 647_837
    assert np.isnan(out.loc["train", "study_total"]) and np.isnan(out.loc["train", "ratio"])
