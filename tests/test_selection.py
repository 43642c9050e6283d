"""Quality cuts, split order, downsampling fractions, seeding, and the CVS arithmetic of the study's Table 1."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.config import DataConfig
from gcnn_spin.conventions import ACW, CW, OTHER, class_counts, cvs, hard_class, soft_targets
from gcnn_spin.data.selection import STAGES, downsample, downsample_bin, select, stage_labels

CFG = DataConfig()

# The study's Table 1: (total, ACW, CW, Other, CVS).
TABLE1 = {
    "Galaxy Zoo 1": (667_944, 32_189, 30_356, 605_399, 7.33),
    "matched to DESI": (647_837, 31_660, 29_872, 586_305, 7.21),
    "SDSS-queried (1″ cut)": (213_744, 8_711, 8_160, 196_873, 4.24),
    "quality cuts": (208_682, 8_549, 8_003, 192_130, 4.24),
    "test": (41_737, 1_753, 1_580, 38_404, 3.00),
    "train/val before downsampling": (166_945, 6_796, 6_423, 153_726, 3.24),
    "train/val after downsampling": (35_988, 6_796, 6_423, 22_769, 3.24),
}


@pytest.mark.parametrize("name", list(TABLE1))
def test_cvs_reproduces_table1(name):
    total, n_acw, n_cw, n_other, expected = TABLE1[name]
    assert total == n_acw + n_cw + n_other
    assert round(cvs(n_acw, n_cw), 2) == pytest.approx(expected, abs=1e-9)
    labels = np.repeat([ACW, CW, OTHER], [n_acw, n_cw, n_other])
    assert class_counts(labels) == {"total": total, "ACW": n_acw, "CW": n_cw, "Other": n_other, "CVS": expected}


def test_bin_edges_are_half_open_and_zero_goes_low():
    m = np.array([0.0, 1e-9, 0.1, 0.1 + 1e-9, 0.2, 0.25, 0.3, 0.3 + 1e-9, 1.0])
    np.testing.assert_array_equal(downsample_bin(m, CFG.downsample_bins), [0, 0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(ValueError, match="increasing"):
        downsample_bin(m, ((0.2, 0.5), (0.1, 0.5)))
    with pytest.raises(ValueError, match="fractions"):
        downsample(m, ((0.1, 1.5),), np.random.default_rng(0))


def test_downsampling_keeps_expected_fractions():
    rng = np.random.default_rng(1)
    m = np.concatenate([np.zeros(40_000), rng.uniform(0, 1, 160_000)])  # GZ1-like: many with no spiral vote
    keep = downsample(m, CFG.downsample_bins, np.random.default_rng(2))
    which = downsample_bin(m, CFG.downsample_bins)
    for k, (_, fraction) in enumerate(CFG.downsample_bins):
        n = (which == k).sum()
        sigma = np.sqrt(fraction * (1 - fraction) / n)  # binomial std of a fraction: a loose yardstick
        assert abs(keep[which == k].mean() - fraction) < 3 * sigma
        # unbiased inside the bin: kept galaxies have the bin's mean m
        assert abs(m[keep & (which == k)].mean() - m[which == k].mean()) < 0.01
    assert keep[m > 0.3].all()
    assert keep[m == 0].mean() == pytest.approx(0.05, abs=0.005)


def catalogue(n: int, seed: int = 0) -> pd.DataFrame:
    """A merged catalogue as the pipeline hands to ``select`` (all matched, photometry passing)."""
    rng = np.random.default_rng(seed)
    p_cw = np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(0, 1, n))
    p_acw = (1 - p_cw) * rng.uniform(0, 1, n) * (rng.uniform(size=n) < 0.7)
    p_other = 1 - p_cw - p_acw
    return pd.DataFrame({
        "objid": 587722981741363200 + rng.permutation(n * 3)[:n], "p_cw": p_cw, "p_acw": p_acw, "p_other": p_other,
        "label": hard_class(soft_targets(p_cw, p_acw, p_other)),
        "dr8_id": [f"1_{i}" for i in range(n)], "match_reason": "", "n_neighbours_1arcsec": 0.0,
        "petroR50_r": 2.0, "petroR50Err_r": 0.1, "petroMagErr_r": 0.05,
    })


def test_cuts_assign_reasons_in_order():
    cat = catalogue(8)
    cat.loc[0, ["dr8_id", "match_reason"]] = ["", "no_desi_match"]
    cat.loc[1, "n_neighbours_1arcsec"] = np.nan  # no SDSS answer
    cat.loc[2, "n_neighbours_1arcsec"] = 1
    cat.loc[3, "petroR50_r"] = 0.9  # too small
    cat.loc[4, "petroMagErr_r"] = -9999.0  # SDSS "no value"
    cat.loc[5, "petroR50Err_r"] = 0.6  # relative error 0.3
    cat.loc[6, "petroR50_r"] = np.nan  # not primary: NULL photometry
    cat.loc[7, "n_neighbours_1arcsec"] = 2  # a neighbour beats any photometry problem
    cat.loc[7, "petroR50_r"] = 0.1
    out = select(cat, CFG)
    assert list(out["reason"]) == ["no_desi_match", "no_sdss_photometry", "neighbour_1arcsec", "quality_cut",
                                   "quality_cut", "quality_cut", "no_sdss_photometry", "neighbour_1arcsec"]
    assert (out["split"] == "excluded").all()


def test_split_order_sizes_and_seeding():
    cat = catalogue(20_000)
    out = select(cat, CFG)
    split = out["split"]
    n_test = (split == "test").sum()
    assert n_test == round(0.2 * 20_000)
    m = np.maximum(cat["p_cw"], cat["p_acw"])
    low = m <= 0.1
    # the test set is drawn before downsampling: it keeps the natural share of low-m galaxies ...
    assert abs(low[split == "test"].mean() - low.mean()) < 0.03
    # ... while train/val keep 1/20 of them and every galaxy with m > 0.3
    trainval = split.isin(["train", "val"])
    assert ((low & trainval).sum() / (low & (split != "test")).sum()) == pytest.approx(0.05, abs=0.002)
    assert (trainval | (split == "test"))[m > 0.3].all()
    assert ((split == "excluded") == (out["reason"] == "downsampled")).all()
    assert (split == "val").sum() == round(0.1 * trainval.sum())
    # same seed, shuffled rows -> same split per galaxy; another seed -> another split
    again = select(cat.sample(frac=1, random_state=3), CFG).set_index("objid")["split"]
    pd.testing.assert_series_equal(again.loc[cat["objid"]].reset_index(drop=True), split, check_names=False)
    other = select(cat, dataclasses.replace(CFG, split_seed=CFG.split_seed + 1))["split"]
    assert (other != split).mean() > 0.1


def test_stage_labels_follow_table1_rows():
    cat = catalogue(3_000)
    cat.loc[:99, ["dr8_id", "match_reason"]] = ["", "no_desi_match"]
    cat.loc[100:199, "n_neighbours_1arcsec"] = 1
    cat.loc[200:249, "petroR50_r"] = 0.5
    out = select(cat, CFG)
    labels = stage_labels(out, CFG)
    assert list(labels) == list(STAGES)
    sizes = [len(labels[s]) for s in STAGES]
    assert sizes[:4] == [3_000, 2_900, 2_800, 2_750]
    assert sizes[4] + sizes[5] == sizes[3] and sizes[7] + sizes[8] == sizes[6] <= sizes[5]
    # no spiral is ever downsampled: the train/val spiral counts before and after agree
    for cls in (CW, ACW):
        assert (labels[STAGES[5]] == cls).sum() == (labels[STAGES[6]] == cls).sum()
