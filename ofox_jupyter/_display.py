"""Rendering one exchange into a notebook cell (or a terminal) while it streams.

Rich mode (a Jupyter frontend): a live output, updated in place through a display id, shows a
status line until the first token and then the reply growing as Markdown. Updates are throttled
twice over — at most ``max_rate`` a second, and only once the text has grown by a tenth since the
last update — so however long the reply, the update rate is bounded and the bytes sent stay
within about 12× the final reply (a geometric series: 1 + 1/0.1 + a little markup).

When the reply is done, the live output is blanked and the final render is published as a *new*
``display_data``. That is deliberate: nbval and some frontends ignore ``update_display_data``, so a
reply that lived only in updates would be missing from saved notebooks and from their checks
(style.md, "Known traps"). The blank live output is identical before and after, so stored and
re-run notebooks compare equal.

Text mode (terminal IPython): the reply is printed to stdout as it arrives, then the footer.
"""

from __future__ import annotations

import contextvars
import html
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ._markdown import protect_currency
from ._render import (
    call_block,
    final_bundle,
    footer_parts,
    provenance,
    thinking_block,
    thumbnails_bundle,
)
from ._session import Exchange, RoundStart, SessionEvent
from ._streaming import FinishEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._tools import ToolResult

if TYPE_CHECKING:
    from ._images import PreparedImage

__all__ = ["BLANK", "CURSOR", "LiveReply", "UpdateThrottle"]

#: Ends the live text while the reply is still arriving (the demo strips it when echoing).
CURSOR = " ▍"
#: What the live output holds before and after streaming (see the module docstring).
BLANK: dict[str, str] = {"text/plain": ""}


class UpdateThrottle:
    """Decides when a growing reply is worth re-sending: rate-limited and growth-limited."""

    def __init__(self, max_rate: float = 12.0, growth: float = 0.1) -> None:
        self.min_interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self.growth = growth
        self._last_time: float | None = None
        self._last_size = 0

    def due(self, now: float, size: int) -> bool:
        if self._last_time is None:
            return True  # the first text is shown at once
        if now - self._last_time < self.min_interval:
            return False
        return size - self._last_size >= max(1.0, self.growth * self._last_size)

    def mark(self, now: float, size: int) -> None:
        self._last_time, self._last_size = now, size


class _LiveCall:
    """A tool call as it streams in: name, arguments so far, and its result once run."""

    def __init__(self, name: str, call_id: str | None) -> None:
        self.name = name
        self.id = call_id
        self.arguments: list[str] = []
        self.result: ToolResult | None = None


class LiveReply:
    """Consumes one exchange's stream events and keeps the cell's output up to date."""

    def __init__(
        self,
        model: str,
        *,
        mode: str = "rich",
        fmt: str = "markdown",
        max_rate: float = 12.0,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
        tick_seconds: float = 0.5,
        sink: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.model = model
        # A widget passes a sink: every update goes to it instead of a display handle.
        self._sink = sink
        self.mode = mode
        self.fmt = fmt
        self.throttle = UpdateThrottle(max_rate)
        self._clock = clock
        self._out = stream
        self._tick_seconds = tick_seconds
        self._started = clock()
        # What has arrived, in order: runs of text (lists of pieces) and tool calls.
        self._segments: list[list[str] | _LiveCall] = []
        self._calls: dict[tuple[int, int], _LiveCall] = {}
        self._round = 0
        self._size = 0
        # A reasoning model's thinking, shown collapsed above the reply, and how long it took:
        # seconds of the periods already closed, and when the open one began (if one is open).
        self._reasoning: list[str] = []
        self._thought = 0.0
        self._thinking_since: float | None = None
        self._thought_told = False  # text mode: the "(thought for …)" line was written
        self._handle: Any = None
        self._lock = threading.Lock()
        self._first_shown = threading.Event()
        self._ticker: threading.Thread | None = None
        self.updates = 0  # live updates sent (for tests and benchmarks)
        # When the first text reached this renderer, when it had been handed to the frontend, and
        # when the latest text arrived (readings of ``clock``, monotonic by default; None until
        # then). bench/display_updates.py reads them through ``OfoxMagics.last_live`` to measure
        # "first token shown ≤ 50 ms after it arrives" and the chunk rate it streamed at.
        self.first_text_at: float | None = None
        self.first_shown_at: float | None = None
        self.last_text_at: float | None = None

    # -- lifecycle

    def start(self, images: Sequence[PreparedImage] = ()) -> None:
        """Show the images being sent (so the user sees what the model sees), then the status."""
        if self.mode == "text":
            if images:
                out = self._out or sys.stdout
                out.write(thumbnails_bundle(images)["text/plain"] + "\n")
            return
        if self._sink is not None:
            self._update({"text/markdown": self._status()})
            return
        from IPython.display import display

        if images:
            display(thumbnails_bundle(images), raw=True)
        self._handle = display(BLANK, raw=True, display_id=True)
        self._update({"text/markdown": self._status()})
        if self._tick_seconds > 0:
            # Contextvars carry the kernel's parent header, so the ticker's updates reach this
            # cell; a plain thread would start with an empty context.
            context = contextvars.copy_context()
            self._ticker = threading.Thread(
                target=context.run, args=(self._tick,), name="ofox-status", daemon=True
            )
            self._ticker.start()

    def _tick(self) -> None:
        while not self._first_shown.wait(self._tick_seconds):
            with self._lock:
                if self._first_shown.is_set():
                    return
                self._update({"text/markdown": self._status()})

    def _status(self) -> str:
        elapsed = self._clock() - self._started
        return f"… *waiting for {html.escape(self.model)}* · {elapsed:.1f} s"

    def _update(self, bundle: dict[str, str]) -> None:
        if self._sink is not None:
            self._sink(bundle)
            self.updates += 1
        elif self._handle is not None:
            self._handle.update(bundle, raw=True)
            self.updates += 1

    # -- events

    def __call__(self, event: SessionEvent) -> None:
        if isinstance(event, ReasoningDelta):
            self._on_reasoning(event.text)
            return
        if self._thinking_since is not None and isinstance(event, (TextDelta, ToolCallDelta)):
            self._thought += self._clock() - self._thinking_since
            self._thinking_since = None
        if isinstance(event, TextDelta):
            self._on_text(event.text)
        elif isinstance(event, ToolCallDelta):
            self._on_call_fragment(event)
        elif isinstance(event, ToolResult):
            self._on_result(event)
        elif isinstance(event, RoundStart):
            self._round = event.number
        elif isinstance(event, FinishEvent):
            pass  # the finish reason goes to the footer

    def _on_reasoning(self, text: str) -> None:
        now = self._clock()
        if self._thinking_since is None:
            self._thinking_since = now
        self._reasoning.append(text)
        if self.mode == "text":
            return  # a terminal gets one "(thought for …)" line, not the thinking
        self._size += len(text)
        if self.throttle.due(now, self._size):
            self._show(now)

    def _thinking_seconds(self) -> float:
        since = self._thinking_since
        open_period = self._clock() - since if since is not None else 0.0
        return self._thought + open_period

    def _tell_thought(self, out: TextIO) -> None:
        """Text mode: say once, before the reply, that (and how long) the model thought."""
        if self._reasoning and not self._thought_told:
            self._thought_told = True
            seconds = self._thinking_seconds()
            out.write(thinking_block("", seconds, markdown=False) + "\n\n")

    def _on_text(self, text: str) -> None:
        now = self.last_text_at = self._clock()
        if self.first_text_at is None:
            self.first_text_at = now
        if not self._segments or not isinstance(self._segments[-1], list):
            self._segments.append([])
        segment = self._segments[-1]
        assert isinstance(segment, list)
        segment.append(text)
        self._size += len(text)
        if self.mode == "text":
            out = self._out or sys.stdout
            self._tell_thought(out)
            out.write(text)
            out.flush()
            if self.first_shown_at is None:
                self.first_shown_at = self._clock()
            return
        if self.throttle.due(now, self._size):
            self._show(now)

    def _on_call_fragment(self, event: ToolCallDelta) -> None:
        key = (self._round, event.position)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _LiveCall(event.name or "", event.id)
            self._segments.append(call)
        call.arguments.append(event.arguments)
        self._size += len(event.arguments)
        now = self._clock()
        if self.mode != "text" and self.throttle.due(now, self._size):
            self._show(now)

    def _on_result(self, result: ToolResult) -> None:
        for call in self._calls.values():
            if call.id == result.call.id and call.result is None:
                call.result = result
                break
        if self.mode == "text":
            out = self._out or sys.stdout
            self._tell_thought(out)
            line = call_block(result.call.name, result.call.arguments, result, markdown=False)
            out.write(f"\n{line}\n")
            out.flush()
            return
        self._show(self._clock())  # a tool finished: worth showing at once

    def _live_markdown(self) -> str:
        pieces = []
        if self._reasoning:
            thinking = self._thinking_since is not None
            block = thinking_block(
                "".join(self._reasoning), self._thinking_seconds(), live=thinking
            )
            pieces.append(block + "\n\n")
        for segment in self._segments:
            if isinstance(segment, list):
                pieces.append(protect_currency("".join(segment)))
            else:
                pieces.append(
                    "\n\n"
                    + call_block(segment.name, "".join(segment.arguments), segment.result)
                    + "\n\n"
                )
        return "".join(pieces)

    def _show(self, now: float) -> None:
        with self._lock:
            self._first_shown.set()
            self.throttle.mark(now, self._size)
            self._update({"text/markdown": self._live_markdown() + CURSOR})
            # Thinking shown is not the reply shown: that waits for text or a tool call.
            if self.first_shown_at is None and self._segments:
                self.first_shown_at = self._clock()

    # -- the end

    def _stop_ticker(self) -> None:
        self._first_shown.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def finish(self, exchange: Exchange) -> None:
        """Replace the live output by the final render (reply, footer, provenance)."""
        self._stop_ticker()
        if self.mode == "text":
            out = self._out or sys.stdout
            self._tell_thought(out)  # a reply that was all thinking (or tool calls)
            facts, warnings = footer_parts(exchange)
            out.write(("\n\n" if self._segments else "") + "— " + " · ".join(facts) + "\n")
            for warning in warnings:
                out.write(f"⚠ {warning}\n")
            out.flush()
            return
        if self._sink is not None:
            self._sink(final_bundle(exchange, self.fmt))
            return
        from IPython.display import display

        with self._lock:
            self._update(BLANK)
        display(final_bundle(exchange, self.fmt), raw=True, metadata=provenance(exchange))

    def abandon(self) -> None:
        """The exchange failed before any reply: leave the live output blank."""
        self._stop_ticker()
        if self.mode != "text" and self._sink is None:
            with self._lock:
                self._update(BLANK)
