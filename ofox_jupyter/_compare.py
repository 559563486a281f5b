"""A comparison run in a cell: one prompt, several models or temperatures, side by side.

``%ofox compare "prompt" -m a,b [-t 0,1]`` and ``%%ofox --compare a,b`` ask every column in turn,
each streaming into a live side-by-side view, and leave the result as a plain output — Markdown
columns, readable when the notebook is opened without its kernel, and compared by nbval on Run
All — and as turns of a chat of their own (``compare`` by default: ``%ofox history --chat
compare``, ``%ofox export``). Each column is asked afresh (the chat's earlier turns are not sent);
re-running the cell replaces its columns' turns in place, as it does for ``%%ofox``.

The comparison *widget* (``%ofox compare`` with no prompt) streams its columns at once instead,
as asyncio tasks, and records them in the same chat.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._display import BLANK, LiveReply
from ._exceptions import OfoxError
from ._markdown import dollars
from ._render import footer_parts, render_replies
from ._session import AskOptions, Exchange, Interrupted

if TYPE_CHECKING:
    from ._session import NotebookSession

__all__ = [
    "COMPARE_CHAT",
    "Column",
    "Comparison",
    "columns_from",
    "grid_markdown",
    "plain_columns",
]

#: The chat comparisons are recorded in, unless another is named.
COMPARE_CHAT = "compare"
STOPPED = "■ stopped — partial reply kept"
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})", re.MULTILINE)
_CLOSE_DIV = re.compile(r"</(div)", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    """One column: a model, and a temperature (None: the model's default)."""

    model: str
    temperature: float | None = None

    @property
    def label(self) -> str:
        return self.model if self.temperature is None else f"{self.model} · t={self.temperature:g}"


def columns_from(items: Sequence[str], default_model: str) -> list[Column]:
    """``--compare`` items: numbers are temperatures, anything else a model; the columns are
    every model (or the default one) at every temperature (or the model's default)."""
    models: list[str] = []
    temperatures: list[float] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            temperatures.append(float(item))
        except ValueError:
            models.append(item)
    temps: list[float | None] = list(temperatures) or [None]
    columns = [Column(model, t) for model in models or [default_model] for t in temps]
    if len(columns) < 2:
        raise OfoxError(
            "a comparison needs at least two columns",
            hint="name two models or two temperatures, e.g. --compare 0,0.7",
        )
    return columns


def _contained(markdown: str) -> str:
    """A column's Markdown, unable to close the column it sits in (a ``</div>`` of its own, or a
    code fence left open while it streams)."""
    markdown = _CLOSE_DIV.sub(r"&lt;/\1", markdown)
    fences = _FENCE.findall(markdown)
    if len(fences) % 2:
        markdown += "\n" + fences[-1]
    return markdown


def grid_markdown(labels: Sequence[str], bodies: Sequence[str], footers: Sequence[str]) -> str:
    """The columns (Markdown bodies, plain-text footers) side by side: flex boxes around
    Markdown (a blank line after an HTML tag lets Markdown resume inside it), wrapping onto new
    rows when the page is narrow."""
    boxes = []
    for label, body, footer in zip(labels, bodies, footers, strict=True):
        foot = f"\n\n<sub>{dollars(html.escape(footer))}</sub>" if footer else ""
        boxes.append(
            '<div style="flex:1 1 240px;min-width:0;overflow-wrap:anywhere">\n\n'
            f"**{html.escape(label)}**\n\n{_contained(body) or '…'}{foot}\n\n</div>"
        )
    inner = "\n".join(boxes)
    style = "display:flex;flex-wrap:wrap;gap:16px"
    return f'<div class="ofox-compare-grid" style="{style}">\n{inner}\n</div>'


def plain_columns(labels: Sequence[str], bodies: Sequence[str], footers: Sequence[str]) -> str:
    parts = []
    for label, body, footer in zip(labels, bodies, footers, strict=True):
        parts.append(f"=== {label} ===\n{body}" + (f"\n— {footer}" if footer else ""))
    return "\n\n".join(parts)


class Comparison:
    """Runs the columns one after another through the session, showing them as they stream."""

    def __init__(
        self,
        session: NotebookSession,
        columns: Sequence[Column],
        *,
        chat: str = COMPARE_CHAT,
        cell_id: str | None = None,
        mode: str = "rich",
        max_rate: float = 12.0,
        options: AskOptions | None = None,
    ) -> None:
        self.session = session
        self.columns = list(columns)
        self.chat = chat
        self.cell_id = cell_id
        self.mode = mode
        self.max_rate = max_rate
        self.base = options or AskOptions(model=self.columns[0].model)
        self.bodies = ["" for _ in self.columns]
        self.footers = ["" for _ in self.columns]
        self.exchanges: list[Exchange | None] = [None for _ in self.columns]
        self._handle: Any = None

    def _options(self, index: int, column: Column) -> AskOptions:
        params = dict(self.base.params)
        if column.temperature is not None:
            params["temperature"] = column.temperature
        return replace(
            self.base,
            model=column.model,
            chat=self.chat,
            new=False,
            history=True,
            context=False,
            cell_id=f"{self.cell_id}#{index}" if self.cell_id else None,
            params=params,
        )

    def run(self, prompt: str) -> list[Exchange | None]:
        """Ask every column; a column's failure is shown in it and the others go on. A kernel
        interrupt stops the comparison (what arrived is kept) and is raised again."""
        self._start()
        try:
            for index, column in enumerate(self.columns):
                self._run_column(index, column, prompt)
        finally:
            self._finish()
        return self.exchanges

    def _run_column(self, index: int, column: Column, prompt: str) -> None:
        if self.mode == "text":
            sys.stdout.write(f"=== {column.label} ===\n")
        live = LiveReply(
            column.model,
            mode="text" if self.mode == "text" else "rich",
            max_rate=self.max_rate,
            tick_seconds=0,
            sink=None if self.mode == "text" else self._sink(index),
        )
        live.start()
        try:
            exchange = self.session.ask(prompt, self._options(index, column), live)
        except Interrupted as stop:
            self.exchanges[index] = stop.exchange
            text = render_replies(stop.exchange) if stop.exchange is not None else ""
            self.bodies[index] = f"{text}\n\n{STOPPED}" if text else STOPPED
            if self.mode == "text":
                sys.stdout.write(f"\n{STOPPED}\n\n")
            raise
        except OfoxError as err:
            self.bodies[index] = "*(no reply)*"
            self.footers[index] = f"⚠ {err.one_line()}"
            if self.mode == "text":
                sys.stdout.write(f"⚠ {err.one_line()}\n\n")
            self._show()
            return
        self.exchanges[index] = exchange
        if self.mode == "text":
            live.finish(exchange)
            sys.stdout.write("\n")
        facts, warnings = footer_parts(exchange)
        shown = facts[1:] + [f"⚠ {w}" for w in warnings]  # the model is the column's title
        self.bodies[index] = render_replies(exchange) or "*(no text)*"
        self.footers[index] = " · ".join(shown)
        self._show()

    def _sink(self, index: int) -> Callable[[dict[str, str]], None]:
        def show(bundle: dict[str, str]) -> None:
            self.bodies[index] = bundle.get("text/markdown") or bundle.get("text/plain", "")
            self._show()

        return show

    def _bundle(self) -> dict[str, str]:
        labels = [c.label for c in self.columns]
        return {
            "text/markdown": grid_markdown(labels, self.bodies, self.footers),
            "text/plain": plain_columns(labels, self.bodies, self.footers),
        }

    def _start(self) -> None:
        if self.mode == "text":
            return
        from IPython.display import display

        # Published empty, then updated: nbval (which ignores updates) sees nothing of it.
        self._handle = display(BLANK, raw=True, display_id=True)
        self._show()

    def _show(self) -> None:
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)

    def _finish(self) -> None:
        """The live view is cleared and the result published as an output of its own."""
        if self.mode == "text" or self._handle is None:
            return
        from IPython.display import clear_output, display

        clear_output(wait=True)
        self._handle = None
        turns = [e.turn.id if e is not None and e.turn else None for e in self.exchanges]
        labels = [c.label for c in self.columns]
        metadata = {"ofox": {"chat": self.chat, "compare": labels, "turn_ids": turns}}
        display(self._bundle(), raw=True, metadata=metadata)
