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

Tools are sandboxed as far as Python allows, which is not against malice but against accidents:

- whatever a tool raises, ``SystemExit`` included, is its result; only ``KeyboardInterrupt`` (the
  user stopping the exchange) goes through, and one interrupt stops a hanging tool, async or not;
- whatever a tool returns becomes bounded JSON text (:func:`serialise`), however it misbehaves;
- a round runs at most ``MAX_CALLS_PER_ROUND`` calls; the others get an error result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import json
import re
import threading
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from ._exceptions import ToolArgumentsError, ToolError, UnknownToolError
from ._messages import Message, ToolCall, tool_result
from ._results import (
    ERROR_CHARS,
    STOP,
    clean_text,
    clip,
    describe_exception,
    serialise,
)
from ._results import MAX_RESULT_CHARS as MAX_RESULT_CHARS  # where callers have found it

__all__ = [
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "add_standing",
    "remove_standing",
    "schema_for",
    "standing_tools",
    "stub_definition",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

#: At most this many of the tool calls in one reply run; the others are answered with an error.
MAX_CALLS_PER_ROUND = 32
#: How long an interrupted async tool's thread gets to finish cancelling before the interrupt
#: goes on without it.
CANCEL_GRACE_SECONDS = 1.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


#: Tools offered in every ``%%ofox`` cell of a chat without ``--tools``: chat → tool name →
#: function (``%ofox tools add``, ``@tool``). Kept for the kernel's life: a function cannot
#: outlive it, and re-running the cell that defines it registers it again.
_STANDING: dict[str, dict[str, Callable[..., Any]]] = {}


def tool(
    fn: F | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    params: Mapping[str, str] | None = None,
    chat: str | None = "main",
) -> Any:
    """Mark a function as a tool, optionally naming it and describing it or its parameters, and
    offer it in every later ``%%ofox`` cell of ``chat`` (``None``: in none; ``--tools`` and
    ``Client.chat(tools=…)`` take it either way).

    Usable bare (``@tool``) or with arguments (``@tool(params={"x": "…"}, chat="data")``). The
    function itself is returned unchanged, so it stays callable from Python as before.
    """

    def mark(function: F) -> F:
        function.__ofox_tool__ = {  # type: ignore[attr-defined]
            "name": name,
            "description": description,
            "params": dict(params or {}),
        }
        if chat is not None:
            add_standing(chat, [function])
        return function

    return mark(fn) if fn is not None else mark


def add_standing(chat: str, functions: Iterable[Callable[..., Any]]) -> list[Tool]:
    """Offer ``functions`` in every later cell of ``chat`` (a function of the same tool name
    replaces the one before: a re-run cell redefines it). Checked first: a function that
    cannot be a tool is one error, and none of them is added."""
    specs = [Tool.from_function(function) for function in functions]
    tools = _STANDING.setdefault(chat, {})
    for spec in specs:
        tools[spec.name] = spec.function
    return specs


def remove_standing(chat: str, name: str) -> bool:
    """Stop offering tool ``name`` in ``chat``; whether it was offered."""
    return _STANDING.get(chat, {}).pop(name, None) is not None


def standing_tools(chat: str) -> dict[str, Callable[..., Any]]:
    """The tools offered in every cell of ``chat``, by tool name."""
    return dict(_STANDING.get(chat, {}))


def stub_definition(name: str) -> dict[str, Any]:
    """A definition for a tool that earlier turns called but this request cannot run: some
    upstreams refuse tool messages whose tool is not defined in the request."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "Called earlier in this conversation; not available now.",
            "parameters": {"type": "object", "properties": {}},
        },
    }


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
    except (TypeError, ValueError, RecursionError):
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
    """The tools a user offered for one exchange; only these can be called.

    ``call_round`` (or ``iter_round``, result by result) runs the calls of one model reply, at
    most ``max_calls`` of them; ``call`` runs one::

        registry = ToolRegistry([weather])
        results = registry.call_round(reply.tool_calls)   # one result per call, in order
    """

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
        """Run one call; every failure becomes an error result for the model to read.

        That includes ``SystemExit`` (a tool's ``sys.exit()`` must not end the kernel) and every
        other ``BaseException`` of the tool's. Only ``KeyboardInterrupt``, the user stopping the
        exchange, and ``GeneratorExit`` propagate.
        """
        try:
            spec = self.tools.get(call.name)
            if spec is None:
                offered = ", ".join(self.tools) or "none"
                raise UnknownToolError(f"no tool named {call.name!r} (offered: {offered})")
            arguments = _parse_arguments(call)
            value = _invoke(spec, arguments)
        except ToolError as err:
            return _failure(call, err.message)
        except STOP:
            raise
        except BaseException as err:  # noqa: BLE001 - the tool's own failure goes back to the model
            return _failure(call, describe_exception(err))
        return ToolResult(call, serialise(value), ok=True, value=value)

    def iter_round(
        self, calls: Sequence[ToolCall], *, max_calls: int = MAX_CALLS_PER_ROUND
    ) -> Iterator[ToolResult]:
        """The results of one round's calls, each as soon as it is known, in the calls' order.

        Only the first ``max_calls`` calls run; every further one is answered with an error the
        model can read, because the API wants a tool message for every tool-call id.
        """
        if max_calls < 0:
            raise ValueError(f"max_calls must be 0 or more, not {max_calls}")
        for index, call in enumerate(calls):
            if index < max_calls:
                yield self.call(call)
            else:
                yield _failure(
                    call,
                    f"not run: at most {max_calls} tool calls per round "
                    f"({len(calls)} were asked for); call fewer at once",
                )

    def call_round(
        self, calls: Sequence[ToolCall], *, max_calls: int = MAX_CALLS_PER_ROUND
    ) -> list[ToolResult]:
        """Run one round's calls (see :meth:`iter_round`): one result per call, in order."""
        return list(self.iter_round(calls, max_calls=max_calls))


def _failure(call: ToolCall, text: str) -> ToolResult:
    error = clip(clean_text(text), ERROR_CHARS)
    return ToolResult(call, json.dumps({"error": error}), ok=False, error=error)


def _parse_arguments(call: ToolCall) -> dict[str, Any]:
    text = call.arguments.strip() or "{}"
    try:
        arguments = json.loads(text)
    except (ValueError, RecursionError) as err:
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
    # A plain function runs right here, in the calling (in a kernel: the main) thread, so a
    # kernel interrupt raises KeyboardInterrupt inside it and stops it at once.
    result = spec.function(*bound.args, **bound.kwargs)
    if inspect.isawaitable(result):
        result = _await(result, spec.name)
    return result


def _await(awaitable: Awaitable[Any], name: str) -> Any:
    """Await a coroutine from synchronous code, even inside a running event loop (a kernel).

    The kernel's loop is busy running this cell and cannot be re-entered, so the coroutine runs
    on a private loop in a daemon thread while this thread waits in short steps that a
    KeyboardInterrupt breaks. On an interrupt the task is cancelled on its own loop (the
    coroutine sees ``CancelledError``), its thread gets ``CANCEL_GRACE_SECONDS`` to end, and the
    interrupt goes on. (A ``ThreadPoolExecutor`` here once made one interrupt not enough: its
    shutdown waited for the worker to finish the hanging tool.) A coroutine that swallows the
    cancellation keeps its daemon thread until it ends by itself; nothing waits for it.
    """

    async def outcome() -> tuple[bool, Any]:
        # Exceptions travel to the calling thread as values: a SystemExit or KeyboardInterrupt
        # raised in a task would otherwise escape the private loop instead of reaching us.
        try:
            return True, await awaitable
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # noqa: BLE001 - raised again in the calling thread
            return False, err

    loop = asyncio.new_event_loop()
    task = loop.create_task(outcome())  # created before the thread starts: nothing to race
    finished = threading.Event()
    task.add_done_callback(lambda _: finished.set())
    thread = threading.Thread(
        target=_run_private_loop,
        args=(loop, task, awaitable, finished),
        name=f"ofox-tool-{name}",
        daemon=True,
    )
    thread.start()
    try:
        while not finished.wait(_POLL_SECONDS):
            pass
    except KeyboardInterrupt:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to cancel
            loop.call_soon_threadsafe(task.cancel)
        thread.join(CANCEL_GRACE_SECONDS)
        raise
    thread.join(CANCEL_GRACE_SECONDS)  # the loop's clean-up, normally immediate
    if task.cancelled():
        raise asyncio.CancelledError("the tool's coroutine was cancelled from within")
    ok, value = task.result()
    if not ok:
        raise value
    return value


def _run_private_loop(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
    awaitable: Awaitable[Any],
    finished: threading.Event,
) -> None:
    """The body of an async tool's thread: run the task, then clean up as ``asyncio.run`` does."""
    try:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(BaseException):  # the outcome is read from the task
            loop.run_until_complete(task)
        with contextlib.suppress(BaseException):
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for leftover in pending:
                leftover.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        if (
            inspect.iscoroutine(awaitable)
            and inspect.getcoroutinestate(awaitable) == "CORO_CREATED"
        ):
            awaitable.close()  # cancelled before it started: no "never awaited" warning
        asyncio.set_event_loop(None)
        loop.close()
        finished.set()


#: How often a wait for an async tool wakes up, so that an interrupt gets through.
_POLL_SECONDS = 0.1
