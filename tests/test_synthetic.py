"""The synthetic survey: real layouts, vote model, winding convention, S-wise bias, determinism, idempotency."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from PIL import Image, ImageDraw

from gcnn_spin.config import QualityCuts
from gcnn_spin.conventions import ACW, CW, OTHER, cvs, hard_class, soft_targets
from gcnn_spin.data.images import JpegTree
from gcnn_spin.data.synthetic import SurveyExistsError, SurveyParams, build_truth, generate_survey
from gcnn_spin.data.synthetic import catalogue, survey
from gcnn_spin.data.synthetic.render import render_galaxy
from gcnn_spin.data.synthetic.survey import label_table, render_cutout
from gcnn_spin.io import read_marker

ROOT = Path(__file__).resolve().parents[1]
VOTES = ["P_EL", "P_CW", "P_ACW", "P_EDGE", "P_DK", "P_MG"]
SMALL = dict(n_gz1=150, n_survey_only=60, image_size=64, seed=3)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("survey") / "RAW"
    generate_survey(out, progress=False, swise_bias=0.1, **SMALL)
    return out


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def label_counts(table: pd.DataFrame) -> np.ndarray:
    return hard_class(soft_targets(table["P_CW"], table["P_ACW"], 1 - table["P_CW"] - table["P_ACW"]))


# ------------------------------------------------------------------------------------------------ layouts


def test_gz1_table_layout_and_positions(raw):
    text = pd.read_csv(raw / "GalaxyZoo1_DR_table2.csv", dtype=str)
    assert list(text.columns) == list(catalogue.GZ1_COLUMNS)
    assert text["RA"].str.fullmatch(r"\d\d:[0-5]\d:[0-5]\d\.\d\d").all()
    assert text["DEC"].str.fullmatch(r"[+-]\d\d:[0-5]\d:[0-5]\d\.\d").all()
    table = pd.read_csv(raw / "GalaxyZoo1_DR_table2.csv")
    assert table["OBJID"].dtype == np.int64 and table["OBJID"].is_unique
    assert table["OBJID"].astype(str).str.fullmatch(r"58[78]\d{15}").all()
    for col in ["NVOTE", "SPIRAL", "ELLIPTICAL", "UNCERTAIN"]:
        assert table[col].dtype == np.int64, col
    for col in VOTES + ["P_CS", "P_EL_DEBIASED", "P_CS_DEBIASED"]:
        assert table[col].dtype == np.float64, col
    assert len(table) == SMALL["n_gz1"]
    assert table["RA"].tolist() == text["RA"].tolist()  # sorted by RA as published, wrapping through 0 h
    truth = pd.read_parquet(raw / "truth.parquet").set_index("objid").loc[table["OBJID"]]
    parsed = SkyCoord(table["RA"], table["DEC"], unit=(u.hourangle, u.deg))
    true = SkyCoord(truth["ra"].to_numpy() * u.deg, truth["dec"].to_numpy() * u.deg)
    assert parsed.separation(true).arcsec.max() < 0.1
    assert (truth["dec"] < 0).any() and (truth["dec"] > 0).any()  # both signs of DEC are exercised


def test_desi_index_layout_and_cutouts(raw):
    index = pd.read_parquet(raw / "desi_index.parquet")
    assert list(index.columns) == list(catalogue.DESI_COLUMNS)
    assert index["ra"].dtype == np.float64 and index["dec"].dtype == np.float64
    assert index["brickid"].dtype == np.int64 and index["objid"].dtype == np.int64
    assert index["dr8_id"].is_unique
    assert (index["dr8_id"] == index["brickid"].astype(str) + "_" + index["objid"].astype(str)).all()
    assert (index["jpg_loc"] == [f"jpg/{b}/{d}.jpg" for b, d in zip(index["brickid"], index["dr8_id"])]).all()
    files = sorted(p.relative_to(raw).as_posix() for p in (raw / "jpg").rglob("*.jpg"))
    assert files == sorted(index["jpg_loc"])
    tree = JpegTree(raw, expected_size=SMALL["image_size"])
    for dr8_id in index["dr8_id"][:5]:
        image = tree.load(dr8_id)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_default_cutouts_are_424_px_rgb_jpegs(tmp_path):
    paths = generate_survey(tmp_path / "RAW", n_gz1=3, n_survey_only=1, seed=1, progress=False)
    index = pd.read_parquet(paths["desi_index"])
    with Image.open(tmp_path / "RAW" / index["jpg_loc"][0]) as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (424, 424))


def test_cross_match_geometry(raw):
    """Every GZ1 galaxy has its own DESI counterpart well inside 10", except the ``no_desi`` ones (none within 10");
    survey-only galaxies are in the index but not in GZ1."""
    truth = pd.read_parquet(raw / "truth.parquet")
    index = pd.read_parquet(raw / "desi_index.parquet")
    table = pd.read_csv(raw / "GalaxyZoo1_DR_table2.csv")
    gz1 = truth.set_index("objid").loc[table["OBJID"]]
    gz1_pos = SkyCoord(table["RA"], table["DEC"], unit=(u.hourangle, u.deg))
    desi_pos = SkyCoord(index["ra"].to_numpy() * u.deg, index["dec"].to_numpy() * u.deg)
    idx, sep, _ = gz1_pos.match_to_catalog_sky(desi_pos)
    missing = (gz1["defect"] == "no_desi").to_numpy()
    assert 0 < missing.sum() < 0.1 * len(gz1)
    assert (sep.arcsec[missing] > 10).all()
    assert (sep.arcsec[~missing] < 3).all()
    assert (index["dr8_id"].to_numpy()[idx[~missing]] == gz1["dr8_id"].to_numpy()[~missing]).all()
    survey_only = truth[~truth["in_gz1"]]
    assert len(survey_only) == SMALL["n_survey_only"]
    assert set(survey_only["dr8_id"]) <= set(index["dr8_id"])
    assert not set(survey_only["objid"]) & set(table["OBJID"])


def test_sdss_photometry_layout(raw):
    phot = pd.read_csv(raw / "sdss_photometry.csv")
    assert list(phot.columns) == list(catalogue.SDSS_COLUMNS)
    assert phot["objID"].dtype == np.int64 and phot["n_neighbours_1arcsec"].dtype == np.int64
    for col in ["petroR50_r", "petroR50Err_r", "petroMagErr_r"]:
        assert phot[col].dtype == np.float64
    truth = pd.read_parquet(raw / "truth.parquet")
    gz1 = truth[truth["in_gz1"]]
    expected = set(gz1.loc[gz1["defect"] != "no_photometry", "objid"])
    assert set(phot["objID"]) == expected


def test_truth_columns_and_classes(raw):
    truth = pd.read_parquet(raw / "truth.parquet")
    for col in ["true_class", "true_label", "morphology", "n_arms", "pitch_deg", "winding", "inclination_deg",
                "position_angle_deg", "disc_radius_px", "clarity", "expected_reason"]:
        assert col in truth.columns, col
    spiral = truth["morphology"] == "spiral"
    assert set(truth.loc[spiral, "true_class"]) == {"CW", "ACW"}
    assert (truth.loc[~spiral, "true_class"] == "Other").all()
    assert ((truth["winding"] == "Z") == (truth["true_label"] == CW)).all()
    assert ((truth["winding"] == "S") == (truth["true_label"] == ACW)).all()
    assert truth.loc[spiral, "n_arms"].between(1, 4).all()
    assert truth.loc[spiral, "pitch_deg"].between(10, 35).all()


# ------------------------------------------------------------------------------------------------ votes


def test_vote_fractions_are_counts_over_nvote(raw):
    table = pd.read_csv(raw / "GalaxyZoo1_DR_table2.csv")
    assert table["NVOTE"].between(20, 60).all()
    fractions = table[VOTES].to_numpy()
    # Printed to 3 decimals like the published table: the six sum to 1 within rounding...
    assert np.abs(fractions.sum(axis=1) - 1).max() <= 6 * 0.0005 + 1e-9
    # ...and the counts come back exactly.
    counts = np.rint(fractions * table["NVOTE"].to_numpy()[:, None])
    assert np.allclose(fractions * table["NVOTE"].to_numpy()[:, None], counts, atol=0.05)
    assert (counts.sum(axis=1) == table["NVOTE"]).all()
    p_cs = (counts[:, 1] + counts[:, 2] + counts[:, 3]) / table["NVOTE"]
    assert np.abs(table["P_CS"] - p_cs).max() <= 0.0005 + 1e-9
    assert (table[["SPIRAL", "ELLIPTICAL", "UNCERTAIN"]].sum(axis=1) == 1).all()
    truth = pd.read_parquet(raw / "truth.parquet").set_index("objid").loc[table["OBJID"]]
    assert (truth[["n_el", "n_cw", "n_acw", "n_edge", "n_dk", "n_mg"]].to_numpy() == counts).all()


def test_clear_spirals_get_their_sense_and_hard_ones_do_not():
    truth, _ = build_truth(SurveyParams(n_gz1=4000, n_survey_only=0, seed=5))
    spiral = truth[truth["morphology"] == "spiral"]
    right = np.where(spiral["sense"] > 0, spiral["n_cw"], spiral["n_acw"]) / spiral["n_vote"]
    clear, hard = spiral["clarity"] > 0.8, spiral["clarity"] < 0.2
    assert right[clear].mean() > 0.7 and right[hard].mean() < 0.35
    low_pitch = spiral["pitch_deg"] < 13
    assert (spiral.loc[low_pitch, "n_el"] / spiral.loc[low_pitch, "n_vote"]).mean() > \
        (spiral.loc[~low_pitch, "n_el"] / spiral.loc[~low_pitch, "n_vote"]).mean()
    labels = label_counts(label_table(truth, SurveyParams(n_gz1=4000, n_survey_only=0, seed=5)))
    share = np.bincount(labels, minlength=3) / labels.size
    assert 0.12 < share[CW] < 0.3 and 0.12 < share[ACW] < 0.3 and share[OTHER] > 0.4


def test_swise_bias_gives_label_cvs_on_a_symmetric_sky():
    n = 20000
    plain, biased = SurveyParams(n_gz1=n, n_survey_only=0, seed=11), SurveyParams(n_gz1=n, n_survey_only=0, seed=11,
                                                                                 swise_bias=0.1)
    t0, _ = build_truth(plain)
    t1, _ = build_truth(biased)
    # The truth is the same and exactly symmetric; the bias only moves CW votes to ACW.
    assert t0["true_label"].equals(t1["true_label"])
    n_cw, n_acw = (t1["true_label"] == CW).sum(), (t1["true_label"] == ACW).sum()
    assert abs(n_cw - n_acw) <= 1
    assert (t1["n_cw"] <= t0["n_cw"]).all() and (t1["n_acw"] >= t0["n_acw"]).all()
    assert (t1["n_cw"] + t1["n_acw"]).equals(t0["n_cw"] + t0["n_acw"])
    assert (t1["n_cw_unbiased"] == t0["n_cw"]).all()
    moved = (t0["n_cw"] - t1["n_cw"]).sum() / t0["n_cw"].sum()
    assert 0.08 < moved < 0.12
    l0, l1 = label_counts(label_table(t0, plain)), label_counts(label_table(t1, biased))
    assert abs(cvs((l0 == ACW).sum(), (l0 == CW).sum())) < 3
    assert cvs((l1 == ACW).sum(), (l1 == CW).sum()) > 3


def test_true_acw_fraction_sets_the_true_asymmetry():
    truth, _ = build_truth(SurveyParams(n_gz1=2000, n_survey_only=1000, seed=2, true_acw_fraction=0.6))
    for group in (truth["in_gz1"], ~truth["in_gz1"]):
        spiral = truth[group & (truth["morphology"] == "spiral")]
        assert (spiral["true_label"] == ACW).sum() == round(0.6 * len(spiral))


# ------------------------------------------------------------------------------------------------ winding convention


def face_on_spiral(sense: int, **changes) -> dict:
    g = dict(galaxy_index=0, morphology="spiral", n_arms=2, pitch_deg=25.0, sense=sense, arm_phase_deg=30.0,
             arm_strength=0.9, arm_width_power=4, arm_r_in_px=8.0, bar_strength=0.0, bar_length_px=0.0,
             position_angle_deg=20.0, axis_ratio=1.0, disc_radius_px=55.0, disc_scale_px=18.0, disc_i0=1.0,
             bulge_re_px=3.0, bulge_sersic_n=2.0, bulge_ie=0.0, dust_lane=0.0, psf_sigma_px=1.0, sky_sigma=0.02,
             n_stars=0)
    return {**g, **changes}


def render(g: dict, size: int = 128, clean: bool = True) -> np.ndarray:
    return render_galaxy(g, size, np.random.default_rng(0), clean=clean).astype(np.float64)


@pytest.mark.parametrize("axis", ["left-right", "up-down"])
@pytest.mark.parametrize("extra", [{}, dict(axis_ratio=0.6, position_angle_deg=70.0, bar_strength=0.8,
                                            bar_length_px=12.0, bulge_ie=0.6, n_arms=3)])
def test_mirroring_equals_rendering_the_opposite_sense(axis, extra):
    g = face_on_spiral(+1, **extra)
    mirrored = render(g)[:, ::-1] if axis == "left-right" else render(g)[::-1]
    pa = -g["position_angle_deg"] if axis == "left-right" else 180.0 - g["position_angle_deg"]
    opposite = render({**g, "sense": -1, "position_angle_deg": pa, "arm_phase_deg": -g["arm_phase_deg"]})
    assert np.abs(mirrored - opposite).max() <= 1  # uint8 rounding
    same_sense = render({**g, "position_angle_deg": pa, "arm_phase_deg": -g["arm_phase_deg"]})
    assert np.abs(mirrored - same_sense).mean() > 5  # the comparison can fail


def arm_angle_vs_radius(image: np.ndarray, radii: np.ndarray, n_arms: int = 2) -> np.ndarray:
    """Position angle (rad, counter-clockwise as seen, y up) of the m-th harmonic at each radius, unwrapped."""
    lum = image.mean(axis=2)
    size = lum.shape[0]
    c = (size - 1) / 2
    rows, cols = np.mgrid[:size, :size]
    x, y = cols - c, c - rows  # y points up on the displayed image
    r, phi = np.hypot(x, y), np.arctan2(y, x)
    angles = []
    for radius in radii:
        ring = np.abs(r - radius) < 1.0
        angles.append(np.angle(np.sum(lum[ring] * np.exp(-1j * n_arms * phi[ring]))))
    return -np.unwrap(angles) / n_arms


@pytest.mark.parametrize("sense", [+1, -1])
def test_arms_of_a_z_spiral_turn_counter_clockwise_outward(sense):
    """Going outward along an arm of a Z-wise (CW) spiral, its position angle increases counter-clockwise as
    seen, at the rate 1/tan(pitch) per e-fold in radius; an S-wise (ACW) one turns the other way."""
    g = face_on_spiral(sense, pitch_deg=20.0)
    radii = np.linspace(14, 45, 12)
    angles = arm_angle_vs_radius(render(g), radii)
    slope = np.polyfit(np.log(radii), angles, 1)[0]
    assert slope == pytest.approx(sense / math.tan(math.radians(20.0)), rel=0.15)


def letter_score(image: np.ndarray, letter: str) -> float:
    """Best correlation, over rotations, of the image's luminance with a drawn capital Z (or its mirror)."""
    size = image.shape[0]
    glyph = Image.new("L", (size, size))
    a, b = int(0.2 * size), int(0.8 * size)
    # Drawn in display coordinates: top stroke left->right, diagonal to bottom-left, bottom stroke to the right.
    ImageDraw.Draw(glyph).line([(a, a), (b, a), (a, b), (b, b)], fill=255, width=max(2, size // 12))
    if letter == "mirrored Z":
        glyph = glyph.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    lum = image.mean(axis=2)
    lum = (lum - lum.mean()) / lum.std()
    best = -1.0
    for angle in range(0, 180, 5):
        pattern = np.asarray(glyph.rotate(angle, resample=Image.BILINEAR), float)
        pattern = (pattern - pattern.mean()) / pattern.std()
        best = max(best, float((lum * pattern).mean()))
    return best


@pytest.mark.parametrize("sense", [+1, -1])
def test_z_wise_spiral_looks_like_the_letter_z(sense):
    g = face_on_spiral(sense, pitch_deg=30.0, arm_width_power=6, disc_scale_px=30.0)
    image = render(g, size=96)
    z, s = letter_score(image, "Z"), letter_score(image, "mirrored Z")
    assert (z > s) == (sense > 0), (z, s)


# ------------------------------------------------------------------------------------------------ quality cuts


def test_rows_that_the_cuts_must_remove_exist_in_small_numbers():
    params = SurveyParams(n_gz1=5000, n_survey_only=0, seed=4)
    truth, photometry = build_truth(params)
    phot = catalogue.sdss_table(truth, photometry).set_index("objID")
    cuts = QualityCuts()
    gz1 = truth.set_index("objid")
    rel = phot["petroR50Err_r"] / phot["petroR50_r"]
    fails = {
        "neighbour": phot["n_neighbours_1arcsec"] > cuts.max_neighbours_1arcsec,
        "bad_mag_err": ~((phot["petroMagErr_r"] > 0) & (phot["petroMagErr_r"] < cuts.max_petro_mag_err_r)),
        "small_r50": ~(phot["petroR50_r"] > cuts.min_petro_r50_arcsec),
        "bad_r50_err": ~((rel > 0) & (rel < cuts.max_petro_r50_rel_err)),
    }
    for defect, failed in fails.items():
        planted = gz1.loc[phot.index, "defect"] == defect
        assert failed.equals(planted), defect  # each cut catches exactly the planted rows
        assert 0.002 < failed.mean() < 0.05, (defect, failed.mean())
    no_phot = truth["in_gz1"] & (truth["defect"] == "no_photometry")
    assert no_phot.sum() > 0 and not set(truth.loc[no_phot, "objid"]) & set(phot.index)
    assert 0.01 < (truth["defect"] == "no_desi").mean() < 0.06
    assert (truth.loc[truth["defect"] == "no_desi", "dr8_id"] == "").all()


# ------------------------------------------------------------------------------------------------ formats


def test_sexagesimal_edge_cases_round_trip():
    assert catalogue.format_ra([359.9999999, 0.0, 31.27354]) == ["00:00:00.00", "00:00:00.00", "02:05:05.65"]
    assert catalogue.format_dec([-0.00001, -0.5, 89.99999, -11.2105833]) == \
        ["+00:00:00.0", "-00:30:00.0", "+90:00:00.0", "-11:12:38.1"]
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 500), rng.uniform(-89, 89, 500)
    parsed = SkyCoord(catalogue.format_ra(ra), catalogue.format_dec(dec), unit=(u.hourangle, u.deg))
    assert parsed.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec.max() < 0.1


def test_objids_follow_the_dr7_bit_layout():
    ids = catalogue.draw_sdss_objids(3000, np.random.default_rng(0))
    assert ids.dtype == np.int64 and np.unique(ids).size == ids.size
    assert ((ids >> 59) == 1).all()
    assert np.isin((ids >> 48) & 0x7FF, [40, 41, 44]).all()
    assert (((ids >> 29) & 7) >= 1).all() and (((ids >> 29) & 7) <= 6).all()
    assert catalogue.sdss_objid(1729, 40, 3, 83, 87) == 587727178986356823  # a real GZ1 OBJID


def test_invalid_parameters_name_the_field():
    with pytest.raises(ValueError, match="swise_bias"):
        SurveyParams(swise_bias=1.5)
    with pytest.raises(ValueError, match="morphology_mix"):
        SurveyParams(morphology_mix=(("spiral", 1.0), ("blob", 1.0)))
    with pytest.raises(ValueError, match="density_per_deg2"):
        SurveyParams(density_per_deg2=1e6)


# ------------------------------------------------------------------------------------------------ reruns


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    params = dict(n_gz1=40, n_survey_only=24, image_size=48, seed=7, swise_bias=0.1)
    generate_survey(tmp_path / "a", workers=1, progress=False, **params)
    generate_survey(tmp_path / "b", workers=2, progress=False, **params)
    generate_survey(tmp_path / "c", workers=1, progress=False, **{**params, "seed": 8})
    a, b, c = (tree_digest(tmp_path / name) for name in "abc")
    assert a == b
    assert a["GalaxyZoo1_DR_table2.csv"] != c["GalaxyZoo1_DR_table2.csv"]
    assert len(a) == 5 + len(pd.read_parquet(tmp_path / "a" / "desi_index.parquet"))


def test_rerun_reuses_a_finished_survey(tmp_path):
    out = tmp_path / "RAW"
    paths = generate_survey(out, progress=False, **SMALL)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    marker = read_marker(out)
    assert generate_survey(out, progress=False, **SMALL) == paths
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert read_marker(out) == marker


def test_crash_before_the_marker_reruns_cleanly(tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    generate_survey(reference, progress=False, **SMALL)
    out = tmp_path / "RAW"
    calls = {"n": 0, "fail_at": 50}
    real_encode = survey.encode_jpeg

    def flaky_encode(image, quality):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise RuntimeError("node lost")
        return real_encode(image, quality)

    monkeypatch.setattr(survey, "encode_jpeg", flaky_encode)
    with pytest.raises(RuntimeError, match="node lost"):
        generate_survey(out, progress=False, **SMALL)
    assert read_marker(out) is None and not (out / "truth.parquet").exists()
    assert not list(out.rglob("*.tmp"))
    n_before = len(list(out.rglob("*.jpg")))
    assert n_before == 49
    calls.update(n=0, fail_at=None)
    generate_survey(out, progress=False, **SMALL)
    # Only the missing cutouts were rendered again, and the result is the uninterrupted survey.
    assert calls["n"] == len(pd.read_parquet(out / "desi_index.parquet")) - n_before
    assert tree_digest(out) == tree_digest(reference)
    assert read_marker(out)["config_hash"] == read_marker(reference)["config_hash"]


def test_other_parameters_need_overwrite_and_real_data_is_never_touched(tmp_path):
    out = tmp_path / "RAW"
    generate_survey(out, progress=False, **SMALL)
    with pytest.raises(SurveyExistsError, match="overwrite"):
        generate_survey(out, progress=False, **{**SMALL, "seed": 4})
    old_index = set(pd.read_parquet(out / "desi_index.parquet")["jpg_loc"])
    generate_survey(out, progress=False, overwrite=True, **{**SMALL, "seed": 4})
    new_index = set(pd.read_parquet(out / "desi_index.parquet")["jpg_loc"])
    on_disk = {p.relative_to(out).as_posix() for p in (out / "jpg").rglob("*.jpg")}
    assert on_disk == new_index and old_index != new_index  # no stale cutouts left behind
    for name in ["GalaxyZoo1_DR_table2.csv", "jpg/1/1_1.jpg"]:
        real = tmp_path / name.replace("/", "_") / "RAW"
        (real / name).parent.mkdir(parents=True)
        (real / name).write_text("real data")
        with pytest.raises(SurveyExistsError, match="refusing"):
            generate_survey(real, progress=False, **SMALL)
        assert (real / name).read_text() == "real data"


def test_cli_help_and_run(tmp_path):
    script = ROOT / "data_prep" / "make_synthetic.py"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True)
    assert "--swise-bias" in help_text.stdout and "--workers" in help_text.stdout
    run = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "RAW"), "--n-gz1", "12", "--n-survey",
                          "4", "--image-size", "32", "--seed", "1", "--quiet", "--set", "star_rate=0.0"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "GZ1 labels" in run.stdout and (tmp_path / "RAW.done").exists()
    bad = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "X"), "--set", "nonsense=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "nonsense" in bad.stderr


# ------------------------------------------------------------------------------------------------ learnability


@pytest.mark.slow
def test_cw_and_acw_are_learnable_from_small_crops():
    """A tiny CNN on 48 px crops (the demo models' central field and size) separates the vote labels CW / ACW
    well above chance: the chirality signal is in the pixels. The net is made exactly odd under a mirror,
    ``logit(ACW) = h(x) - h(mirror(x))``, so that a few hundred images suffice."""
    import torch
    from torch import nn

    from gcnn_spin.data.images import to_store_image

    torch.manual_seed(0)
    params = SurveyParams(n_gz1=700, n_survey_only=0, seed=21, image_size=96, morphology_mix=(("spiral", 1.0),))
    truth, _ = build_truth(params)
    table = label_table(truth, params)
    labels = label_counts(table)
    order = truth.set_index("objid").loc[table["OBJID"], "galaxy_index"].to_numpy()
    keep = labels != OTHER
    rows, y = order[keep], (labels[keep] == ACW).astype(np.float32)
    images = np.stack([to_store_image(render_cutout(truth.iloc[i], params), 48, margin=False) for i in rows])
    x, target = torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(y)
    n_train = int(0.7 * len(x))
    assert n_train > 250 and 0.4 < y.mean() < 0.6

    h = nn.Sequential(
        nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1),
    )

    def logit_acw(images):
        return (h(images) - h(torch.flip(images, dims=(3,)))).squeeze(1)

    opt = torch.optim.Adam(h.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        perm = torch.randperm(n_train, generator=gen)
        for start in range(0, n_train, 25):
            idx = perm[start:start + 25]
            xb = torch.rot90(x[idx], int(torch.randint(0, 4, (1,), generator=gen)), dims=(2, 3))
            loss = nn.functional.binary_cross_entropy_with_logits(logit_acw(xb), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = ((logit_acw(x[n_train:]) > 0).float() == target[n_train:]).float().mean().item()
    assert accuracy > 0.8, accuracy
