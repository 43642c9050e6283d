"""Stage 3: SDSS DR7 neighbours within 1" and r-band Petrosian photometry of the matched GZ1 galaxies.

One SQL text, shipped as ``gcnn_spin/data/sql/sdss_dr7_photometry.sql`` (:data:`SQL_FILE`), serves both routes:

* **CasJobs** (668k objects): the file as it is, over an uploaded table ``MyDB.gz1_objects``; its answer is the
  ``--sdss-photometry`` table (:func:`read_photometry_table`). ``data_prep/sdss_casjobs.py`` writes the upload.
* **SkyServer**, astroquery-style, in three separate steps:

  1. **build** (:func:`build_requests`): the same SQL over an inline table of a few objects per request, as
     many as fit a GET query string of ``max_query_bytes`` (IIS's default ``maxQueryString``, 2,048 bytes;
     astroquery sends every query as a GET). ``query_photometry(..., dry_run=True)`` returns them unsent and
     :func:`estimate` says how many requests and how long, before anything is sent.
  2. **send** (:class:`SkyServer`): ``astroquery.sdss.SDSS.query_sql(sql, data_release=7)`` against a
     configurable base URL, throttled and retried with backoff.
  3. **parse** (:func:`parse_answer`): check that the answer covers exactly the batch, normalise column names.

Neighbours (``neighbours``): ``"all"`` counts every other detection in ``PhotoObjAll`` within the radius
(``dbo.fGetNearbyObjAllEq``: primary, secondary and family objects), the reading under which the study's 1" cut
removes two thirds of the matched galaxies (Table 1); ``"primary"`` counts other primary objects only
(``dbo.fGetNearbyObjEq``). Each answer is cached as ``cache_dir/{sha}.csv`` (atomic) before use, so a rerun
sends nothing. Output rows: :data:`SDSS_COLUMNS` (``objid`` int64, counts and photometry float64, NaN = no
answer).
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import logging
import math
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gcnn_spin.config import SdssNeighbours, check_choice
from gcnn_spin.data.bad_rows import EmptyInputError, RowProblems, check_on_bad, missing_columns, require_rows
from gcnn_spin.data.http import RateLimiter, RetryableError, retry_call
from gcnn_spin.data.parse import parse_numbers, parse_objid
from gcnn_spin.errors import reading
from gcnn_spin.io import atomic_path

log = logging.getLogger(__name__)

PHOTOMETRY = ("petroR50_r", "petroR50Err_r", "petroMag_r", "petroMagErr_r")
SDSS_COLUMNS: tuple[str, ...] = ("objid", "n_neighbours_1arcsec", *PHOTOMETRY)
#: Columns a user-supplied photometry table (``--sdss-photometry``) must have, and the one it may have.
PHOTOMETRY_FILE_COLUMNS: tuple[str, ...] = ("objID", "petroR50_r", "petroR50Err_r", "petroMagErr_r",
                                            "n_neighbours_1arcsec")
PHOTOMETRY_FILE_OPTIONAL: tuple[str, ...] = ("petroMag_r",)
DATA_RELEASE = 7
#: The neighbour searches: ``all`` detections (PhotoObjAll) or ``primary`` objects only (PhotoPrimary); keyed by
#: the choices of ``data.sdss_neighbours`` (``gcnn_spin.config.SdssNeighbours``).
NEIGHBOUR_FUNCTIONS = {"all": "dbo.fGetNearbyObjAllEq", "primary": "dbo.fGetNearbyObjEq"}
DEFAULT_NEIGHBOURS = "all"
#: IIS request filtering's default ``maxQueryString`` (bytes); SkyServer runs on IIS and astroquery uses GET.
MAX_QUERY_BYTES = 2048
DEFAULT_BATCH_SIZE = 25  # objects per request at most; fewer when the query string would not fit
DEFAULT_REQUESTS_PER_S = 0.5
SQL_FILE = "sql/sdss_dr7_photometry.sql"
#: The tokens of the shipped SQL that a SkyServer request replaces.
_CASJOBS_SOURCE, _CASJOBS_INTO = "MyDB.gz1_objects", "INTO MyDB.gz1_sdss_dr7"
_CASJOBS_RADIUS = "1.0E0/60"


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


def casjobs_sql() -> str:
    """The shipped SQL file's text (for CasJobs, as it is)."""
    return resources.files("gcnn_spin.data").joinpath(SQL_FILE).read_text()


def neighbour_function(neighbours: str) -> str:
    """The SQL function of a ``data.sdss_neighbours`` name; another name raises, naming the choices."""
    return NEIGHBOUR_FUNCTIONS[check_choice("data.sdss_neighbours", neighbours, SdssNeighbours)]


def photometry_sql(source: str, *, neighbours: str = DEFAULT_NEIGHBOURS, radius_arcsec: float = 1.0,
                   into: bool = False) -> str:
    """The shipped SQL on one line, comments dropped, over ``source`` (a table or a parenthesised subquery).

    ``into=False`` drops the ``INTO MyDB...`` clause (SkyServer answers the rows instead of storing them).
    """
    text = " ".join(line.split("--")[0].strip() for line in casjobs_sql().splitlines())
    text = re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")").strip()
    if not into:
        text = text.replace(f" {_CASJOBS_INTO}", "")
    function = neighbour_function(neighbours)
    return (text.replace(NEIGHBOUR_FUNCTIONS[DEFAULT_NEIGHBOURS], function)
            .replace(_CASJOBS_RADIUS, f"{_decimal(radius_arcsec)}E0/60").replace(_CASJOBS_SOURCE, source))


def _decimal(value: float) -> str:
    """``value`` as a plain decimal literal, never in exponent form (``1.0``, ``0.00001``)."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"radius_arcsec must be a positive number, got {value!r}")
    return format(decimal.Decimal(repr(float(value))), "f")


def _inline_rows(objids, ras, decs) -> list[str]:
    """One ``SELECT objID, ra, dec`` per object for ``UNION ALL`` (the first one names the columns)."""
    rows = [f"SELECT {int(o)},{float(r):.7f},{float(d):.7f}" for o, r, d in zip(objids, ras, decs)]
    if rows:
        rows[0] = f"SELECT {int(objids[0])} AS objID,{float(ras[0]):.7f} AS ra,{float(decs[0]):.7f} AS [dec]"
    return rows


def _encoded_bytes(sql: str) -> int:
    """Length of the query string astroquery sends for ``sql`` (it prefixes a blank; form-encoded)."""
    return len(urllib.parse.urlencode({"cmd": " " + sql, "format": "csv"}))


def objects_per_request(*, batch_size: int = DEFAULT_BATCH_SIZE, max_query_bytes: int = MAX_QUERY_BYTES,
                        neighbours: str = DEFAULT_NEIGHBOURS, radius_arcsec: float = 1.0) -> int:
    """How many objects one request carries: ``batch_size``, or fewer so that the worst case still fits."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    worst = _inline_rows([np.iinfo(np.int64).max] * 2, [359.9999999] * 2, [-89.9999999] * 2)
    base = _encoded_bytes(photometry_sql(f"({worst[0]})", neighbours=neighbours, radius_arcsec=radius_arcsec))
    per_row = len(urllib.parse.quote_plus(f" UNION ALL {worst[1]}"))
    if base > max_query_bytes:
        raise ValueError(f"max_query_bytes={max_query_bytes} cannot hold even one object (needs {base} bytes)")
    return min(batch_size, 1 + (max_query_bytes - base) // per_row)


def build_requests(objects: pd.DataFrame, *, radius_arcsec: float = 1.0, batch_size: int = DEFAULT_BATCH_SIZE,
                   max_query_bytes: int = MAX_QUERY_BYTES, neighbours: str = DEFAULT_NEIGHBOURS,
                   data_release: int = DATA_RELEASE) -> list[SdssRequest]:
    """Batched requests for ``objects`` (``objid, ra, dec``), in objID order so batches are stable on reruns.

    Each request's query string is at most ``max_query_bytes`` long (checked for the worst-case object).
    """
    size = objects_per_request(batch_size=batch_size, max_query_bytes=max_query_bytes, neighbours=neighbours,
                               radius_arcsec=radius_arcsec)
    objects = objects.sort_values("objid", kind="stable").drop_duplicates("objid")
    ids, ras, decs = (objects[c].to_numpy() for c in ("objid", "ra", "dec"))
    requests = []
    for i in range(0, len(ids), size):
        rows = _inline_rows(ids[i:i + size], ras[i:i + size], decs[i:i + size])
        sql = photometry_sql("(" + " UNION ALL ".join(rows) + ")", neighbours=neighbours,
                             radius_arcsec=radius_arcsec)
        requests.append(SdssRequest(sql, tuple(int(o) for o in ids[i:i + size]), data_release))
    return requests


def estimate(n_objects: int, *, requests_per_s: float = DEFAULT_REQUESTS_PER_S, **sizes) -> dict:
    """What a SkyServer run of ``n_objects`` costs: ``n_requests``, ``objects_per_request``, ``seconds``.

    ``seconds`` is the throttle's lower bound (``n_requests / requests_per_s``); SkyServer's own query time adds
    to it. ``sizes``: :func:`objects_per_request`'s keywords.
    """
    size = objects_per_request(**sizes)
    n_requests = math.ceil(n_objects / size)
    seconds = n_requests / requests_per_s if requests_per_s > 0 else 0.0
    return {"n_objects": int(n_objects), "objects_per_request": size, "n_requests": n_requests,
            "seconds": seconds}


def describe_estimate(est: dict, requests_per_s: float = DEFAULT_REQUESTS_PER_S) -> str:
    hours = est["seconds"] / 3600
    return (f"SDSS DR7 via SkyServer: {est['n_objects']:,} objects -> {est['n_requests']:,} requests of <= "
            f"{est['objects_per_request']} objects; at {requests_per_s:g} requests/s at least {hours:.1f} h "
            "(plus the server's query time). For the whole of GZ1, CasJobs is faster: data_prep/sdss_casjobs.py")


class SkyServer:
    """Sends :class:`SdssRequest` s with astroquery's ``SDSS.query_sql`` (``base_url=None``: astroquery's own).

    Server errors, timeouts, dropped connections and malformed answers are retried ``tries`` times with
    exponential backoff; requests are spaced to at most ``max_requests_per_s``.
    """

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 120.0, tries: int = 5,
                 backoff_s: float = 5.0, max_requests_per_s: float = DEFAULT_REQUESTS_PER_S,
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
    wanted = {"objid": "objid", "n_neighbours_1arcsec": "n_neighbours_1arcsec", **{p.lower(): p for p in PHOTOMETRY}}
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
                     radius_arcsec: float = 1.0, neighbours: str = DEFAULT_NEIGHBOURS,
                     batch_size: int = DEFAULT_BATCH_SIZE, max_query_bytes: int = MAX_QUERY_BYTES,
                     on_bad: str = "raise", dry_run: bool = False, progress: bool = True):
    """Neighbour counts and photometry of ``objects`` (``objid, ra, dec``) from SkyServer, cached per batch.

    ``dry_run``: return the list of :class:`SdssRequest` (each with ``.sql``), send nothing, touch nothing.
    Otherwise returns ``(table, failed)``: ``table`` with :data:`SDSS_COLUMNS` for every object answered;
    ``failed`` (``objid, batch, reason``) lists the objects of batches that failed for good, which raise a
    :class:`SdssQueryError` instead unless ``on_bad="skip"``. Failed batches are not cached: a rerun retries
    them and only them.
    """
    check_on_bad(on_bad)
    requests = build_requests(objects, radius_arcsec=radius_arcsec, batch_size=batch_size,
                              max_query_bytes=max_query_bytes, neighbours=neighbours)
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
    """A user-supplied SDSS table (CSV or parquet; :data:`PHOTOMETRY_FILE_COLUMNS`, e.g. the CasJobs answer of
    :func:`casjobs_sql`) -> :data:`SDSS_COLUMNS`.

    Empty cells mean "no value" (NaN, the galaxy then fails the cuts). Unparsable objIDs, duplicate objIDs and
    text that is not a number are bad rows: raised naming the objIDs, or skipped with a report.
    """
    check_on_bad(on_bad)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SDSS photometry table not found: {path}")
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str,
                                                                                    keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise EmptyInputError(f"{path}: empty file; expected an SDSS photometry table with columns "
                              f"{list(PHOTOMETRY_FILE_COLUMNS)}") from None
    missing_columns(raw.columns, PHOTOMETRY_FILE_COLUMNS, path)
    require_rows(len(raw), path, "SDSS photometry rows")
    problems = RowProblems(path, raw["objID"].astype(str), "objID",
                           lines=np.arange(len(raw)) + (0 if path.suffix == ".parquet" else 2))
    objid, ok = parse_objid(raw["objID"].astype(str))
    problems.add(~ok, "unparsable objID")
    problems.add(ok & pd.Series(np.where(ok, objid, -1)).duplicated(keep=False).to_numpy(), "duplicate objID")
    out = pd.DataFrame({"objid": objid})
    for name in SDSS_COLUMNS[1:]:
        if name not in raw.columns:  # PHOTOMETRY_FILE_OPTIONAL: not needed by the cuts
            out[name] = np.nan
            continue
        text = raw[name].astype(str).str.strip()
        values, good = parse_numbers(text)
        blank = text.isin(["", "nan", "NaN", "null", "NULL", "None"]).to_numpy()
        problems.add(~good & ~blank, f"{name} is not a number")
        out[name] = np.where(good, values, np.nan)
    keep = problems.resolve(on_bad, report_path)
    return out[keep].reset_index(drop=True)
