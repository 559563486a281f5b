"""Mutable state of one emulator: settings, recorded requests, faults, rate-limit window, ids.

Shared between the server thread (which handles requests) and the caller's thread (which reads
``requests``, injects faults and clears), so every mutation happens under a lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._faults import FaultBook

__all__ = ["RATE_LIMIT", "EmulatorState", "RecordedRequest"]

#: Requests per minute announced in ``x-ratelimit-limit-requests`` (counted, never enforced).
RATE_LIMIT = 200
_WINDOW = 60.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received.

    ``headers`` has lower-case names; ``body`` is the parsed JSON object, or ``None`` when the
    body was empty, not JSON, or not an object.
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
    faults: FaultBook = field(default_factory=FaultBook, repr=False)
    _requests: list[RecordedRequest] = field(default_factory=list, init=False, repr=False)
    _window: deque[float] = field(default_factory=deque, init=False, repr=False)
    _serial: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def record(self, request: RecordedRequest) -> None:
        """Remember one received request."""
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
