"""The tool-calling loop, sans I/O: shared by ``%%ofox`` (through the session) and by
``Client.run`` / ``AsyncClient.run``.

:func:`tool_rounds` is a generator. It yields each request to make — (messages, params) — and is
sent what came back as ``(reply, status)``; while the model asks for tools it runs them (only the
registry's, at most ``max_rounds`` rounds) and asks again; then it returns a :class:`ToolRun`.
Who sends the requests (sync or async, streamed or not) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ._messages import Message, assistant
from ._tools import ToolRegistry, ToolResult

if TYPE_CHECKING:
    from ._streaming import Reply

__all__ = ["RoundStart", "ToolRun", "tool_rounds"]


class RoundStart(NamedTuple):
    """A new request of the tool loop begins (round 1 is the first after tool results)."""

    number: int


@dataclass
class ToolRun:
    """How a tool loop ended: the last reply, every assistant and tool message in order, each
    tool's result, the rounds run, and whether the round limit stopped it."""

    reply: Reply
    status: str
    replies: list[Message]
    results: list[ToolResult]
    rounds: int
    limit_hit: bool

    @property
    def text(self) -> str:
        return self.reply.text


def tool_rounds(
    messages: Sequence[Message],
    params: Mapping[str, Any],
    registry: ToolRegistry | None,
    max_rounds: int,
    notify: Callable[[Any], None] = lambda event: None,
) -> Generator[tuple[list[Message], dict[str, Any]], tuple[Reply, str], ToolRun]:
    """The loop (see the module docstring). ``notify`` hears each :class:`ToolResult` and each
    :class:`RoundStart`. A ``KeyboardInterrupt`` inside a tool ends the loop as "interrupted",
    keeping what was said but no calls without their results."""
    params = dict(params)
    sent = list(messages)
    replies: list[Message] = []
    results: list[ToolResult] = []
    limit_hit = False
    rounds = 0
    while True:
        reply, status = yield list(sent), dict(params)
        wants_tools = status == "complete" and bool(reply.tool_calls) and bool(registry)
        if wants_tools and rounds >= max_rounds:
            limit_hit, wants_tools = True, False
        if not wants_tools:
            # A reply's tool calls without their results would make the history invalid for
            # the API, so a partial or unanswered reply keeps only its text.
            final = (
                reply.message
                if status == "complete"
                and not limit_hit
                and not (reply.tool_calls and not registry)
                else assistant(reply.text)
            )
            if reply.text or final.tool_calls or status == "complete":
                replies.append(final)
            break
        assert registry is not None
        answered = [reply.message]
        try:
            for result in registry.iter_round(reply.tool_calls):
                results.append(result)
                notify(result)
                answered.append(result.message)
        except KeyboardInterrupt:
            status = "interrupted"
            if reply.text:
                replies.append(assistant(reply.text))
            break
        replies += answered
        sent += answered
        rounds += 1
        if params.get("tool_choice") not in (None, "auto", "none"):
            params["tool_choice"] = "auto"  # a forced call is forced once, not forever
        notify(RoundStart(rounds))
    return ToolRun(reply, status, replies, results, rounds, limit_hit)
