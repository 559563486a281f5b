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
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ._session import Exchange
from ._streaming import FinishEvent, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta

if TYPE_CHECKING:
    from ._images import PreparedImage

__all__ = ["LiveReply", "UpdateThrottle", "footer_parts", "format_cost"]

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


def format_cost(cost: float) -> str:
    """Dollars, two significant digits for tiny sums: ``$0.000011``, ``$0.0042``, ``$1.25``."""
    if cost <= 0:
        return "$0"
    if cost >= 0.01:
        return f"${cost:.2f}"
    digits = 1 - math.floor(math.log10(cost))  # two significant digits
    return f"${cost:.{digits}f}"


def footer_parts(exchange: Exchange) -> tuple[list[str], list[str]]:
    """The footer's facts and its warnings, as short phrases."""
    reply = exchange.reply
    facts: list[str] = []
    if reply.fell_back:
        facts.append(f"answered by {reply.model} (fallback from {reply.requested_model})")
    else:
        facts.append(reply.model)
    if exchange.chat != "main":
        facts.append(f"chat {exchange.chat}")
    if reply.usage is not None:
        facts.append(f"{reply.usage.prompt_tokens:,} → {reply.usage.completion_tokens:,} tokens")
    if exchange.cost is not None:
        facts.append(format_cost(exchange.cost))
    if exchange.first_token_seconds is not None:
        facts.append(f"first token {exchange.first_token_seconds:.2f} s")
    facts.append(f"{exchange.total_seconds:.2f} s")
    if reply.offline:
        facts.append("offline emulator")
    warnings: list[str] = []
    if reply.finish_reason == "length":
        warnings.append("cut off: raise --max-tokens")
    elif reply.finish_reason == "content_filter":
        warnings.append("stopped by the content filter")
    if exchange.omitted_turns:
        n = exchange.omitted_turns
        warnings.append(f"{n} earlier turn{'s' * (n != 1)} left out (context full)")
    if exchange.omitted_images:
        n = exchange.omitted_images
        warnings.append(f"{n} earlier image{'s' * (n != 1)} left out (context full)")
    if exchange.status == "interrupted":
        warnings.append("interrupted: partial reply kept")
    elif exchange.status == "partial":
        warnings.append("stream broke: partial reply kept")
    return facts, warnings


def provenance(exchange: Exchange) -> dict[str, Any]:
    """Output metadata saying where a reply came from — never anything secret."""
    reply = exchange.reply
    return {
        "ofox": {
            "chat": exchange.chat,
            "turn_id": exchange.turn.id if exchange.turn else None,
            "model": reply.model,
            "requested_model": reply.requested_model,
            "status": exchange.status,
            "finish_reason": reply.finish_reason,
            "offline": reply.offline,
            "usage": None
            if reply.usage is None
            else {
                "prompt_tokens": reply.usage.prompt_tokens,
                "completion_tokens": reply.usage.completion_tokens,
                "total_tokens": reply.usage.total_tokens,
            },
            "cost": exchange.cost,
        }
    }


def final_bundle(exchange: Exchange, fmt: str) -> dict[str, str]:
    """The finished reply with its footer, as a MIME bundle."""
    facts, warnings = footer_parts(exchange)
    text = exchange.reply.text
    plain_footer = " · ".join(facts + [f"⚠ {w}" for w in warnings])
    plain = f"{text}\n\n— {plain_footer}" if text else f"— {plain_footer}"
    if fmt == "text":
        return {"text/plain": plain}
    shown = [html.escape(f) for f in facts] + [f"⚠️ {html.escape(w)}" for w in warnings]
    footer = "<sub>" + " · ".join(shown) + "</sub>"
    body = text if text else "*(no text)*"
    return {"text/markdown": f"{body}\n\n{footer}", "text/plain": plain}


def thumbnails_bundle(images: Sequence[PreparedImage]) -> dict[str, str]:
    """A row of thumbnails of the images sent, and a plain-text line saying what they were."""
    described = []
    tags = []
    for image in images:
        if image.width and image.mime:
            what = f"{image.width}×{image.height} {image.mime.split('/')[-1]}"
        else:
            what = "URL, sent as is"
        described.append(f"{image.source or 'image'} ({what})")
        title = html.escape(f"{image.source}: {what}", quote=True)
        if image.thumbnail:
            tags.append(
                f'<img src="{image.thumbnail}" title="{title}" alt="{title}" '
                'style="height:80px;margin:0 6px 0 0;border:1px solid #ddd">'
            )
        else:
            tags.append(f'<a href="{html.escape(image.url, quote=True)}">{title}</a>')
    count = len(images)
    plain = f"[sent {count} image{'s' * (count != 1)}: {', '.join(described)}]"
    return {
        "text/html": '<div class="ofox-images">' + "".join(tags) + "</div>",
        "text/plain": plain,
    }


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
    ) -> None:
        self.model = model
        self.mode = mode
        self.fmt = fmt
        self.throttle = UpdateThrottle(max_rate)
        self._clock = clock
        self._out = stream
        self._tick_seconds = tick_seconds
        self._started = clock()
        self._text: list[str] = []
        self._size = 0
        self._tool_names: list[str] = []
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
        return f"⏳ *{html.escape(self.model)}* · {elapsed:.1f} s"

    def _update(self, bundle: dict[str, str]) -> None:
        if self._handle is not None:
            self._handle.update(bundle, raw=True)
            self.updates += 1

    # -- events

    def __call__(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            now = self.last_text_at = self._clock()
            if self.first_text_at is None:
                self.first_text_at = now
            self._text.append(event.text)
            self._size += len(event.text)
            if self.mode == "text":
                out = self._out or sys.stdout
                out.write(event.text)
                out.flush()
                if self.first_shown_at is None:
                    self.first_shown_at = self._clock()
                return
            if self.throttle.due(now, self._size):
                self._show(now)
        elif isinstance(event, ToolCallDelta) and event.name:
            self._tool_names.append(event.name)
        elif isinstance(event, (ReasoningDelta, FinishEvent)):
            pass  # reasoning is not shown live; the finish reason goes to the footer

    def _show(self, now: float) -> None:
        with self._lock:
            self._first_shown.set()
            self.throttle.mark(now, self._size)
            self._update({"text/markdown": "".join(self._text) + CURSOR})
            if self.first_shown_at is None:
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
            facts, warnings = footer_parts(exchange)
            out.write(("\n" if self._text else "") + "— " + " · ".join(facts) + "\n")
            for warning in warnings:
                out.write(f"⚠ {warning}\n")
            out.flush()
            return
        from IPython.display import display

        with self._lock:
            self._update(BLANK)
        display(final_bundle(exchange, self.fmt), raw=True, metadata=provenance(exchange))

    def abandon(self) -> None:
        """The exchange failed before any reply: leave the live output blank."""
        self._stop_ticker()
        if self.mode != "text":
            with self._lock:
                self._update(BLANK)
