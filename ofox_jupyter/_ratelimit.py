"""How fast a batch may send: :class:`RateLimiter`, pure (it is given the time; no I/O).

OfoxAI limits requests per minute (100 or 200 by its two docs, possibly shared by a team) and
announces the limit on every response: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests`` and ``x-ratelimit-reset-requests`` (a duration such as
``"12s"``). Firing requests as fast as possible (``asyncio.gather``) fills the minute in the
first seconds and then collects 429s; the limiter instead

* **paces** requests evenly at :data:`MARGIN` of the announced limit, so no rolling minute ever
  holds more than the limit (and a fixed window neither);
* **watches what is left**: when the gateway counted more requests in the last minute than we
  sent, someone else (a team-mate's notebook) shares the limit, and the pace leaves them their
  share; when nothing is left it pauses until the reset;
* **backs off on a 429** (waits ``retry-after`` or the reset, and sends at 70 % of the rate),
  then grows back to the full rate with every success;
* when no headers come at all (another gateway), keeps a window of requests in flight that grows
  by one per success and halves on a 429.

Everything it reads from a response is untrusted: a header that is not a number is ignored.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ._request import parse_duration, retry_after_seconds

__all__ = ["MARGIN", "RateHeaders", "RateLimiter"]

#: The share of the announced limit a batch aims at: the rest absorbs the drift between our
#: clock and the gateway's and requests that reach it bunched together.
MARGIN = 0.99
_MINUTE = 60.0
#: After a 429 the rate drops to this share, then grows back by :data:`_GROWTH` of the target
#: per success (about 30 successes from a 429 back to full speed).
_BACKOFF = 0.7
_GROWTH = 0.01
#: Wait after a 429 that says nothing about when to retry.
_DEFAULT_PAUSE = 1.0
#: The longest pause a header may impose (a reset of "3600s" is a gateway bug, not a plan).
_MAX_PAUSE = 120.0
#: The smallest share of the announced limit we keep using while others use the rest.
_FLOOR = 0.05
#: In flight at first when no rate-limit headers are seen, and the window's smallest size.
_START_WINDOW = 4


@dataclass(frozen=True)
class RateHeaders:
    """The ``x-ratelimit-*`` values of one response (``None``: absent or not a number)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateHeaders:
        return cls(
            limit=_count(headers.get("x-ratelimit-limit-requests")),
            remaining=_count(headers.get("x-ratelimit-remaining-requests")),
            reset=_seconds(headers.get("x-ratelimit-reset-requests")),
        )


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if 0 <= number < 10**9 else None


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    seconds = parse_duration(value)
    if seconds is None:  # a bare number of seconds, as some gateways send
        try:
            seconds = float(value)
        except ValueError:
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RateLimiter:
    """When the next request of a batch may start.

    ``rpm``: a cap of our own (a share of a team's limit), used as the limit until the headers
    announce a lower one. ``max_in_flight``: the most requests under way at once.

    The batch calls :meth:`wait` (seconds until the next request may start), :meth:`sent` when
    it starts one, and :meth:`answered` with every response's status and headers.
    """

    def __init__(
        self, *, rpm: float | None = None, max_in_flight: int = 100, window: float = _MINUTE
    ) -> None:
        if rpm is not None and not (rpm > 0 and math.isfinite(rpm)):
            raise ValueError(f"rpm must be a positive number, not {rpm!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be 1 or more, not {max_in_flight!r}")
        self.user_rpm = rpm
        self.max_in_flight = max_in_flight
        #: The gateway's window, in seconds, that ``rpm`` and the headers count in (a minute;
        #: shorter only in tests against an emulator with a short window).
        self.window = window
        #: The limit the gateway announced (requests per minute), once a response said so.
        self.announced: int | None = None
        #: Requests a second we send at now (None: not paced, the limit is unknown).
        self.rate: float | None = MARGIN * rpm / window if rpm else None
        self.in_flight = 0
        self.answers = 0
        self.rate_limited = 0  # 429s seen
        self._others = 0  # requests of the last minute counted by the gateway but not ours
        self._window = _START_WINDOW  # in flight at most while no limit is known
        self._next_at = -math.inf  # when pacing lets the next request go
        self._paused_until = -math.inf
        self._sent_times: deque[float] = deque()  # send times of the last two windows

    @property
    def limit(self) -> float | None:
        """Requests per minute we keep under: the announced limit, or ours if lower."""
        limits = [x for x in (self.announced, self.user_rpm) if x]
        return min(limits) if limits else None

    def _target(self) -> float | None:
        """Requests a second at full speed: our share of what others leave of the limit."""
        limits = [x for x in (self.user_rpm,) if x]
        if self.announced:
            limits.append(max(self.announced - self._others, self.announced * _FLOOR))
        return MARGIN * min(limits) / self.window if limits else None

    def _cap(self) -> int:
        if self.rate is not None:
            return self.max_in_flight
        if self.answers == 0:
            return 1  # the first answer tells us the limit: one request until it comes
        return min(self._window, self.max_in_flight)

    def wait(self, now: float) -> float:
        """Seconds until the next request may start (0: now); ``math.inf`` while the most
        requests allowed are in flight (the next answer frees a place)."""
        if self.in_flight >= self._cap():
            return math.inf
        start = max(self._paused_until, self._next_at if self.rate is not None else -math.inf)
        return max(0.0, start - now)

    def sent(self, now: float) -> None:
        """A request starts now."""
        self.in_flight += 1
        self._sent_times.append(now)
        # Two windows back: an answer counts our sends in the window before *its* request,
        # which may have left a long time ago (a 20-second reply).
        while self._sent_times and now - self._sent_times[0] > 2 * self.window:
            self._sent_times.popleft()
        if self.rate is not None:
            # On the grid of slots while we keep up with it (a request a little late, after a
            # wait for a free place, does not push every later one back); from now after an
            # idle spell (no burst to catch up).
            interval = 1 / self.rate
            late = now - self._next_at
            self._next_at = (self._next_at if late < interval else now) + interval

    def answered(
        self, now: float, sent_at: float, status: int | None, headers: Mapping[str, str]
    ) -> None:
        """A request sent at ``sent_at`` was answered with ``status`` (None: it failed before
        any answer) and ``headers``."""
        self.in_flight = max(0, self.in_flight - 1)
        self.answers += 1
        info = RateHeaders.parse(headers)
        if info.limit:
            self.announced = info.limit
        if info.remaining is not None and self.announced:
            # What the gateway counted in the minute up to this request, less what we sent in
            # it, is someone else's (a team shares one limit): leave them their share.
            times = self._sent_times
            since = sent_at - self.window
            ours = bisect.bisect_right(times, sent_at) - bisect.bisect_right(times, since)
            self._others = max(0, self.announced - info.remaining - ours)
            if info.remaining == 0 and status != 429:
                self._pause(now, info.reset if info.reset is not None else _DEFAULT_PAUSE)
        target = self._target()
        if target is not None and (self.rate is None or self.rate > target):
            self.rate = target
        if status == 429:
            self._on_rate_limited(now, headers, info)
        elif status is not None and status < 400:
            if self.rate is not None and target is not None:
                self.rate = min(target, self.rate + _GROWTH * target)
            elif self.rate is None:
                self._window += 1

    def _on_rate_limited(self, now: float, headers: Mapping[str, str], info: RateHeaders) -> None:
        self.rate_limited += 1
        hint = retry_after_seconds(headers)
        self._pause(now, hint if hint is not None else (info.reset or _DEFAULT_PAUSE))
        if self.rate is not None:
            target = self._target() or self.rate
            self.rate = max(self.rate * _BACKOFF, target * _FLOOR)
        else:
            self._window = max(_START_WINDOW // 2, self._window // 2)

    def _pause(self, now: float, seconds: float) -> None:
        seconds = min(max(seconds, 0.0), _MAX_PAUSE)
        self._paused_until = max(self._paused_until, now + seconds)
        if self.rate is not None:
            self._next_at = max(self._next_at, self._paused_until)
