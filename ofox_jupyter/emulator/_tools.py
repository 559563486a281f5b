"""Which tools the deterministic model calls, and with which arguments.

Tool calls happen when the request has ``tools``, ``tool_choice`` is not ``"none"`` and the last
message is a user message (or a tool result with ``[emulator-tool-loop]``).  Every tool whose name
appears as a whole word in the prompt is called, in order of appearance; an occurrence followed
(optional whitespace) by a JSON object, as in ``get_weather {"city": "Paris"}``, is its own call
with that JSON text verbatim as arguments, and a tool named only without JSON is called once with
arguments generated from its ``parameters`` schema (required properties only, see
``_schema.py``).  ``tool_choice: "required"`` with no tool named (or ``[emulator-tool-loop]``)
calls the first tool; ``{"type": "function", "function": {"name": N}}`` calls N only.  A
parameters schema whose instance would be too large (see ``_schema.py``) is a 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._conversation import Conversation
from ._errors import invalid_request
from ._schema import SchemaTooLarge, instance

__all__ = ["select_calls"]


def _whole_word(name: str) -> re.Pattern[str]:
    """``name`` not preceded or followed by a word character or ``-`` (tool names use both)."""
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


def _schemas(tools: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, parameters schema) of every tool, in request order."""
    named: list[tuple[str, dict[str, Any]]] = []
    for tool in tools:
        function = tool.get("function") or {}
        parameters = function.get("parameters")
        named.append((str(function["name"]), parameters if isinstance(parameters, dict) else {}))
    return named


def _json_after(prompt: str, end: int) -> str | None:
    """The JSON object text right after position ``end`` (whitespace allowed), if any."""
    start = end
    while start < len(prompt) and prompt[start].isspace():
        start += 1
    if start >= len(prompt) or prompt[start] != "{":
        return None
    try:
        value, stop = json.JSONDecoder().raw_decode(prompt, start)
    except (ValueError, RecursionError):  # the prompt is text: it may nest without limit
        return None
    return prompt[start:stop] if isinstance(value, dict) else None


def _generated_args(name: str, parameters: dict[str, Any]) -> str:
    try:
        value = instance(parameters, parameters, all_properties=False)
    except SchemaTooLarge as exc:
        message = f"The parameters schema of tool {name!r} is too large: {exc}"
        raise invalid_request(message) from None
    return json.dumps(value if isinstance(value, dict) else {}, ensure_ascii=False)


def select_calls(conv: Conversation, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, arguments) of the tool calls this turn makes, in order."""
    tools = _schemas(body.get("tools") or [])
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none" or conv.markers.filter:  # a filtered turn only has text
        return []
    if conv.last_role != "user" and not (conv.markers.tool_loop and conv.last_role == "tool"):
        return []
    schemas = dict(tools)
    if isinstance(choice, dict):
        name = str(choice["function"]["name"])
        found = _whole_word(name).search(conv.prompt)
        given = _json_after(conv.prompt, found.end()) if found else None
        return [(name, given if given is not None else _generated_args(name, schemas[name]))]
    hits: list[tuple[int, str, str | None]] = []
    for name, _ in tools:
        occurrences = list(_whole_word(name).finditer(conv.prompt))
        with_json = [(m.start(), _json_after(conv.prompt, m.end())) for m in occurrences]
        explicit = [(pos, text) for pos, text in with_json if text is not None]
        if explicit:
            hits.extend((pos, name, text) for pos, text in explicit)
        elif occurrences:
            hits.append((occurrences[0].start(), name, None))
    hits.sort(key=lambda hit: hit[0])
    calls = [
        (name, text if text is not None else _generated_args(name, schemas[name]))
        for _, name, text in hits
    ]
    if not calls and (choice == "required" or conv.markers.tool_loop):
        name = tools[0][0]
        calls = [(name, _generated_args(name, schemas[name]))]
    return calls
