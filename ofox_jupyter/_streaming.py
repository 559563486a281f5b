"""From streamed chunks to a reply, without any I/O.

The HTTP shells in ``_client`` hand each server-sent event's ``data`` to a :class:`StreamState`,
which parses it, turns it into typed events for whoever renders the stream (:class:`TextDelta`,
:class:`ReasoningDelta`, :class:`ToolCallDelta`, :class:`UsageEvent`, :class:`FinishEvent`) and
accumulates the final :class:`Reply`. Rendering never touches accumulation, so both can be tested
apart and a broken stream still leaves a usable partial reply.

Wire facts this follows (ofox-api.md §6): tool-call fragments are joined per ``index``, with ``id``
and name only in the first fragment; some upstreams reuse index 0 for parallel calls, told apart
by a new ``id``; the usage chunk has ``choices: []``; a mid-stream error is either a bare
``{"error": ...}`` (OpenAI) or a chunk with a top-level ``error`` and ``finish_reason: "error"``
(OpenRouter); a stream that ends after a finish reason but without ``[DONE]`` is complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._config import Secret
from ._exceptions import StreamError, error_label
from ._messages import Message, ToolCall, assistant

__all__ = [
    "ChunkAccumulator",
    "FinishEvent",
    "ReasoningDelta",
    "Reply",
    "StreamEvent",
    "StreamState",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "UsageEvent",
    "events_of_reply",
    "reply_from_completion",
]


@dataclass(frozen=True)
class Usage:
    """Token counts of one request, as the API reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        total = int(data.get("total_tokens") or prompt + completion)
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


# Events are NamedTuples: immutable like frozen dataclasses but several times cheaper to build,
# which matters at one or more events per streamed chunk.


class TextDelta(NamedTuple):
    """A piece of the reply text."""

    text: str


class ReasoningDelta(NamedTuple):
    """A piece of the model's reasoning (``reasoning_content``), kept apart from the text."""

    text: str


class ToolCallDelta(NamedTuple):
    """A fragment of tool call number ``position`` (0, 1, … in the order calls appeared).

    ``id`` and ``name`` are set on the first fragment of a call only; ``arguments`` is the next
    piece of its JSON arguments text.
    """

    position: int
    id: str | None
    name: str | None
    arguments: str


class UsageEvent(NamedTuple):
    usage: Usage


class FinishEvent(NamedTuple):
    """The model finished: ``stop``, ``length``, ``tool_calls``, ``content_filter``, …"""

    reason: str


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | UsageEvent | FinishEvent


@dataclass(frozen=True)
class Reply:
    """What the model answered, streamed or not.

    ``model`` is the model that actually served the request (after a fallback it differs from
    ``requested_model``). ``complete`` is ``False`` for a partial reply kept from a broken or
    interrupted stream.
    """

    text: str
    model: str
    requested_model: str
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    usage: Usage | None = None
    id: str | None = None
    complete: bool = True
    offline: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def message(self) -> Message:
        """The assistant message to append to the conversation."""
        return assistant(self.text or (None if self.tool_calls else ""), self.tool_calls)

    @property
    def fell_back(self) -> bool:
        """Whether a model other than the requested one answered."""
        return bool(self.model) and self.model != self.requested_model


class _ToolCallBuilder:
    __slots__ = ("id", "name", "arguments")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []


class ChunkAccumulator:
    """Folds parsed ``chat.completion.chunk`` dicts into events and, at the end, a ``Reply``."""

    def __init__(self, requested_model: str, *, offline: bool = False) -> None:
        self.requested_model = requested_model
        self.offline = offline
        self.id: str | None = None
        self.model: str = ""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[_ToolCallBuilder] = []
        self._call_at_index: dict[int, _ToolCallBuilder] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """Take one chunk; return the events it carries. Unknown fields are ignored."""
        if self.id is None:
            self.id = chunk.get("id")
        model = chunk.get("model")
        if model:
            self.model = model
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # we never ask for n > 1
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    self._text.append(content)
                    events.append(TextDelta(content))
                # Most deltas hold nothing but content: skip the other lookups for them.
                if len(delta) > 1 or content is None:
                    self._other_delta_fields(delta, events)
            finish = choice.get("finish_reason")
            if finish:
                self.finish_reason = finish
                events.append(FinishEvent(finish))
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_dict(usage)
            events.append(UsageEvent(self.usage))
        return events

    def _other_delta_fields(self, delta: Mapping[str, Any], events: list[StreamEvent]) -> None:
        # DashScope-style upstreams send reasoning_content; OpenRouter calls it reasoning.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self._reasoning.append(reasoning)
            events.append(ReasoningDelta(reasoning))
        for fragment in delta.get("tool_calls") or ():
            events.append(self._tool_call_fragment(fragment))

    def _tool_call_fragment(self, fragment: Mapping[str, Any]) -> ToolCallDelta:
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        call_id = fragment.get("id")
        name = function.get("name")
        builder = self._call_at_index.get(index)
        # A new id at an index that is already taken means a new call: some upstreams reuse
        # index 0 for every parallel call and only the id differs.
        if builder is None or (call_id and call_id != builder.id):
            builder = _ToolCallBuilder(call_id or f"call_{len(self._calls)}", name or "")
            self._calls.append(builder)
            self._call_at_index[index] = builder
            first = True
        else:
            first = False
            if name and not builder.name:
                builder.name = name
        arguments = function.get("arguments") or ""
        if arguments:
            builder.arguments.append(arguments)
        return ToolCallDelta(
            position=self._calls.index(builder),
            id=builder.id if first else None,
            name=(name or builder.name) if first else None,
            arguments=arguments,
        )

    @property
    def text(self) -> str:
        return "".join(self._text)

    def reply(self, *, complete: bool = True) -> Reply:
        return Reply(
            text="".join(self._text),
            model=self.model or self.requested_model,
            requested_model=self.requested_model,
            finish_reason=self.finish_reason,
            tool_calls=tuple(
                ToolCall(id=c.id, name=c.name, arguments="".join(c.arguments)) for c in self._calls
            ),
            reasoning="".join(self._reasoning),
            usage=self.usage,
            id=self.id,
            complete=complete,
            offline=self.offline,
        )


def _error_text(error: Any) -> tuple[str, str | None, str | int | None]:
    """Message, type and code of an ``error`` payload, whatever its shape."""
    if isinstance(error, Mapping):
        message = str(error.get("message") or "unknown error")
        return message, error.get("type"), error.get("code")
    return str(error), None, None


class StreamState:
    """The sans-IO heart of a streamed reply, shared by the sync and async clients.

    Feed it each server-sent event with :meth:`on_event`; call :meth:`on_end` when the byte stream
    ends and :meth:`broken` to turn a transport failure into a :class:`StreamError` that carries
    the partial reply.
    """

    def __init__(
        self, requested_model: str, *, offline: bool = False, secret: Secret | None = None
    ) -> None:
        self.accumulator = ChunkAccumulator(requested_model, offline=offline)
        self.done = False
        self._secret = secret  # an upstream may quote the key in an error: never show it

    def on_event(self, event: str, data: str) -> list[StreamEvent]:
        if not data:
            return []
        if data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self.broken(
                "malformed", f"the stream sent a chunk that is not JSON: {data[:80]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise self.broken("malformed", f"the stream sent a non-object chunk: {data[:80]!r}")
        error = chunk.get("error")
        if error is not None or event == "error":
            # OpenAI: a bare {"error": ...}; OpenRouter: a chunk with a top-level error and
            # finish_reason "error". Keep any text the error chunk still carries.
            self.accumulator.feed({k: v for k, v in chunk.items() if k != "error"})
            message, api_type, code = _error_text(error if error is not None else chunk)
            label = error_label(api_type, code)
            detail = f" ({label})" if label else ""
            raise self.broken(
                "error_event",
                f"the API reported an error mid-stream{detail}: {message}",
                api_type,
                code,
            )
        return self.accumulator.feed(chunk)

    def on_end(self) -> Reply:
        """The byte stream ended; the reply is complete if a finish reason or ``[DONE]`` came."""
        if not self.done and self.accumulator.finish_reason is None:
            raise self.broken("incomplete", "the stream ended before the reply was finished")
        self.done = True
        return self.accumulator.reply()

    def broken(
        self,
        kind: str,
        message: str,
        api_type: str | None = None,
        code: str | int | None = None,
    ) -> StreamError:
        self.done = True
        if self._secret is not None:
            message = self._secret.redact(message)
        return StreamError(
            message,
            kind=kind,
            partial=self.accumulator.reply(complete=False),
            api_type=api_type,
            code=code,
        )


def reply_from_completion(
    body: Mapping[str, Any], requested_model: str, *, offline: bool = False
) -> Reply:
    """A :class:`Reply` from a non-streamed ``chat.completion`` body."""
    choices = body.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    usage = body.get("usage")
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    return Reply(
        text=message.get("content") or "",
        model=body.get("model") or requested_model,
        requested_model=requested_model,
        finish_reason=choice.get("finish_reason"),
        tool_calls=tuple(ToolCall.from_dict(c) for c in message.get("tool_calls") or ()),
        reasoning=reasoning if isinstance(reasoning, str) else "",
        usage=Usage.from_dict(usage) if usage else None,
        id=body.get("id"),
        complete=True,
        offline=offline,
        raw=body,
    )


def events_of_reply(reply: Reply) -> list[StreamEvent]:
    """The events a whole (non-streamed) reply stands for, so every consumer sees one shape."""
    events: list[StreamEvent] = []
    if reply.reasoning:
        events.append(ReasoningDelta(reply.reasoning))
    if reply.text:
        events.append(TextDelta(reply.text))
    for position, call in enumerate(reply.tool_calls):
        events.append(ToolCallDelta(position, call.id, call.name, call.arguments))
    if reply.finish_reason:
        events.append(FinishEvent(reply.finish_reason))
    if reply.usage:
        events.append(UsageEvent(reply.usage))
    return events
