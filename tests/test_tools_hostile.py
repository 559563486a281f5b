"""Tools that misbehave: results that cannot be printed, exits, floods of calls, hanging tools.

A tool is the user's own code, and the model picks what it runs. Whatever either does, the
exchange goes on with a readable result (or stops at once on the user's interrupt), and the kernel
neither exits, hangs nor keeps a thread behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofox_jupyter import ToolCall, _tools
from ofox_jupyter._results import MAX_RESULT_CHARS, serialise
from ofox_jupyter._tools import MAX_CALLS_PER_ROUND, ToolRegistry, ToolResult


def run(function: Any, arguments: str = "{}") -> ToolResult:
    """Offer one function as a tool and let the model call it."""
    return ToolRegistry([function]).call(ToolCall("c1", function.__name__, arguments))


def returning(value: Any) -> ToolResult:
    def give() -> Any:
        """Give the value."""
        return value

    return run(give)


def assert_sendable(text: str, limit: int = MAX_RESULT_CHARS) -> Any:
    """The text can go to the API: a str, UTF-8 encodable, valid JSON, within the cap."""
    assert isinstance(text, str) and len(text) <= limit
    text.encode("utf-8")  # no lone surrogates
    json.dumps(text)
    return json.loads(text)


def tool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ofox-tool-")]


# -- results that cannot be printed


class RaisingRepr:
    def __repr__(self) -> str:
        raise ValueError("repr is broken")


class NonStrRepr:
    def __repr__(self) -> Any:
        return 42


class RaisingReprLLM:
    def _repr_llm_(self) -> str:
        raise RuntimeError("summary is broken")


class NonStrReprLLM:
    def _repr_llm_(self) -> Any:
        return ["not", "text"]


class ExitingRepr:
    def __repr__(self) -> str:
        sys.exit(3)


class RaisingStr(str):
    def __str__(self) -> str:
        raise ValueError("str is broken")


@pytest.mark.parametrize(
    "value, expected",
    [
        (RaisingRepr(), "<unprintable RaisingRepr: ValueError: repr is broken>"),
        (
            NonStrRepr(),
            "<unprintable NonStrRepr: TypeError: __repr__ returned non-string (type int)>",
        ),
        (RaisingReprLLM(), "<unprintable RaisingReprLLM: RuntimeError: summary is broken>"),
        (NonStrReprLLM(), "<unprintable NonStrReprLLM: _repr_llm_() returned list, not str>"),
        (ExitingRepr(), "<unprintable ExitingRepr: SystemExit: the tool called sys.exit(3)"),
        (RaisingStr("still text"), "still text"),
    ],
)
def test_a_result_that_breaks_printing_is_described(value, expected):
    result = returning(value)
    assert result.ok and assert_sendable(result.content).startswith(expected)


def test_only_the_broken_part_of_a_structure_is_described():
    text = serialise({"fine": [1, 2], "broken": RaisingRepr(), RaisingRepr(): "key"})
    assert json.loads(text) == {
        "fine": [1, 2],
        "broken": "<unprintable RaisingRepr: ValueError: repr is broken>",
        "<unprintable RaisingRepr: ValueError: repr is broken>": "key",
    }


def test_a_mock_is_not_mistaken_for_an_object_with_repr_llm():
    from unittest.mock import MagicMock

    assert "MagicMock" in json.loads(serialise(MagicMock()))


def test_a_five_thousand_digit_int_is_summarised():
    value = 10**5000 - 1  # str(value) raises ValueError on Python >= 3.11
    result = returning(value)
    text = assert_sendable(result.content)
    assert result.ok and text.startswith("9.999999…e+4999 (an int of 5,000 digits")
    assert "ending in …999999" in text
    assert json.loads(serialise(-(10**5000))).startswith("-1.000000…e+5000 (an int of 5,001")
    assert json.loads(serialise(12345)) == 12345 and json.loads(serialise(10**4000)) == 10**4000
    # Past exact arithmetic the size is estimated, still without writing the number out.
    assert "an int of about 120,412 digits" in json.loads(serialise(1 << 400_000))


def test_ten_megabytes_of_text_is_cut_with_a_note_quickly():
    started = time.perf_counter()
    text = serialise("x" * 10_000_000)
    assert time.perf_counter() - started < 1
    cut = assert_sendable(text)
    assert cut["truncated"] is True
    assert cut["note"] == "… (truncated, 9,980,220 more characters)"
    assert cut["value"].endswith("x… (truncated, 9,980,220 more characters)")


def test_huge_containers_are_cut_while_they_are_read():
    started = time.perf_counter()
    numbers = assert_sendable(serialise(list(range(10_000_000))))
    table = assert_sendable(serialise({i: "y" * 100 for i in range(100_000)}))
    assert time.perf_counter() - started < 2
    assert numbers["value"][:3] == [0, 1, 2] and numbers["value"][-1].endswith("more items)")
    assert numbers["note"].endswith("more items)")
    assert table["value"]["… (truncated)"].endswith("more entries")


def test_cycles_and_deep_nesting():
    loop: list[Any] = [1]
    loop.append(loop)
    itself: dict[str, Any] = {}
    itself["me"] = itself
    assert json.loads(serialise(loop)) == [1, "<cycle: this list contains itself>"]
    assert json.loads(serialise(itself)) == {"me": "<cycle: this dict contains itself>"}
    deep: list[Any] = []
    innermost = deep
    for _ in range(100_000):  # far deeper than the recursion limit
        innermost.append([])
        innermost = innermost[0]
    cut = assert_sendable(serialise(deep))
    assert cut["note"] == "… (truncated, 1 value nested more than 20 levels deep)"
    level = cut["value"]
    for _ in range(20):
        level = level[0]
    assert level == "<list nested too deeply to show>"


def test_what_json_cannot_carry():
    assert json.loads(serialise(b"ab\x00\xff")) == "b'ab\\x00\\xff'"
    big = assert_sendable(serialise(b"\x00" * 10_000_000))
    assert big["note"].endswith("more bytes)")
    # NaN and infinities: strict JSON has no such numbers, so they are named in strings.
    assert serialise(math.nan) == '"NaN"'
    assert json.loads(serialise([math.inf, -math.inf, 1.5])) == ["Infinity", "-Infinity", 1.5]
    assert serialise({3, 1, 2}) == "[1, 2, 3]" and serialise(frozenset({"b", "a"})) == '["a", "b"]'
    assert json.loads(serialise({1, "a"})) in ([1, "a"], ["a", 1])  # unorderable: as they come
    assert json.loads(serialise({1: "a", "1": "b", (1, 2): "c", None: "d", 2.5: "e"})) == {
        "1": "a",
        "1 (1)": "b",
        "(1, 2)": "c",
        "null": "d",
        "2.5": "e",
    }
    # A lone surrogate cannot be sent as UTF-8: it becomes U+FFFD; a pair becomes its character.
    assert json.loads(serialise("a\ud800b\ud83d\ude00")) == "a\ufffdb😀"

    @dataclass
    class Node:
        name: str
        children: list[Any]

    assert json.loads(serialise(Node("n", [math.nan]))) == {"name": "n", "children": ["NaN"]}


def test_escapes_count_against_the_cap():
    for value in ("\x00" * 50_000, '"' * 50_000, ["\\" * 30_000] * 3):
        assert assert_sendable(serialise(value))["truncated"] is True


# -- what a tool raises


def test_system_exit_in_a_tool_is_an_error_result_not_the_end():
    def leave(code: int) -> None:
        """Leave."""
        sys.exit(code)

    async def leave_later() -> None:
        """Leave, asynchronously."""
        await asyncio.sleep(0)
        raise SystemExit

    exited = run(leave, '{"code": 3}')
    assert not exited.ok
    assert exited.error == "SystemExit: the tool called sys.exit(3); it stopped, the kernel did not"
    assert json.loads(exited.content) == {"error": exited.error}
    assert run(leave_later).error == (
        "SystemExit: the tool called sys.exit(); it stopped, the kernel did not"
    )


def test_other_base_exceptions_are_error_results_and_interrupts_go_through():
    class Odd(BaseException):
        pass

    class Unsayable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no words")

    def odd() -> None:
        """Odd."""
        raise Odd("strange")

    def unsayable() -> None:
        """Unsayable."""
        raise Unsayable

    def loud() -> None:
        """Loud."""
        raise ValueError("x" * 1_000_000)

    async def cancelled() -> None:
        """Cancelled by something else."""
        raise asyncio.CancelledError

    def stop() -> None:
        """The user's interrupt, from inside."""
        raise KeyboardInterrupt

    assert run(odd).error == "Odd: strange"
    assert run(unsayable).error == "Unsayable: <unprintable message: RuntimeError>"
    error = run(loud).error
    assert error is not None and len(error) < 2_100 and error.endswith("more characters)")

    async def stop_later() -> None:
        """The user's interrupt, from inside a coroutine."""
        raise KeyboardInterrupt

    assert run(cancelled).error == "CancelledError: the tool's coroutine was cancelled from within"
    for interrupting in (stop, stop_later):
        with pytest.raises(KeyboardInterrupt):
            run(interrupting)


def test_async_tools_return_and_fail_like_plain_ones_and_leave_no_thread():
    async def half(x: float) -> float:
        """Half."""
        await asyncio.sleep(0)
        return x / 2

    async def broken() -> None:
        """Broken."""
        raise ValueError("async trouble")

    before = threading.active_count()
    assert run(half, '{"x": 3}').value == 1.5
    assert run(broken).error == "ValueError: async trouble"
    assert threading.active_count() == before and not tool_threads()


# -- calls per round


def test_a_thousand_calls_in_one_round():
    ran: list[int] = []

    def count(n: int) -> int:
        """Count."""
        ran.append(n)
        return n

    calls = [ToolCall(f"call_{i}", "count", json.dumps({"n": i})) for i in range(1_000)]
    results = ToolRegistry([count]).call_round(calls)
    assert [r.call.id for r in results] == [c.id for c in calls]  # one result per id, in order
    assert ran == list(range(MAX_CALLS_PER_ROUND)) == [r.value for r in results[:32]]
    refused = results[MAX_CALLS_PER_ROUND:]
    assert len(refused) == 968 and not any(r.ok for r in refused)
    assert refused[0].error == (
        "not run: at most 32 tool calls per round (1000 were asked for); call fewer at once"
    )
    assert json.loads(refused[-1].content) == {"error": refused[0].error}
    assert [m.tool_call_id for m in (r.message for r in results)] == [c.id for c in calls]


def test_round_limits_and_results_as_they_come():
    seen: list[str] = []

    def note(word: str) -> str:
        """Note a word."""
        seen.append(word)
        return word

    registry = ToolRegistry([note])
    calls = [ToolCall(f"c{i}", "note", json.dumps({"word": w})) for i, w in enumerate("abc")]
    results = registry.iter_round(calls, max_calls=2)
    assert next(results).value == "a" and seen == ["a"]  # the second call has not run yet
    assert [r.ok for r in results] == [True, False] and seen == ["a", "b"]
    assert [r.ok for r in registry.call_round(calls, max_calls=0)] == [False] * 3
    with pytest.raises(ValueError, match="max_calls"):
        registry.call_round(calls, max_calls=-1)


# -- one interrupt stops a hanging tool


@contextlib.contextmanager
def interrupt_after(seconds: float) -> Iterator[None]:
    """Send SIGINT to the main thread after ``seconds``, as a kernel interrupt does."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)


def test_one_interrupt_stops_a_hanging_sync_tool():
    def hang() -> None:
        """Hang."""
        time.sleep(30)

    started = time.perf_counter()
    with interrupt_after(0.3), pytest.raises(KeyboardInterrupt):
        ToolRegistry([hang]).call_round([ToolCall("c1", "hang", "{}")])
    assert time.perf_counter() - started < 1


def hanging_async_tool() -> tuple[Any, list[str]]:
    events: list[str] = []

    async def hang() -> None:
        """Hang, asynchronously."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("finally")

    return hang, events


def test_one_interrupt_stops_a_hanging_async_tool_and_its_thread():
    hang, events = hanging_async_tool()
    before = threading.active_count()
    started = time.perf_counter()
    with interrupt_after(0.3), pytest.raises(KeyboardInterrupt):
        run(hang)
    assert time.perf_counter() - started < 1
    assert events == ["cancelled", "finally"]
    assert not tool_threads() and threading.active_count() == before


def test_one_interrupt_stops_an_async_tool_called_from_a_running_loop():
    # In a kernel the main thread runs the kernel's event loop and, inside it, the cell.
    hang, events = hanging_async_tool()
    loop = asyncio.new_event_loop()

    async def cell() -> ToolResult:
        return run(hang)

    task = loop.create_task(cell())
    started = time.perf_counter()
    try:
        with interrupt_after(0.3), pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(task)
        assert isinstance(task.exception(), KeyboardInterrupt)
    finally:
        loop.close()
    assert time.perf_counter() - started < 1
    assert events == ["cancelled", "finally"] and not tool_threads()


def test_a_tool_that_ignores_cancellation_does_not_hold_the_interrupt(monkeypatch):
    monkeypatch.setattr(_tools, "CANCEL_GRACE_SECONDS", 0.2)

    async def stubborn() -> str:
        """Refuses to stop."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.8)  # goes on for a while despite the cancellation
        return "done anyway"

    started = time.perf_counter()
    with interrupt_after(0.2), pytest.raises(KeyboardInterrupt):
        run(stubborn)
    assert time.perf_counter() - started < 0.7  # the grace, not the tool's time
    stragglers = tool_threads()
    assert [t.daemon for t in stragglers] == [True]  # it cannot keep the kernel from exiting
    stragglers[0].join(2)  # and it ends on its own
    assert not tool_threads()


# -- any value a tool returns


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=4_300, max_value=12_000).map(lambda digits: 10**digits - 7),
    st.integers(min_value=4_300, max_value=12_000).map(lambda digits: -(10**digits)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.lists(
        st.sampled_from(["a", "\ud800", "\udfff", "\ud83d", "\ude00", "é", "\x00", '"', "\\"])
    ).map("".join),
    st.binary(),
)
hashables = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children),
        st.tuples(children, children),
        st.dictionaries(hashables, children),
        st.sets(hashables),
        st.frozensets(hashables),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=values, limit=st.sampled_from([200, 500, 2_000, MAX_RESULT_CHARS]))
def test_any_value_becomes_sendable_json_within_the_cap(value, limit):
    assert_sendable(serialise(value, limit), limit)
