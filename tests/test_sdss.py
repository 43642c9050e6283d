"""SDSS stage: request building (dry run), astroquery against a loopback SkyServer, cache, retries, offline table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loopback import SKYSERVER_DR7_PATH, Loopback, SkyServerFake
from test_crossmatch import offset

from gcnn_spin.data.cutouts import RetryableError
from gcnn_spin.data.gz1 import BadRowsError
from gcnn_spin.data.sdss import (
    SDSS_COLUMNS, SdssQueryError, SdssRequest, SkyServer, build_requests, parse_answer, query_photometry,
    read_photometry_table,
)

BASE_ID = 587722981741363200


@pytest.fixture
def sky():
    """Six GZ1 galaxies and the SDSS objects around them.

    0: alone; 1: a second object 0.5" away; 2: one 2" away (outside 1"); 3: not primary (no photometry);
    4, 5: alone, with SDSS's -9999 for a missing error on 5.
    """
    gz1 = pd.DataFrame({"objid": BASE_ID + np.arange(6), "ra": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
                        "dec": [0.0, 10.0, -10.0, 20.0, 45.0, -60.0]})
    objects = gz1.assign(primary=[True, True, True, False, True, True], petroR50_r=[2.0, 3.0, 1.5, 2.5, 4.0, 0.8],
                         petroR50Err_r=[0.1, 0.2, 0.1, 0.1, 0.3, -9999.0], petroMag_r=17.0,
                         petroMagErr_r=[0.02, 0.03, 0.04, 0.02, 0.05, 0.1])
    extra = pd.DataFrame({"objid": [BASE_ID + 100, BASE_ID + 101], "primary": [True, True],
                          "ra": [offset(20.0, 10.0, 0.5)[0], offset(30.0, -10.0, 2.0)[0]],
                          "dec": [offset(20.0, 10.0, 0.5)[1], offset(30.0, -10.0, 2.0)[1]]})
    return gz1, pd.concat([objects, extra], ignore_index=True)


def fast_client(server, **kw) -> SkyServer:
    return SkyServer(server.url, backoff_s=kw.pop("backoff_s", 0.01), max_requests_per_s=0, **kw)


def test_requests_are_batched_sorted_and_stable():
    objects = pd.DataFrame({"objid": BASE_ID + np.arange(450)[::-1], "ra": np.linspace(0, 50, 450),
                            "dec": np.linspace(-5, 5, 450)})
    requests = build_requests(objects, batch_size=200)
    assert [len(r.objids) for r in requests] == [200, 200, 50]
    assert requests[0].objids[0] == BASE_ID and list(requests[0].objids) == sorted(requests[0].objids)
    sql = requests[0].sql
    assert sql.count("dbo.fGetNearbyObjEq(") == 200 and sql.count("UNION ALL") == 199
    assert "0.01666666667)" in sql  # 1 arcsec in arcmin
    assert "LEFT OUTER JOIN PhotoPrimary AS p ON p.objID = t.objID" in sql
    assert "--" not in sql  # astroquery strips '--' comments from queries
    shuffled = build_requests(objects.sample(frac=1, random_state=0), batch_size=200)
    assert [r.key for r in shuffled] == [r.key for r in requests]
    assert len({r.key for r in requests}) == 3


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
    assert payload["params"]["format"] == "csv" and "fGetNearbyObjEq" in payload["params"]["cmd"]


def test_query_through_astroquery_then_cache(tmp_path, sky):
    gz1, objects = sky
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(objects))
        table, failed = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4,
                                         progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 2 and len(failed) == 0
        path, query = server.requests[0]
        assert query["format"] == "csv" and query["cmd"].lstrip().startswith("SELECT t.objID")
        assert len(list((tmp_path / "cache").glob("*.csv"))) == 2
        again, _ = query_photometry(gz1, tmp_path / "cache", client=fast_client(server), batch_size=4,
                                    progress=False)
        assert server.hits(SKYSERVER_DR7_PATH) == 2  # the rerun sent nothing
    table = table.set_index("objid").loc[gz1["objid"]]
    assert list(table.columns) == list(SDSS_COLUMNS[1:])
    np.testing.assert_array_equal(table["n_neighbours_1arcsec"], [0, 1, 0, 0, 0, 0])
    assert table.loc[BASE_ID + 3, list(SDSS_COLUMNS[2:])].isna().all()  # not primary: NULL photometry
    assert table.loc[BASE_ID + 5, "petroR50Err_r"] == -9999.0
    assert table.loc[BASE_ID + 1, "petroR50_r"] == 3.0
    pd.testing.assert_frame_equal(again.set_index("objid").loc[gz1["objid"]], table)


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
    answer = pd.DataFrame({"objID": [BASE_ID], "n_neighbours": [0], "petroR50_r": [1.0], "petroR50Err_r": [0.1],
                           "petroMag_r": [17.0], "petroMagErr_r": [0.1]})
    with pytest.raises(RetryableError, match="1 objID"):
        parse_answer(answer, request)
    with pytest.raises(RetryableError, match="lacks column"):
        parse_answer(answer.drop(columns="n_neighbours"), request)


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
