"""Chat messages as pure values whose ``to_dict()`` is exactly the OpenAI/OfoxAI wire format.

No I/O here: images arrive already encoded as content parts (see ``_images``), and history
storage is somebody else's job. Constructors mirror the roles::

    >>> user("What is 2+2?").to_dict()
    {'role': 'user', 'content': 'What is 2+2?'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._exceptions import RequestValidationError

__all__ = [
    "Message",
    "Role",
    "ToolCall",
    "assistant",
    "attach_images",
    "image_part",
    "messages_to_wire",
    "system",
    "text_part",
    "tool_result",
    "user",
    "utf8_safe",
]

Role = Literal["system", "user", "assistant", "tool"]
_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is the raw JSON text it sent."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        function = data.get("function") or {}
        if not isinstance(function, Mapping):
            raise ValueError("a tool call's function must be an object")
        return cls(
            id=str(data.get("id") or ""),
            name=str(function.get("name") or ""),
            arguments=str(function.get("arguments") or ""),
        )


@dataclass(frozen=True)
class Message:
    """One chat message. ``content`` is text, a tuple of content-part dicts, or ``None``."""

    role: Role
    content: str | tuple[dict[str, Any], ...] | None
    tool_calls: tuple[ToolCall, ...] = field(default=())
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The text of the message, with the text parts of a multimodal message joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.get("text", "") for p in self.content if p.get("type") == "text")

    @property
    def images(self) -> tuple[dict[str, Any], ...]:
        """The ``image_url`` content parts of the message."""
        if not isinstance(self.content, tuple):
            return ()
        return tuple(p for p in self.content if p.get("type") == "image_url")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, tuple):
            out["content"] = [_copy_part(p) for p in self.content]
        else:
            out["content"] = self.content
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        role = data.get("role")
        if role not in _ROLES:
            raise ValueError(f"unknown message role {role!r}")
        content = data.get("content")
        if isinstance(content, list):
            content = tuple(_checked_part(p) for p in content)
        elif content is not None and not isinstance(content, str):
            raise ValueError("message content must be text, a list of parts, or null")
        calls = data.get("tool_calls") or ()
        if not isinstance(calls, (list, tuple)) or not all(isinstance(c, Mapping) for c in calls):
            raise ValueError("tool_calls must be a list of calls")
        call_id, name = data.get("tool_call_id"), data.get("name")
        if not isinstance(call_id, (str, type(None))) or not isinstance(name, (str, type(None))):
            raise ValueError("tool_call_id and name must be text")
        return cls(
            role=role,
            content=content,
            tool_calls=tuple(ToolCall.from_dict(c) for c in calls),
            tool_call_id=call_id,
            name=name,
        )


def _checked_part(part: Any) -> dict[str, Any]:
    """A content part as the API takes it: text with its text, an image with its URL."""
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        raise ValueError("a content part must be an object with a type")
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        raise ValueError("a text part needs its text")
    if part["type"] == "image_url":
        image = part.get("image_url")
        if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
            raise ValueError("an image part needs its URL")
    return dict(part)


_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate (half an emoji from a clipboard, a broken file, a
    server's ``"\\ud800"``) replaced by U+FFFD, so that it can be sent, shown and stored as
    UTF-8. Text without one is returned as it is, at the cost of one regex search."""
    if text.isascii() or not _SURROGATE.search(text):  # isascii: the common case, in C
        return text
    return _SURROGATE.sub("\ufffd", text)


def _copy_part(part: Mapping[str, Any]) -> dict[str, Any]:
    """A copy deep enough that changing the result never changes the (frozen) message."""
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in part.items()}


def text_part(text: str) -> dict[str, Any]:
    """A ``text`` content part."""
    return {"type": "text", "text": text}


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    """An ``image_url`` content part for a ``data:`` or http(s) URL."""
    image: dict[str, Any] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def system(text: str) -> Message:
    return Message(role="system", content=text)


def user(text: str, images: Iterable[Mapping[str, Any]] = ()) -> Message:
    """A user message; with images it becomes a multimodal list of parts (text first)."""
    parts = tuple(dict(p) for p in images)
    if not parts:
        return Message(role="user", content=text)
    return Message(role="user", content=(text_part(text), *parts))


def assistant(text: str | None, tool_calls: Iterable[ToolCall] = ()) -> Message:
    return Message(role="assistant", content=text, tool_calls=tuple(tool_calls))


def tool_result(call_id: str, content: str) -> Message:
    """The result of one tool call, sent back to the model as JSON text."""
    return Message(role="tool", content=content, tool_call_id=call_id)


def messages_to_wire(messages: str | Sequence[Message | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Normalise what a caller passed as ``messages`` into wire dicts.

    A bare string is one user message; dicts are checked for a known role and copied.
    """
    if isinstance(messages, str):
        return [user(messages).to_dict()]
    wire: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, Message):
            wire.append(message.to_dict())
        else:
            wire.append(Message.from_dict(message).to_dict() | _extra_keys(message))
    return wire


def _extra_keys(message: Mapping[str, Any]) -> dict[str, Any]:
    """Keys of a caller's message dict that :class:`Message` does not model; passed through."""
    known = {"role", "content", "tool_calls", "tool_call_id", "name"}
    return {k: v for k, v in message.items() if k not in known}


def attach_images(
    wire: list[dict[str, Any]], parts: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Wire messages with ``parts`` appended to the last user message (made multimodal)."""
    for index in range(len(wire) - 1, -1, -1):
        if wire[index].get("role") != "user":
            continue
        message = dict(wire[index])
        content = message.get("content")
        if isinstance(content, list):
            existing = list(content)
        else:
            existing = [text_part(content)] if content else []
        message["content"] = existing + [dict(p) for p in parts]
        return wire[:index] + [message] + wire[index + 1 :]
    raise RequestValidationError("images need a user message to go with")
