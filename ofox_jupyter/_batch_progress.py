"""A batch's progress bar: tqdm's, the one notebook users already know (done/total, rate, ETA),
with tokens, cost and failures so far after it.

In a notebook the bar is tqdm's widget, shown in an output published empty and filled through
its display id; when the batch ends it is emptied (and a one-line summary follows) or, for the
magic, which shows the result itself, the cell is cleared. nbval and some frontends ignore
display updates and ``clear_output`` (style.md, "Known traps"), so to them the bar is an empty
output, and a saved notebook holds no timings that differ on every run. In a terminal it is
tqdm's single updating line on stderr.

tqdm is imported only when a batch starts; without ipywidgets the text bar is used.
"""

from __future__ import annotations

import sys
from typing import Any

from ._batch_results import BatchResult, ItemResult
from ._budget import format_usd

__all__ = ["Progress"]

_BLANK: dict[str, str] = {}


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None


class Progress:
    """Shows ``result`` filling up; :meth:`update` after each item, :meth:`close` at the end."""

    def __init__(
        self,
        result: BatchResult,
        *,
        enabled: bool = True,
        summary: bool = True,
        rich: bool | None = None,
    ) -> None:
        self.result = result
        #: A summary line after the bar; without one (the magic shows the result itself) the
        #: cell is cleared instead, so no empty output stays behind.
        self.summary = summary
        self._bar: Any = None
        self._handle: Any = None
        self._tokens, self._cost, self._failed, self._priced = 0, 0.0, 0, True
        for item in result:
            self._count(item)
        # ``rich``: the widget bar (the magic says, from its display mode); None: in a kernel.
        self._rich = enabled and (_in_kernel() if rich is None else rich)
        if not enabled:
            return
        settled = sum(r.status != "not run" for r in result)
        options = {"total": len(result), "initial": settled, "desc": "ofox batch", "unit": "req"}
        if self._rich:
            try:
                from IPython.display import display
                from tqdm.notebook import tqdm as notebook_bar

                self._bar = notebook_bar(**options, display=False, leave=True)
                self._handle = display(_BLANK, raw=True, display_id=True)
                self._handle.update(self._bar.container)
                self._postfix()
                return
            except ImportError:  # no ipywidgets: the text bar, in the cell's stream
                self._bar = None
        from tqdm import tqdm as text_bar

        self._bar = text_bar(**options, file=sys.stderr, dynamic_ncols=True, mininterval=0.25)
        self._postfix()

    def _postfix(self) -> None:
        cost = format_usd(self._cost) if self._priced else "$?"
        parts = [f"{self._tokens:,} tokens", cost]
        if self._failed:
            parts.append(f"{self._failed:,} failed")
        self._bar.set_postfix_str(", ".join(parts), refresh=False)

    def _count(self, item: ItemResult) -> None:
        # Running totals: summing the whole result on every update would cost n² in all.
        if item.status == "failed":
            self._failed += 1
        elif item.ok:
            self._tokens += item.tokens
            if item.cost is None:
                self._priced = False
            else:
                self._cost += item.cost

    def update(self, item: ItemResult) -> None:
        if self._bar is None:
            return
        self._count(item)
        self._postfix()
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is None:
            return
        self._bar.close()
        if self._handle is not None:
            from IPython.display import clear_output, display

            if self.summary:
                # A function's cell may hold the caller's own output: empty ours, keep theirs.
                self._handle.update(_BLANK, raw=True)
                display(self.result.summary_bundle(), raw=True)
            else:
                clear_output(wait=True)
