"""The live display of a streaming reply: finished blocks frozen, the growing tail updated often
and cheaply, the cell left holding the reply once.

These drive :class:`LiveReply` in-process with a fake clock and a display publisher that keeps
every message (updates and clears included), and read the result as a frontend would.
``tests/test_kernel.py`` checks the same in a real kernel, ``bench/display_updates.py`` measures
it at length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Clock
from helpers import RecordingPublisher as Recorder
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

from ofox_jupyter._display import (
    BLANK,
    CURSOR,
    LIVE_KEY,
    MAX_GAP,
    MAX_GAP_IN_CODE,
    LiveReply,
    UpdateThrottle,
)
from ofox_jupyter._markdown import block_starts, protect_currency
from ofox_jupyter._streaming import TextDelta
from ofox_jupyter.emulator._document import code_document, prose_document
from ofox_jupyter.emulator._model import split_pieces


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    shell = InteractiveShell.instance()
    saved = shell.display_pub
    shell.display_pub = recorder = Recorder()
    try:
        yield recorder
    finally:
        shell.display_pub = saved


def stream(text: str, chunks_per_second: float, **options: Any) -> tuple[LiveReply, Clock]:
    clock = Clock()
    publisher = InteractiveShell.instance().display_pub
    if isinstance(publisher, Recorder):
        publisher.clock = clock
    live = LiveReply("m", clock=clock, tick_seconds=0, **options)
    live.start()
    for piece in split_pieces(text):
        clock.now += 1 / chunks_per_second
        live(TextDelta(piece))
    return live, clock


def shown_text(recorder: Recorder) -> str:
    """The reply as the live outputs spelled it, read at their ``LIVE_KEY`` offsets."""
    shown = ""
    for message in recorder.messages:
        live = message.get("metadata", {}).get(LIVE_KEY)
        if message.get("update") and live:
            assert live["at"] <= len(shown), "a live output skipped text"
            text = message["data"]["text/markdown"].removesuffix(CURSOR)
            shown = shown[: live["at"]] + text
    return shown


@pytest.mark.parametrize("document", [prose_document, code_document])
@pytest.mark.parametrize("rate", [100, 500])
def test_a_long_reply_streams_in_frozen_blocks(recorder, document, rate):
    text = document(4000)
    live, clock = stream(text, rate)
    updates = [m for m in recorder.messages if m.get("update") and LIVE_KEY in m["metadata"]]
    # Every published live output starts empty (nbval, which ignores updates, sees nothing).
    assert all(m["data"] == BLANK for m in recorder.messages if "data" in m and not m["update"])
    # Frozen outputs and the growing one, in order, spell the reply as it grew: all of it
    # but what came in the last half second (shown by the final render).
    whole, shown = protect_currency(text), shown_text(recorder)
    assert whole.startswith(shown) and len(whole) - len(shown) <= 0.5 * rate * 12
    assert live.outputs > 40 and recorder.most <= 40  # rolled over, never past 40 at once
    # Each update sends little: all of them together are about twice the reply.
    sent = sum(len(m["data"]["text/markdown"]) for m in updates)
    assert sent <= 2.2 * len(text)


@pytest.mark.parametrize("document", [prose_document, code_document])
def test_text_never_waits_half_a_second(recorder, document):
    stream(document(3000), 100)  # a slow model: about 600 characters a second
    times = [m["t"] for m in recorder.messages if m.get("update") and LIVE_KEY in m["metadata"]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) > 50 and max(gaps) <= 0.5
    # at most 14 in any second: 12 a second and a burst of two (a frozen block and the output
    # after it are one moment)
    moments = sorted(set(times))
    assert max(sum(1 for t in moments if s <= t < s + 1) for s in moments) <= 14


def test_finishing_leaves_only_the_reply(recorder):
    live, clock = stream(prose_document(300), 500)
    live._retire()  # what finish() does before publishing the final render
    assert recorder.messages[-1] == {"clear": True}


def test_one_paragraph_without_cuts_keeps_the_bytes_bounded(recorder):
    # [emulator-words: N]: nowhere to cut; the growing output is re-sent, so updates thin out
    # rather than cost bytes that grow with the square of the reply.
    words = " ".join(["alpha"] * 20_000)
    live, _ = stream(words, 500)
    sent = sum(
        len(m["data"].get("text/markdown", ""))
        for m in recorder.messages
        if m.get("update") and m["data"]
    )
    assert live.outputs == 1
    assert sent <= 2.0 * len(words) + 16_384 + len(words)  # the budget, and one last update


# -- where a reply may be cut


@pytest.mark.parametrize(
    "text, starts",
    [
        ("One.\n\nTwo.\n", ["Two.\n"]),
        ("One.\n\nTw", []),  # the next line's start has not arrived in full
        ("Para.\n\n- a\n- b\n\n- c\n\nAfter\n", ["- a\n- b\n\n- c\n\nAfter\n", "After\n"]),
        ("Para.\n\n1. one\n\n2. two\n\nEnd.\n", ["1. one\n\n2. two\n\nEnd.\n", "End.\n"]),
        ("Para.\n\n    indented code\n\nEnd.\n", ["End.\n"]),
        ("```\na\n\nb\n```\n\nEnd.\n", ["End.\n"]),
        ("~~~~py\na\n\n~~~\nstill\n~~~~\n\nEnd.\n", ["End.\n"]),
        ("$$\na\n\nb\n$$\n\nEnd.\n", ["End.\n"]),
        ("<details>\n\ninside\n\n</details>\n\nEnd.\n", ["End.\n"]),
        ("| a | b |\n|---|---|\n\n| c | d |\n|---|---|\n", ["| c | d |\n|---|---|\n"]),
        ("Para.\n\n[1]: https://example.com\n", []),
    ],
)
def test_block_starts(text, starts):
    assert [text[at:] for at in block_starts(text)] == starts


_BLOCKS = st.sampled_from(
    [
        "Plain words here.",
        "It costs $5 and $10.",
        "Math $x^2$ inline.",
        "$$\na^2\n\nb$$",
        "- item one\n- item two",
        "1. first\n2. second",
        "```python\nx = '$5'\n\ny = 1\n```",
        "| a | $ |\n|---|---|\n| 1 | $2 |",
        "> quoted $5",
        "    indented",
        "## Heading $3",
        "<details>\n\nhidden $4\n\n</details>",
        "\\$ escaped and \\(x\\)",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_BLOCKS, min_size=1, max_size=12), st.sampled_from(["\n\n", "\n\n\n", "\n"]))
def test_cut_halves_are_escaped_like_the_whole(blocks, separator):
    text = separator.join(blocks) + "\n"
    whole = protect_currency(text)
    for at in block_starts(text):
        assert protect_currency(text[:at]) + protect_currency(text[at:]) == whole
        # never inside fenced code: an even number of fence lines before the cut
        fences = [ln for ln in text[:at].splitlines() if ln.startswith("```")]
        assert len(fences) % 2 == 0


# -- the throttle


def test_throttle_bounds_rate_gaps_and_bytes():
    throttle = UpdateThrottle(max_rate=12)
    times: list[float] = []
    sent = size = tail = 0
    now = 0.0
    for chunk in range(20_000):  # 6-character chunks at 2,000/s; a block ends every 100
        now += 0.0005
        size += 6
        tail += 6
        block_end = chunk % 100 == 99
        if throttle.due(now, size, tail, block_end=block_end):
            throttle.mark(now, size)
            throttle.spent(tail)
            times.append(now)
            sent += tail
        if block_end:
            tail = 0
    in_any_second = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    assert in_any_second <= 12 + 2  # the rate, and a burst of two
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 0.5
    assert sent <= 2 * size


def test_text_left_waiting_is_shown_at_its_deadline(recorder):
    # A model that pauses, or a finish whose history write takes a while: no chunk comes to
    # trigger an update, so the ticker wakes at the deadline and shows what waited.
    live, clock = stream("One paragraph that ends here.", 500)
    assert shown_text(recorder) != "One paragraph that ends here."
    wait = live._tick_wait(10.0)
    assert 0 < wait <= MAX_GAP
    clock.now += wait - 0.01
    live._on_tick()  # a little early: nothing yet
    assert shown_text(recorder) != "One paragraph that ends here."
    clock.now += 0.01 + 1e-9
    live._on_tick()
    assert shown_text(recorder) == "One paragraph that ends here."
    assert live._tick_wait(0.1) == 0.1  # nothing waits now


def test_code_is_updated_at_its_deadline_only(recorder):
    # Fenced code cannot be frozen in parts, so every update re-sends the block so far: no
    # early update for cheap moments, none for a blank line inside it, and each as late as the
    # gap allows (timed to the next chunk: never past MAX_GAP_IN_CODE).
    lines = "".join(f"x_{i} = compute({i})\n\n" for i in range(150))
    text = f"Here it is.\n\n```python\n{lines}```\n\nDone.\n"
    rate = 100
    stream(text, rate)
    in_code = [
        m["t"]
        for m in recorder.messages
        if m.get("update")
        and LIVE_KEY in m["metadata"]
        and m["data"]["text/markdown"].startswith("```python")
        and m["data"]["text/markdown"].endswith(CURSOR)
    ]
    gaps = [b - a for a, b in zip(in_code, in_code[1:], strict=False)]
    assert len(gaps) > 5
    assert MAX_GAP_IN_CODE - 1.5 / rate <= min(gaps) and max(gaps) <= MAX_GAP_IN_CODE + 1e-9


@pytest.mark.parametrize("size, flushed", [(1_000, False), (600_000, True)])
def test_the_finish_shows_text_only_if_it_would_wait_too_long(recorder, size, flushed):
    # After the stream come the history write and the final render, longer for a longer reply:
    # text that would wait past its deadline meanwhile goes out at the finish; otherwise the
    # final render shows it (no byte spent on a last copy).
    from ofox_jupyter._streaming import FinishEvent

    clock = Clock()
    recorder.clock = clock
    live = LiveReply("m", clock=clock, tick_seconds=0)
    live.start()
    live(TextDelta("x" * size + " "))  # the first text is shown at once
    clock.now += 0.2
    live(TextDelta("tail"))  # waiting: its deadline is MAX_GAP after the first update
    before = len(recorder.messages)
    clock.now += 0.01
    live(FinishEvent("stop"))
    assert (len(recorder.messages) > before) is flushed


def test_old_objects_are_left_out_of_collection_only_while_a_reply_streams(recorder):
    # A full collection of a big kernel (tens of ms) just before a deadline would make a gap
    # over 0.5 s: while the ticker runs, what existed before is frozen, and given back after.
    import gc

    from ofox_jupyter._session import Exchange
    from ofox_jupyter._streaming import Reply

    assert gc.get_freeze_count() == 0
    live = LiveReply("m", tick_seconds=0.05)
    live.start()
    try:
        assert gc.get_freeze_count() > 0
        live(TextDelta("some text"))
    finally:
        live.finish(Exchange(Reply("some text", "m", "m"), "main"))
    assert gc.get_freeze_count() == 0
    # Someone else's freeze is theirs: neither extended nor undone.
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        live = LiveReply("m", tick_seconds=0.05)
        live.start()
        live.abandon()
        # still frozen (not undone by us); objects that died meanwhile left the count
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
