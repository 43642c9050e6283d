"""DESI index reading/validation, the GZ1 -> DESI sky match, and the survey set."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord

from gcnn_spin.data.crossmatch import duplicated, match_to_desi, read_desi_index, survey_rows
from gcnn_spin.data.bad_rows import BadRowsError, EmptyInputError


def offset(ra, dec, arcsec, angle_deg=30.0):
    """A position ``arcsec`` away from (ra, dec) in direction ``angle_deg`` (exact, on the sphere)."""
    moved = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(angle_deg * u.deg, arcsec * u.arcsec)
    return moved.ra.deg, moved.dec.deg


def index_frame(ra, dec, first_brick: int = 330000) -> pd.DataFrame:
    """A DESI file index in the Galaxy Zoo DESI layout (one brick per 4 galaxies)."""
    n = len(ra)
    brick = first_brick + np.arange(n) // 4
    obj = np.arange(n) % 4 + 10
    dr8 = [f"{b}_{o}" for b, o in zip(brick, obj)]
    return pd.DataFrame({"ra": np.asarray(ra, float), "dec": np.asarray(dec, float), "dr8_id": dr8,
                         "brickid": brick, "objid": obj, "jpg_loc": [f"jpg/{b}/{d}.jpg" for b, d in zip(brick, dr8)]})


def test_match_keeps_nearest_within_radius():
    gz1 = pd.DataFrame({"ra": [10.0, 20.0, 30.0, 30.0, 359.9999], "dec": [0.0, -45.0, 60.0, 60.0, 89.0]})
    gz1.loc[3, ["ra", "dec"]] = offset(30.0, 60.0, 3.0)  # a second GZ1 galaxy near the same DESI galaxy
    positions = [offset(10.0, 0.0, 2.0), offset(20.0, -45.0, 12.0), offset(30.0, 60.0, 1.0),
                 offset(359.9999, 89.0, 9.5, angle_deg=90), (200.0, 10.0)]
    index = index_frame([p[0] for p in positions], [p[1] for p in positions])
    match = match_to_desi(gz1, index, 10.0)
    assert list(match["dr8_id"]) == [index.dr8_id[0], "", index.dr8_id[2], "", index.dr8_id[3]]
    assert list(match["match_reason"]) == ["", "no_desi_match", "", "desi_match_taken", ""]
    expected = SkyCoord(gz1.ra.to_numpy() * u.deg, gz1.dec.to_numpy() * u.deg).separation(
        SkyCoord(index.ra.to_numpy()[[0, 1, 2, 2, 3]] * u.deg, index.dec.to_numpy()[[0, 1, 2, 2, 3]] * u.deg))
    np.testing.assert_allclose(match["match_sep_arcsec"], expected.arcsec, atol=1e-6)
    np.testing.assert_allclose(match.loc[[0, 2, 4], "desi_ra"], index.ra[[0, 2, 3]])
    assert match.loc[[1, 3], "desi_ra"].isna().all()


def test_shared_match_can_be_kept_for_all():
    gz1 = pd.DataFrame({"ra": [30.0, offset(30.0, 60.0, 3.0)[0]], "dec": [60.0, offset(30.0, 60.0, 3.0)[1]]})
    index = index_frame([30.0], [60.0])
    assert list(match_to_desi(gz1, index, 10.0, unique=False)["dr8_id"]) == [index.dr8_id[0]] * 2


def test_read_index(tmp_path):
    index_frame([1.0, 2.0, 3.0], [0.0, 1.0, -1.0]).to_parquet(tmp_path / "index.parquet")
    out = read_desi_index(tmp_path / "index.parquet")
    assert list(out["dr8_id"]) == ["330000_10", "330000_11", "330000_12"]
    np.testing.assert_allclose(out["ra"], [1.0, 2.0, 3.0])


def test_index_missing_column_is_named(tmp_path):
    index_frame([1.0], [0.0]).drop(columns="dec").to_parquet(tmp_path / "index.parquet")
    with pytest.raises(BadRowsError, match=r"missing column\(s\) \['dec'\]"):
        read_desi_index(tmp_path / "index.parquet")


def published_catalogue(n: int = 5) -> pd.DataFrame:
    """Rows in the layout of the published Galaxy Zoo DESI catalogue (gz_desi_deep_learning_catalog_friendly):
    identifiers and position among many morphology columns, no ``jpg_loc``."""
    index = index_frame(np.linspace(150, 151, n), np.linspace(2, 3, n)).drop(columns="jpg_loc")
    return index.assign(**{"smooth-or-featured_smooth_fraction": 0.3, "has-spiral-arms_yes_fraction": 0.7,
                           "__index_level_0__": np.arange(n)})[
        ["dr8_id", "ra", "dec", "smooth-or-featured_smooth_fraction", "brickid", "objid",
         "has-spiral-arms_yes_fraction", "__index_level_0__"]]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_published_catalogue_reads_as_published(tmp_path, suffix):
    """Extra columns ignored, any column order, parquet or CSV; brickid and objid not needed."""
    published = published_catalogue()
    for name, frame in (("full", published), ("ids_only", published.drop(columns=["brickid", "objid"]))):
        path = tmp_path / f"{name}{suffix}"
        frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
        out = read_desi_index(path)
        assert list(out.columns) == ["dr8_id", "ra", "dec", "brickid"]
        assert out["dr8_id"].tolist() == published["dr8_id"].tolist()
        assert out["brickid"].tolist() == published["brickid"].tolist()  # from the file, or from dr8_id
        np.testing.assert_allclose(out[["ra", "dec"]], published[["ra", "dec"]])


def test_index_dr8_id_must_name_its_brick(tmp_path):
    frame = published_catalogue(3).drop(columns="brickid")
    frame.loc[1, "dr8_id"] = "J101.5+02.3"
    frame.to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(BadRowsError, match=r"dr8_id not of the form \{brickid\}_\{objid\}: 1 row\(s\), dr8_id J101"):
        read_desi_index(tmp_path / "index.csv")


def test_empty_index_is_one_clear_error(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EmptyInputError, match="empty file"):
        read_desi_index(tmp_path / "empty.csv")
    published_catalogue().iloc[:0].to_parquet(tmp_path / "header.parquet")
    with pytest.raises(EmptyInputError, match="no DESI catalogue rows") as info:
        read_desi_index(tmp_path / "header.parquet")
    assert str(tmp_path / "header.parquet") in str(info.value)


def test_index_bad_rows_raise_or_skip(tmp_path):
    index = index_frame(np.linspace(1, 8, 8), np.zeros(8))
    index.loc[2, "dr8_id"] = index.loc[1, "dr8_id"]
    index.loc[4, "ra"] = np.nan
    index.loc[5, "dec"] = 95.0
    index.loc[6, "dr8_id"] = None
    index.to_parquet(tmp_path / "index.parquet")
    with pytest.raises(BadRowsError) as info:
        read_desi_index(tmp_path / "index.parquet")
    text = str(info.value)
    for piece in ("duplicate dr8_id: 2 row(s), dr8_id 330000_11, 330000_11", "ra missing", "330001_10",
                  "dec missing or outside", "330001_11", "dr8_id missing: 1 row(s), dr8_id <empty>"):
        assert piece in text
    out = read_desi_index(tmp_path / "index.parquet", on_bad="skip", report_path=tmp_path / "skipped.csv")
    report = pd.read_csv(tmp_path / "skipped.csv")
    assert sorted(report["row"]) == [1, 2, 4, 5, 6]
    assert list(out["dr8_id"]) == ["330000_10", "330000_13", "330001_13"]


def test_duplicated_flags_every_copy():
    import pyarrow as pa

    np.testing.assert_array_equal(duplicated(pa.array(["a", "b", "a", "c", "a"])), [1, 0, 1, 0, 1])
    assert not duplicated(pa.array(["a", "b"])).any()


def test_survey_is_index_minus_used():
    index = index_frame(np.arange(10.0), np.zeros(10))
    used = index["dr8_id"][[1, 4, 9]]
    survey = survey_rows(index, used)
    assert list(survey["dr8_id"]) == list(index["dr8_id"].drop([1, 4, 9]))
    assert survey[["p_cw", "p_acw", "p_other", "label"]].isna().all().all()
    assert len(survey_rows(index, [])) == 10


@pytest.mark.slow
def test_full_size_match_is_practical(tmp_path):
    """668k GZ1 galaxies against a 2 M-row index (the real one has 8.7 M: about 4x the tree, same method)."""
    import time

    rng = np.random.default_rng(0)
    n_gz1, n_index = 667_944, 2_000_000
    ra, dec = rng.uniform(0, 360, n_index), np.degrees(np.arcsin(rng.uniform(-1, 1, n_index)))
    jitter = rng.normal(0, 1 / 3600, (2, n_gz1))
    gz1 = pd.DataFrame({"ra": (ra[:n_gz1] + jitter[0]) % 360, "dec": np.clip(dec[:n_gz1] + jitter[1], -90, 90)})
    index = pd.DataFrame({"ra": ra, "dec": dec, "dr8_id": np.char.add("7_", np.arange(n_index).astype(str)),
                          "brickid": 7, "objid": np.arange(n_index), "jpg_loc": ""})
    index.to_parquet(tmp_path / "index.parquet")
    t0 = time.perf_counter()
    match = match_to_desi(gz1, read_desi_index(tmp_path / "index.parquet"), 10.0)
    seconds = time.perf_counter() - t0
    assert (match["dr8_id"] != "").mean() > 0.99
    assert seconds < 90, f"reading a 2 M index and matching 668k galaxies took {seconds:.0f} s"
