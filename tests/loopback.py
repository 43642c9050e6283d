"""A tiny HTTP server on 127.0.0.1 for tests, and fakes of the two services the pipeline talks to.

``Loopback`` runs ``http.server`` in a thread on a free port, routes GET paths to handler functions and records
every request (optionally refusing query strings longer than IIS's limit). ``SkyServerFake`` answers SQL the way
SkyServer DR7's ``x_sql.asp`` does for astroquery (``#Table1`` line, CSV header, rows, as in astroquery's
recorded answers; an HTML page containing ``error_message`` for SQL it cannot run); it really evaluates the
pipeline's query shape (neighbour counts over all or primary detections of its own object list,
``LEFT JOIN PhotoPrimary``). ``CutoutFake`` serves generated JPEGs like the Legacy Surveys viewer and can be
scripted to answer a position with errors or corrupt bytes first.
"""

from __future__ import annotations

import io
import re
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
from PIL import Image

Answer = tuple[int, str, bytes]  # status, content type, body


class Loopback:
    """``with Loopback() as server: server.route("/x", handler); urlopen(server.url + "/x?a=1")``.

    ``handler(query: dict[str, str]) -> (status, content_type, body)``; ``server.requests`` lists
    ``(path, query)`` of every request received, in order. ``max_query_bytes``: answer longer query strings
    with 404 as IIS does (its request filtering, ``maxQueryString``).
    """

    def __init__(self, max_query_bytes: int | None = None):
        self.max_query_bytes = max_query_bytes
        self.routes: dict[str, Callable[[dict[str, str]], Answer]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
                with owner._lock:
                    owner.requests.append((parsed.path, query))
                handler = owner.routes.get(parsed.path)
                if owner.max_query_bytes is not None and len(parsed.query) > owner.max_query_bytes:
                    status, ctype, body = 404, "text/html", b"HTTP Error 404.15 - Query String Too Long"
                elif handler is None:
                    status, ctype, body = 404, "text/plain", b"no such page"
                else:
                    status, ctype, body = handler(query)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, handler: Callable[[dict[str, str]], Answer]) -> None:
        self.routes[path] = handler

    def hits(self, path: str) -> int:
        return sum(p == path for p, _ in self.requests)

    def __enter__(self) -> Loopback:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- SkyServer DR7

SKYSERVER_DR7_PATH = "/dr7/en/tools/search/x_sql.asp"  # astroquery's QUERY_URL_SUFFIX_DR_OLD for DR7
#: IIS request filtering's default maxQueryString: longer GET query strings get 404.15 "Query String Too Long".
IIS_MAX_QUERY_BYTES = 2048
PHOTOMETRY = ("petroR50_r", "petroR50Err_r", "petroMag_r", "petroMagErr_r")
_QUERY_SHAPE = re.compile(
    r"^\s*SELECT t\.objID, p\.petroR50_r, p\.petroR50Err_r, p\.petroMag_r, p\.petroMagErr_r, "
    r"\(SELECT COUNT\(\*\) FROM dbo\.(?P<function>fGetNearbyObjAllEq|fGetNearbyObjEq)"
    r"\(t\.ra, t\.\[dec\], (?P<radius>[\d.]+)E0/60\) AS n WHERE n\.objID <> t\.objID\) AS n_neighbours_1arcsec "
    r"FROM \((?P<rows>.*)\) AS t LEFT OUTER JOIN PhotoPrimary AS p ON p\.objID = t\.objID\s*$")
_FIRST_ROW = re.compile(r"^SELECT (\d+) AS objID,([-\d.]+) AS ra,([-\d.]+) AS \[dec\]$")
_ROW = re.compile(r"^SELECT (\d+),([-\d.]+),([-\d.]+)$")
PRIMARY, SECONDARY, FAMILY = 1, 2, 3  # PhotoObjAll.mode


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (haversine), degrees in, arcsec out."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600


def _inline_table(text: str) -> list[tuple[int, float, float]] | None:
    """``SELECT id AS objID,ra AS ra,dec AS [dec] UNION ALL SELECT id,ra,dec ...`` -> rows, or None."""
    parts = text.split(" UNION ALL ")
    first = _FIRST_ROW.match(parts[0])
    rest = [_ROW.match(part) for part in parts[1:]]
    if not first or not all(rest):
        return None
    return [(int(m.group(1)), float(m.group(2)), float(m.group(3))) for m in [first, *rest]]


class SkyServerFake:
    """SkyServer DR7 over ``PhotoObjAll``: a table ``objid, ra, dec, mode`` (+ photometry, NaN = NULL).

    It runs the pipeline's query shape for real: per row of the inline table, the count of other objects within
    the radius among all detections (``fGetNearbyObjAllEq``) or primary ones (``fGetNearbyObjEq``), and the
    photometry of the objID in ``PhotoPrimary`` (``mode == 1``). Answers as recorded from SkyServer for
    astroquery: a ``#Table1`` line, the CSV header, the rows. ``failures``: statuses to answer the next requests
    with first (e.g. ``[500, 500]``); ``"error"`` sends the HTML page SkyServer sends for SQL it cannot run.
    Row order in answers is reversed, as a server may reorder.
    """

    def __init__(self, objects: pd.DataFrame):
        self.objects = objects.reset_index(drop=True)
        self.failures: list[int | str] = []
        self.n_answered = 0

    def __call__(self, query: dict[str, str]) -> Answer:
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "error":
                return 200, "text/html", b"<html><body><h3>SQL error</h3><p class=error_message>...</p></body></html>"
            return int(failure), "text/plain", b"Server Error"
        if query.get("format") != "csv" or "cmd" not in query:
            return 400, "text/plain", b"expected cmd and format=csv"
        shape = _QUERY_SHAPE.match(query["cmd"])
        rows = _inline_table(shape.group("rows")) if shape else None
        if rows is None:
            return 200, "text/html", b"<html>error_message: Incorrect syntax</html>"
        obj = self.objects
        searched = obj if shape.group("function") == "fGetNearbyObjAllEq" else obj[obj["mode"] == PRIMARY]
        radius_arcsec = float(shape.group("radius"))
        lines = ["#Table1", "objID," + ",".join(PHOTOMETRY) + ",n_neighbours_1arcsec"]
        for objid, ra, dec in reversed(rows):
            near = _separation_arcsec(ra, dec, searched["ra"].to_numpy(), searched["dec"].to_numpy()) <= radius_arcsec
            n = int((near & (searched["objid"].to_numpy() != objid)).sum())
            hit = obj[(obj["objid"] == objid) & (obj["mode"] == PRIMARY)]
            values = ["" if hit.empty or pd.isna(hit[c].iloc[0]) else repr(float(hit[c].iloc[0]))
                      for c in PHOTOMETRY]
            lines.append(",".join([str(objid), *values, str(n)]))
        self.n_answered += 1
        return 200, "text/plain", ("\n".join(lines) + "\n").encode()


# ----------------------------------------------------------------------------- Legacy Surveys cutouts

CUTOUT_PATH = "/viewer/cutout.jpg"


def jpeg_bytes(size: int, seed: int) -> bytes:
    """A ``size x size`` RGB JPEG, different for each ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 200, 3, dtype=np.uint8) + rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class CutoutFake:
    """The cutout service: a JPEG of the requested ``size`` for any ``ra``/``dec``.

    ``script[(round(ra, 4), round(dec, 4))]`` lists answers to give that position first, in order: an HTTP
    status (``500``, ``404``), ``"corrupt"`` (truncated JPEG bytes) or ``"small"`` (a 100 px JPEG).
    """

    def __init__(self):
        self.script: dict[tuple[float, float], list[int | str]] = {}

    def __call__(self, query: dict[str, str]) -> Answer:
        ra, dec, size = float(query["ra"]), float(query["dec"]), int(query["size"])
        key = (round(ra, 4), round(dec, 4))
        seed = int(abs(ra * 1e4 + dec * 1e2)) % (2 ** 31)
        todo = self.script.get(key)
        if todo:
            action = todo.pop(0)
            if action == "corrupt":
                return 200, "image/jpeg", jpeg_bytes(size, seed)[:200]
            if action == "small":
                return 200, "image/jpeg", jpeg_bytes(100, seed)
            return int(action), "text/plain", b"error"
        return 200, "image/jpeg", jpeg_bytes(size, seed)
