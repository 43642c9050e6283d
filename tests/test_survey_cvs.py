"""Survey counts and CVS from prediction parts, the galactic north/south split and the dipole fit."""

import math

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.analysis.survey import (count_row, dipole_fit, galactic_latitude, hemisphere_split, merge_parts,
                                       survey_seed, unit_vectors)
from gcnn_spin.conventions import ACW, CW, OTHER, cvs, predicted_spirals
from gcnn_spin.errors import InputError

NGP = (192.85948, 27.12825)  # north galactic pole (ICRS, deg)


def write_part(path, probs, ra, dec):
    pd.DataFrame({"dr8_id": [f"1_{i}" for i in range(len(ra))], "ra": ra, "dec": dec, "p_cw": probs[:, 0],
                  "p_acw": probs[:, 1], "p_other": probs[:, 2]}).to_parquet(path, index=False)


def sky(rng, n):
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def test_merged_counts_and_cvs_match_conventions(tmp_path, rng):
    all_probs, paths = [], []
    for i in range(3):
        probs = rng.dirichlet([0.4, 0.5, 1.5], size=500)
        probs[:5] = [0.5, 0.25, 0.25]  # exactly 0.5 counts as a spiral (softmax >= 0.5)
        write_part(tmp_path / f"part-{i:05d}.parquet", probs, *sky(rng, 500))
        all_probs.append(probs)
        paths.append(tmp_path / f"part-{i:05d}.parquet")
    merged = merge_parts(paths, progress=False)
    calls = predicted_spirals(np.concatenate(all_probs))
    n_cw, n_acw, n_other = ((calls == k).sum() for k in (CW, ACW, OTHER))
    assert (merged["n_cw"], merged["n_acw"], merged["n_other"]) == (n_cw, n_acw, n_other)
    assert n_cw >= 15  # the 0.5 rows are in
    row = survey_seed(merged)
    assert row["cvs"] == pytest.approx(cvs(n_acw, n_cw))
    assert row["acw_cw_ratio"] == pytest.approx(n_acw / n_cw)
    assert row["pct_acw"] == pytest.approx(100 * n_acw / 1500)
    assert len(merged["sign"]) == n_cw + n_acw and set(np.unique(merged["sign"])) == {-1, 1}
    assert row["n_acw_north"] + row["n_acw_south"] <= n_acw


def test_merge_rejects_logits(tmp_path):
    write_part(tmp_path / "part-00000.parquet", np.array([[2.0, -1.0, 0.5]]), [10.0], [5.0])
    with pytest.raises(ValueError, match="probabilities"):
        merge_parts([tmp_path / "part-00000.parquet"], progress=False)


def test_a_corrupt_or_foreign_part_is_named_with_what_to_delete(tmp_path, rng):
    good, bad = tmp_path / "part-00000.parquet", tmp_path / "part-00001.parquet"
    write_part(good, rng.dirichlet([1, 1, 1], size=4), *sky(rng, 4))
    bad.write_bytes(bytes(range(256)) * 4)  # a part cut short or overwritten: not parquet
    with pytest.raises(InputError, match=rf"^{bad}: cannot read this prediction part \(.*\); delete it and its "
                                         rf"marker {bad}.done, then rerun inference"):
        merge_parts([good, bad], progress=False)
    pd.DataFrame({"dr8_id": ["1_0"], "p_cw": [0.5]}).to_parquet(bad)
    with pytest.raises(InputError, match=rf"^{bad}: .*lacks the columns \['p_acw', 'p_other'\]"):
        merge_parts([good, bad], progress=False)


def test_galactic_hemispheres():
    assert galactic_latitude(np.array([NGP[0]]), np.array([NGP[1]]))[0] == pytest.approx(90, abs=1e-3)
    ra = np.array([NGP[0]] * 5 + [(NGP[0] + 180) % 360] * 2)
    dec = np.array([NGP[1]] * 5 + [-NGP[1]] * 2)
    sign = np.array([1, 1, 1, -1, 1, -1, -1])
    split = hemisphere_split(ra, dec, sign)
    assert (split["n_acw_north"], split["n_cw_north"], split["n_acw_south"], split["n_cw_south"]) == (4, 1, 0, 2)
    assert split["cvs_north"] == pytest.approx(cvs(4, 1)) and split["cvs_south"] == pytest.approx(cvs(0, 2))


def injected(rng, n, amplitude, direction, monopole=0.0, dec_min=-90.0):
    """Signs with E[s] = monopole + amplitude·(n̂·d̂) on the sky north of ``dec_min`` (a survey footprint)."""
    ra, dec = sky(rng, int(n * 2.5))
    keep = dec > dec_min
    ra, dec = ra[keep][:n], dec[keep][:n]
    d = unit_vectors([direction[0]], [direction[1]])[0]
    p_acw = (1 + monopole + amplitude * unit_vectors(ra, dec) @ d) / 2
    return ra, dec, np.where(rng.random(len(ra)) < p_acw, 1, -1)


def angle_between(a, b):
    return math.degrees(math.acos(np.clip(unit_vectors([a[0]], [a[1]])[0] @ unit_vectors([b[0]], [b[1]])[0], -1, 1)))


def test_dipole_fit_recovers_an_injected_dipole(rng):
    ra, dec, sign = injected(rng, 200_000, 0.08, (120.0, 30.0))
    fit = dipole_fit(ra, dec, sign)
    assert fit["dipole"] == pytest.approx(0.08, abs=4 * fit["dipole_err"])
    assert fit["dipole_err"] == pytest.approx(math.sqrt(3 / 200_000), rel=0.1)  # var(s)≈1, <(n̂·d̂)²> = 1/3
    # the direction is known to about dipole_err / dipole radians per axis
    assert angle_between((fit["dipole_ra"], fit["dipole_dec"]), (120.0, 30.0)) < math.degrees(
        4 * fit["dipole_err"] / fit["dipole"])
    assert fit["significance_sigma"] > 10 and fit["p_value"] < 1e-10
    assert fit["monopole"] == pytest.approx(0.0, abs=4 * fit["monopole_err"])


def test_monopole_on_a_partial_sky_does_not_fake_a_dipole(rng):
    ra, dec, sign = injected(rng, 100_000, 0.0, (0.0, 90.0), monopole=0.05, dec_min=-10.0)
    fit = dipole_fit(ra, dec, sign)
    assert fit["monopole"] == pytest.approx(0.05, abs=4 * fit["monopole_err"])
    assert fit["significance_sigma"] < 4
    ra, dec, sign = injected(rng, 100_000, 0.06, (250.0, 40.0), monopole=0.05, dec_min=-10.0)
    fit = dipole_fit(ra, dec, sign)
    assert fit["dipole"] == pytest.approx(0.06, abs=4 * fit["dipole_err"])
    assert angle_between((fit["dipole_ra"], fit["dipole_dec"]), (250.0, 40.0)) < math.degrees(
        4 * fit["dipole_err"] / fit["dipole"])


def test_no_dipole_is_not_significant():
    p_values = [dipole_fit(*injected(np.random.default_rng(k), 20_000, 0.0, (0.0, 0.0)))["p_value"]
                for k in range(20)]
    assert np.mean(np.array(p_values) < 0.05) <= 0.2  # about 5 % false alarms, far from always
    assert 0.25 < np.median(p_values) < 0.75  # p-values of the null are uniform


def test_count_row_without_spirals():
    row = count_row({"n_cw": 0, "n_acw": 0, "n_other": 10})
    assert math.isnan(row["cvs"]) and math.isnan(row["acw_cw_ratio"]) and row["n_total"] == 10
    assert math.isnan(dipole_fit(np.zeros(3), np.zeros(3), np.ones(3))["dipole"])
