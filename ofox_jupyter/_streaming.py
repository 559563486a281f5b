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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ._config import Secret, scrub, scrubbed_line
from ._exceptions import StreamError, error_label
from ._messages import Message, ToolCall, assistant, utf8_safe

__all__ = [
    "ChunkAccumulator",
    "FinishEvent",
    "MalformedChunk",
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
    """Token counts of one request, as the API reported them.

    ``cached_tokens`` (of the prompt, read from the provider's prompt cache) and
    ``reasoning_tokens`` (of the completion, spent thinking) come from OpenAI's
    ``prompt_tokens_details`` / ``completion_tokens_details``; 0 when not reported.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        # The details only when there are any, so usage without them keeps its old shape.
        if self.cached_tokens:
            data["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            data["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return data

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        """Several requests' usage as one (a tool loop's rounds, a batch's answers)."""
        counted = list(usages)
        return cls(
            prompt_tokens=sum(u.prompt_tokens for u in counted),
            completion_tokens=sum(u.completion_tokens for u in counted),
            total_tokens=sum(u.total_tokens for u in counted),
            cached_tokens=sum(u.cached_tokens for u in counted),
            reasoning_tokens=sum(u.reasoning_tokens for u in counted),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Usage from the API's object; ``ValueError`` naming the field when a count is not a
        whole number ≥ 0 (an upstream's ``"n/a"``, a float, a negative). The details (cached
        and reasoning tokens) are extras: one of the wrong type is ignored, not an error."""
        if not isinstance(data, Mapping):
            raise ValueError(f"usage is {_kind(data)}, not an object")
        counts: list[int | None] = []
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = data.get(name)
            if value is None:
                counts.append(None)
            elif _is_count(value):
                counts.append(value)
            else:
                raise ValueError(f"usage.{name} is {_kind(value)}, not a token count")
        prompt, completion, total = counts
        prompt, completion = prompt or 0, completion or 0
        cached = _detail(data, "prompt_tokens_details", "cached_tokens")
        reasoning = _detail(data, "completion_tokens_details", "reasoning_tokens")
        return cls(
            prompt,
            completion,
            total if total is not None else prompt + completion,
            cached_tokens=min(cached, prompt),  # more would make the cost negative
            reasoning_tokens=reasoning,
        )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _detail(data: Mapping[str, Any], group: str, name: str) -> int:
    """A count inside ``usage.<group>``; 0 when absent or of the wrong type."""
    details = data.get(group)
    value = details.get(name) if isinstance(details, Mapping) else None
    return value if isinstance(value, int) and _is_count(value) else 0


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
    #: What was odd but not fatal in the answer (a usage object that was not one, …).
    warnings: tuple[str, ...] = ()
    #: The recording this reply was replayed from (``%ofox replay``), if it was.
    replayed: str | None = None
    #: The other choices of a non-streamed reply asked for with ``n`` (see :attr:`choices`).
    other_choices: tuple[Reply, ...] = field(default=(), repr=False, compare=False)

    @property
    def choices(self) -> tuple[Reply, ...]:
        """Every choice the API returned, this one (the first) included: ``n=3`` gives three."""
        return (self, *self.other_choices)

    @property
    def message(self) -> Message:
        """The assistant message to append to the conversation."""
        return assistant(self.text or (None if self.tool_calls else ""), self.tool_calls)

    @property
    def fell_back(self) -> bool:
        """Whether a model other than the requested one answered."""
        return bool(self.model) and self.model != self.requested_model


#: Tool calls one reply may carry; a model asking for more is answered with an error (the
#: tool loop runs a bounded number of them per round anyway).
MAX_TOOL_CALLS = 4096


class MalformedChunk(ValueError):
    """A chunk (or completion) field of the wrong type; the message names the field."""


def _kind(value: object) -> str:
    """What a JSON value is, for a message: ``a number``, ``text``, ``null``, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


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
        self.replayed: str | None = None  # set by the client for a replayed response
        self.id: str | None = None
        self.model: str = ""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[_ToolCallBuilder] = []
        self._call_at_index: dict[int, _ToolCallBuilder] = {}
        self.warnings: list[str] = []

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """Take one chunk; return the events it carries. Unknown fields are ignored; a field
        of the wrong type raises :class:`MalformedChunk` naming it (the caller keeps the
        partial reply), or, where the reply does not depend on it, becomes a warning."""
        if self.id is None and isinstance(chunk.get("id"), str):
            self.id = chunk["id"]
        model = chunk.get("model")
        if model and isinstance(model, str):
            self.model = model
        events: list[StreamEvent] = []
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise MalformedChunk(f"choices is {_kind(choices)}, not a list")
        for choice in choices or ():
            if not isinstance(choice, dict):
                raise MalformedChunk(f"a choice is {_kind(choice)}, not an object")
            index = choice.get("index", 0)
            if index != 0:
                if not isinstance(index, int) or isinstance(index, bool):
                    raise MalformedChunk(f"choices[].index is {_kind(index)}, not a number")
                continue  # we never ask for n > 1
            delta = choice.get("delta")
            if delta:
                if not isinstance(delta, dict):
                    raise MalformedChunk(f"delta is {_kind(delta)}, not an object")
                content = delta.get("content")
                if content:
                    if not isinstance(content, str):
                        raise MalformedChunk(f"delta.content is {_kind(content)}, not text")
                    content = utf8_safe(content)
                    self._text.append(content)
                    events.append(TextDelta(content))
                # Most deltas hold nothing but content: skip the other lookups for them.
                if len(delta) > 1 or content is None:
                    self._other_delta_fields(delta, events)
            finish = choice.get("finish_reason")
            if finish:
                if not isinstance(finish, str):
                    raise MalformedChunk(f"finish_reason is {_kind(finish)}, not text")
                self.finish_reason = finish
                events.append(FinishEvent(finish))
        usage = chunk.get("usage")
        if usage:
            try:
                self.usage = Usage.from_dict(usage)
            except ValueError as err:
                self.warn(f"{err}: usage left out")
            else:
                events.append(UsageEvent(self.usage))
        return events

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def _other_delta_fields(self, delta: Mapping[str, Any], events: list[StreamEvent]) -> None:
        # DashScope-style upstreams send reasoning_content; OpenRouter calls it reasoning.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            reasoning = utf8_safe(reasoning)
            self._reasoning.append(reasoning)
            events.append(ReasoningDelta(reasoning))
        fragments = delta.get("tool_calls")
        if fragments is not None and not isinstance(fragments, list):
            raise MalformedChunk(f"delta.tool_calls is {_kind(fragments)}, not a list")
        for fragment in fragments or ():
            if not isinstance(fragment, dict):
                raise MalformedChunk(f"a tool call is {_kind(fragment)}, not an object")
            events.append(self._tool_call_fragment(fragment))

    def _tool_call_fragment(self, fragment: Mapping[str, Any]) -> ToolCallDelta:
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        call_id = fragment.get("id")
        if not isinstance(index, int) or isinstance(index, bool):
            raise MalformedChunk(f"tool_calls[].index is {_kind(index)}, not a number")
        if not isinstance(function, dict):
            raise MalformedChunk(f"tool_calls[].function is {_kind(function)}, not an object")
        name = function.get("name")
        arguments = function.get("arguments") or ""
        for field_name, value in (("id", call_id), ("function.name", name)):
            if value is not None and not isinstance(value, str):
                raise MalformedChunk(f"tool_calls[].{field_name} is {_kind(value)}, not text")
        if not isinstance(arguments, str):
            raise MalformedChunk(f"tool_calls[].function.arguments is {_kind(arguments)}")
        if len(self._calls) >= MAX_TOOL_CALLS and index not in self._call_at_index:
            raise MalformedChunk(f"more than {MAX_TOOL_CALLS} tool calls in one reply")
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
        if arguments:
            arguments = utf8_safe(arguments)
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
            warnings=tuple(self.warnings),
            replayed=self.replayed,
        )


def _error_text(error: Any) -> tuple[str, str | None, str | int | None]:
    """Message, type and code of an ``error`` payload, whatever its shape (each checked)."""
    if isinstance(error, Mapping):
        message = error.get("message")
        api_type = error.get("type")
        code = error.get("code")
        return (
            scrubbed_line(message, 300)
            if isinstance(message, str) and message
            else "unknown error",
            api_type if isinstance(api_type, str) else None,
            code if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
        )
    return (scrubbed_line(error, 300) if isinstance(error, str) else "unknown error"), None, None


_NOT_JSON = object()


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
        # Failures are raised outside any ``except`` block, so that no exception holding the
        # raw chunk (which may quote the key) rides along as ``__context__``.
        chunk: Any = None
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            chunk = _NOT_JSON
        if chunk is _NOT_JSON:
            raise self.broken(
                "malformed", f"the stream sent a chunk that is not JSON: {self._preview(data)}"
            )
        if not isinstance(chunk, dict):
            raise self.broken(
                "malformed", f"the stream sent a non-object chunk: {self._preview(data)}"
            )
        error = chunk.get("error")
        if error is not None or event == "error":
            # OpenAI: a bare {"error": ...}; OpenRouter: a chunk with a top-level error and
            # finish_reason "error". Keep any text the error chunk still carries.
            problem = self._feed({k: v for k, v in chunk.items() if k != "error"})
            message, api_type, code = _error_text(error if error is not None else chunk)
            label = error_label(api_type, code)
            detail = f" ({label})" if label else ""
            raise self.broken(
                "error_event",
                f"the API reported an error mid-stream{detail}: {message}",
                api_type,
                code,
            )
        problem = self._feed(chunk)
        if isinstance(problem, str):
            raise self.broken("malformed", f"the stream sent an unusable chunk: {problem}")
        return problem

    def _feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent] | str:
        """The chunk's events, or what was wrong with it."""
        try:
            return self.accumulator.feed(chunk)
        except MalformedChunk as err:
            return str(err)

    def _preview(self, data: str) -> str:
        """The start of a raw chunk for a message, secrets taken out *before* it is cut."""
        clean = scrub(self._secret.redact(data) if self._secret is not None else data)
        return repr(clean[:80]) + ("…" if len(clean) > 80 else "")

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
            api_type = self._secret.redact(api_type) if api_type else api_type
            code = self._secret.redact(code) if isinstance(code, str) else code
        return StreamError(
            scrub(message),
            kind=kind,
            partial=self.accumulator.reply(complete=False),
            api_type=scrub(api_type)[:60] if api_type else None,
            code=scrub(code)[:60] if isinstance(code, str) else code,
        )


def reply_from_completion(
    body: Mapping[str, Any], requested_model: str, *, offline: bool = False
) -> Reply:
    """A :class:`Reply` from a non-streamed ``chat.completion`` body (every choice of it, see
    :attr:`Reply.choices`); :class:`MalformedChunk` naming the field when a part the reply
    needs has the wrong type."""
    choices = body.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise MalformedChunk(f"choices is {_kind(choices)}, not a list")
    warnings: list[str] = []
    usage: Usage | None = None
    if body.get("usage"):
        try:
            usage = Usage.from_dict(body["usage"])
        except ValueError as err:
            warnings.append(f"{err}: usage left out")
    model, reply_id = body.get("model"), body.get("id")
    common: dict[str, Any] = {
        "model": model if isinstance(model, str) and model else requested_model,
        "requested_model": requested_model,
        "id": reply_id if isinstance(reply_id, str) else None,
        "offline": offline,
        "raw": body,
    }
    choices = choices or [{}]
    if len(choices) > 1:  # in the order of their index, as the API numbers them
        choices = sorted(choices, key=_choice_index)
    first = _choice_reply(choices[0], 0, common)
    others = []
    for index, choice in enumerate(choices[1:], 1):
        try:  # the first choice is the reply; a broken extra one is only left out
            others.append(_choice_reply(choice, index, common))
        except MalformedChunk as err:
            warnings.append(f"choice {index + 1} left out: {err}")
    return replace(first, usage=usage, warnings=tuple(warnings), other_choices=tuple(others))


def _choice_index(choice: Any) -> int:
    index = choice.get("index") if isinstance(choice, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else 1 << 30


def _choice_reply(choice: Any, index: int, common: Mapping[str, Any]) -> Reply:
    if not isinstance(choice, dict):
        raise MalformedChunk(f"choices[{index}] is {_kind(choice)}, not an object")
    message = choice.get("message") or {}
    if not isinstance(message, dict):
        raise MalformedChunk(f"message is {_kind(message)}, not an object")
    content = message.get("content")
    if isinstance(content, list):  # content parts, as some upstreams answer
        content = "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    elif content is not None and not isinstance(content, str):
        raise MalformedChunk(f"message.content is {_kind(content)}, not text")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(
        isinstance(c, dict) and isinstance(c.get("function") or {}, dict) for c in calls
    ):
        raise MalformedChunk("message.tool_calls is not a list of calls")
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise MalformedChunk(f"finish_reason is {_kind(finish)}, not text")
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    return Reply(
        text=utf8_safe(content or ""),
        finish_reason=finish,
        tool_calls=tuple(ToolCall.from_dict(c) for c in calls),
        reasoning=reasoning if isinstance(reasoning, str) else "",
        complete=True,
        **common,
    )


def json_of_text(text: str) -> Any:
    """A JSON-mode reply's value (``json.JSONDecodeError`` when it is not JSON); a reply
    fenced as a code block, as some models do even in JSON mode, is unfenced first."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    return json.loads(text)


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
