"""Mutable state of one emulator: settings, recorded requests, faults, rate limit, ids.

Shared between the server thread (which handles requests) and the caller's thread (which reads
``requests``, injects faults and clears), so every mutation happens under a lock.  The record of
requests is bounded (the last ``record_limit``, :data:`RECORD_LIMIT` by default), so an emulator
that runs for the whole life of a kernel does not grow without end.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._faults import FaultBook
from ._ratelimit import RATE_LIMIT, WINDOW, RateLimiter

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "RATE_LIMIT",
    "RECORD_LIMIT",
    "EmulatorState",
    "RecordedRequest",
]

#: How many requests an emulator remembers by default (the most recent ones).
RECORD_LIMIT = 1000
#: Largest request body accepted by default (8 MiB); a larger one gets a 413.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received.

    ``headers`` has lower-case names; ``body`` is the parsed JSON object, or ``None`` when the
    body was empty, not JSON, or not an object, or was not read (only chat requests' bodies are).
    A chat request is recorded only once its key is accepted, it is within the rate limit and its
    body fits the size limit.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class EmulatorState:
    """Settings and bookkeeping of one emulator (one per :class:`Emulator`).

    ``rpm`` enforces that many chat requests per key per minute (``None``: announce
    :data:`RATE_LIMIT`, refuse nothing); ``latency`` is waited before a chat answer.
    ``rate_window`` and ``clock`` are for tests only (a short window, a fake clock).
    """

    api_key: str | None = field(default=None, repr=False)  # never shown
    delay: float = 0.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    record_limit: int = RECORD_LIMIT
    rpm: int | None = None
    latency: float = 0.0
    rate_window: float = field(default=WINDOW, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    faults: FaultBook = field(default_factory=FaultBook, repr=False)
    limiter: RateLimiter = field(init=False, repr=False)
    _requests: deque[RecordedRequest] = field(init=False, repr=False)
    _serial: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be >= 1")
        if self.record_limit < 1:
            raise ValueError("record_limit must be >= 1")
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError("latency must be a number of seconds >= 0")
        self.limiter = RateLimiter(self.rpm, self.rate_window, self.clock)  # checks rpm
        self._requests = deque(maxlen=self.record_limit)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests (at most the last ``record_limit``), oldest first."""
        with self._lock:
            return list(self._requests)

    def record(self, request: RecordedRequest) -> None:
        """Remember one received request, forgetting the oldest beyond ``record_limit``."""
        with self._lock:
            self._requests.append(request)

    def next_id(self) -> int:
        """A serial number, unique within this emulator (used in request and completion ids)."""
        with self._lock:
            self._serial += 1
            return self._serial

    def clear(self) -> None:
        """Forget recorded requests, injected faults, fault counters and the rate window."""
        with self._lock:
            self._requests.clear()
        self.limiter.clear()
        self.faults.clear()
