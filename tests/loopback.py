"""A tiny HTTP server on 127.0.0.1 for tests, and fakes of the two services the pipeline talks to.

``Loopback`` runs ``http.server`` in a thread on a free port, routes GET paths to handler functions and records
every request. ``SkyServerFake`` answers SQL the way SkyServer DR7's ``x_sql.asp`` does for astroquery
(``#Table1`` line, CSV header, rows; an HTML page containing ``error_message`` for SQL it cannot run); it
really evaluates the pipeline's query shape (``fGetNearbyObjEq`` neighbour counts over its own object list,
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
    ``(path, query)`` of every request received, in order.
    """

    def __init__(self):
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
                status, ctype, body = handler(query) if handler else (404, "text/plain", b"no such page")
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
_NEIGHBOUR_PART = re.compile(
    r"SELECT CAST\((\d+) AS BIGINT\) AS objID, COUNT\(\*\) AS n_neighbours "
    r"FROM dbo\.fGetNearbyObjEq\(([-+\d.eE]+), ([-+\d.eE]+), ([-+\d.eE]+)\) WHERE objID <> (\d+)")
_QUERY_SHAPE = re.compile(
    r"^\s*SELECT t\.objID, t\.n_neighbours, p\.petroR50_r, p\.petroR50Err_r, p\.petroMag_r, p\.petroMagErr_r "
    r"FROM \((.*)\) AS t LEFT OUTER JOIN PhotoPrimary AS p ON p\.objID = t\.objID\s*$")
PHOTOMETRY = ("petroR50_r", "petroR50Err_r", "petroMag_r", "petroMagErr_r")


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (haversine), degrees in, arcsec out."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600


class SkyServerFake:
    """SkyServer over an object table ``objid, ra, dec, primary`` (+ photometry columns, NaN = NULL).

    ``failures``: statuses to answer the next requests with first (e.g. ``[500, 500]``); ``"error"`` sends the
    HTML error page SkyServer sends for bad SQL. Row order in answers is reversed, as a server may reorder.
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
        if not shape:
            return 200, "text/html", b"<html>error_message: Incorrect syntax</html>"
        lines = ["#Table1", "objID,n_neighbours," + ",".join(PHOTOMETRY)]
        obj = self.objects
        for part in reversed(_NEIGHBOUR_PART.findall(shape.group(1))):
            objid, ra, dec, r_arcmin, not_id = int(part[0]), *map(float, part[1:4]), int(part[4])
            near = (_separation_arcsec(ra, dec, obj["ra"].to_numpy(), obj["dec"].to_numpy()) <= r_arcmin * 60)
            n = int((near & (obj["objid"].to_numpy() != not_id)).sum())
            hit = obj[(obj["objid"] == objid) & obj["primary"]]
            values = ["" if hit.empty or pd.isna(hit[c].iloc[0]) else repr(float(hit[c].iloc[0]))
                      for c in PHOTOMETRY]
            lines.append(",".join([str(objid), str(n), *values]))
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
