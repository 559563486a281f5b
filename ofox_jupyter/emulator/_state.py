"""Mutable state of one emulator: settings, recorded requests, faults, rate-limit window, ids.

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
from dataclasses import dataclass, field
from typing import Any

from ._faults import FaultBook

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "RATE_LIMIT",
    "RECORD_LIMIT",
    "EmulatorState",
    "RecordedRequest",
]

#: Requests per minute announced in ``x-ratelimit-limit-requests`` (counted, never enforced).
RATE_LIMIT = 200
#: How many requests an emulator remembers by default (the most recent ones).
RECORD_LIMIT = 1000
#: Largest request body accepted by default (8 MiB); a larger one gets a 413.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_WINDOW = 60.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received.

    ``headers`` has lower-case names; ``body`` is the parsed JSON object, or ``None`` when the
    body was empty, not JSON, or not an object, or was not read (only chat requests' bodies are).
    A chat request is recorded only once its key is accepted and its body fits the size limit.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class EmulatorState:
    """Settings and bookkeeping of one emulator (one per :class:`Emulator`)."""

    api_key: str | None = field(default=None, repr=False)  # never shown
    delay: float = 0.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    record_limit: int = RECORD_LIMIT
    faults: FaultBook = field(default_factory=FaultBook, repr=False)
    _requests: deque[RecordedRequest] = field(init=False, repr=False)
    _window: deque[float] = field(default_factory=deque, init=False, repr=False)
    _serial: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be >= 1")
        if self.record_limit < 1:
            raise ValueError("record_limit must be >= 1")
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

    def rate_limit_headers(self) -> dict[str, str]:
        """Count one request in the rolling minute; the ``x-ratelimit-*`` headers to send."""
        now = time.monotonic()
        with self._lock:
            while self._window and now - self._window[0] >= _WINDOW:
                self._window.popleft()
            self._window.append(now)
            remaining = max(0, RATE_LIMIT - len(self._window))
            reset = max(1, math.ceil(_WINDOW - (now - self._window[0])))
        return {
            "x-ratelimit-limit-requests": str(RATE_LIMIT),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset}s",
        }

    def clear(self) -> None:
        """Forget recorded requests, injected faults, fault counters and the rate window."""
        with self._lock:
            self._requests.clear()
            self._window.clear()
        self.faults.clear()
