"""What a batch gives back: one :class:`ItemResult` per item, in input order, in a
:class:`BatchResult` (a list) that also speaks pandas when the input was pandas."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._markdown import dollars
from ._streaming import Reply, Usage, json_of_text

__all__ = ["BatchPlan", "BatchResult", "ItemResult", "from_record", "record_of"]

#: Rows shown when a result is displayed (the rest are in the list).
_SHOWN = 10
_CELL = 80


@dataclass
class ItemResult:
    """One item's answer. ``status``: ``"done"``, ``"failed"`` (``error`` says why, in one
    line) or ``"not run"`` (the batch was stopped first). ``value`` is the parsed JSON when
    JSON was asked for; ``cached``: answered from the cache, nothing sent; ``same_as``: the
    earlier item whose request was exactly the same (its answer, nothing sent, cost 0)."""

    position: int
    status: str = "not run"
    text: str = ""
    value: Any = None
    model: str = ""
    usage: Usage | None = None
    cost: float | None = None
    error: str | None = None
    cached: bool = False
    finish_reason: str | None = None
    #: The earlier item that asked exactly the same: its answer, nothing sent for this one.
    same_as: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @property
    def tokens(self) -> int:
        return self.usage.total_tokens if self.usage is not None else 0

    @property
    def fresh(self) -> bool:
        """Answered by a request of this run (not from the cache, nor an earlier item's)."""
        return self.ok and not self.cached and self.same_as is None


@dataclass(frozen=True)
class BatchPlan:
    """What a batch would send (``dry_run=True``): ``requests`` to send, ``cached`` answered
    from the cache, the estimated ``prompt_tokens``, and the cost: ``prompt_cost`` for the
    prompts, ``max_cost`` if every reply ran to ``reply_tokens`` (``None``: no price known)."""

    items: int
    requests: int
    cached: int
    model: str
    prompt_tokens: int
    reply_tokens: int
    prompt_cost: float | None
    max_cost: float | None

    def summary(self) -> str:
        from ._budget import format_usd

        cost = (
            f"about {format_usd(self.prompt_cost)} for the prompts, at most "
            f"{format_usd(self.max_cost)} with replies of up to {self.reply_tokens:,} tokens"
            if self.prompt_cost is not None and self.max_cost is not None
            else f"cost unknown ({self.model} has no price in the catalog)"
        )
        return (
            f"{self.requests:,} request{'s' * (self.requests != 1)} to send to {self.model} "
            f"({self.cached:,} of {self.items:,} items from the cache); "
            f"~{self.prompt_tokens:,} prompt tokens; {cost}"
        )

    def __repr__(self) -> str:
        return f"<BatchPlan: {self.summary()}>"

    def _repr_markdown_(self) -> str:
        return dollars(self.summary())


@dataclass(eq=False)
class _Meta:
    kind: str = "list"
    index: Any = None
    name: Any = None


class BatchResult(list[ItemResult]):
    """The items' results, in input order; ``interrupted`` if the batch was stopped (the items
    not run have status ``"not run"``; run the batch again to continue from the cache)."""

    def __init__(
        self,
        results: list[ItemResult],
        *,
        model: str = "",
        kind: str = "list",
        index: Any = None,
        name: Any = None,
    ) -> None:
        super().__init__(results)
        self.model = model
        self.interrupted = False
        #: Answers are written to a cache (so an interrupted batch continues from there).
        self.caching = True
        #: Why the batch stopped sending before its end (a key the gateway refused), if it did.
        self.stopped_because: str | None = None
        self.seconds = 0.0
        self.sent = 0  # requests sent (retries included)
        self.rate_limited = 0  # of them answered 429
        self.unbilled = 0  # of them refused with an error status (nothing to pay for)
        self.notices: list[str] = []
        self._meta = _Meta(kind, index, name)

    # -- totals

    @property
    def done(self) -> int:
        return sum(r.ok for r in self)

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self if r.status == "failed"]

    @property
    def from_cache(self) -> int:
        return sum(r.cached for r in self)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self)

    @property
    def cost(self) -> float | None:
        """What the items cost (cached ones included, as first paid); ``None`` if unknown."""
        costs = [r.cost for r in self if r.ok]
        return None if any(c is None for c in costs) else sum(c for c in costs if c)

    def summary(self) -> str:
        from ._budget import format_usd

        parts = [f"{len(self):,} item{'s' * (len(self) != 1)}", f"{self.done:,} answered"]
        if self.from_cache:
            parts[-1] += f" ({self.from_cache:,} from the cache)"
        repeated = sum(r.same_as is not None for r in self if r.ok)
        if repeated:
            parts[-1] += f" ({repeated:,} the same request as an earlier item)"
        parts.append(f"{len(self.failed):,} failed")
        not_run = sum(r.status == "not run" for r in self)
        if not_run:
            parts.append(f"{not_run:,} not run")
        parts.append(f"{self.tokens:,} tokens")
        cost = self.cost
        parts.append(format_usd(cost) if cost is not None else "cost unknown")
        line = " · ".join(parts)
        if self.stopped_because:
            line += f" — stopped: {self.stopped_because}"
        elif self.interrupted:
            line += " — interrupted: " + (
                "run it again to continue (answered items are cached)"
                if self.caching
                else "the items not run were not sent"
            )
        elif self and not self.done and self.failed:
            line += f" — every item failed; the first: {self.failed[0].error}"
        return line

    def summary_bundle(self) -> dict[str, str]:
        line = self.summary()
        return {"text/plain": line, "text/markdown": dollars(line)}

    # -- columns

    def _column(self, values: list[Any], name: str) -> Any:
        if self._meta.kind == "list":
            return values
        pd = _pandas()  # the input was pandas: it is already imported
        return pd.Series(values, index=self._meta.index, name=name)

    @property
    def texts(self) -> Any:
        """Each item's reply text (a Series with the input's index when it was pandas)."""
        return self._column([r.text for r in self], "text")

    @property
    def values(self) -> Any:
        """Each item's parsed JSON (``None`` where it failed or JSON was not asked for)."""
        return self._column([r.value for r in self], "value")

    @property
    def errors(self) -> Any:
        return self._column([r.error for r in self], "error")

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per item (the input's index, names and levels kept,
        when it was pandas): the fields of JSON-object replies as columns (else ``text``), then
        ``error``, ``tokens``, ``cost`` and ``cached`` — named ``ofox_error`` … when a reply has
        a field of that name, which is kept. Imports pandas."""
        pd = _pandas()
        own = ("error", "tokens", "cost", "cached")
        values = [r.value if isinstance(r.value, dict) else {"text": r.text} for r in self]
        clash = any(name in value for value in values for name in own)
        records = []
        for r, value in zip(self, values, strict=True):
            row = dict(value)
            for name, data in zip(own, (r.error, r.tokens, r.cost, r.cached), strict=True):
                row[f"ofox_{name}" if clash else name] = data
            records.append(row)
        return pd.DataFrame(records, index=self._meta.index)

    # -- display

    def __repr__(self) -> str:
        return f"<BatchResult: {self.summary()}>"

    def _repr_markdown_(self) -> str:
        lines = [dollars(self.summary()), "", "| # | reply | error |", "|---|---|---|"]
        for r in self[:_SHOWN]:
            shown = r.value if r.value is not None else r.text
            lines.append(f"| {r.position} | {_cell(shown)} | {_cell(r.error or '')} |")
        if len(self) > _SHOWN:
            lines.append(f"| … | {len(self) - _SHOWN:,} more | |")
        return "\n".join(lines)


def _pandas() -> Any:
    import importlib

    return importlib.import_module("pandas")  # untyped for mypy, on purpose: no stubs needed


def _cell(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split()).replace("|", "\\|")
    text = text if len(text) <= _CELL else text[: _CELL - 1] + "…"
    return dollars(text)


def record_of(reply: Reply, cost: float | None) -> dict[str, Any]:
    """What the batch keeps of an answer (the cache's row): text, served model, finish reason,
    usage and cost."""
    usage = reply.usage
    return {
        "text": reply.text,
        "model": reply.model,
        "finish_reason": reply.finish_reason,
        "usage": usage.to_dict() if usage is not None else None,
        "cost": cost,
    }


def from_record(
    position: int, record: Mapping[str, Any], expect_json: bool, *, cached: bool = True
) -> ItemResult:
    """An item's result from the record of its answer (as :func:`record_of` makes it and the
    cache keeps it; a cached row is untrusted: every field is checked). Not JSON when JSON was
    asked for: failed, so that it is asked again."""
    usage_data = record.get("usage")
    try:
        usage = Usage.from_dict(usage_data) if isinstance(usage_data, Mapping) else None
    except ValueError:
        usage = None
    cost = record.get("cost")
    text = str(record.get("text", ""))
    result = ItemResult(
        position,
        "done",
        text=text,
        model=str(record.get("model") or ""),
        usage=usage,
        cost=float(cost) if isinstance(cost, (int, float)) and math.isfinite(cost) else None,
        cached=cached,
        finish_reason=record.get("finish_reason")
        if isinstance(record.get("finish_reason"), str)
        else None,
    )
    if expect_json:
        try:
            result.value = json_of_text(text)
        except ValueError as err:
            result.status, result.error = "failed", f"the reply is not valid JSON ({err})"[:200]
    return result
