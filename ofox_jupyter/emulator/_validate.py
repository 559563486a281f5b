"""Validation of a chat-completion request body, in the order and with the ranges of ofox-api.md §3.

:func:`validate_chat` raises a 400 ``invalid_request_error`` whose message names the offending field
(``messages[2].role must be one of …``).  Fields it does not know are accepted and ignored, as the
real gateway passes them through; every field the emulator reads is type-checked here (a message's
``name``, ``tool_call_id`` and ``tool_calls`` too), so that later steps never meet a value of the
wrong type.  At most :data:`MAX_TOOLS` tools (OpenAI's documented limit).
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import invalid_request

__all__ = ["MAX_TOOLS", "ROLES", "ROUTING", "validate_chat"]

ROLES = ("system", "user", "assistant", "tool")
ROUTING = ("priority", "cost", "latency", "balanced")
MAX_TOOLS = 128
_FORMATS = ("text", "json_object", "json_schema")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True  # math.isfinite() would overflow on ints beyond a float's range
    return isinstance(value, float) and math.isfinite(value)


def _number_in(
    body: dict[str, Any], name: str, low: float, high: float, *, low_open: bool = False
) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    ok = _is_number(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise invalid_request(f"{name} must be a number in {bracket}{low:g}, {high:g}]")


def _positive_int(body: dict[str, Any], name: str) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid_request(f"{name} must be an integer >= 1")


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages must be a non-empty array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"messages[{i}] must be an object")
        if message.get("role") not in ROLES:
            raise invalid_request(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid_request(f"messages[{i}].content must be a string or an array")
        for key in ("name", "tool_call_id"):
            if message.get(key) is not None and not isinstance(message[key], str):
                raise invalid_request(f"messages[{i}].{key} must be a string")
        _validate_tool_calls(message.get("tool_calls"), f"messages[{i}].tool_calls")
        for j, part in enumerate(content if isinstance(content, list) else []):
            where = f"messages[{i}].content[{j}]"
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise invalid_request(f"{where} must be an object with a type")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise invalid_request(f"{where}.text must be a string")
            if part["type"] == "image_url":
                image = part.get("image_url")
                if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                    raise invalid_request(f"{where}.image_url.url must be a string")
                if image.get("detail", "auto") not in ("auto", "low", "high"):
                    raise invalid_request(f"{where}.image_url.detail must be auto, low or high")


def _validate_tool_calls(calls: Any, where: str) -> None:
    if calls is None:
        return
    if not isinstance(calls, list):
        raise invalid_request(f"{where} must be an array")
    for j, call in enumerate(calls):
        if not isinstance(call, dict):
            raise invalid_request(f"{where}[{j}] must be an object")
        if call.get("id") is not None and not isinstance(call["id"], str):
            raise invalid_request(f"{where}[{j}].id must be a string")
        function = call.get("function")
        if not isinstance(function, dict):
            raise invalid_request(f"{where}[{j}].function must be an object")
        for key in ("name", "arguments"):
            if not isinstance(function.get(key), str):
                raise invalid_request(f"{where}[{j}].function.{key} must be a string")


def _tool_names(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid_request("tools must be an array")
    if len(tools) > MAX_TOOLS:
        raise invalid_request(f"tools must have at most {MAX_TOOLS} entries")
    names: list[str] = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid_request(f"tools[{i}].function.name must be a string")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_request(f"tools[{i}].function.parameters must be an object")
        names.append(function["name"])
    return names


def _validate_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None or choice in ("none", "auto", "required"):
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    if (
        not isinstance(choice, dict)
        or choice.get("type") != "function"
        or not isinstance(function, dict)
        or not isinstance(function.get("name"), str)
    ):
        raise invalid_request(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}'
        )
    if function["name"] not in names:
        raise invalid_request(f"tool_choice names unknown function {function['name']!r}")


def _validate_response_format(response_format: Any) -> None:
    if response_format is None:
        return
    if not isinstance(response_format, dict) or response_format.get("type") not in _FORMATS:
        raise invalid_request(f"response_format.type must be one of {', '.join(_FORMATS)}")
    if response_format["type"] == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise invalid_request("response_format.json_schema must be an object")
        if "schema" in spec and not isinstance(spec["schema"], dict):
            raise invalid_request("response_format.json_schema.schema must be an object")


def _validate_provider(provider: Any) -> None:
    if provider is None:
        return
    if not isinstance(provider, dict):
        raise invalid_request("provider must be an object")
    if "routing" in provider and provider["routing"] not in ROUTING:
        raise invalid_request(f"provider.routing must be one of {', '.join(ROUTING)}")
    fallback = provider.get("fallback")
    if "fallback" in provider and (
        not isinstance(fallback, list) or not all(isinstance(m, str) for m in fallback)
    ):
        raise invalid_request("provider.fallback must be an array of model ids (strings)")


#: Most choices one request may ask for (``n``).
MAX_CHOICES = 8


def validate_chat(body: Any) -> dict[str, Any]:
    """Return ``body`` if it is a valid chat request; raise a 400 ``ApiError`` otherwise."""
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object")
    if "model" not in body:
        raise invalid_request("model is required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise invalid_request("model must be a non-empty string")
    if "messages" not in body:
        raise invalid_request("messages is required")
    _validate_messages(body["messages"])
    _number_in(body, "temperature", 0, 2)
    _number_in(body, "top_p", 0, 1, low_open=True)
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _number_in(body, "frequency_penalty", -2, 2)
    _number_in(body, "presence_penalty", -2, 2)
    _positive_int(body, "n")
    if isinstance(body.get("n"), int) and body["n"] > MAX_CHOICES:
        raise invalid_request(f"n must be at most {MAX_CHOICES}")
    if body.get("n", 1) not in (None, 1) and body.get("stream") is True:
        raise invalid_request("n greater than 1 is not supported with stream")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(x, str) for x in stop):
            raise invalid_request("stop must be a string or an array of up to 4 strings")
    if "user" in body and not isinstance(body["user"], str):
        raise invalid_request("user must be a string")
    if "seed" in body and (not isinstance(body["seed"], int) or isinstance(body["seed"], bool)):
        raise invalid_request("seed must be an integer")
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        raise invalid_request("stream must be a boolean")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid_request("stream_options must be an object")
    usage = options.get("include_usage") if options else None
    if usage is not None and not isinstance(usage, bool):
        raise invalid_request("stream_options.include_usage must be a boolean")
    _validate_response_format(body.get("response_format"))
    _validate_tool_choice(body.get("tool_choice"), _tool_names(body.get("tools")))
    _validate_provider(body.get("provider"))
    return body
