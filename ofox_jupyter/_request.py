"""Sans-IO request logic shared by the sync and async clients.

Three pure pieces: :func:`build_chat_body` (the JSON body, with every documented field, the
OfoxAI ``provider`` extension and pass-through extras, values checked before sending),
:func:`status_error` (an error response → the matching exception), and :class:`RetryPolicy`
(which failures to retry and how long to wait). The HTTP shells only send and sleep.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._config import Secret, scrubbed_line
from ._exceptions import APIStatusError, RequestValidationError, status_error_class
from ._messages import Message, messages_to_wire, utf8_safe

__all__ = [
    "ROUTING_CHOICES",
    "RetryPolicy",
    "build_chat_body",
    "check_ranges",
    "encode_body",
    "parse_duration",
    "provider_options",
    "retry_after_seconds",
    "status_error",
]

ROUTING_CHOICES = ("priority", "cost", "latency", "balanced")
TOOL_CHOICE_WORDS = ("none", "auto", "required")

# (field, lowest, highest, lowest is allowed) — the documented ranges (ofox-api.md §3).
_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("temperature", 0.0, 2.0, True),
    ("top_p", 0.0, 1.0, False),
    ("frequency_penalty", -2.0, 2.0, True),
    ("presence_penalty", -2.0, 2.0, True),
)


def provider_options(
    routing: str | None = None, fallback: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """The OfoxAI ``provider`` object for routing and failover, or ``None`` when neither is set."""
    provider: dict[str, Any] = {}
    if routing is not None:
        if routing not in ROUTING_CHOICES:
            raise RequestValidationError(
                f"routing must be one of {', '.join(ROUTING_CHOICES)}, not {routing!r}"
            )
        provider["routing"] = routing
    if fallback:
        models = [m.strip() for m in fallback if m.strip()]
        if models:
            provider["fallback"] = models
    return provider or None


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The request body as UTF-8 JSON, or a :class:`RequestValidationError` saying which value
    cannot be sent (NaN, a set, a cycle, an object JSON does not know).

    Text with a lone surrogate (half of an emoji from a clipboard or a broken file) cannot be
    UTF-8: each one is sent as U+FFFD instead, the way a browser would show it.
    """
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        where, what = _unsendable(body, "")
        raise RequestValidationError(
            f"cannot send the request: {where or 'a value'} is {what}",
            hint="pass plain JSON values (numbers, text, lists, dicts)",
        ) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return utf8_safe(text).encode("utf-8")


def _unsendable(value: Any, path: str, seen: frozenset[int] = frozenset()) -> tuple[str, str]:
    """Where in ``value`` the first thing JSON cannot carry is, and what it is."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return path, f"{value!r} (JSON has no NaN or infinity)"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return "", ""
    if id(value) in seen:
        return path, "a reference to itself (a cycle)"
    if len(seen) > 200:
        return path, "nested too deeply"
    inner = seen | {id(value)}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return path, f"a dict with a {type(key).__name__} key"
            found = _unsendable(item, f"{path}.{key}" if path else str(key), inner)
            if found[1]:
                return found
        return "", ""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unsendable(item, f"{path}[{index}]", inner)
            if found[1]:
                return found
        return "", ""
    return path, f"a {type(value).__name__}, which JSON cannot carry"


#: No model writes more than this in one reply; a larger max_tokens is a typo, not a wish.
MAX_TOKENS_LIMIT = 10_000_000


def check_ranges(params: Mapping[str, Any]) -> None:
    """Raise :class:`RequestValidationError` for a sampling value outside its documented range."""
    for name, low, high, low_ok in _RANGES:
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise RequestValidationError(f"{name} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise RequestValidationError(f"{name} must be a finite number, not {value!r}")
        if value > high or value < low or (value == low and not low_ok):
            interval = f"{'[' if low_ok else '('}{low:g}, {high:g}]"
            raise RequestValidationError(f"{name} must be in {interval}, not {value:g}")
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        shown = repr(max_tokens) if len(repr(max_tokens)) <= 30 else "a number that large"
        raise RequestValidationError(
            f"max_tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT:,}, not {shown}"
        )


def _check_tool_choice(tool_choice: Any) -> Any:
    if tool_choice is None or isinstance(tool_choice, Mapping):
        return tool_choice
    if tool_choice in TOOL_CHOICE_WORDS:
        return tool_choice
    if isinstance(tool_choice, str) and tool_choice:
        # A bare function name is the friendly spelling of "call exactly this function".
        return {"type": "function", "function": {"name": tool_choice}}
    raise RequestValidationError(f"tool_choice {tool_choice!r} is not none/auto/required/a name")


def build_chat_body(
    *,
    model: str,
    messages: str | Sequence[Message | Mapping[str, Any]],
    stream: bool,
    temperature: float | None = None,
    max_tokens: int | None = None,
    top_p: float | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    response_format: Mapping[str, Any] | None = None,
    provider: Mapping[str, Any] | None = None,
    include_usage: bool = True,
    stream_options: Mapping[str, Any] | None = None,
    n: int | None = None,
    user: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``; raises before sending on bad values."""
    if not model or not isinstance(model, str):
        raise RequestValidationError("a model id is required, e.g. openai/gpt-4o")
    wire = messages_to_wire(messages)
    if not wire:
        raise RequestValidationError("at least one message is required")
    params: dict[str, Any] = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "top_p": top_p,
        "frequency_penalty": frequency_penalty,
        "presence_penalty": presence_penalty,
    }
    check_ranges(params)
    body: dict[str, Any] = {"model": model, "messages": wire}
    body.update((k, v) for k, v in params.items() if v is not None)
    if stop is not None:
        body["stop"] = stop if isinstance(stop, str) else list(stop)
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise RequestValidationError(f"seed must be an integer, not {seed!r}"[:200])
        body["seed"] = seed
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise RequestValidationError(f"n must be a whole number ≥ 1, not {n!r}"[:200])
        if n > 1 and stream:
            raise RequestValidationError(
                "n > 1 is not streamed: use chat() to get every choice (reply.choices)"
            )
        body["n"] = n
    if user is not None:
        if not isinstance(user, str):
            raise RequestValidationError("user must be a string (an id of your end user)")
        body["user"] = user
    if tools:
        body["tools"] = [dict(t) for t in tools]
    choice = _check_tool_choice(tool_choice)
    if choice is not None:
        body["tool_choice"] = choice
    if response_format is not None:
        body["response_format"] = dict(response_format)
    if provider:
        body["provider"] = dict(provider)
    if stream:
        body["stream"] = True
        options = {"include_usage": True} if include_usage else {}
        # OfoxAI does not document stream_options; OpenAI-compatible upstreams accept it and
        # it is the only way to learn the token counts of a streamed reply.
        options.update(stream_options or {})
        if options:
            body["stream_options"] = options
    elif stream_options:
        raise RequestValidationError("stream_options is only for streamed replies (stream())")
    if extra_body:
        body.update(extra_body)  # on the wire, extension fields are ordinary top-level keys
    return body


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds in a duration string such as ``"12s"``, ``"500ms"`` or ``"1m30s"``."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos else None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint: ``retry-after-ms``, ``retry-after`` (seconds or HTTP date), or
    OfoxAI's ``x-ratelimit-reset-requests`` duration (``"12s"``) — in that order.

    OfoxAI sends the rate-limit headers on *every* response, so the reset time only counts as a
    hint when the window is used up (remaining 0); otherwise a 500 would wait for the window.
    """
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            import email.utils  # rare (an HTTP date), and costly to import at extension load

            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    value = headers.get("x-ratelimit-reset-requests")
    if value and headers.get("x-ratelimit-remaining-requests", "").strip() == "0":
        return parse_duration(value)
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a request that failed before its first byte, and how long to wait.

    Retries 408, 409, 429 and 5xx answers and connection failures, at most ``max_retries`` times,
    with exponential backoff (``initial`` doubling up to ``maximum``) and jitter, unless the
    server says how long to wait. A wait hint longer than ``max_hint`` is not worth blocking a
    notebook for: the error is raised at once, naming the wait.
    """

    max_retries: int = 2
    initial: float = 0.5
    maximum: float = 8.0
    max_hint: float = 60.0
    #: A batch paces itself and re-queues a 429'd item: its client must not wait on its own.
    retry_rate_limited: bool = True

    def retryable_status(self, status: int) -> bool:
        return status in (408, 409) or status >= 500 or (status == 429 and self.retry_rate_limited)

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.max_retries:
            return None
        hint = retry_after_seconds(headers) if headers is not None else None
        if hint is not None:
            return hint if hint <= self.max_hint else None
        backoff: float = min(self.initial * 2.0**attempt, self.maximum)
        return backoff * (1 - 0.25 * random.random())


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    secret: Secret | None = None,
) -> APIStatusError:
    """The exception for an error response; the class follows the status, not the body."""
    api_type: str | None = None
    code: str | int | None = None
    message = ""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        raw_message = error.get("message")
        message = raw_message if isinstance(raw_message, str) else ""
        api_type = error.get("type") if isinstance(error.get("type"), str) else None
        raw_code = error.get("code")
        code = (
            raw_code
            if isinstance(raw_code, (str, int)) and not isinstance(raw_code, bool)
            else None
        )
    elif isinstance(error, str):
        message = error
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = text if text and not text.startswith("<") else "no error message"
    # Some servers echo the key they rejected, in any field: take it out of every one, and
    # before anything is cut short (a key crossing the cut would keep its prefix).
    message = scrubbed_line(secret.redact(message) if secret is not None else message, 300)
    if api_type is not None:
        api_type = scrubbed_line(api_type, 60)
    if isinstance(code, str):
        code = scrubbed_line(code, 60)
    elif isinstance(code, int) and abs(code) > 10**9:
        code = None  # not a code anyone would look up; a number that size only clutters
    return status_error_class(status)(
        status=status,
        api_message=message,
        type=api_type,
        code=code,
        request_id=headers.get("x-request-id"),
        retry_after=retry_after_seconds(headers) if status == 429 else None,
    )
