"""Cutouts fetched from the Legacy Surveys viewer, cached on disk.

``LegacyCutoutService.load(dr8_id)`` returns a ``(424, 424, 3) uint8`` cutout like ``JpegTree.load``: from the
cache ``cache_dir/{brickid}/{dr8_id}.jpg`` when it is there, else fetched (throttled, retried with backoff),
checked (a whole RGB JPEG of the right size) and only then written to the cache atomically, so an interrupted
run resumes where it stopped. :func:`prefetch` fills the cache for many ids with a few threads; store builds
then read the cache with :class:`CutoutCache` (light and picklable, for worker processes).

Pixel scale: the service cuts at a fixed ``pixscale`` (default 0.262"/px, DR8's native scale), while the
Galaxy Zoo DESI JPEGs were cut at a scale set by each galaxy's size (Galaxy Zoo DECaLS's image code:
``pixscale = max(min(0.04 R50, 0.02 R90), 0.1)`` at 424 px). The two never share a scale, so a dataset takes its
images from one of them only (:class:`gcnn_spin.data.pipeline.Inputs` refuses both).
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from gcnn_spin.data.http import RateLimiter, RetryableError, http_get, retry_call
from gcnn_spin.data.images import CUTOUT_SIZE, BadImageError, decode_jpeg
from gcnn_spin.io import atomic_path

log = logging.getLogger(__name__)

DEFAULT_CUTOUT_URL = "https://www.legacysurvey.org/viewer/cutout.jpg"
NATIVE_PIXSCALE = 0.262  # arcsec per pixel of the Legacy Surveys DR8 images


# ----------------------------------------------------------------------------- sources


def cache_path(cache_dir: str | os.PathLike, dr8_id: str) -> Path:
    """``cache_dir/{brickid}/{dr8_id}.jpg`` (``dr8_id = "{brickid}_{objid}"``)."""
    return Path(cache_dir) / dr8_id.split("_", 1)[0] / f"{dr8_id}.jpg"


def _check_cutout(array: np.ndarray, size: int | None, dr8_id: str, where) -> np.ndarray:
    if size and array.shape[:2] != (size, size):
        raise BadImageError(dr8_id, where, f"expected {size}x{size}, got {array.shape[1]}x{array.shape[0]}")
    return array


class CutoutCache:
    """Read-only view of a cutout cache (what :func:`prefetch` filled); never reaches the network."""

    def __init__(self, cache_dir: str | os.PathLike, expected_size: int | None = CUTOUT_SIZE):
        self.cache_dir, self.expected_size = Path(cache_dir), expected_size

    def path(self, dr8_id: str) -> Path:
        return cache_path(self.cache_dir, dr8_id)

    def load(self, dr8_id: str) -> np.ndarray:
        path = self.path(dr8_id)
        return _check_cutout(decode_jpeg(path, dr8_id), self.expected_size, dr8_id, path)

    def describe(self) -> str:
        return f"CutoutCache({self.cache_dir.name})"


class LegacyCutoutService:
    """Legacy Surveys DR8 cutouts over HTTP, cached as ``cache_dir/{brickid}/{dr8_id}.jpg``.

    ``positions``: ``dr8_id, ra, dec`` (deg) of every galaxy it may be asked for. Requests are throttled to
    ``max_requests_per_s`` (shared by all threads) and retried ``tries`` times with exponential backoff on
    server errors, timeouts and corrupt answers; other HTTP errors (404, ...) fail at once. Every failure ends
    as a :class:`BadImageError` naming the galaxy, the URL and why.
    """

    def __init__(self, positions: pd.DataFrame, cache_dir: str | os.PathLike, *,
                 base_url: str = DEFAULT_CUTOUT_URL, layer: str = "ls-dr8", pixscale: float = NATIVE_PIXSCALE,
                 size: int = CUTOUT_SIZE, max_requests_per_s: float = 5.0, tries: int = 4,
                 backoff_s: float = 1.0, timeout_s: float = 30.0, sleep: Callable[[float], None] = time.sleep):
        missing = [c for c in ("dr8_id", "ra", "dec") if c not in positions.columns]
        if missing:
            raise ValueError(f"positions need columns {missing}; got {list(positions.columns)}")
        self._ra = pd.Series(positions["ra"].to_numpy(np.float64), index=positions["dr8_id"].astype(str))
        self._dec = pd.Series(positions["dec"].to_numpy(np.float64), index=self._ra.index)
        self.cache = CutoutCache(cache_dir, expected_size=size)
        self.base_url, self.layer, self.pixscale, self.size = base_url, layer, pixscale, size
        self.tries, self.backoff_s, self.timeout_s, self._sleep = tries, backoff_s, timeout_s, sleep
        self.limiter = RateLimiter(max_requests_per_s, sleep=sleep)
        self.n_requests = 0  # HTTP requests sent (retries included)
        self._count_lock = threading.Lock()

    def describe(self) -> str:
        return f"LegacyCutoutService({self.layer}, {self.pixscale}\"/px, {self.size}px)"

    def url(self, dr8_id: str) -> str:
        """The cutout URL of ``dr8_id`` (``?ra=..&dec=..&layer=ls-dr8&pixscale=0.262&size=424``)."""
        try:
            ra, dec = float(self._ra[dr8_id]), float(self._dec[dr8_id])
        except KeyError:
            raise BadImageError(dr8_id, self.cache.path(dr8_id), "no position known for this dr8_id") from None
        query = urllib.parse.urlencode({"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "layer": self.layer,
                                        "pixscale": f"{self.pixscale:g}", "size": self.size})
        return f"{self.base_url}?{query}"

    def _download(self, dr8_id: str, url: str) -> bytes:
        self.limiter.wait()
        with self._count_lock:
            self.n_requests += 1
        body = http_get(url, self.timeout_s)
        try:
            with Image.open(io.BytesIO(body)) as img:
                img.load()
                array = np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise RetryableError(f"corrupt JPEG ({len(body)} bytes): {err}") from None
        _check_cutout(array, self.size, dr8_id, url)
        return body

    def fetch(self, dr8_id: str) -> Path:
        """Make sure ``dr8_id`` is in the cache (download it if not); return its path."""
        path = self.cache.path(dr8_id)
        if path.exists():
            return path
        url = self.url(dr8_id)
        try:
            body = retry_call(lambda: self._download(dr8_id, url), tries=self.tries, backoff_s=self.backoff_s,
                              retry_on=(RetryableError,), sleep=self._sleep, what=f"cutout {dr8_id}")
        except RetryableError as err:
            raise BadImageError(dr8_id, url, f"{err} (after {self.tries} tries)") from None
        except urllib.error.HTTPError as err:
            raise BadImageError(dr8_id, url, f"HTTP {err.code} {err.reason}") from None
        with atomic_path(path) as tmp:
            tmp.write_bytes(body)
        return path

    def load(self, dr8_id: str) -> np.ndarray:
        path = self.fetch(dr8_id)
        try:
            return self.cache.load(dr8_id)
        except BadImageError:  # damaged on disk since it was checked: fetch it again, once
            path.unlink(missing_ok=True)
            self.fetch(dr8_id)
            return self.cache.load(dr8_id)


#: Mean size of a 424 px cutout JPEG (the Galaxy Zoo DESI ones average ~44 kB; BENCHMARKS.md).
CUTOUT_BYTES = 44_000
#: Legacy Surveys bricks are 0.25 deg x 0.25 deg: the cache holds one folder per brick with a galaxy.
BRICKS_PER_DEG2 = 16


def estimate(n_images: int, *, requests_per_s: float = 5.0, n_cached: int = 0) -> dict:
    """What fetching ``n_images`` cutouts costs: requests, least duration, disk and inodes of the cache.

    ``seconds`` is the throttle's lower bound (``n_requests / requests_per_s``: one request per cutout, cached
    ones skipped); the service's own response time and retries add to it. Inodes: one file per cutout (the
    folders, one per brick, add ~16 per square degree of sky covered).
    """
    n_requests = max(0, int(n_images) - int(n_cached))
    return {"n_images": int(n_images), "n_cached": int(n_cached), "n_requests": n_requests,
            "seconds": n_requests / requests_per_s if requests_per_s > 0 else 0.0,
            "bytes": n_requests * CUTOUT_BYTES, "inodes": int(n_images)}


def describe_estimate(est: dict, requests_per_s: float) -> str:
    hours = est["seconds"] / 3600
    return (f"Cutout service: {est['n_images']:,} cutouts at most ({est['n_cached']:,} cached) -> "
            f"{est['n_requests']:,} requests; at {requests_per_s:g} requests/s at least {hours:.1f} h "
            f"({hours / 24:.1f} days; plus the server's response time); ~{est['bytes'] / 1e9:.1f} GB and "
            f"{est['inodes']:,} files in the cache")


def prefetch(service: LegacyCutoutService, dr8_ids: Iterable[str], *, workers: int = 4,
             progress: bool = True) -> dict:
    """Fill the cache for ``dr8_ids`` with ``workers`` threads (throttled by the service's rate limit).

    Failures do not stop the others; they are returned: ``{"n_ids", "n_cached", "n_fetched",
    "failed": DataFrame(dr8_id, url, reason)}``.
    """
    ids = list(dict.fromkeys(str(i) for i in dr8_ids))
    todo = [dr8_id for dr8_id in ids if not service.cache.path(dr8_id).exists()]
    n_cached = len(ids) - len(todo)
    failed = []
    with cf.ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(todo), unit="img", desc="cutouts", disable=not progress) as bar:
        futures = {pool.submit(service.fetch, dr8_id): dr8_id for dr8_id in todo}
        for fut in cf.as_completed(futures):
            try:
                fut.result()
            except BadImageError as err:
                failed.append({"dr8_id": err.dr8_id, "url": err.path, "reason": err.reason})
            bar.update(1)
    failed_df = pd.DataFrame(failed, columns=["dr8_id", "url", "reason"]).sort_values("dr8_id", ignore_index=True)
    if len(failed_df):
        log.warning("%d of %d cutouts could not be fetched, e.g. %s: %s", len(failed_df), len(todo),
                    failed_df["dr8_id"].iloc[0], failed_df["reason"].iloc[0])
    return {"n_ids": len(ids), "n_cached": n_cached, "n_fetched": len(todo) - len(failed_df), "failed": failed_df}
