"""When the growing part of a live reply is worth re-sending: :class:`UpdateThrottle`, pure
(it is given the time; no I/O), used by :mod:`._display` for every live output."""

from __future__ import annotations

__all__ = ["MAX_GAP", "MAX_GAP_IN_CODE", "UpdateThrottle"]

#: The longest text that has arrived waits before it is shown, in seconds (target: 0.5).
MAX_GAP = 0.45
#: The same inside a fenced code block, which cannot be cut: every update there re-sends the
#: block so far, so its updates come as late as the target allows (timed to the next chunk's
#: expected arrival, see :meth:`UpdateThrottle.due`, rather than to the first chunk after).
MAX_GAP_IN_CODE = 0.48
#: Seconds between two updates at the least (a block that ends just after an update waits).
_MIN_SPACING = 0.03
#: Updates that may follow each other faster than ``max_rate`` (a finished block, then more).
_BURST = 2.0
#: The ``max_gap`` rule sends updates as long as all updates together stay within this many
#: times the text arrived, plus :data:`_BUDGET_SLACK` characters (with the final render, about
#: three times the reply at most).
_GAP_BUDGET = 2.25
_BUDGET_SLACK = 16_384


class UpdateThrottle:
    """Decides when the growing part of a reply is worth re-sending.

    Updates are paced by a token bucket: ``max_rate`` a second, a burst of two at most (so no
    second sees more than ``max_rate + 2``), none within :data:`_MIN_SPACING` of the last. Within
    that, an update is due

    * at once when the text ends a block (its output then holds its final text, and freezing it
      costs nothing more);
    * once the text that arrived since the last update is at least ``1 / max_cost`` of what the
      update sends (so the bytes stay within ``max_cost`` times the reply);
    * in any case once text has waited ``max_gap`` seconds, unless that would take the bytes sent
      past :data:`_GAP_BUDGET` times the text arrived (plus a little): a reply with nowhere to
      cut (one paragraph of 100k characters) then grows by the rule above rather than costing
      bytes that grow with its square.

    Inside a fenced code block only the last rule applies, with ``max_gap_in_code``: nothing
    there can be frozen, so an early update would only be one more copy of the block, and it
    would move the next ones later into the block, where they cost more. The wait is measured
    against when the next chunk is expected (``lead``): if it would come after the deadline, the
    update goes out now.

    Freezing finished blocks keeps what an update sends small, so these rarely conflict."""

    def __init__(
        self,
        max_rate: float = 12.0,
        max_gap: float = MAX_GAP,
        max_cost: float = 1.25,
        max_gap_in_code: float = MAX_GAP_IN_CODE,
    ) -> None:
        self.max_rate = max_rate
        self.max_gap = max_gap
        self.max_gap_in_code = max_gap_in_code
        self.max_cost = max_cost
        self._tokens = _BURST
        self._last_time: float | None = None
        self._last_size = 0
        self._sent = 0

    def _allowed(self, now: float) -> bool:
        if self._last_time is None or self.max_rate <= 0:
            return True
        elapsed = now - self._last_time
        if elapsed < _MIN_SPACING:
            return False
        return min(_BURST, self._tokens + elapsed * self.max_rate) >= 1

    def _within_budget(self, size: int, cost: int) -> bool:
        return self._sent + cost <= _GAP_BUDGET * size + _BUDGET_SLACK

    def gap(self, in_code: bool) -> float:
        return self.max_gap_in_code if in_code else self.max_gap

    def due(
        self,
        now: float,
        size: int,
        cost: int,
        *,
        block_end: bool = False,
        in_code: bool = False,
        lead: float = 0.0,
    ) -> bool:
        """Whether to send an update of ``cost`` characters now that ``size`` have arrived;
        ``block_end``: the text now ends a finished block; ``in_code``: it ends inside a fenced
        code block; ``lead``: about how long until the next chunk (in code only)."""
        if self._last_time is None:
            return True  # the first text is shown at once
        new = size - self._last_size
        if new <= 0 or not self._allowed(now):
            return False
        if in_code:
            waited = now + min(lead, self.max_gap_in_code / 4) - self._last_time
            return waited >= self.max_gap_in_code and self._within_budget(size, cost)
        if block_end or new * self.max_cost >= cost:
            return True
        return now - self._last_time >= self.max_gap and self._within_budget(size, cost)

    def overdue(self, now: float, size: int, cost: int, *, in_code: bool = False) -> bool:
        """Text has arrived and waited its ``max_gap`` (checked by the ticker between chunks)."""
        deadline = self.deadline(size, in_code)
        return (
            deadline is not None
            and now >= deadline
            and self._allowed(now)
            and self._within_budget(size, cost)
        )

    def deadline(self, size: int, in_code: bool = False) -> float | None:
        """When the text waiting now must be shown (None: nothing waits)."""
        if self._last_time is None or size <= self._last_size:
            return None
        return self._last_time + self.gap(in_code)

    def pending(self, size: int) -> int:
        """Characters arrived since the last update."""
        return size - self._last_size

    def mark(self, now: float, size: int) -> None:
        if self._last_time is not None and self.max_rate > 0:
            refill = (now - self._last_time) * self.max_rate
            self._tokens = max(0.0, min(_BURST, self._tokens + refill) - 1)
        self._last_time, self._last_size = now, size

    def spent(self, characters: int) -> None:
        """Count what an update sent (the budget of the ``max_gap`` rule)."""
        self._sent += characters
