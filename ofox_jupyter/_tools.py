"""Plain Python functions as tools the model can call (function calling).

A function becomes a tool definition from what it already says about itself: its name, its
docstring (first paragraph → description; a Google-style ``Args:`` section or ``:param x:`` lines →
parameter descriptions) and its signature (annotations → JSON schema, defaults → optional
parameters). ``@tool`` adds what a signature cannot say::

    @tool(params={"city": "City name, e.g. Paris"})
    def weather(city: str, unit: Literal["C", "F"] = "C") -> dict:
        '''Current weather for a city.'''

Calling is forgiving on purpose: arguments that are not valid JSON, a function that raises, or a
name the user did not offer all become the tool's *result* (an error message the model can read
and react to), never an exception in the notebook. Only the functions in the registry can run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from ._exceptions import ToolArgumentsError, ToolError, UnknownToolError
from ._messages import Message, ToolCall, tool_result

__all__ = ["Tool", "ToolRegistry", "ToolResult", "schema_for", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

#: A tool's result is cut to this many characters before it goes back to the model.
MAX_RESULT_CHARS = 20_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def tool(
    fn: F | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    params: Mapping[str, str] | None = None,
) -> Any:
    """Mark a function as a tool, optionally naming it and describing it or its parameters.

    Usable bare (``@tool``) or with arguments (``@tool(params={"x": "…"})``). The function itself
    is returned unchanged, so it stays callable from Python as before.
    """

    def mark(function: F) -> F:
        function.__ofox_tool__ = {  # type: ignore[attr-defined]
            "name": name,
            "description": description,
            "params": dict(params or {}),
        }
        return function

    return mark(fn) if fn is not None else mark


def schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a Python annotation (str, int, float, bool, list, dict, Literal, Enum,
    Optional/unions, Annotated with a description; anything else accepts any value)."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = get_args(annotation)
        schema = schema_for(base)
        notes = [e for e in extras if isinstance(e, str)]
        if notes:
            schema["description"] = " ".join(notes)
        return schema
    if origin is Literal:
        values = list(get_args(annotation))
        return {**_json_type_of(values), "enum": values}
    if origin is typing.Union or origin is types.UnionType:
        options = get_args(annotation)
        non_null = [a for a in options if a is not type(None)]
        if len(non_null) == 1 and len(options) == 2:
            return {"anyOf": [schema_for(non_null[0]), {"type": "null"}]}
        return {"anyOf": [schema_for(a) for a in options]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [member.value for member in annotation]
        return {**_json_type_of(values), "enum": values}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is str:
        return {"type": "string"}
    if annotation in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        items = [a for a in get_args(annotation) if a is not Ellipsis]
        array: dict[str, Any] = {"type": "array"}
        if len(set(map(repr, items))) == 1:
            array["items"] = schema_for(items[0])
        return array
    if annotation is dict or origin is dict:
        key_value = get_args(annotation)
        mapping: dict[str, Any] = {"type": "object"}
        if len(key_value) == 2 and key_value[1] is not Any:
            mapping["additionalProperties"] = schema_for(key_value[1])
        return mapping
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        hints = typing.get_type_hints(annotation)
        fields = dataclasses.fields(annotation)
        return {
            "type": "object",
            "properties": {f.name: schema_for(hints.get(f.name, Any)) for f in fields},
            "required": [
                f.name
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ],
        }
    return {}


def _json_type_of(values: list[Any]) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    for python, json_type in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
    ):
        if kinds == {python}:
            return {"type": json_type}
    return {}


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The description (first paragraph) and per-parameter notes of a docstring."""
    if not doc:
        return "", {}
    paragraphs = re.split(r"\n\s*\n", doc.strip())
    description = " ".join(paragraphs[0].split())
    notes: dict[str, str] = {}
    for match in re.finditer(r"^\s*:param\s+(?:\w+\s+)?(\w+):\s*(.+)$", doc, re.M):
        notes[match.group(1)] = match.group(2).strip()
    section = re.search(r"^\s*(?:Args|Arguments|Parameters):?\s*\n((?:[ \t]+.+\n?)+)", doc, re.M)
    if section:
        for match in re.finditer(r"^\s+(\w+)(?:\s*\([^)]*\))?\s*:\s*(.+)$", section.group(1), re.M):
            notes.setdefault(match.group(1), match.group(2).strip())
    return description, notes


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with its OpenAI tool definition."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]

    @classmethod
    def from_function(cls, function: Callable[..., Any]) -> Tool:
        if not callable(function):
            raise ToolError(f"{function!r} is not a function")
        marks: dict[str, Any] = getattr(function, "__ofox_tool__", {})
        raw_name = marks.get("name") or getattr(function, "__name__", "")
        if raw_name == "<lambda>" or not raw_name:
            raise ToolError("a lambda has no name the model could call; define it with def")
        if not _NAME.match(raw_name):
            raise ToolError(f"{raw_name!r} is not a valid tool name (letters, digits, _ and -)")
        description, notes = _docstring_parts(inspect.getdoc(function) or "")
        notes.update(marks.get("params") or {})
        try:
            signature = inspect.signature(function)
            hints = typing.get_type_hints(function, include_extras=True)
        except (TypeError, ValueError, NameError) as err:
            raise ToolError(f"cannot read the signature of {raw_name}: {err}") from None
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue  # *args/**kwargs have no names to describe
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise ToolError(f"{raw_name}: positional-only parameters cannot be named in JSON")
            schema = schema_for(hints.get(parameter.name, parameter.annotation))
            if parameter.name in notes:
                schema["description"] = notes[parameter.name]
            if parameter.default is parameter.empty:
                required.append(parameter.name)
            else:
                default = parameter.default
                if isinstance(default, enum.Enum):
                    default = default.value
                if _json_safe(default):
                    schema["default"] = default
            properties[parameter.name] = schema
        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        return cls(
            name=raw_name,
            description=marks.get("description")
            or description
            or f"The Python function {raw_name}.",
            parameters=parameters,
            function=function,
        )

    def definition(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ToolResult:
    """What running one tool call gave: the JSON text sent back, and whether it worked."""

    call: ToolCall
    content: str
    ok: bool
    error: str | None = None
    value: Any = None

    @property
    def message(self) -> Message:
        return tool_result(self.call.id, self.content)


class ToolRegistry:
    """The tools a user offered for one exchange; only these can be called."""

    def __init__(self, tools: Iterable[Callable[..., Any] | Tool] = ()) -> None:
        self.tools: dict[str, Tool] = {}
        for item in tools:
            spec = item if isinstance(item, Tool) else Tool.from_function(item)
            if spec.name in self.tools:
                raise ToolError(f"two tools are named {spec.name!r}")
            self.tools[spec.name] = spec

    def __bool__(self) -> bool:
        return bool(self.tools)

    def definitions(self) -> list[dict[str, Any]]:
        return [spec.definition() for spec in self.tools.values()]

    def call(self, call: ToolCall) -> ToolResult:
        """Run one call; every failure becomes an error result for the model to read."""
        try:
            spec = self.tools.get(call.name)
            if spec is None:
                offered = ", ".join(self.tools) or "none"
                raise UnknownToolError(f"no tool named {call.name!r} (offered: {offered})")
            arguments = _parse_arguments(call)
            value = _invoke(spec, arguments)
        except ToolError as err:
            return ToolResult(call, json.dumps({"error": err.message}), ok=False, error=err.message)
        except Exception as err:  # noqa: BLE001 - the tool's own failure goes back to the model
            text = f"{type(err).__name__}: {err}"
            return ToolResult(call, json.dumps({"error": text}), ok=False, error=text)
        return ToolResult(call, serialise(value), ok=True, value=value)


def _parse_arguments(call: ToolCall) -> dict[str, Any]:
    text = call.arguments.strip() or "{}"
    try:
        arguments = json.loads(text)
    except ValueError as err:
        raise ToolArgumentsError(f"arguments are not valid JSON ({err}): {text[:200]}") from None
    if not isinstance(arguments, dict):
        raise ToolArgumentsError(f"arguments must be a JSON object, not {text[:200]}")
    return arguments


def _invoke(spec: Tool, arguments: dict[str, Any]) -> Any:
    signature = inspect.signature(spec.function)
    try:
        bound = signature.bind(**arguments)
    except TypeError as err:
        raise ToolArgumentsError(f"{spec.name}: {err}") from None
    hints = typing.get_type_hints(spec.function)
    for name, value in list(bound.arguments.items()):
        annotation = hints.get(name)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            try:
                bound.arguments[name] = annotation(value)
            except ValueError:
                raise ToolArgumentsError(f"{spec.name}: {value!r} is not a valid {name}") from None
    result = spec.function(*bound.args, **bound.kwargs)
    if inspect.isawaitable(result):
        result = _await(result)
    return result


def _await(awaitable: Any) -> Any:
    """Await a coroutine from synchronous code, even inside a running event loop (a kernel)."""

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # A running loop (ipykernel) cannot be re-entered: run the coroutine on a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, wait()).result()


def serialise(value: Any, limit: int = MAX_RESULT_CHARS) -> str:
    """A tool's return value as the JSON text the model reads: JSON when possible, else the
    object's ``_repr_llm_()`` or ``repr()`` as a JSON string; cut at ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=_fallback)
    except (TypeError, ValueError):
        text = json.dumps(repr(value), ensure_ascii=False)
    if len(text) > limit:
        text = json.dumps(
            {"truncated": True, "chars": len(text), "start": text[: limit - 200]},
            ensure_ascii=False,
        )
    return text


def _fallback(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    llm = getattr(value, "_repr_llm_", None)
    if callable(llm):
        return str(llm())
    return repr(value)
