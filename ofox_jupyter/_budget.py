"""A spending cap for a kernel session (``OfoxMagics.max_cost``, ``OFOX_MAX_COST``): a classroom
can let thirty students experiment without a surprise on the bill.

Before a request is sent, its worst case is estimated — the prompt's tokens at the catalog's
input price plus ``max_tokens`` (or, when the request sets none, a default reply length) at its
output price — and the request is refused, in one line, if that would take the session past the
cap. What was spent is the list price of the replies received (the emulator's "would cost"
included, so a budget behaves the same offline). A model the catalog gives no price for is
refused while a cap is set: its cost could not be bounded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ._catalog import ModelInfo
from ._exceptions import OfoxError

__all__ = ["Budget", "BudgetError", "cost_cap", "format_usd"]

#: Reply tokens assumed when a request sets no ``max_tokens``.
DEFAULT_REPLY_TOKENS = 1024


class BudgetError(OfoxError):
    """A request was refused before sending: it could take the session past its budget."""


def format_usd(amount: float) -> str:
    """Dollars with three significant digits below $1 (``$0.0103``, ``$0.000615``)."""
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount <= 0:
        return "$0"
    decimals = max(2, 2 - math.floor(math.log10(amount)))
    return "$" + f"{amount:.{decimals}f}".rstrip("0").rstrip(".")


@dataclass
class Budget:
    """What a kernel session may spend (``limit``; 0 means no cap) and has spent."""

    limit: float = 0.0
    spent: float = 0.0
    #: The worst cases of the requests under way (comparison columns run at once).
    reserved: float = 0.0

    @property
    def left(self) -> float:
        return max(self.limit - self.spent - self.reserved, 0.0)

    def estimate(self, info: ModelInfo | None, prompt_tokens: int, max_tokens: int | None) -> float:
        """The most the request could cost; :class:`BudgetError` when it cannot be priced."""
        if info is None or info.prompt_price is None or info.completion_price is None:
            raise self.unpriced(info.id if info is not None else "this model", "its cost")
        reply = max_tokens if max_tokens else DEFAULT_REPLY_TOKENS
        return prompt_tokens * info.prompt_price + reply * info.completion_price

    def unpriced(self, model: str, cost: str) -> BudgetError:
        """The refusal of a request (or batch) whose ``cost`` cannot be bounded."""
        return BudgetError(
            f"{model} has no price in the catalog, so {cost} cannot be bounded and a "
            f"budget is set (OfoxMagics.max_cost = {format_usd(self.limit)})",
            hint="pick a priced model (%ofox models shows prices)",
        )

    def hold(self, info: ModelInfo | None, prompt_tokens: int, max_tokens: int | None) -> float:
        """Refuse (:class:`BudgetError`) a request that could exceed what is left; otherwise
        set its worst case aside until it is settled, and return it."""
        if self.limit <= 0:
            return 0.0
        worst = self.estimate(info, prompt_tokens, max_tokens)
        hint = "lower --max-tokens, start a new chat, or raise OfoxMagics.max_cost"
        return self.reserve(worst, "this request", hint)

    def reserve(self, worst: float, what: str, hint: str) -> float:
        """Refuse ``what`` (:class:`BudgetError`, with ``hint``) if its ``worst`` case could
        exceed what is left; otherwise set it aside until it is settled, and return it."""
        if worst > self.left:
            raise BudgetError(
                f"{what} could cost up to {format_usd(worst)}, and the budget has "
                f"{format_usd(self.left)} of {format_usd(self.limit)} left",
                hint=hint,
            )
        self.reserved += worst
        return worst

    def settle(self, held: float, cost: float | None) -> None:
        """The request held ``held`` is over: it cost ``cost`` (None: unknown, so the worst
        case is counted; a failed request that cost nothing passes 0)."""
        self.reserved = max(self.reserved - held, 0.0)
        spent = held if cost is None else cost
        if spent > 0:
            self.spent += spent


def cost_cap(configured: float) -> float:
    """The cap in force: ``OfoxMagics.max_cost``, or ``OFOX_MAX_COST`` when that is left at 0;
    anything that is not a positive finite number means no cap."""
    value: float | str = configured if configured > 0 else os.environ.get("OFOX_MAX_COST", "")
    try:
        cap = float(value or 0)
    except ValueError:
        return 0.0
    return cap if cap > 0 and math.isfinite(cap) else 0.0
