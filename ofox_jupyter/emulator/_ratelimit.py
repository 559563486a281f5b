"""Requests per minute: the ``x-ratelimit-*`` headers, and when a chat request gets a 429.

:class:`RateWindow` is pure bookkeeping for one key: the caller passes the time (``now``), so tests
drive it with a fake clock.  :class:`RateLimiter` is what an emulator holds: one window per API
key, a clock and a lock.  It works in one of two modes:

* ``rpm=None`` (the default, as before): one window for every request of every route, announcing
  :data:`RATE_LIMIT` requests per minute; requests are counted, never refused.
* ``rpm=N``: each Bearer token (requests without one share an anonymous window) may make N chat
  requests in any sliding window; the next one is refused and not counted.  Other routes only
  read the caller's window for their headers, so the client's catalog fetch (``GET /models``)
  does not eat the budget of the batch that follows it.

Header values follow OfoxAI (ofox-api.md §8): ``x-ratelimit-reset-requests`` is a duration in
whole seconds, rounded up and at least ``1s``: the time until the oldest counted request leaves
the window, i.e. until one more request would be admitted.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RATE_LIMIT", "WINDOW", "Admission", "RateLimiter", "RateWindow"]

#: Requests per minute announced when no limit is enforced (docs.ofox.ai's figure).
RATE_LIMIT = 200
#: Length of the sliding window, in seconds.
WINDOW = 60.0
# Distinct keys remembered at once: without a required key any token is accepted, and a client
# that invents a new token per request must not grow the emulator's memory without end.
_MAX_KEYS = 10_000
_ANONYMOUS = b""  # never equal to a sha256 digest (32 bytes)


@dataclass(frozen=True)
class Admission:
    """The verdict on one request and what its ``x-ratelimit-*`` headers say.

    ``reset`` is in whole seconds (at least 1); ``remaining`` counts this request if it was
    admitted and counted.
    """

    admitted: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """The three ``x-ratelimit-*`` headers, as OfoxAI spells them."""
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{self.reset}s",
        }


class RateWindow:
    """The times of the requests counted in the last ``window`` seconds, for one key.

    Usage::

        window = RateWindow(limit=3)
        window.admit(now=0.0)    # Admission(admitted=True, limit=3, remaining=2, reset=60)

    Not thread-safe (:class:`RateLimiter` locks around it).  A request counted at ``t`` stops
    counting at ``t + window`` exactly.
    """

    def __init__(self, limit: int, window: float = WINDOW) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if not (math.isfinite(window) and window > 0):
            raise ValueError("window must be a number of seconds > 0")
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def admit(self, now: float) -> Admission:
        """Count the request at ``now`` if the window has room; a refused one is not counted
        (a client that keeps retrying too early must not push its own reset further away)."""
        self._expire(now)
        if len(self._times) >= self.limit:
            return self._verdict(now, admitted=False)
        self._times.append(now)
        return self._verdict(now, admitted=True)

    def count(self, now: float) -> Admission:
        """Count the request at ``now`` and admit it even past the limit (announce-only mode)."""
        self._expire(now)
        self._times.append(now)
        return self._verdict(now, admitted=True)

    def peek(self, now: float) -> Admission:
        """What the headers say at ``now``, without counting anything."""
        self._expire(now)
        return self._verdict(now, admitted=len(self._times) < self.limit)

    def is_empty(self, now: float) -> bool:
        """Whether no counted request is left in the window at ``now``."""
        self._expire(now)
        return not self._times

    def _expire(self, now: float) -> None:
        times = self._times
        while times and now - times[0] >= self.window:
            times.popleft()

    def _verdict(self, now: float, *, admitted: bool) -> Admission:
        remaining = max(0, self.limit - len(self._times))
        # An empty window has nothing to wait for; OfoxAI never sends less than "1s".
        left = self.window - (now - self._times[0]) if self._times else 0.0
        return Admission(admitted, self.limit, remaining, max(1, math.ceil(left)))


class RateLimiter:
    """The rate limit of one emulator: ``rpm`` chat requests per key per window, or none.

    ``window`` and ``clock`` exist for tests (a short window, a fake clock); the command line
    offers neither.  Keys are kept as sha256 digests of the Bearer token, never the token itself.
    """

    def __init__(
        self,
        rpm: int | None = None,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, int) or rpm < 1):
            raise ValueError("rpm must be a whole number >= 1, or None for no limit")
        self.rpm = rpm
        self.window = window
        self._clock = clock
        self._announced = RateWindow(RATE_LIMIT, window)
        self._windows: dict[bytes, RateWindow] = {}
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """The requests per window announced in ``x-ratelimit-limit-requests``."""
        return RATE_LIMIT if self.rpm is None else self.rpm

    def admit_chat(self, authorization: str | None) -> Admission:
        """The verdict on one chat request carrying this ``Authorization`` header (counted)."""
        with self._lock:
            now = self._clock()
            if self.rpm is None:
                return self._announced.count(now)
            return self._window(_key(authorization), now, self.rpm).admit(now)

    def announce(self, authorization: str | None) -> Admission:
        """Headers for any other response: counted as before without a limit; with one, the
        caller's window is only read (and no window is created for a token never admitted)."""
        with self._lock:
            now = self._clock()
            if self.rpm is None:
                return self._announced.count(now)
            window = self._windows.get(_key(authorization))
            if window is None:
                return Admission(True, self.rpm, self.rpm, 1)
            return window.peek(now)

    def clear(self) -> None:
        """Forget every counted request."""
        with self._lock:
            self._announced = RateWindow(RATE_LIMIT, self.window)
            self._windows.clear()

    def _window(self, key: bytes, now: float, limit: int) -> RateWindow:
        window = self._windows.get(key)
        if window is not None:
            return window
        if len(self._windows) >= _MAX_KEYS:
            for stale in [k for k, w in self._windows.items() if w.is_empty(now)]:
                del self._windows[stale]
            while len(self._windows) >= _MAX_KEYS:  # all busy: forget the oldest key's count
                del self._windows[next(iter(self._windows))]
        window = self._windows[key] = RateWindow(limit, self.window)
        return window


def _key(authorization: str | None) -> bytes:
    """The window key of a request: a digest of its Bearer token, or the anonymous key."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    return hashlib.sha256(token.encode()).digest() if token else _ANONYMOUS
