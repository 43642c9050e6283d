"""Stage 3: SDSS DR7 neighbours within 1" and r-band Petrosian photometry of the matched GZ1 galaxies.

Online, astroquery-style, in three separate steps:

1. **build** (:func:`build_requests`): one SQL query per batch of a few hundred objects: for each object the
   count of *other* photometric objects returned by ``dbo.fGetNearbyObjEq(ra, dec, r_arcmin)`` (every
   detection, as in the study; the GZ1 object itself excluded by objID), ``LEFT JOIN``-ed to ``PhotoPrimary``
   for ``petroR50_r, petroR50Err_r, petroMag_r, petroMagErr_r`` (NULL when the objID is not primary).
   ``query_photometry(..., dry_run=True)`` returns these requests unsent.
2. **send** (:class:`SkyServer`): ``astroquery.sdss.SDSS.query_sql(sql, data_release=7)`` against a
   configurable base URL, throttled (SkyServer allows about one query a second) and retried with backoff.
3. **parse** (:func:`parse_answer`): check that the answer covers exactly the batch, normalise column names.

Each answer is cached as ``cache_dir/{sha}.csv`` (atomic) before use, so a rerun sends nothing.
Offline, :func:`read_photometry_table` reads the same numbers from a table the user supplies.
Output rows: :data:`SDSS_COLUMNS` (``objid`` int64, counts and photometry float64, NaN = no answer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gcnn_spin.data.cutouts import RateLimiter, RetryableError, retry_call
from gcnn_spin.data.gz1 import RowProblems, check_on_bad, missing_columns, parse_numbers, parse_objid
from gcnn_spin.errors import reading
from gcnn_spin.io import atomic_path

log = logging.getLogger(__name__)

PHOTOMETRY = ("petroR50_r", "petroR50Err_r", "petroMag_r", "petroMagErr_r")
SDSS_COLUMNS: tuple[str, ...] = ("objid", "n_neighbours_1arcsec", *PHOTOMETRY)
#: Columns of a user-supplied photometry table (``--sdss-photometry``); ``petroMag_r`` is optional there.
PHOTOMETRY_FILE_COLUMNS: tuple[str, ...] = ("objID", "petroR50_r", "petroR50Err_r", "petroMagErr_r",
                                            "n_neighbours_1arcsec")
DATA_RELEASE = 7
DEFAULT_BATCH_SIZE = 200  # ~30 kB of SQL: long, but well inside what SkyServer's GET accepts


class SdssQueryError(RuntimeError):
    """A SkyServer batch that failed for good; names the batch (cache key) and its first objIDs."""


@dataclasses.dataclass(frozen=True)
class SdssRequest:
    """One batched query: the SQL, the objIDs it asks about, and the data release."""

    sql: str
    objids: tuple[int, ...]
    data_release: int = DATA_RELEASE

    @property
    def key(self) -> str:
        """Cache key: sha256 of release and SQL (same question -> same file)."""
        return hashlib.sha256(f"dr{self.data_release}\n{self.sql}".encode()).hexdigest()[:24]

    def describe(self, max_ids: int = 5) -> str:
        shown = ", ".join(str(i) for i in self.objids[:max_ids]) + (", ..." if len(self.objids) > max_ids else "")
        return f"batch {self.key} ({len(self.objids)} objects: objID {shown})"


def neighbour_sql(objids, ras, decs, radius_arcsec: float = 1.0) -> str:
    """SQL for one batch: per object, other objects within ``radius_arcsec`` + PhotoPrimary photometry."""
    r_arcmin = radius_arcsec / 60.0
    parts = [
        f"SELECT CAST({int(o)} AS BIGINT) AS objID, COUNT(*) AS n_neighbours "
        f"FROM dbo.fGetNearbyObjEq({float(ra):.7f}, {float(dec):.7f}, {r_arcmin:.10g}) WHERE objID <> {int(o)}"
        for o, ra, dec in zip(objids, ras, decs)
    ]
    return ("SELECT t.objID, t.n_neighbours, p.petroR50_r, p.petroR50Err_r, p.petroMag_r, p.petroMagErr_r "
            f"FROM ({' UNION ALL '.join(parts)}) AS t "
            "LEFT OUTER JOIN PhotoPrimary AS p ON p.objID = t.objID")


def build_requests(objects: pd.DataFrame, *, radius_arcsec: float = 1.0, batch_size: int = DEFAULT_BATCH_SIZE,
                   data_release: int = DATA_RELEASE) -> list[SdssRequest]:
    """Batched requests for ``objects`` (``objid, ra, dec``), in objID order so batches are stable on reruns."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    objects = objects.sort_values("objid", kind="stable").drop_duplicates("objid")
    ids, ras, decs = (objects[c].to_numpy() for c in ("objid", "ra", "dec"))
    return [
        SdssRequest(neighbour_sql(ids[i:i + batch_size], ras[i:i + batch_size], decs[i:i + batch_size],
                                  radius_arcsec), tuple(int(o) for o in ids[i:i + batch_size]), data_release)
        for i in range(0, len(ids), batch_size)
    ]


class SkyServer:
    """Sends :class:`SdssRequest` s with astroquery's ``SDSS.query_sql`` (``base_url=None``: astroquery's own).

    Server errors, timeouts, dropped connections and malformed answers are retried ``tries`` times with
    exponential backoff; requests are spaced to at most ``max_requests_per_s``.
    """

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 120.0, tries: int = 5,
                 backoff_s: float = 5.0, max_requests_per_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url, self.timeout_s, self.tries, self.backoff_s = base_url, timeout_s, tries, backoff_s
        self._sleep = sleep
        self.limiter = RateLimiter(max_requests_per_s, sleep=sleep)
        self.n_requests = 0

    def payload(self, request: SdssRequest) -> dict:
        """What would be sent, unsent: ``{"url": ..., "params": {"cmd": sql, "format": "csv"}}``."""
        from astroquery.sdss import SDSS, conf

        with conf.set_temp("skyserver_baseurl", (self.base_url or conf.skyserver_baseurl).rstrip("/")):
            params = SDSS.query_sql(request.sql, data_release=request.data_release, get_query_payload=True)
            url = SDSS._get_query_url(request.data_release)
        return {"url": url, "params": params}

    def _once(self, request: SdssRequest) -> pd.DataFrame:
        import requests
        from astroquery.exceptions import RemoteServiceError
        from astroquery.sdss import SDSS, conf

        self.limiter.wait()
        self.n_requests += 1
        base = self.base_url or conf.skyserver_baseurl
        try:
            with conf.set_temp("skyserver_baseurl", base.rstrip("/")):
                table = SDSS.query_sql(request.sql, data_release=request.data_release, timeout=self.timeout_s,
                                       cache=False)
        except requests.HTTPError as err:
            status = err.response.status_code if err.response is not None else 0
            if status >= 500 or status == 429:
                raise RetryableError(f"HTTP {status}") from None
            raise SdssQueryError(f"SkyServer refused {request.describe()}: {err}") from None
        except (requests.RequestException, RemoteServiceError) as err:
            raise RetryableError(f"{type(err).__name__}: {str(err)[:300]}") from None
        except ValueError as err:  # astropy could not read the answer as a CSV table
            raise RetryableError(f"unreadable answer: {str(err)[:300]}") from None
        if table is None:
            raise RetryableError("empty answer")
        answer = table.to_pandas()
        parse_answer(answer, request)  # a malformed answer is retried, and never cached
        return answer

    def send(self, request: SdssRequest) -> pd.DataFrame:
        """The raw answer table of ``request`` (columns as SkyServer names them)."""
        try:
            return retry_call(lambda: self._once(request), tries=self.tries, backoff_s=self.backoff_s,
                              retry_on=(RetryableError,), sleep=self._sleep, what=request.describe())
        except RetryableError as err:
            raise SdssQueryError(f"SkyServer failed {request.describe()} after {self.tries} tries: {err}") from None


def parse_answer(answer: pd.DataFrame, request: SdssRequest) -> pd.DataFrame:
    """Raw answer -> :data:`SDSS_COLUMNS`, one row per requested objID (checked: none missing, none extra)."""
    columns = {c.lower(): c for c in answer.columns}
    wanted = {"objid": "objid", "n_neighbours": "n_neighbours_1arcsec", **{p.lower(): p for p in PHOTOMETRY}}
    absent = [c for c in wanted if c not in columns]
    if absent:
        raise RetryableError(f"answer lacks column(s) {absent}; got {list(answer.columns)}")
    objid, ok = parse_objid(answer[columns["objid"]])
    if not ok.all():
        raise RetryableError(f"answer has unreadable objIDs, e.g. {answer[columns['objid']][~ok].iloc[0]!r}")
    asked = pd.Index(request.objids)
    extra, lost = pd.Index(objid).difference(asked), asked.difference(pd.Index(objid))
    if len(extra) or len(lost) or pd.Index(objid).has_duplicates:
        raise RetryableError(f"answer does not match {request.describe()}: {len(lost)} objID(s) missing "
                             f"(e.g. {list(lost[:3])}), {len(extra)} unexpected (e.g. {list(extra[:3])})")
    out = pd.DataFrame({"objid": objid})
    for raw_name, name in list(wanted.items())[1:]:
        out[name] = pd.to_numeric(answer[columns[raw_name]], errors="coerce").to_numpy(np.float64)
    return out[list(SDSS_COLUMNS)]


def query_photometry(objects: pd.DataFrame, cache_dir: str | os.PathLike, *, client: SkyServer | None = None,
                     radius_arcsec: float = 1.0, batch_size: int = DEFAULT_BATCH_SIZE, on_bad: str = "raise",
                     dry_run: bool = False, progress: bool = True):
    """Neighbour counts and photometry of ``objects`` (``objid, ra, dec``) from SkyServer, cached per batch.

    ``dry_run``: return the list of :class:`SdssRequest` (each with ``.sql``), send nothing, touch nothing.
    Otherwise returns ``(table, failed)``: ``table`` with :data:`SDSS_COLUMNS` for every object answered;
    ``failed`` (``objid, batch, reason``) lists the objects of batches that failed for good, which raise a
    :class:`SdssQueryError` instead unless ``on_bad="skip"``. Failed batches are not cached: a rerun retries
    them and only them.
    """
    check_on_bad(on_bad)
    requests = build_requests(objects, radius_arcsec=radius_arcsec, batch_size=batch_size)
    if dry_run:
        return requests
    client = client or SkyServer()
    cache_dir = Path(cache_dir)
    parts, failed, n_cached = [], [], 0
    for request in tqdm(requests, unit="batch", desc="SDSS", disable=not progress):
        path = cache_dir / f"{request.key}.csv"
        if path.exists():
            with reading(path, "SDSS cache entry", f"delete {path} and rerun (its query is sent again)"):
                parts.append(parse_answer(pd.read_csv(path, dtype=str, keep_default_na=False), request))
            n_cached += 1
            continue
        try:
            answer = client.send(request)
        except SdssQueryError as err:
            if on_bad == "raise":
                raise
            failed += [{"objid": o, "batch": request.key, "reason": str(err)} for o in request.objids]
            log.warning("%s", err)
            continue
        with atomic_path(path) as tmp:
            answer.to_csv(tmp, index=False)
        parts.append(parse_answer(answer, request))
    log.info("SDSS: %d batches (%d from the cache, %d sent, %d failed)", len(requests), n_cached,
             len(requests) - n_cached - len({f["batch"] for f in failed}), len({f["batch"] for f in failed}))
    table = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "objid" else np.float64) for c in SDSS_COLUMNS}))
    return table, pd.DataFrame(failed, columns=["objid", "batch", "reason"])


def read_photometry_table(path: str | os.PathLike, *, on_bad: str = "raise",
                          report_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """A user-supplied SDSS table (CSV or parquet; :data:`PHOTOMETRY_FILE_COLUMNS`) -> :data:`SDSS_COLUMNS`.

    Empty cells mean "no value" (NaN, the galaxy then fails the cuts). Unparsable objIDs, duplicate objIDs and
    text that is not a number are bad rows: raised naming the objIDs, or skipped with a report.
    """
    check_on_bad(on_bad)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SDSS photometry table not found: {path}")
    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str,
                                                                                keep_default_na=False)
    missing_columns(raw.columns, PHOTOMETRY_FILE_COLUMNS, path)
    problems = RowProblems(path, raw["objID"].astype(str), "objID",
                           lines=np.arange(len(raw)) + (0 if path.suffix == ".parquet" else 2))
    objid, ok = parse_objid(raw["objID"].astype(str))
    problems.add(~ok, "unparsable objID")
    problems.add(ok & pd.Series(np.where(ok, objid, -1)).duplicated(keep=False).to_numpy(), "duplicate objID")
    out = pd.DataFrame({"objid": objid})
    for name in SDSS_COLUMNS[1:]:
        if name not in raw.columns:  # petroMag_r is not needed by the cuts
            out[name] = np.nan
            continue
        text = raw[name].astype(str).str.strip()
        values, good = parse_numbers(text)
        blank = text.isin(["", "nan", "NaN", "null", "NULL", "None"]).to_numpy()
        problems.add(~good & ~blank, f"{name} is not a number")
        out[name] = np.where(good, values, np.nan)
    keep = problems.resolve(on_bad, report_path)
    return out[keep].reset_index(drop=True)
