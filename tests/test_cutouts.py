"""Legacy Surveys cutout fetcher against a loopback server: URL, cache, retries, bad answers, prefetch, throttle."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from loopback import CUTOUT_PATH, CutoutFake, Loopback

from gcnn_spin.data.cutouts import (
    CutoutCache, LegacyCutoutService, cache_path, prefetch,
)
from gcnn_spin.data.http import RateLimiter
from gcnn_spin.data.images import BadImageError, JpegTree, decode_jpeg

POSITIONS = pd.DataFrame({"dr8_id": [f"3310{b}_{k}" for b in range(3) for k in range(4)],
                          "ra": np.round(np.linspace(150.0, 151.1, 12), 4),
                          "dec": np.round(np.linspace(2.0, 2.55, 12), 4)})


def key(i: int) -> tuple[float, float]:
    return (round(POSITIONS.ra[i], 4), round(POSITIONS.dec[i], 4))


@pytest.fixture
def served():
    fake = CutoutFake()
    with Loopback() as server:
        server.route(CUTOUT_PATH, fake)
        yield server, fake


def service(server, tmp_path, **kw) -> LegacyCutoutService:
    kw.setdefault("max_requests_per_s", 0)
    kw.setdefault("backoff_s", 0.0)
    return LegacyCutoutService(POSITIONS, tmp_path / "cache", base_url=server.url + CUTOUT_PATH, **kw)


def leftovers(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_fetch_caches_and_reuses(served, tmp_path):
    server, _ = served
    svc = service(server, tmp_path)
    image = svc.load("33100_2")
    assert image.shape == (424, 424, 3) and image.dtype == np.uint8
    path, query = server.requests[0]
    assert path == CUTOUT_PATH
    assert query == {"ra": f"{POSITIONS.ra[2]:.6f}", "dec": f"{POSITIONS.dec[2]:.6f}", "layer": "ls-dr8",
                     "pixscale": "0.262", "size": "424"}
    cached = tmp_path / "cache" / "33100" / "33100_2.jpg"
    assert cached == cache_path(tmp_path / "cache", "33100_2") and cached.exists()
    np.testing.assert_array_equal(svc.load("33100_2"), image)
    fresh = service(server, tmp_path)  # a new run: everything comes from the cache
    np.testing.assert_array_equal(fresh.load("33100_2"), image)
    assert len(server.requests) == 1 and fresh.n_requests == 0


def test_server_error_is_retried(served, tmp_path):
    server, fake = served
    fake.script[key(0)] = [500, 503]
    sleeps = []
    svc = service(server, tmp_path, backoff_s=0.25, sleep=sleeps.append)
    assert svc.load("33100_0").shape == (424, 424, 3)
    assert svc.n_requests == 3 and sleeps == [0.25, 0.5]


def test_corrupt_answer_is_retried_then_reported(served, tmp_path):
    server, fake = served
    fake.script[key(1)] = ["corrupt"]
    assert service(server, tmp_path).load("33100_1").shape == (424, 424, 3)
    fake.script[key(3)] = ["corrupt"] * 4
    with pytest.raises(BadImageError) as info:
        service(server, tmp_path, tries=4).load("33100_3")
    err = info.value
    assert err.dr8_id == "33100_3" and "corrupt JPEG" in err.reason and "after 4 tries" in err.reason
    assert f"ra={POSITIONS.ra[3]:.6f}" in err.path
    assert not cache_path(tmp_path / "cache", "33100_3").exists() and leftovers(tmp_path) == []


def test_not_found_and_wrong_size_fail_at_once(served, tmp_path):
    server, fake = served
    fake.script[key(4)] = [404]
    fake.script[key(5)] = ["small"]
    svc = service(server, tmp_path)
    with pytest.raises(BadImageError, match="33101_0: HTTP 404"):
        svc.load("33101_0")
    with pytest.raises(BadImageError, match="expected 424x424, got 100x100"):
        svc.load("33101_1")
    assert svc.n_requests == 2
    with pytest.raises(BadImageError, match="no position known"):
        svc.load("99999_1")


def test_damaged_cache_file_is_fetched_again(served, tmp_path):
    server, _ = served
    svc = service(server, tmp_path)
    path = svc.fetch("33102_0")
    path.write_bytes(b"not a jpeg")
    assert svc.load("33102_0").shape == (424, 424, 3) and svc.n_requests == 2


def test_prefetch_fills_cache_with_threads(served, tmp_path):
    server, fake = served
    fake.script[key(7)] = [404, 404]
    svc = service(server, tmp_path)
    result = prefetch(svc, POSITIONS.dr8_id, workers=3, progress=False)
    assert (result["n_ids"], result["n_cached"], result["n_fetched"]) == (12, 0, 11)
    assert result["failed"]["dr8_id"].tolist() == ["33101_3"] and "404" in result["failed"]["reason"][0]
    again = prefetch(service(server, tmp_path), POSITIONS.dr8_id, workers=3, progress=False)
    assert (again["n_cached"], again["n_fetched"], len(again["failed"])) == (11, 0, 1)
    assert len(server.requests) == 12 + 1  # only the uncached one was asked for again
    cache = CutoutCache(tmp_path / "cache")
    assert cache.load("33102_3").shape == (424, 424, 3)
    assert pickle.loads(pickle.dumps(cache)).cache_dir == cache.cache_dir  # fit for worker processes


def test_missing_and_corrupt_local_jpegs_name_the_file(tmp_path):
    folder = tmp_path / "jpg" / "5"
    folder.mkdir(parents=True)
    (folder / "5_1.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(BadImageError, match=r"5_1: unreadable JPEG.*5_1\.jpg"):
        decode_jpeg(folder / "5_1.jpg", "5_1")
    with pytest.raises(BadImageError, match=r"5_2: file not found.*5_2\.jpg"):
        JpegTree(tmp_path).load("5_2")


def test_rate_limiter_spaces_calls():
    now, sleeps = [100.0], []
    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleeps.append)
    for _ in range(3):
        limiter.wait()
    assert sleeps == [0.25, 0.5]  # slots at t, t+0.25, t+0.5
    now[0] += 10
    limiter.wait()
    assert sleeps == [0.25, 0.5]  # idle long enough: no wait
    unlimited = RateLimiter(0, sleep=sleeps.append)
    unlimited.wait()
    assert len(sleeps) == 2
