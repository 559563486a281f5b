"""Rendering one exchange into a notebook cell (or a terminal) while it streams.

Rich mode (a Jupyter frontend). While the reply arrives, everything the cell shows lives in
*live* outputs, each published empty (``{}``) and then filled through its display id: the
thumbnails of the images sent, a status line until the first token, and then the reply.

A long reply must not stall: re-sending the whole reply on every update costs bytes that grow with
its square, and throttling that by growth leaves gaps of seconds. So finished Markdown blocks are
*frozen*: at a cut where the two halves render like the whole (:func:`_markdown.block_starts`:
after a blank line, never inside fenced code, display math, a list item or a table), the output
that holds the growing text is given its finished part for the last time and a new live output
takes the rest. Each update then re-sends only the paragraph being written, so updates can come
every fraction of a second at any length (see :class:`UpdateThrottle`) and the bytes stay a small
multiple of the reply (``bench/display_updates.py``).

JupyterLab shows at most 50 outputs of a cell (its ``maxNumberOutputs``) and hides the rest, the
newest text included; so a reply uses at most :data:`MAX_LIVE_OUTPUTS`. When a very long reply
reaches that, the cell is cleared (``clear_output(wait=True)``, so nothing flickers) and goes on
under a line saying how much was shown above; the whole reply is published once it is complete.

When the reply is done, the live outputs are cleared and the finished render — thumbnails, then
the reply with its footer and provenance — is published as new ``display_data``. nbval and some
frontends ignore display updates and ``clear_output`` (style.md, "Known traps"): to them a live
output is its first message, an empty bundle, which compares as nothing, so saved and re-run
notebooks hold the same outputs and the reply appears once. A cell whose tools ran is not cleared
(a tool may have printed there): its live outputs are emptied instead, and stay as empty outputs
that show nothing.

Text mode (terminal IPython): the reply is printed to stdout as it arrives, then the footer.
"""

from __future__ import annotations

import contextvars
import gc
import html
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ._markdown import FenceState, block_starts, protect_currency
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
from ._throttle import MAX_GAP, MAX_GAP_IN_CODE, UpdateThrottle
from ._tools import ToolResult

if TYPE_CHECKING:
    from ._images import PreparedImage

__all__ = [
    "BLANK",
    "CURSOR",
    "LIVE_KEY",
    "MAX_GAP",
    "MAX_GAP_IN_CODE",
    "MAX_LIVE_OUTPUTS",
    "LiveReply",
    "UpdateThrottle",
]

#: Ends the live text while the reply is still arriving (the demo strips it when echoing).
CURSOR = " ▍"
#: What a live output holds when it is published and when it is retired: nothing, so that tools
#: which ignore display updates (nbval) see nothing of it (see the module docstring).
BLANK: dict[str, str] = {}
#: Output metadata of a live output holding reply text: ``{LIVE_KEY: {"at": N}}``, where that
#: text starts in the reply shown so far (``ofox-jupyter demo`` echoes a reply to the terminal
#: from it); ``{LIVE_KEY: {"images": True}}`` on the thumbnails of the images sent.
LIVE_KEY = "ofox_live"
#: Outputs one reply may use while it streams (JupyterLab hides those after its 50th).
MAX_LIVE_OUTPUTS = 40
#: While the model thinks, the collapsed thinking block holds only its latest characters.
_LIVE_THINKING_CHARS = 2_000


def _finish_seconds(size: int) -> float:
    """About how long the history write and the final render take after a reply of ``size``
    characters (a 600k reply: about a third of a second)."""
    return 0.05 + size * 5e-7


class _LiveCall:
    """A tool call as it streams in: name, arguments so far, and its result once run."""

    def __init__(self, name: str, call_id: str | None) -> None:
        self.name = name
        self.id = call_id
        self.arguments: list[str] = []
        self.result: ToolResult | None = None

    def markdown(self) -> str:
        """Its collapsible block, set apart from the text around it."""
        return "\n\n" + call_block(self.name, "".join(self.arguments), self.result) + "\n\n"


class _Cut:
    """Where the growing part of a reply can be split: ``position`` in its Markdown, and the
    renderer's place in the reply that the rest then starts from."""

    def __init__(self, position: int, segment: int, offset: int, reasoning: int) -> None:
        self.position = position
        self.segment = segment  # the first segment not wholly frozen
        self.offset = offset  # characters of that segment (if it is text) already frozen
        self.reasoning = reasoning  # reasoning pieces already frozen


def _set_old_objects_aside() -> bool:
    """While a reply streams, the objects that existed before it are left out of garbage
    collection (``gc.freeze``), and given back when it ends: a full collection of a kernel with
    a large namespace takes tens of milliseconds (71 ms measured in the benchmark's kernel), and
    one that falls just before an update's deadline makes the gap between two updates exceed
    its 0.5 s target. Collections during the stream then look only at what is new. Not done
    when something else froze objects already (that freeze is not ours to undo)."""
    if gc.isenabled() and gc.get_freeze_count() == 0:
        gc.freeze()
        return True
    return False


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
        max_outputs: int = MAX_LIVE_OUTPUTS,
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
        self._started = self._last_status = clock()
        # What has arrived, in order: runs of text (lists of pieces) and tool calls.
        self._segments: list[list[str] | _LiveCall] = []
        self._fence = FenceState()  # of the last run of text
        self._chunk_gap = 0.0  # seconds between the last two pieces of text
        self._calls: dict[tuple[int, int], _LiveCall] = {}
        self._round = 0
        self._size = 0  # characters arrived (text, thinking, tool arguments)
        # A reasoning model's thinking, shown collapsed above the reply, and how long it took:
        # seconds of the periods already closed, and when the open one began (if one is open).
        self._reasoning: list[str] = []
        self._thought = 0.0
        self._thinking_since: float | None = None
        self._thought_told = False  # text mode: the "(thought for …)" line was written
        # Rich mode: the live outputs (display handles), the one holding the growing text, and
        # how much of the reply is frozen in the others (see the module docstring).
        self._images: Sequence[PreparedImage] = ()
        self._handles: list[Any] = []
        self._handle: Any = None
        self._max_outputs = max(3, max_outputs)
        self._from_segment = 0
        self._from_offset = 0
        self._from_reasoning = 0
        self._frozen_chars = 0  # Markdown characters frozen so far (LIVE_KEY's "at")
        self._tail_cost = 0  # characters the growing output held at its last update
        self._tail_shown: str | None = None  # what it shows, when that is a finished block
        self._lock = threading.RLock()
        self._first_shown = threading.Event()
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None
        self._froze_gc = False
        self.updates = 0  # live updates sent (for tests and benchmarks)
        self.outputs = 0  # live outputs opened (for tests and benchmarks)
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
        self._images = images
        if images:
            self._open(thumbnails_bundle(images), {LIVE_KEY: {"images": True}})
        self._open({"text/markdown": self._status()})
        if self._tick_seconds > 0:
            # Contextvars carry the kernel's parent header, so the ticker's updates reach this
            # cell; a plain thread would start with an empty context.
            context = contextvars.copy_context()
            self._ticker = threading.Thread(
                target=context.run, args=(self._tick,), name="ofox-status", daemon=True
            )
            self._froze_gc = _set_old_objects_aside()
            self._ticker.start()

    def _tick(self) -> None:
        """Until the first text, refresh the status line; after it, show text that has waited
        too long for the next chunk (a model pausing mid-reply, or a slow finish), woken at its
        deadline."""
        step = min(self._tick_seconds, self.throttle.max_gap / 4)
        self._last_status = self._clock()
        while not self._done.wait(self._tick_wait(step)):
            self._on_tick()

    def _on_tick(self) -> None:
        with self._lock:
            if self._done.is_set():
                return
            now = self._clock()
            if not self._first_shown.is_set():
                if now - self._last_status >= self._tick_seconds:
                    self._last_status = now
                    self._update({"text/markdown": self._status()})
            elif self.throttle.overdue(now, self._size, self._next_cost(), in_code=self._in_code()):
                self._show(now)

    def _tick_wait(self, step: float) -> float:
        """Seconds until the ticker looks again: ``step``, or less when text waiting must be
        shown sooner."""
        with self._lock:
            if not self._first_shown.is_set():
                return step
            deadline = self.throttle.deadline(self._size, self._in_code())
            remaining = step if deadline is None else deadline - self._clock()
            return step if remaining <= 0 else min(step, remaining)

    def _in_code(self) -> bool:
        """The text shown last ends inside a fenced code block."""
        return self._fence.open and bool(self._segments) and isinstance(self._segments[-1], list)

    def _status(self) -> str:
        elapsed = self._clock() - self._started
        return f"… *waiting for {html.escape(self.model)}* · {elapsed:.1f} s"

    def _open(self, bundle: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
        """A new live output: published empty, then given ``bundle`` (module docstring)."""
        from IPython.display import display

        self._handle = display(BLANK, raw=True, display_id=True)
        self._handles.append(self._handle)
        self.outputs += 1
        if bundle:
            self._update(bundle, metadata)

    def _update(self, bundle: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
        if self._sink is not None:
            self._sink(bundle)
            self.updates += 1
        elif self._handle is not None:
            self._handle.update(bundle, raw=True, metadata=metadata or {})
            self.updates += 1

    # -- events

    def __call__(self, event: SessionEvent) -> None:
        with self._lock:
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
            elif isinstance(event, FinishEvent) and self.mode != "text":
                self._on_finish()

    def _on_finish(self) -> None:
        """The stream is over; the history write and the final render come next, and take
        longer the longer the reply. Text that would wait past its deadline meanwhile (the
        ticker may not get the interpreter in time) goes out now; otherwise the final render
        shows it, and no byte is spent on a last copy."""
        now = self._clock()
        deadline = self.throttle.deadline(self._size, self._in_code())
        if deadline is not None and now + _finish_seconds(self._size) >= deadline:
            self._show(now)

    def _on_reasoning(self, text: str) -> None:
        now = self._clock()
        if self._thinking_since is None:
            self._thinking_since = now
        self._reasoning.append(text)
        if self.mode == "text":
            return  # a terminal gets one "(thought for …)" line, not the thinking
        self._size += len(text)
        self._maybe_show(now)

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
        now = self._clock()
        if self.last_text_at is not None:
            self._chunk_gap = now - self.last_text_at
        self.last_text_at = now
        if self.first_text_at is None:
            self.first_text_at = now
        if not self._segments or not isinstance(self._segments[-1], list):
            self._segments.append([])
            self._fence = FenceState()
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
        # A blank line may end a block: shown at once (without the cursor), that output already
        # holds its frozen text when the next block starts, and needs no extra update. Not in
        # code, where a blank line ends nothing.
        self._fence.feed(text)
        in_code = self._fence.open
        block_end = self._sink is None and not in_code and text.endswith("\n\n")
        self._maybe_show(now, block_end, in_code)

    def _on_call_fragment(self, event: ToolCallDelta) -> None:
        key = (self._round, event.position)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _LiveCall(event.name or "", event.id)
            self._segments.append(call)
        call.arguments.append(event.arguments)
        self._size += len(event.arguments)
        if self.mode != "text":
            self._maybe_show(self._clock())

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

    # -- what the growing output shows

    def _thinking_markdown(self, start: int) -> str:
        """The thinking block for reasoning pieces from ``start`` on; while the model is still
        thinking, only its latest characters (the block is collapsed: few ever open it live)."""
        thinking = self._thinking_since is not None
        text = "".join(self._reasoning[start:])
        if thinking and len(text) > _LIVE_THINKING_CHARS:
            text = "…" + text[-_LIVE_THINKING_CHARS:]
        block = thinking_block(text, self._thinking_seconds(), live=thinking)
        return block + "\n\n"

    def _tail(self) -> tuple[str, list[_Cut]]:
        """The Markdown of everything not yet frozen, and the places it may be cut, in order."""
        pieces: list[str] = []
        length = 0
        cuts: list[_Cut] = []
        segments = self._segments
        if len(self._reasoning) > self._from_reasoning:
            block = self._thinking_markdown(self._from_reasoning)
            pieces.append(block)
            length += len(block)
            if self._thinking_since is None and len(segments) > self._from_segment:
                cuts.append(
                    _Cut(length, self._from_segment, self._from_offset, len(self._reasoning))
                )
        for index in range(self._from_segment, len(segments)):
            segment = segments[index]
            if isinstance(segment, list):
                start = self._from_offset if index == self._from_segment else 0
                text = "".join(segment)[start:]
                markdown = protect_currency(text)
                for at in block_starts(text):
                    head = protect_currency(text[:at]) if "$" in text else text[:at]
                    if markdown.startswith(head):  # always, by block_starts' contract
                        cuts.append(
                            _Cut(length + len(head), index, start + at, len(self._reasoning))
                        )
            else:
                markdown = segment.markdown()
                if segment.result is not None and index + 1 < len(segments):
                    cuts.append(_Cut(length + len(markdown), index + 1, 0, len(self._reasoning)))
            pieces.append(markdown)
            length += len(markdown)
        return "".join(pieces), cuts

    def _live_markdown(self) -> str:
        """The whole reply so far (a widget's single area shows it all)."""
        pieces = []
        if self._reasoning:
            pieces.append(self._thinking_markdown(0))
        for segment in self._segments:
            if isinstance(segment, list):
                pieces.append(protect_currency("".join(segment)))
            else:
                pieces.append(segment.markdown())
        return "".join(pieces)

    def _next_cost(self) -> int:
        """About what the next update sends: the growing output again, with what arrived."""
        return self._tail_cost + self.throttle.pending(self._size)

    def _maybe_show(self, now: float, block_end: bool = False, in_code: bool = False) -> None:
        due = self.throttle.due(
            now,
            self._size,
            self._next_cost(),
            block_end=block_end,
            in_code=in_code,
            lead=self._chunk_gap,
        )
        if due:
            self._show(now)

    def _show(self, now: float) -> None:
        with self._lock:
            self._first_shown.set()
            self.throttle.mark(now, self._size)
            if self._sink is not None:
                # A widget shows the whole reply in one area: every update re-sends all of it,
                # so the throttle weighs what that costs.
                markdown = self._live_markdown()
                self._update({"text/markdown": markdown + CURSOR})
                self._tail_cost = len(markdown)
                self.throttle.spent(len(markdown))
            else:
                self._show_tail()
            # Thinking shown is not the reply shown: that waits for text or a tool call.
            if self.first_shown_at is None and self._segments:
                self.first_shown_at = self._clock()

    def _show_tail(self) -> None:
        markdown, cuts = self._tail()
        done = 0  # characters of ``markdown`` frozen by this update
        for cut in cuts:
            if not done < cut.position < len(markdown):
                continue
            full = len(self._handles) >= self._max_outputs
            if full and self._calls:
                # A tool may have printed into this cell, so it is never cleared (module
                # docstring): no more outputs, the rest grows in this one.
                break
            # Each finished block gets its final text once: the output that held the growing
            # text may already show it as it is (see _on_text), a block finished since is sent
            # to an output of its own.
            frozen = markdown[done : cut.position]
            if frozen != self._tail_shown:
                self._send({"text/markdown": frozen})
            self._frozen_chars += len(frozen)
            done = cut.position
            self._advance(cut)
            if full:
                self._roll_over()
            self._open(BLANK)
            self._tail_shown = None
        self._compact()
        markdown = markdown[done:]
        # A finished block is shown as it will stay; a growing one ends in the cursor (so does
        # code, where a blank line finishes nothing).
        finished = markdown.endswith("\n\n") and not self._in_code()
        ending = "" if finished else CURSOR
        self._send({"text/markdown": markdown + ending})
        self._tail_shown = markdown if not ending else None
        self._tail_cost = len(markdown)

    def _send(self, bundle: dict[str, str]) -> None:
        """Update the output holding the growing text (with where its text starts)."""
        self._update(bundle, {LIVE_KEY: {"at": self._frozen_chars}})
        self.throttle.spent(sum(len(v) for v in bundle.values()))

    def _advance(self, cut: _Cut) -> None:
        """Forget what is frozen: the growing output starts at ``cut`` from now on."""
        self._from_segment, self._from_offset = cut.segment, cut.offset
        self._from_reasoning = cut.reasoning

    def _compact(self) -> None:
        """Keep only the unfrozen text of the first live segment, so each update joins a
        paragraph, not the whole reply."""
        if self._from_offset and self._from_segment < len(self._segments):
            segment = self._segments[self._from_segment]
            if isinstance(segment, list):
                segment[:] = ["".join(segment)[self._from_offset :]]
                self._from_offset = 0

    def _roll_over(self) -> None:
        """The cell has as many outputs as it may: start again under a line saying so."""
        from IPython.display import clear_output

        clear_output(wait=True)
        self._handles.clear()
        shown = f"{self._frozen_chars:,}"
        self._open(
            {
                "text/markdown": f"*… {shown} characters above; the whole reply is shown here"
                " once it is complete*"
            }
        )

    # -- the end

    def _stop_ticker(self) -> None:
        self._first_shown.set()
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._froze_gc:
            self._froze_gc = False
            gc.unfreeze()

    def _retire(self) -> None:
        """Take the live outputs away: cleared, or (after tools ran) emptied."""
        with self._lock:
            if not self._handles:
                return
            if self._calls:
                for handle in self._handles:
                    handle.update(BLANK, raw=True)
            else:
                from IPython.display import clear_output

                clear_output(wait=True)
            self._handles.clear()
            self._handle = None

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

        self._retire()
        if self._images:
            display(thumbnails_bundle(self._images), raw=True)
        display(final_bundle(exchange, self.fmt), raw=True, metadata=provenance(exchange))

    def abandon(self) -> None:
        """The exchange failed before any reply: only the thumbnails of what was sent stay."""
        self._stop_ticker()
        if self.mode != "text" and self._sink is None:
            from IPython.display import display

            self._retire()
            if self._images:
                display(thumbnails_bundle(self._images), raw=True)
