"""What a chat request says, read once: prompt, markers, system text, images, prompt tokens.

* "turn" is the number of user messages in the request;
* the prompt is the text parts of the **last** user message (joined by newlines), with the
  emulator markers removed and trailing whitespace stripped;
* images of the last user message are decoded and described (``_images.py``); images of earlier
  user messages are only counted (their header is read for the token cost);
* prompt_tokens = Σ over messages (4 + ⌈len(text)/4⌉) + the image costs of ``_images.py``, where
  an assistant message's text includes its tool calls' names and arguments.

**Markers** (only in the last user message; all removed from the restated prompt):
``[emulator-words: N]`` (N filler words appended to the reply), ``[emulator-prose: N]`` and
``[emulator-code: N]`` (about N words of structured Markdown, ``_document.py``),
``[emulator-delay: S]`` (seconds between streamed chunks), ``[emulator-fault: SPEC]`` (see
``_faults.py``),
``[emulator-filter]`` (finish_reason ``content_filter`` after three pieces),
``[emulator-bad-args]`` (tool-call arguments are not valid JSON: the closing brace is dropped),
``[emulator-index-zero]`` (parallel tool calls all use stream index 0),
``[emulator-tool-loop]`` (tools are called again after tool results),
``[emulator-reasoning: N]`` (any model reasons first: N filler words as ``delta.reasoning``
chunks, counted in ``completion_tokens_details.reasoning_tokens``) and ``[emulator-cached: N]``
(``prompt_tokens_details.cached_tokens`` is N, at most the prompt tokens).  A malformed marker
argument is a 400; an argument longer than 256 characters, or holding a bracket, is not a marker
(this keeps the marker search linear in the prompt, whatever the prompt).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ._errors import invalid_request
from ._images import ImageDecodeError, ImageInfo, describe_image_url

__all__ = [
    "Conversation",
    "Markers",
    "analyse",
    "has_images",
    "image_parts",
    "parse_delay",
    "text_of",
]

# The argument is bounded, holds no bracket, and its surrounding whitespace is stripped later: a
# lazy argument followed by `\s*\]`, or an unbounded one, backtracks quadratically over a prompt
# of unclosed markers, and one that may contain `[` rescans every following marker.
_MARKER = re.compile(
    r"\[emulator-(?P<name>words|prose|code|delay|fault|filter|bad-args|index-zero|tool-loop"
    r"|reasoning|cached)"
    r"(?::(?P<arg>[^\[\]]{0,256})|\s{0,256})\]"
)
_MAX_FILLER_WORDS = 100_000
_MAX_CACHED_TOKENS = 10**9


@dataclass(frozen=True)
class Markers:
    """The ``[emulator-…]`` markers found in the last user message."""

    words: int = 0
    prose: int = 0  # words of structured Markdown (see _document.py)
    code: int = 0
    delay: float | None = None
    fault: str | None = None
    filter: bool = False
    bad_args: bool = False
    index_zero: bool = False
    tool_loop: bool = False
    reasoning: int | None = None  # words of reasoning to stream first (None: the model's own)
    cached: int = 0


@dataclass(frozen=True)
class Conversation:
    """What the model needs to know about a request, computed once before any model check."""

    messages: list[dict[str, Any]]
    prompt: str
    turn: int
    system: str
    images: tuple[ImageInfo, ...]
    earlier_images: int
    prompt_tokens: int
    markers: Markers
    last_role: str


def text_of(content: Any) -> str:
    """The text parts of a message ``content`` (a string or a list of parts), newline-joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def image_parts(content: Any) -> list[dict[str, Any]]:
    """The ``image_url`` objects of a message ``content``."""
    if not isinstance(content, list):
        return []
    return [
        part["image_url"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "image_url"
        and isinstance(part.get("image_url"), dict)
    ]


def has_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any message carries an image part."""
    return any(image_parts(message.get("content")) for message in messages)


def _parse_markers(text: str) -> Markers:
    values: dict[str, Any] = {}
    for match in _MARKER.finditer(text):
        name, arg = match["name"], (match["arg"] or "").strip()
        if name in ("words", "prose", "code", "reasoning"):
            if not (arg.isascii() and arg.isdigit()) or int(arg) > _MAX_FILLER_WORDS:
                raise invalid_request(f"[emulator-{name}: N] needs 0 <= N <= {_MAX_FILLER_WORDS}")
            values[name] = int(arg)
        elif name == "cached":
            if not (arg.isascii() and arg.isdigit()) or int(arg) > _MAX_CACHED_TOKENS:
                raise invalid_request(f"[emulator-cached: N] needs 0 <= N <= {_MAX_CACHED_TOKENS}")
            values["cached"] = int(arg)
        elif name == "delay":
            values["delay"] = parse_delay(arg, "[emulator-delay: S]")
        elif name == "fault":
            if not arg:
                raise invalid_request("[emulator-fault: SPEC] needs a fault spec")
            values["fault"] = arg
        else:
            values[name.replace("-", "_")] = True
    return Markers(**values)


def parse_delay(text: str, source: str) -> float:
    """Seconds from a delay header or marker; 400 unless 0 <= S <= 600."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= 600.0:
        raise invalid_request(f"{source} needs a number of seconds between 0 and 600")
    return seconds


def _clean_prompt(text: str) -> str:
    lines = [line.rstrip() for line in _MARKER.sub("", text).split("\n")]
    return "\n".join(lines).strip()


def _image_info(image: dict[str, Any], where: str, number: int, describe: bool) -> ImageInfo:
    detail = image.get("detail")
    try:
        return describe_image_url(
            str(image.get("url", "")),
            detail if isinstance(detail, str) else "auto",
            describe=describe,
        )
    except ImageDecodeError:
        raise invalid_request(f"{where}: image {number} could not be decoded") from None


def analyse(body: dict[str, Any]) -> Conversation:
    """Read the (validated) request: prompt, markers, images and the prompt-token estimate.

    Raises ``ApiError`` 400 for an undecodable image or a malformed marker.
    """
    messages: list[dict[str, Any]] = body["messages"]
    user_indexes = [i for i, message in enumerate(messages) if message["role"] == "user"]
    last_user = user_indexes[-1] if user_indexes else -1
    raw_prompt = text_of(messages[last_user].get("content")) if last_user >= 0 else ""
    markers = _parse_markers(raw_prompt)
    system = " ".join(
        " ".join(text_of(message.get("content")).split())
        for message in messages
        if message["role"] == "system"
    ).strip()

    tokens = 0
    images: list[ImageInfo] = []
    earlier_images = 0
    for index, message in enumerate(messages):
        text = text_of(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                text += str(function.get("name", "")) + str(function.get("arguments", ""))
        tokens += 4 + math.ceil(len(text) / 4)
        current = index == last_user
        for number, image in enumerate(image_parts(message.get("content")), start=1):
            info = _image_info(image, f"messages[{index}]", number, describe=current)
            tokens += info.tokens
            if current:
                images.append(info)
            elif message["role"] == "user" and index < last_user:
                earlier_images += 1

    return Conversation(
        messages=messages,
        prompt=_clean_prompt(raw_prompt),
        turn=len(user_indexes),
        system=system,
        images=tuple(images),
        earlier_images=earlier_images,
        prompt_tokens=tokens,
        markers=markers,
        last_role=str(messages[-1]["role"]),
    )
