"""GZ1 table 2 reader: sexagesimal parsing, labels, and every kind of bad row (raise naming ids, or skip+report)."""

from __future__ import annotations

import time
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord

from gcnn_spin.conventions import ACW, CW, OTHER
from gcnn_spin.data.bad_rows import BadRowsError, EmptyInputError
from gcnn_spin.data.gz1 import (
    OUTPUT_COLUMNS, parse_sexagesimal, read_gz1,
)
from gcnn_spin.data.synthetic.catalogue import format_dec, format_ra  # the GZ1 layout the synthetic survey writes

VOTES = ("P_EL", "P_CW", "P_ACW", "P_EDGE", "P_DK", "P_MG")
FIRST_OBJID = 587727178986356823  # > 2**53: must survive without float rounding


def gz1_frame(n: int, rng: np.random.Generator, ra=None, dec=None) -> pd.DataFrame:
    """``n`` rows in the published table-2 layout (all 16 columns), vote fractions to 3 decimals summing to 1."""
    ra = rng.uniform(0, 360, n) if ra is None else np.asarray(ra)
    dec = np.degrees(np.arcsin(rng.uniform(-0.5, 0.9, n))) if dec is None else np.asarray(dec)
    kind = rng.integers(0, 3, n)  # a mix of clear CW, clear ACW and Other galaxies
    votes = rng.dirichlet(np.full(6, 0.6), n)
    votes[kind == 0, 1] += 2.0
    votes[kind == 1, 2] += 2.0
    votes = np.round(votes / votes.sum(1, keepdims=True), 3)
    votes[:, 0] = 1 - votes[:, 1:].sum(1)
    votes = np.abs(np.round(votes, 3))
    df = pd.DataFrame({"OBJID": FIRST_OBJID + np.arange(n, dtype=np.int64) * 7,
                       "RA": format_ra(ra), "DEC": format_dec(dec),
                       "NVOTE": rng.integers(10, 80, n)})
    for i, c in enumerate(VOTES):
        df[c] = votes[:, i]
    df["P_CS"] = votes[:, 1] + votes[:, 2] + votes[:, 3]
    df["P_EL_DEBIASED"], df["P_CS_DEBIASED"] = votes[:, 0], df["P_CS"]
    df["SPIRAL"], df["ELLIPTICAL"], df["UNCERTAIN"] = 0, 0, 1
    return df


def write_gz1(df: pd.DataFrame, path) -> None:
    df.to_csv(path, index=False)


def test_reads_published_layout(tmp_path, rng):
    df = gz1_frame(40, rng)
    df.loc[0, ["RA", "DEC"]] = ["00:02:05.65", "-11:12:38.1"]
    write_gz1(df, tmp_path / "gz1.csv")
    out = read_gz1(tmp_path / "gz1.csv")
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 40
    assert out["objid"].dtype == np.int64 and out["objid"].iloc[0] == FIRST_OBJID
    assert out.loc[0, "ra"] == pytest.approx((2 / 60 + 5.65 / 3600) * 15, abs=1e-12)
    assert out.loc[0, "dec"] == pytest.approx(-(11 + 12 / 60 + 38.1 / 3600), abs=1e-12)
    ref = SkyCoord(df["RA"].tolist(), df["DEC"].tolist(), unit=(u.hourangle, u.deg))
    np.testing.assert_allclose(out["ra"], ref.ra.deg, atol=1e-9)
    np.testing.assert_allclose(out["dec"], ref.dec.deg, atol=1e-9)
    np.testing.assert_allclose(out["p_other"], df[["P_EL", "P_EDGE", "P_DK", "P_MG"]].sum(1), atol=1e-12)
    expected = np.where(df["P_CW"] > 0.5, CW, np.where(df["P_ACW"] > 0.5, ACW, OTHER))
    np.testing.assert_array_equal(out["label"], expected)
    assert set(out["label"]) == {CW, ACW, OTHER}


def test_sexagesimal_round_trip_and_other_spellings():
    ra = np.array([0.0, 0.52354, 187.5, 359.99999])
    dec = np.array([-89.9, -0.5, 0.0, 45.123])
    ra_back, ok_ra = parse_sexagesimal(pd.Series(format_ra(ra)), hours=True)
    dec_back, ok_dec = parse_sexagesimal(pd.Series(format_dec(dec)), hours=False)
    assert ok_ra.all() and ok_dec.all()
    np.testing.assert_allclose((ra_back - ra + 180) % 360 - 180, 0, atol=0.01 / 3600 * 15)
    np.testing.assert_allclose(dec_back, dec, atol=0.05 / 3600)
    assert format_dec([-0.5])[0] == "-00:30:00.0"  # the sign survives a zero degree field
    values, ok = parse_sexagesimal(pd.Series(["12h30m00s", "12 30 00", "23:59:60.00"]), hours=True)
    np.testing.assert_allclose(values, [187.5, 187.5, 0.0])
    assert ok.all()


@pytest.mark.parametrize("column", ["OBJID", "DEC", "P_MG"])
def test_missing_column_is_named(tmp_path, rng, column):
    write_gz1(gz1_frame(5, rng).drop(columns=column), tmp_path / "gz1.csv")
    with pytest.raises(BadRowsError, match=rf"missing column\(s\) \['{column}'\]"):
        read_gz1(tmp_path / "gz1.csv")


def _bad_table(rng):
    df = gz1_frame(30, rng)
    df["OBJID"] = df["OBJID"].astype(str)
    df.loc[3, "OBJID"] = df.loc[4, "OBJID"]  # duplicate pair
    df.loc[6, "RA"] = ""  # NaN coordinate
    df.loc[7, "DEC"] = "+91:00:00.0"  # out of range
    df.loc[8, "RA"] = "25:00:00.00"  # out of range
    df.loc[9, "DEC"] = "north"  # unparsable
    df.loc[10, "P_CW"] = df.loc[10, "P_CW"] + 0.2  # fractions sum to 1.2
    df.loc[11, "P_ACW"] = np.nan
    df.loc[12, "OBJID"] = "12x4"
    return df


def test_bad_rows_raise_naming_ids(tmp_path, rng):
    df = _bad_table(rng)
    write_gz1(df, tmp_path / "gz1.csv")
    with pytest.raises(BadRowsError) as info:
        read_gz1(tmp_path / "gz1.csv")
    text = str(info.value)
    for row, reason in [(3, "duplicate OBJID"), (6, "RA missing"), (7, "DEC missing, unparsable or outside"),
                        (8, "RA missing"), (9, "DEC"), (10, "do not sum to 1"), (11, "P_ACW missing"),
                        (12, "unparsable OBJID")]:
        assert reason in text and str(df.loc[row, "OBJID"]) in text
    assert "9 bad row(s) of 30" in text  # the duplicate pair 3+4, then rows 6..12
    assert set(info.value.ids) == set(df.loc[[3, 4, 6, 7, 8, 9, 10, 11, 12], "OBJID"].astype(str))


def test_bad_rows_skipped_with_report(tmp_path, rng):
    df = _bad_table(rng)
    write_gz1(df, tmp_path / "gz1.csv")
    out = read_gz1(tmp_path / "gz1.csv", on_bad="skip", report_path=tmp_path / "skipped.csv")
    report = pd.read_csv(tmp_path / "skipped.csv", dtype={"OBJID": str})
    bad_rows = [3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert len(out) == 30 - len(bad_rows)
    assert sorted(report["line"]) == [r + 2 for r in bad_rows]  # CSV line numbers (header = line 1)
    assert report.set_index("line").loc[12, "reason"].startswith("vote fractions")
    good = df.drop(index=bad_rows)["OBJID"].astype(np.int64)
    np.testing.assert_array_equal(out["objid"], good)
    assert np.isfinite(out[["ra", "dec"]].to_numpy()).all()


def test_clean_skip_still_writes_empty_report(tmp_path, rng):
    write_gz1(gz1_frame(5, rng), tmp_path / "gz1.csv")
    read_gz1(tmp_path / "gz1.csv", on_bad="skip", report_path=tmp_path / "skipped.csv")
    assert len(pd.read_csv(tmp_path / "skipped.csv")) == 0


def test_message_shows_first_ten_ids_and_count(tmp_path, rng):
    df = gz1_frame(25, rng)
    df.loc[:14, "P_EL"] = 0.9  # 15 rows whose fractions exceed 1
    write_gz1(df, tmp_path / "gz1.csv")
    with pytest.raises(BadRowsError, match=r"15 row\(s\)") as info:
        read_gz1(tmp_path / "gz1.csv")
    assert str(df.loc[9, "OBJID"]) in str(info.value) and str(df.loc[10, "OBJID"]) not in str(info.value)


def test_rejects_unknown_on_bad(tmp_path, rng):
    write_gz1(gz1_frame(3, rng), tmp_path / "gz1.csv")
    with pytest.raises(ValueError, match="on_bad"):
        read_gz1(tmp_path / "gz1.csv", on_bad="ignore")


@pytest.mark.slow
def test_full_size_table_reads_in_seconds(tmp_path, rng):
    n = 667_944
    write_gz1(gz1_frame(n, rng), tmp_path / "gz1.csv")
    t0 = time.perf_counter()
    out = read_gz1(tmp_path / "gz1.csv")
    seconds = time.perf_counter() - t0
    assert len(out) == n
    assert seconds < 15, f"reading {n} GZ1 rows took {seconds:.1f} s"


# ----------------------------------------------------------------------------- the published table, real rows

REAL_GZ1 = Path(__file__).parent / "fixtures" / "real_sample" / "GalaxyZoo1_DR_table2.csv"
PUBLISHED_COLUMNS = ("OBJID", "RA", "DEC", "NVOTE", "P_EL", "P_CW", "P_ACW", "P_EDGE", "P_DK", "P_MG", "P_CS",
                     "P_EL_DEBIASED", "P_CS_DEBIASED", "SPIRAL", "ELLIPTICAL", "UNCERTAIN")


def test_published_table2_is_read_as_is():
    """Real GZ1 rows, every published column in the published order: each value checked against the file text."""
    lines = REAL_GZ1.read_text().splitlines()
    assert tuple(lines[0].split(",")) == PUBLISHED_COLUMNS
    rows = [dict(zip(PUBLISHED_COLUMNS, line.split(","))) for line in lines[1:]]
    out = read_gz1(REAL_GZ1)
    assert len(out) == len(rows) == 36
    sky = SkyCoord([r["RA"] for r in rows], [r["DEC"] for r in rows], unit=(u.hourangle, u.deg))
    assert out["objid"].tolist() == [int(r["OBJID"]) for r in rows]  # exact: 18-digit ids above 2**53
    np.testing.assert_allclose(out["ra"], sky.ra.deg, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["dec"], sky.dec.deg, rtol=0, atol=1e-9)
    assert out["n_vote"].tolist() == [int(r["NVOTE"]) for r in rows]
    votes = {c: np.array([float(r[c]) for r in rows]) for c in PUBLISHED_COLUMNS[4:10]}
    np.testing.assert_array_equal(out["p_cw"], votes["P_CW"])
    np.testing.assert_array_equal(out["p_acw"], votes["P_ACW"])
    np.testing.assert_allclose(out["p_other"], votes["P_EL"] + votes["P_EDGE"] + votes["P_DK"] + votes["P_MG"],
                               rtol=0, atol=1e-12)
    expected = np.where(votes["P_CW"] > 0.5, CW, np.where(votes["P_ACW"] > 0.5, ACW, OTHER))
    assert out["label"].tolist() == expected.tolist()
    assert sorted(np.bincount(out["label"], minlength=3).tolist()) == [12, 12, 12]


# ----------------------------------------------------------------------------- empty inputs


def test_empty_file_is_one_clear_error(tmp_path):
    path = tmp_path / "GalaxyZoo1_DR_table2.csv"
    path.write_text("")
    with pytest.raises(EmptyInputError, match="empty file") as info:
        read_gz1(path)
    assert str(path) in str(info.value)


def test_header_only_file_is_one_clear_error(tmp_path):
    path = tmp_path / "GalaxyZoo1_DR_table2.csv"
    path.write_text(",".join(PUBLISHED_COLUMNS) + "\n")
    with pytest.raises(EmptyInputError, match="no GZ1 rows") as info:
        read_gz1(path)
    assert str(path) in str(info.value)


def test_every_row_skipped_is_an_error_not_an_empty_dataset(tmp_path, rng):
    df = gz1_frame(3, rng)
    df["P_EL"] = 0.9
    write_gz1(df, tmp_path / "gz1.csv")
    with pytest.raises(EmptyInputError, match="all 3 skipped"):
        read_gz1(tmp_path / "gz1.csv", on_bad="skip", report_path=tmp_path / "skipped.csv")
    assert len(pd.read_csv(tmp_path / "skipped.csv")) == 3  # the report still says why
