"""The small HTTP helpers both remote data stages share: a thread-safe rate limiter, retries with exponential
backoff, and a GET that sorts failures into worth-retrying (:class:`RetryableError`) or not."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

USER_AGENT = "gcnn_spin (galaxy chirality study)"
T = TypeVar("T")


class RateLimiter:
    """At most ``max_per_s`` calls of :meth:`wait` per second, across threads (``<= 0``: no limit)."""

    def __init__(self, max_per_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / max_per_s if max_per_s > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:  # reserve the next slot, then sleep outside the lock
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class RetryableError(RuntimeError):
    """A failure worth another try (server error, timeout, truncated or corrupt answer)."""


def retry_call(fn: Callable[[], T], *, tries: int, backoff_s: float, retry_on: tuple[type[BaseException], ...],
               sleep: Callable[[float], None] = time.sleep, what: str = "request") -> T:
    """Call ``fn`` up to ``tries`` times, sleeping ``backoff_s * 2**k`` after failure ``k``; re-raise the last."""
    for attempt in range(tries):
        try:
            return fn()
        except retry_on as err:
            if attempt == tries - 1:
                raise
            delay = backoff_s * 2 ** attempt
            log.info("%s failed (%s); try %d of %d in %.1f s", what, err, attempt + 2, tries, delay)
            sleep(delay)
    raise ValueError(f"tries must be >= 1, got {tries}")


def http_get(url: str, timeout_s: float) -> bytes:
    """GET ``url``; 5xx, 429, timeouts and dropped connections become :class:`RetryableError`."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return answer.read()
    except urllib.error.HTTPError as err:
        if err.code >= 500 or err.code == 429:
            raise RetryableError(f"HTTP {err.code} {err.reason}") from None
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise RetryableError(f"connection failed: {getattr(err, 'reason', err)}") from None
