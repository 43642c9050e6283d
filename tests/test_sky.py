"""The CVS on the sky: imaging regions, HEALPix counts, the bootstrap over galaxies, the map dipole."""

import numpy as np
import pytest

from gcnn_spin.analysis import sky
from gcnn_spin.analysis.survey import dipole_fit, unit_vectors
from gcnn_spin.conventions import ACW, CW, OTHER, cvs


def uniform_sky(rng, n):
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def test_imaging_region_follows_the_legacy_surveys_rule():
    ra = np.array([180.0, 180.0, 0.0, 150.0])
    dec = np.array([40.0, 20.0, 40.0, 32.4])
    pixel, group, b = sky.sky_index(ra, dec)
    # NGC above 32.375 deg -> north (BASS/MzLS); NGC below, and SGC at any Dec -> south (DECaLS)
    assert list(sky.imaging_region(dec, b)) == ["north", "south", "south", "north"]
    assert b[2] < 0 and list(group) == [0, 2, 3, 0]
    assert pixel.max() < 12 * sky.NSIDE ** 2 and len(set(pixel)) == 4


def test_group_counts_add_up():
    counts = np.arange(12).reshape(4, 3)
    groups = sky.group_counts(counts)
    assert (groups["region north"] + groups["region south"] == groups["all"]).all()
    assert (groups["galactic north"] + groups["galactic south"] == groups["all"]).all()
    assert (groups["region north"] == counts[0] + counts[1]).all()


def test_the_multinomial_bootstrap_is_a_bootstrap_over_galaxies(rng):
    calls = rng.choice([CW, ACW, OTHER], size=3000, p=[0.1, 0.12, 0.78])
    counts = np.bincount(calls, minlength=3)
    low, high, std = sky.bootstrap_cvs(counts, draws=4000, seed=1)
    explicit = []
    for _ in range(2000):  # resample the galaxies themselves
        sample = np.bincount(calls[rng.integers(0, len(calls), len(calls))], minlength=3)
        explicit.append(cvs(sample[ACW], sample[CW]))
    assert std == pytest.approx(np.std(explicit, ddof=1), rel=0.1)
    assert low == pytest.approx(np.percentile(explicit, 2.5), abs=0.25)
    assert high == pytest.approx(np.percentile(explicit, 97.5), abs=0.25)
    assert low < cvs(counts[ACW], counts[CW]) < high
    # vectorised over sets; a set without galaxies has no interval; the same seed gives the same interval
    many = np.array([counts, [0, 0, 0], counts])
    lows, highs, _ = sky.bootstrap_cvs(many, draws=2000, seed=3)
    assert np.isnan(lows[1]) and lows[0] == pytest.approx(lows[2], abs=0.2)
    assert (sky.bootstrap_cvs(many, draws=2000, seed=3)[1] == highs)[[0, 2]].all()


def dipole_sky(rng, n, amplitude, direction=(0.0, 0.0, 1.0)):
    ra, dec = uniform_sky(rng, n)
    p_acw = 0.5 * (1 + amplitude * unit_vectors(ra, dec) @ np.asarray(direction))
    spiral = rng.random(n) < 0.3
    calls = np.where(~spiral, OTHER, np.where(rng.random(n) < p_acw, ACW, CW))
    return ra, dec, calls


def test_the_map_dipole_finds_an_injected_dipole_and_agrees_with_the_least_squares_one(rng):
    ra, dec, calls = dipole_sky(rng, 200_000, amplitude=0.1, direction=(1.0, 0.0, 0.0))
    pixel, _, _ = sky.sky_index(ra, dec)
    counts = np.zeros((12 * sky.NSIDE ** 2, 3), np.int64)
    sky.add_counts(counts, pixel, calls)
    fit = sky.map_dipole(counts)
    assert fit["dipole"] == pytest.approx(0.1, abs=4 * fit["dipole_err"])
    assert fit["dipole_dec"] == pytest.approx(0, abs=10) and min(fit["dipole_ra"], 360 - fit["dipole_ra"]) < 10
    assert fit["significance_sigma"] > 5 and 0.7 < fit["chi2_map_dof"] < 1.3
    spirals = calls != OTHER
    lsq = dipole_fit(ra[spirals], dec[spirals], np.where(calls[spirals] == ACW, 1, -1))
    assert fit["dipole"] == pytest.approx(lsq["dipole"], abs=2 * lsq["dipole_err"])
    assert fit["dipole_err"] == pytest.approx(lsq["dipole_err"], rel=0.2)


def test_no_dipole_is_not_significant(rng):
    ra, dec, calls = dipole_sky(rng, 100_000, amplitude=0.0)
    pixel, _, _ = sky.sky_index(ra, dec)
    counts = np.zeros((12 * sky.NSIDE ** 2, 3), np.int64)
    sky.add_counts(counts, pixel, calls)
    assert sky.map_dipole(counts)["significance_sigma"] < 4


def test_the_truth_is_inside_a_symmetric_models_intervals_and_outside_a_biased_ones(rng):
    n = 40_000
    true = rng.choice([CW, ACW, OTHER], size=n, p=[0.15, 0.15, 0.7])
    group = rng.integers(0, 4, n)
    # a mirror-symmetric model misses 20 % of the spirals of both hands; a biased one also calls 20 % of CW ACW
    symmetric = np.where((true != OTHER) & (rng.random(n) < 0.2), OTHER, true)
    biased = np.where((symmetric == CW) & (rng.random(n) < 0.2), ACW, symmetric)

    def counts(calls):
        out = np.zeros((4, 3), np.int64)
        sky.add_counts(out, group, calls)
        return out

    truth = counts(true)
    assert sky.truth_inside(truth, counts(symmetric))["inside"].all()
    assert not sky.truth_inside(truth, counts(biased))["inside"].any()


def test_mollweide_maps_are_drawn(tmp_path, rng):
    from gcnn_spin.analysis.sky_figures import sample_map, sky_maps_plot

    ra, dec, calls = dipole_sky(rng, 20_000, amplitude=0.2)
    pixel, _, _ = sky.sky_index(ra, dec)
    counts = np.zeros((12 * sky.NSIDE ** 2, 3), np.int64)
    sky.add_counts(counts, pixel, calls)
    path = sky_maps_plot({"gc_resnet18": counts, "resnet18": counts[::-1].copy()}, path=tmp_path / "maps.png")
    assert path.stat().st_size > 10_000 and not list(tmp_path.glob(".*.tmp"))
    # RA grows to the left: the leftmost column of the drawn grid is RA ~ 180 deg, the centre RA 0
    marked = np.zeros(12 * sky.NSIDE ** 2)
    marked[sky.sky_index(np.array([179.5]), np.array([0.5]))[0]] = 1  # a grid centre
    _, _, image = sample_map(marked)
    assert image[90, 0] == 1 and image[90, 180] == 0
