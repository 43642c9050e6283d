"""SDSS stage: request building and sizing (dry run), astroquery against a loopback SkyServer, cache, retries,
neighbour readings, the shipped CasJobs SQL and its upload command, the offline table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loopback import FAMILY, IIS_MAX_QUERY_BYTES, PRIMARY, SECONDARY, SKYSERVER_DR7_PATH, Loopback, SkyServerFake
from test_crossmatch import offset

from gcnn_spin.data.bad_rows import BadRowsError
from gcnn_spin.data.http import RetryableError
from gcnn_spin.data.bad_rows import EmptyInputError
from gcnn_spin.data.sdss import (
    PHOTOMETRY_FILE_COLUMNS, PHOTOMETRY_FILE_OPTIONAL, SDSS_COLUMNS, SdssQueryError, SdssRequest, SkyServer,
    build_requests, casjobs_sql, estimate, objects_per_request, parse_answer, photometry_sql, query_photometry,
    read_photometry_table,
)

BASE_ID = 587722981741363200


@pytest.fixture
def sky():
    """Six GZ1 galaxies and the SDSS detections around them (``mode``: 1 primary, 2 secondary, 3 family).

    0: alone; 1: another primary object 0.5" away; 2: one 2" away (outside 1"); 3: not primary (no photometry);
    4: its own secondary detection 0.1" away (a repeat observation); 5: a family (deblend parent) detection
    0.3" away, and SDSS's -9999 for a missing error.
    """
    gz1 = pd.DataFrame({"objid": BASE_ID + np.arange(6), "ra": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
                        "dec": [0.0, 10.0, -10.0, 20.0, 45.0, -60.0]})
    objects = gz1.assign(mode=[PRIMARY, PRIMARY, PRIMARY, SECONDARY, PRIMARY, PRIMARY],
                         petroR50_r=[2.0, 3.0, 1.5, 2.5, 4.0, 0.8],
                         petroR50Err_r=[0.1, 0.2, 0.1, 0.1, 0.3, -9999.0], petroMag_r=17.0,
                         petroMagErr_r=[0.02, 0.03, 0.04, 0.02, 0.05, 0.1])
    near = [offset(20.0, 10.0, 0.5), offset(30.0, -10.0, 2.0), offset(50.0, 45.0, 0.1), offset(60.0, -60.0, 0.3)]
    extra = pd.DataFrame({"objid": BASE_ID + 100 + np.arange(4), "mode": [PRIMARY, PRIMARY, SECONDARY, FAMILY],
                          "ra": [c[0] for c in near], "dec": [c[1] for c in near]})
    return gz1, pd.concat([objects, extra], ignore_index=True)


def fast_client(server, **kw) -> SkyServer:
    return SkyServer(server.url, backoff_s=kw.pop("backoff_s", 0.01), max_requests_per_s=0, **kw)


def test_requests_are_batched_sorted_and_stable():
    objects = pd.DataFrame({"objid": BASE_ID + np.arange(60)[::-1], "ra": np.linspace(0, 359.9, 60),
                            "dec": np.linspace(-89, 89, 60)})
    requests = build_requests(objects, batch_size=25)
    assert [len(r.objids) for r in requests] == [25, 25, 10]
    assert requests[0].objids[0] == BASE_ID and list(requests[0].objids) == sorted(requests[0].objids)
    sql = requests[0].sql
    assert sql.count("dbo.fGetNearbyObjAllEq(t.ra, t.[dec], 1.0E0/60)") == 1 and sql.count("UNION ALL") == 24
    assert "LEFT OUTER JOIN PhotoPrimary AS p ON p.objID = t.objID" in sql and "INTO" not in sql
    assert "--" not in sql  # astroquery strips '--' comments from queries
    shuffled = build_requests(objects.sample(frac=1, random_state=0), batch_size=25)
    assert [r.key for r in shuffled] == [r.key for r in requests]
    assert len({r.key for r in requests}) == 3
    primary = build_requests(objects, batch_size=25, neighbours="primary")[0].sql
    assert "dbo.fGetNearbyObjEq(" in primary and "AllEq" not in primary
    with pytest.raises(ValueError, match="data.sdss_neighbours='secondary': must be one of all, primary"):
        build_requests(objects, neighbours="secondary")


def test_every_request_fits_the_get_query_string_limit():
    """astroquery sends a GET; IIS refuses query strings over maxQueryString (2,048 bytes by default)."""
    import urllib.parse

    objects = pd.DataFrame({"objid": np.iinfo(np.int64).max - np.arange(500), "ra": 359.9999999,
                            "dec": -89.9999999})  # the longest text an object can take
    fit = objects_per_request(batch_size=10_000)
    assert 20 <= fit < 40 and objects_per_request() == min(25, fit)
    for limit in (IIS_MAX_QUERY_BYTES, 4096):
        requests = build_requests(objects, batch_size=10_000, max_query_bytes=limit)
        sizes = [len(urllib.parse.urlencode({"cmd": " " + r.sql, "format": "csv"})) for r in requests]
        assert max(sizes) <= limit and max(sizes) > limit - 100  # full, but never over
    assert objects_per_request(batch_size=10_000, max_query_bytes=4096) > 2 * fit - 2
    with pytest.raises(ValueError, match="cannot hold even one object"):
        objects_per_request(max_query_bytes=300)


def test_dry_run_estimate_counts_requests_and_least_duration():
    est = estimate(647_837)
    assert est["objects_per_request"] == 25 and est["n_requests"] == 25_914  # ceil(647,837 / 25)
    assert est["seconds"] == pytest.approx(25_914 / 0.5)
    assert estimate(100, requests_per_s=2.0, batch_size=10)["seconds"] == 5.0


def test_dry_run_sends_and_writes_nothing(tmp_path, sky):
    gz1, objects = sky
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(objects))
        requests = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), dry_run=True)
        assert server.requests == []
    assert all(isinstance(r, SdssRequest) for r in requests) and len(requests) == 1
    assert not (tmp_path / "cache").exists()
    payload = SkyServer("http://127.0.0.1:9").payload(requests[0])
    assert payload["url"] == "http://127.0.0.1:9" + SKYSERVER_DR7_PATH
    assert payload["params"]["format"] == "csv" and "fGetNearbyObjAllEq" in payload["params"]["cmd"]


def test_query_through_astroquery_then_cache(tmp_path, sky):
    gz1, objects = sky
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(objects))
        table, failed = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4,
                                         progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 2 and len(failed) == 0
        path, query = server.requests[0]
        assert query["format"] == "csv" and query["cmd"].lstrip().startswith("SELECT t.objID")
        assert query["cmd"].strip() == server_sql(gz1[:4])
        assert len(list((tmp_path / "cache").glob("*.csv"))) == 2
        again, _ = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4,
                                    progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 2  # the rerun sent nothing
    table = table.set_index("objid").loc[gz1["objid"]]
    assert list(table.columns) == list(SDSS_COLUMNS[1:])
    np.testing.assert_array_equal(table["n_neighbours_1arcsec"], [0, 1, 0, 0, 1, 1])  # all detections
    assert table.loc[BASE_ID + 3, list(SDSS_COLUMNS[2:])].isna().all()  # not primary: NULL photometry
    assert table.loc[BASE_ID + 5, "petroR50Err_r"] == -9999.0
    assert table.loc[BASE_ID + 1, "petroR50_r"] == 3.0
    pd.testing.assert_frame_equal(again.set_index("objid").loc[gz1["objid"]], table)


def server_sql(objects: pd.DataFrame) -> str:
    """The SQL of one SkyServer request for ``objects``, written out by hand from the shipped CasJobs text."""
    rows = [f"SELECT {o},{r:.7f},{d:.7f}" for o, r, d in zip(objects["objid"], objects["ra"], objects["dec"])]
    head = rows[0].split(",")
    rows[0] = f"{head[0]} AS objID,{head[1]} AS ra,{head[2]} AS [dec]"
    return photometry_sql("(" + " UNION ALL ".join(rows) + ")")


def test_primary_only_neighbours_are_selectable(tmp_path, sky):
    gz1, objects = sky
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(objects))
        table, _ = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), neighbours="primary",
                                    progress=False)
        wider, _ = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), radius_arcsec=2.5,
                                    progress=False)
    table = table.set_index("objid").loc[gz1["objid"]]
    np.testing.assert_array_equal(table["n_neighbours_1arcsec"], [0, 1, 0, 0, 0, 0])  # repeats and parents ignored
    wider = wider.set_index("objid").loc[gz1["objid"]]
    np.testing.assert_array_equal(wider["n_neighbours_1arcsec"], [0, 1, 1, 0, 1, 1])  # the 2" object now counts


def test_a_request_over_the_query_string_limit_is_refused_not_retried(tmp_path, sky):
    gz1, objects = sky
    with Loopback(max_query_bytes=IIS_MAX_QUERY_BYTES) as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(objects))
        table, _ = query_photometry(gz1, tmp_path / "a", client=fast_client(server), progress=False)
        assert len(table) == 6 and server.hits(SKYSERVER_DR7_PATH) == 1
        many = pd.DataFrame({"objid": BASE_ID + 1000 + np.arange(30), "ra": 12.3456789, "dec": -45.6789012})
        with pytest.raises(SdssQueryError, match="refused .*404"):
            query_photometry(many, tmp_path / "b", client=fast_client(server), max_query_bytes=4096,
                             batch_size=30, progress=False)


def test_server_errors_are_retried_with_backoff(tmp_path, sky):
    gz1, objects = sky
    sleeps = []
    fake = SkyServerFake(objects)
    fake.failures = [500, "error", 503]
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, fake)
        client = SkyServer(server.url, backoff_s=0.5, tries=4, max_requests_per_s=0, sleep=sleeps.append)
        table, _ = query_photometry(gz1, tmp_path / "cache", client=client, progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(table) == 6


def test_persistent_failure_raises_or_is_reported(tmp_path, sky):
    gz1, objects = sky
    fake = SkyServerFake(objects)
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, fake)
        fake.failures = [500] * 3
        with pytest.raises(SdssQueryError, match="after 3 tries") as info:
            query_photometry(gz1, tmp_path / "cache", client=fast_client(server, tries=3), progress=False)
        assert str(BASE_ID) in str(info.value) and "HTTP 500" in str(info.value)
        fake.failures = [500] * 3  # first batch fails for good, second succeeds
        table, failed = query_photometry(gz1, tmp_path / "cache", client=fast_client(server, tries=3),
                                         batch_size=3, on_bad="skip", progress=False)
        assert list(failed["objid"]) == list(gz1["objid"][:3]) and len(table) == 3
        assert len(list((tmp_path / "cache").glob("*.csv"))) == 1  # the failed batch is not cached
        before = server.hits(SKYSERVER_DR7_PATH)
        table, failed = query_photometry(gz1, tmp_path / "cache", client=fast_client(server, tries=3),
                                         batch_size=3, on_bad="skip", progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == before + 1 and len(failed) == 0 and len(table) == 6


def test_client_errors_are_not_retried(tmp_path, sky):
    gz1, objects = sky
    fake = SkyServerFake(objects)
    fake.failures = [400]
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, fake)
        with pytest.raises(SdssQueryError, match="refused"):
            query_photometry(gz1, tmp_path / "cache", client=fast_client(server), progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 1


def test_parse_rejects_answers_that_do_not_cover_the_batch():
    request = SdssRequest("SELECT 1", (BASE_ID, BASE_ID + 1))
    answer = pd.DataFrame({"objID": [BASE_ID], "n_neighbours_1arcsec": [0], "petroR50_r": [1.0],
                           "petroR50Err_r": [0.1], "petroMag_r": [17.0], "petroMagErr_r": [0.1]})
    with pytest.raises(RetryableError, match="1 objID"):
        parse_answer(answer, request)
    with pytest.raises(RetryableError, match="lacks column"):
        parse_answer(answer.drop(columns="n_neighbours_1arcsec"), request)


def _photometry_csv(path, rows):
    pd.DataFrame(rows, columns=["objID", "petroR50_r", "petroR50Err_r", "petroMagErr_r",
                                "n_neighbours_1arcsec"]).to_csv(path, index=False)


def test_offline_table(tmp_path):
    _photometry_csv(tmp_path / "p.csv", [[BASE_ID, 2.0, 0.1, 0.02, 0], [BASE_ID + 1, "", "", "", 1]])
    out = read_photometry_table(tmp_path / "p.csv")
    assert list(out.columns) == list(SDSS_COLUMNS) and out["objid"].tolist() == [BASE_ID, BASE_ID + 1]
    assert out.loc[1, ["petroR50_r", "petroMag_r"]].isna().all() and out.loc[1, "n_neighbours_1arcsec"] == 1


def test_offline_table_bad_rows(tmp_path):
    _photometry_csv(tmp_path / "p.csv", [[BASE_ID, 2.0, 0.1, 0.02, 0], [BASE_ID, 2.0, 0.1, 0.02, 0],
                                         [BASE_ID + 2, "big", 0.1, 0.02, 0], ["1.2e18", 2.0, 0.1, 0.02, 0],
                                         [BASE_ID + 4, 2.0, 0.1, 0.02, 0]])
    with pytest.raises(BadRowsError) as info:
        read_photometry_table(tmp_path / "p.csv")
    for piece in (f"duplicate objID: 2 row(s), objID {BASE_ID}", f"petroR50_r is not a number: 1 row(s), "
                  f"objID {BASE_ID + 2}", "unparsable objID: 1 row(s), objID 1.2e18"):
        assert piece in str(info.value)
    out = read_photometry_table(tmp_path / "p.csv", on_bad="skip", report_path=tmp_path / "skipped.csv")
    assert out["objid"].tolist() == [BASE_ID + 4]
    assert sorted(pd.read_csv(tmp_path / "skipped.csv")["line"]) == [2, 3, 4, 5]
    _photometry_csv(tmp_path / "q.csv", [])
    pd.read_csv(tmp_path / "q.csv").drop(columns="petroMagErr_r").to_csv(tmp_path / "q.csv", index=False)
    with pytest.raises(BadRowsError, match=r"missing column\(s\) \['petroMagErr_r'\]"):
        read_photometry_table(tmp_path / "q.csv")


def _select_list(sql: str) -> list[str]:
    """The output names of the outermost SELECT (alias after AS, else the column after the last dot)."""
    text = " ".join(line.split("--")[0] for line in sql.splitlines())
    body = text[text.upper().index("SELECT") + len("SELECT"):]
    depth, items, current = 0, [], ""
    for i, char in enumerate(body):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if depth == 0 and body[i:i + 6].upper() in (" INTO ", " FROM "):
            break
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    names = []
    for item in items:
        words = item.split()
        names.append(words[-1] if len(words) > 2 and words[-2].upper() == "AS" else words[-1].split(".")[-1])
    return names


def test_shipped_casjobs_sql_selects_exactly_the_photometry_table_columns(tmp_path):
    sql = casjobs_sql()
    names = _select_list(sql)
    assert sorted(names) == sorted(PHOTOMETRY_FILE_COLUMNS + PHOTOMETRY_FILE_OPTIONAL)
    assert "FROM MyDB.gz1_objects AS t" in sql and "INTO MyDB.gz1_sdss_dr7" in sql
    assert "dbo.fGetNearbyObjAllEq(" in sql  # the default: every detection
    # A CasJobs answer (those columns, in that order, NULL as empty cells) reads as the pipeline's table.
    answer = pd.DataFrame([[BASE_ID, 2.0, 0.1, 17.1, 0.02, 0], [BASE_ID + 1, "", "", "", "", 2]], columns=names)
    answer.to_csv(tmp_path / "gz1_sdss_dr7.csv", index=False)
    out = read_photometry_table(tmp_path / "gz1_sdss_dr7.csv")
    assert out["petroMag_r"].tolist()[0] == 17.1 and out["n_neighbours_1arcsec"].tolist() == [0, 2]
    # The SkyServer requests run the same text: only the source table and the INTO clause differ.
    assert photometry_sql("MyDB.gz1_objects", into=True) == " ".join(
        " ".join(line.split("--")[0].split()) for line in sql.splitlines() if line.split("--")[0].strip()
    ).replace("( ", "(").replace(" )", ")")


def test_empty_photometry_table_is_one_clear_error(tmp_path):
    (tmp_path / "p.csv").write_text("")
    with pytest.raises(EmptyInputError, match="empty file"):
        read_photometry_table(tmp_path / "p.csv")
    _photometry_csv(tmp_path / "q.csv", [])
    with pytest.raises(EmptyInputError, match="no SDSS photometry rows") as info:
        read_photometry_table(tmp_path / "q.csv")
    assert str(tmp_path / "q.csv") in str(info.value)


def test_casjobs_command_writes_the_upload_and_the_query(tmp_path):
    """Step 1 of the CasJobs route on real GZ1 rows: objID (exact), ra, dec in degrees, and the shipped SQL."""
    import importlib.util
    from pathlib import Path

    from gcnn_spin.data.gz1 import read_gz1

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("sdss_casjobs", root / "data_prep" / "sdss_casjobs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gz1_csv = root / "tests" / "fixtures" / "real_sample" / "GalaxyZoo1_DR_table2.csv"
    assert module.main(["--gz1", str(gz1_csv), "--out", str(tmp_path)]) == 0
    upload = pd.read_csv(tmp_path / "gz1_objects.csv", dtype={"objID": np.int64})
    expected = read_gz1(gz1_csv)
    assert list(upload.columns) == ["objID", "ra", "dec"]
    assert upload["objID"].tolist() == expected["objid"].tolist()
    np.testing.assert_allclose(upload[["ra", "dec"]], expected[["ra", "dec"]], rtol=0, atol=1e-7)
    assert (tmp_path / "sdss_dr7_photometry.sql").read_text() == casjobs_sql()
    (tmp_path / "empty.csv").write_text("")
    assert module.main(["--gz1", str(tmp_path / "empty.csv"), "--out", str(tmp_path / "x")]) == 2


def test_a_corrupt_cache_entry_says_which_file_to_delete(tmp_path, sky):
    from gcnn_spin.errors import InputError

    gz1, objects = sky
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(objects))
        query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4, progress=False)
        entry = sorted((tmp_path / "cache").glob("*.csv"))[1]
        entry.write_bytes(entry.read_bytes()[:40] + b"\n\x00\x01garbage\"unterminated")  # a disk-full write
        with pytest.raises(InputError, match=rf"^{entry}: cannot read this SDSS cache entry .*; delete {entry} and "
                                             r"rerun \(its query is sent again\)$"):
            query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4, progress=False)
        entry.unlink()
        table, _ = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4,
                                    progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 3 and len(table) == 6  # only the deleted entry was asked again
