"""The emulator's deterministic "model": what it answers, how it splits, what it costs.

Nothing here depends on time or randomness: the same request always gives the same reply.

**Reply text** for a request whose last message is a user message (Markdown)::

    *Offline emulator · `openai/gpt-4o` · turn 2*

    You said:

    > first line of the prompt
    > second line

    System prompt: <system text, whitespace collapsed, when the request has system messages>
    Image 1: 640×480 RGB, mostly white, blue and orange; looks like a chart.
    Image 2: remote image at https://example.com/a.png (not fetched offline).
    Earlier in this conversation: 1 image.

* "turn" is the number of user messages in the request;
* the prompt is the text parts of the **last** user message (joined by newlines), with the
  emulator markers removed and trailing whitespace stripped; an empty prompt gives the line
  ``You said nothing in text.`` instead of the quote;
* the block of ``System prompt`` / ``Image N`` / ``Earlier…`` lines is left out when empty, and
  each of its lines only appears when it applies (see ``_images.py`` for the image description);
* ``[emulator-words: N]`` appends a blank line and N filler words ending with a full stop;
  ``[emulator-prose: N]`` and ``[emulator-code: N]`` append about N words of structured Markdown
  (headings, lists, tables, fenced code; see ``_document.py``).

When the last messages are ``role: tool`` results, the reply lists them instead::

    *Offline emulator · `openai/gpt-4o` · turn 1*

    Tool results:
    - get_weather: {"temp": 21}

(the name is looked up through the assistant messages' ``tool_calls`` ids; newlines in a result
are replaced by spaces).

Markers, tool selection and schema instances live in ``_conversation.py``, ``_tools.py`` and
``_schema.py``.  Tool-call ids are ``call_<n>``, numbered after the tool calls already present in
the request so they stay unique within a conversation.

**JSON mode**: ``json_object`` answers ``{"reply": <prompt>, "turn": n, "images": [...]}``;
``json_schema`` answers an instance of ``json_schema.schema`` with all properties (a schema whose
instance would be too large, see ``_schema.py``, is a 400).

**Reasoning models** (``deepseek/deepseek-v4-pro``) first produce a short ``reasoning_content``.
``[emulator-reasoning: N]`` makes any model reason first with N filler words, sent as
``reasoning`` (OpenRouter's name for it) instead.  Reasoning pieces are reported as
``usage.completion_tokens_details.reasoning_tokens``; ``[emulator-cached: N]`` reports
``usage.prompt_tokens_details.cached_tokens`` (N, at most prompt_tokens).

**Pieces and tokens**: text is split with ``\\s*\\S+\\s*`` so that joining the pieces gives the text
back exactly; one piece is one streamed chunk and one completion token.  completion_tokens =
content pieces + reasoning pieces + ⌈len(arguments)/4⌉ per tool call.  ``max_tokens`` (or
``max_completion_tokens``) below the number of content pieces cuts the content and sets
finish_reason ``length``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .._context import code_blocks
from ._conversation import Conversation, text_of
from ._document import code_document, prose_document
from ._errors import invalid_request
from ._sampling import SAMPLING_KEYS, sampled_text
from ._schema import SchemaTooLarge, instance
from ._tools import select_calls

__all__ = ["Completion", "ToolCall", "complete", "split_pieces"]

_PIECE = re.compile(r"\s*\S+\s*|\s+")
_FILLER = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
_FILTER_PIECES = 3


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a response; ``index`` is the stream index (0 for all in index-zero mode)."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """A full answer: content and reasoning as pieces, tool calls, finish reason and usage."""

    model: str
    content_pieces: tuple[str, ...]
    reasoning_pieces: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    #: The delta / message field the reasoning goes in (``reasoning_content`` or ``reasoning``).
    reasoning_field: str = "reasoning_content"
    cached_tokens: int = 0
    usage: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_pieces:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(self.reasoning_pieces)}
        object.__setattr__(self, "usage", usage)

    @property
    def content(self) -> str | None:
        """The whole content, or ``None`` for a tool-call turn."""
        if self.tool_calls and not self.content_pieces:
            return None
        return "".join(self.content_pieces)

    @property
    def reasoning(self) -> str | None:
        """The whole reasoning text, or ``None`` for a model that does not reason."""
        return "".join(self.reasoning_pieces) if self.reasoning_pieces else None


def split_pieces(text: str) -> list[str]:
    """Split ``text`` into word pieces whose concatenation is ``text``."""
    return _PIECE.findall(text)


def _header(model: str, turn: int) -> str:
    return f"*Offline emulator · `{model}` · turn {turn}*"


def _user_reply(conv: Conversation, model: str, body: dict[str, Any]) -> str:
    parts = [_header(model, conv.turn)]
    if conv.prompt:
        quoted = "\n".join(f"> {line}" if line else ">" for line in conv.prompt.split("\n"))
        parts.append(f"You said:\n\n{quoted}")
    else:
        parts.append("You said nothing in text.")
    notes: list[str] = []
    if conv.system:
        notes.append(f"System prompt: {conv.system}")
    notes.extend(f"Image {n}: {info.description}." for n, info in enumerate(conv.images, 1))
    if conv.earlier_images:
        plural = "image" if conv.earlier_images == 1 else "images"
        notes.append(f"Earlier in this conversation: {conv.earlier_images} {plural}.")
    if notes:
        parts.append("\n".join(notes))
    if any(key in body for key in SAMPLING_KEYS):
        # Asked with sampling parameters: a continuation drawn the way a real model draws.
        parts.append(sampled_text(conv.prompt, body))
    if conv.markers.words:
        words = [_FILLER[i % len(_FILLER)] for i in range(conv.markers.words)]
        parts.append(" ".join(words) + ".")
    if conv.markers.prose:
        parts.append(prose_document(conv.markers.prose))
    if conv.markers.code:
        parts.append(code_document(conv.markers.code))
    sent = code_blocks(conv.prompt)
    if sent:
        # Code in the prompt comes back as a block of its own (what a "fix this" reply looks
        # like), so %%ofox --code and %ofox fix have code to put in a new cell offline.
        code, language = sent[-1].code, sent[-1].language or "python"
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", code)), default=0))
        parts.append(f"Your code, back as a block:\n\n{fence}{language}\n{code}\n{fence}")
    return "\n\n".join(parts)


def _tool_results(conv: Conversation) -> list[tuple[str, str]]:
    """(name, content) of the trailing tool messages, names looked up by tool_call_id."""
    names: dict[str, str] = {}
    for message in conv.messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name", "unknown"))
    results: list[tuple[str, str]] = []
    for message in reversed(conv.messages):
        if message["role"] != "tool":
            break
        name = names.get(str(message.get("tool_call_id")), "unknown")
        content = " ".join(text_of(message.get("content")).splitlines())
        results.append((name, content))
    return results[::-1]


def _tool_reply(conv: Conversation, model: str) -> str:
    lines = [f"- {name}: {content}" for name, content in _tool_results(conv)]
    return _header(model, conv.turn) + "\n\n" + "Tool results:\n" + "\n".join(lines)


def _reasoning(conv: Conversation, calls: list[ToolCall]) -> str:
    words = len(conv.prompt.split())
    seen = f"Turn {conv.turn}: the user wrote {words} words and sent {len(conv.images)} images."
    if calls:
        plan = "I will call " + ", ".join(call.name for call in calls) + "."
    elif conv.last_role == "tool":
        plan = "The tool results are in; I will list them."
    else:
        plan = "I will restate the prompt."
    return f"{seen} {plan}"


def _json_reply(conv: Conversation, body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        reply = conv.prompt
        if conv.last_role == "tool":
            reply = "Tool results: " + "; ".join(f"{n}: {c}" for n, c in _tool_results(conv))
        images = [info.description for info in conv.images]
        value: Any = {"reply": reply, "turn": conv.turn, "images": images}
        return json.dumps(value, ensure_ascii=False)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        schema = schema if isinstance(schema, dict) else {}
        try:
            value = instance(schema, schema, all_properties=True)
        except SchemaTooLarge as exc:
            raise invalid_request(
                f"response_format.json_schema.schema is too large to answer: {exc}"
            ) from None
        return json.dumps(value, ensure_ascii=False)
    return None


def _token_limit(body: dict[str, Any]) -> int | None:
    limits = [
        body[key]
        for key in ("max_tokens", "max_completion_tokens")
        if isinstance(body.get(key), int)
    ]
    return min(limits) if limits else None


def _until_stop(text: str, stop: Any) -> str:
    """The reply up to the first stop sequence (left out, as the API does)."""
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cut = min(
        (text.find(s) for s in sequences if isinstance(s, str) and s and s in text), default=-1
    )
    return text if cut < 0 else text[:cut]


def complete(
    conv: Conversation, body: dict[str, Any], model: str, *, reasoning: bool
) -> Completion:
    """The answer of ``model`` to the analysed request ``conv`` (``body`` is the raw request)."""
    first_call = 1 + sum(len(message.get("tool_calls") or []) for message in conv.messages)
    selected = select_calls(conv, body)
    calls: list[ToolCall] = []
    for i, (name, arguments) in enumerate(selected):
        if conv.markers.bad_args:
            arguments = arguments[:-1] if arguments.endswith("}") else arguments + "{"
        index = 0 if conv.markers.index_zero else i
        calls.append(
            ToolCall(index=index, id=f"call_{first_call + i}", name=name, arguments=arguments)
        )

    content_pieces: list[str] = []
    finish = "tool_calls" if calls else "stop"
    if not calls:
        text = _json_reply(conv, body)
        if text is None:
            text = (
                _tool_reply(conv, model)
                if conv.last_role == "tool"
                else _user_reply(conv, model, body)
            )
        content_pieces = split_pieces(_until_stop(text, body.get("stop")))
        limit = _token_limit(body)
        if conv.markers.filter and len(content_pieces) > _FILTER_PIECES:
            content_pieces, finish = content_pieces[:_FILTER_PIECES], "content_filter"
        elif conv.markers.filter:
            finish = "content_filter"
        if limit is not None and len(content_pieces) > limit:
            content_pieces, finish = content_pieces[:limit], "length"

    reasoning_field = "reasoning_content"
    if conv.markers.reasoning is not None:
        words = [_FILLER[i % len(_FILLER)] for i in range(conv.markers.reasoning)]
        reasoning_pieces = split_pieces(" ".join(words) + ".") if words else []
        reasoning_field = "reasoning"
    else:
        reasoning_pieces = split_pieces(_reasoning(conv, calls)) if reasoning else []
    completion_tokens = (
        len(content_pieces)
        + len(reasoning_pieces)
        + sum(math.ceil(len(call.arguments) / 4) for call in calls)
    )
    return Completion(
        model=model,
        content_pieces=tuple(content_pieces),
        reasoning_pieces=tuple(reasoning_pieces),
        tool_calls=tuple(calls),
        finish_reason=finish,
        prompt_tokens=conv.prompt_tokens,
        completion_tokens=completion_tokens,
        reasoning_field=reasoning_field,
        cached_tokens=min(conv.markers.cached, conv.prompt_tokens),
    )
