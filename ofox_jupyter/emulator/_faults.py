"""Fault specs: parsing ``NAME[:ARG][*TIMES][#TAG]`` and counting how often each spec has fired.

A request names at most one fault (header ``X-Ofox-Emulator-Fault``, a ``[emulator-fault: SPEC]``
marker, or the queue filled by ``Emulator.inject``).  With ``*TIMES`` the fault fires only for the
first TIMES requests carrying that exact spec string; the counter is keyed by the whole string,
``#TAG`` included, so tests can keep their counters apart (the counters of the 10,000 most recently
used specs are kept; an older one starts again from zero).  Later requests succeed normally, which
is how a test shows "retried and succeeded".

Names: ``400`` ``401`` ``429[:SECONDS]`` ``500`` ``502`` ``503`` (status faults, streamed or
not), ``slow:SECONDS`` (no byte before SECONDS), and the stream-only ``stall:SECONDS``,
``disconnect[:N]``, ``malformed[:N]``, ``error-openai[:N]``, ``error-openai-event[:N]``,
``error-openrouter[:N]`` and ``no-done``.  N counts the chunks after the role chunk (content,
reasoning and tool-call pieces).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["STATUS_FAULTS", "STREAM_FAULTS", "FaultBook", "FaultSpec", "parse_fault"]

STATUS_FAULTS = frozenset({"400", "401", "429", "500", "502", "503"})
STREAM_FAULTS = frozenset(
    {
        "stall",
        "disconnect",
        "malformed",
        "error-openai",
        "error-openai-event",
        "error-openrouter",
        "no-done",
    }
)
_SECONDS_ARG = {"429": 1.0, "slow": None, "stall": None}  # None: the argument is required
_COUNT_ARG = {
    "disconnect": 3,
    "malformed": 3,
    "error-openai": 3,
    "error-openai-event": 3,
    "error-openrouter": 3,
}
_NO_ARG = {"400", "401", "500", "502", "503", "no-done"}
_MAX_COUNTERS = 10_000

_SPEC = re.compile(
    r"^(?P<name>[a-z0-9-]+)(?::(?P<arg>[^*#]*))?(?:\*(?P<times>[^#]*))?(?:#(?P<tag>.*))?$"
)


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault: ``name``, its ``seconds`` or ``count`` argument, ``times`` and ``tag``."""

    raw: str
    name: str
    seconds: float = 0.0
    count: int = 0
    times: int | None = None
    tag: str | None = None

    @property
    def is_status(self) -> bool:
        """Whether this fault replaces the response with an HTTP error."""
        return self.name in STATUS_FAULTS

    @property
    def is_stream_only(self) -> bool:
        """Whether this fault only changes streamed responses."""
        return self.name in STREAM_FAULTS


def _is_count(text: str) -> bool:
    """At most nine ASCII digits (``str.isdigit`` alone accepts ``²``, which ``int`` rejects)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def parse_fault(spec: str) -> FaultSpec:
    """Parse ``NAME[:ARG][*TIMES][#TAG]``; raise :class:`ValueError` with a readable message."""
    raw = spec.strip()
    match = _SPEC.match(raw)
    if match is None:
        raise ValueError(f"invalid emulator fault spec {spec!r}")
    name, arg = match["name"], match["arg"]
    times_text, tag = match["times"], match["tag"]
    times: int | None = None
    if times_text is not None:
        if not _is_count(times_text) or int(times_text) < 1:
            raise ValueError(f"invalid *TIMES in emulator fault spec {spec!r}")
        times = int(times_text)
    seconds, count = 0.0, 0
    if name in _SECONDS_ARG:
        default = _SECONDS_ARG[name]
        if arg is None and default is None:
            raise ValueError(f"emulator fault {name!r} needs seconds, e.g. {name}:0.5")
        try:
            seconds = float(arg) if arg is not None else float(default or 0.0)
        except ValueError:
            raise ValueError(f"invalid seconds in emulator fault spec {spec!r}") from None
        if not 0.0 <= seconds < 3600.0:
            raise ValueError(f"seconds out of range in emulator fault spec {spec!r}")
    elif name in _COUNT_ARG:
        if arg is None:
            count = _COUNT_ARG[name]
        elif _is_count(arg):
            count = int(arg)
        else:
            raise ValueError(f"invalid chunk count in emulator fault spec {spec!r}")
    elif name in _NO_ARG:
        if arg is not None:
            raise ValueError(f"emulator fault {name!r} takes no argument")
    else:
        raise ValueError(f"unknown emulator fault {name!r} in {spec!r}")
    return FaultSpec(raw=raw, name=name, seconds=seconds, count=count, times=times, tag=tag)


@dataclass
class _Queued:
    spec: str
    remaining: int


class FaultBook:
    """Thread-safe per-spec counters and the queue of injected faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._queue: deque[_Queued] = deque()

    def inject(self, spec: str, times: int = 1) -> None:
        """Queue ``spec`` for the next ``times`` chat requests (validated now)."""
        parse_fault(spec)
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._queue.append(_Queued(spec.strip(), times))

    def take_injected(self) -> str | None:
        """Use up one request's worth of the oldest injected fault, if any."""
        with self._lock:
            if not self._queue:
                return None
            entry = self._queue[0]
            entry.remaining -= 1
            if entry.remaining <= 0:
                self._queue.popleft()
            return entry.spec

    def fires(self, fault: FaultSpec) -> bool:
        """Count one request carrying ``fault``; ``False`` once its ``*TIMES`` are used up."""
        with self._lock:
            seen = self._counts.pop(fault.raw, 0) + 1
            self._counts[fault.raw] = seen  # now the most recent
            if len(self._counts) > _MAX_COUNTERS:
                self._counts.popitem(last=False)
        return fault.times is None or seen <= fault.times

    def clear(self) -> None:
        """Forget injected faults and every counter."""
        with self._lock:
            self._counts.clear()
            self._queue.clear()
