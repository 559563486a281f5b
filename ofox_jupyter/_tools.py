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
import math
import re
import threading
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from ._exceptions import ToolArgumentsError, ToolError, UnknownToolError
from ._messages import Message, ToolCall, tool_result

__all__ = ["Tool", "ToolRegistry", "ToolResult", "schema_for", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

#: A tool's result is cut to this many characters before it goes back to the model.
MAX_RESULT_CHARS = 20_000
#: At most this many of the tool calls in one reply run; the others are answered with an error.
MAX_CALLS_PER_ROUND = 32
#: How long an interrupted async tool's thread gets to finish cancelling before the interrupt
#: goes on without it.
CANCEL_GRACE_SECONDS = 1.0
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
        except _STOP:
            raise
        except BaseException as err:  # noqa: BLE001 - the tool's own failure goes back to the model
            return _failure(call, _describe_exception(err))
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
    error = _clip(_clean(text), _ERROR_CHARS)
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


# -- results as text


def serialise(value: Any, limit: int = MAX_RESULT_CHARS) -> str:
    """A tool's return value as the JSON text the model reads, at most ``limit`` characters.

    JSON when possible: dicts, lists, tuples, sets (sorted when small and sortable), dataclasses
    and enums (as their value) become JSON; anything else becomes a JSON string, its
    ``_repr_llm_()`` if it has one, else its ``repr()``. A ``_repr_llm_`` comes first on any
    object that is not a plain built-in (a dataclass or a ``list`` subclass too): its author chose
    it. Decisions for what JSON cannot carry:

    - NaN and ±infinity become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (strict
      JSON has no such numbers; a string keeps what the value was);
    - an int too long for ``str()`` (Python's int→str limit) is summarised, e.g.
      ``"9.999999…e+4999 (an int of 5,000 digits ending in …999999; too long to write out)"``;
    - bytes become their ``repr()``; dict keys become strings (``repr()`` for non-JSON keys);
    - lone surrogates in text become U+FFFD, so the text can be sent as UTF-8;
    - a structure that contains itself shows ``"<cycle: …>"`` where it does, and containers
      nested deeper than 20 levels are described instead of shown.

    Producing the text is bounded: the value is walked within a character budget (``limit``
    less room for the truncation wrapper, about 160 characters), so a huge
    string, list or dict is cut while it is read (inline notes such as ``"… (9,990 more
    items)"`` say where), never rendered in full first. A cut result is wrapped as ``{"truncated":
    true, "note": "… (truncated, N more characters)", "value": …}``. A ``__repr__`` or
    ``_repr_llm_`` that raises (even ``SystemExit``) or returns something other than a string
    gives ``"<unprintable Type: what went wrong>"`` for that value alone; only
    ``KeyboardInterrupt`` and ``GeneratorExit`` go through. An object's own ``repr()`` can only be
    cut once it has been made.
    """
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT} characters, not {limit}")
    try:
        shrinker = _Shrinker(limit - _WRAP_RESERVE)
        tree = shrinker.value(value)
        if shrinker.cut:
            tree = {"truncated": True, "note": shrinker.note(), "value": tree}
        text = json.dumps(tree, ensure_ascii=False, allow_nan=False)
    except _STOP:
        raise
    except BaseException as err:  # noqa: BLE001 - e.g. MemoryError; the model still gets an answer
        text = json.dumps(_clip(_unprintable(value, err), _ERROR_CHARS), ensure_ascii=False)
    if len(text) > limit:  # the budget is exact but for escapes; a last resort, kept valid JSON
        text = _cut_json_text(text, limit)
    return _clean(text)


#: The smallest ``limit`` :func:`serialise` accepts: room for the note of a cut result.
_MIN_LIMIT = 200
_WRAP_RESERVE = 160  # room for {"truncated": true, "note": …, "value": …} around a cut value
_MARKER_RESERVE = 40  # room, per open container, for its "… (N more items)"
_MIN_ROOM = 100  # a container shows another item only while this much room is left
_MAX_DEPTH = 20
_INT_BITS = 14_000  # ≈ 4,200 digits: written in full (Python's int→str limit is 4,300 digits)
_EXACT_INT_BITS = 300_000  # a longer int's digit count is estimated (exact division is slow)
_SORT_MAX = 1_000
_ERROR_CHARS = 2_000
_POLL_SECONDS = 0.1
# Raised to stop what runs, never a tool's answer: the user's interrupt, a generator's close.
_STOP = (KeyboardInterrupt, GeneratorExit)
# An attribute no real object has: an object that claims it answers every name (a mock, a proxy),
# so its _repr_llm_ is not a real one (IPython checks _repr_*_ methods the same way).
_CANARY = "_ofox_canary_method_should_not_exist_"


class _Shrinker:
    """Turns any value into a JSON-ready tree (dicts with str keys, lists, str, bool, None, short
    ints, finite floats) whose JSON text fits a character budget, counting what it leaves out.

    The budget is spent as the value is walked: each leaf's exact JSON length, plus brackets and
    separators, while ``_MARKER_RESERVE`` per open container keeps room for its cut marker.
    """

    def __init__(self, budget: int) -> None:
        self.room = budget
        self.cut_chars = 0
        self.cut_bytes = 0
        self.cut_items = 0
        self.cut_deep = 0
        self._open: set[int] = set()  # ids of the containers being walked, to spot cycles

    @property
    def cut(self) -> bool:
        return bool(self.cut_chars or self.cut_bytes or self.cut_items or self.cut_deep)

    def note(self) -> str:
        parts = [
            f"{count:,} {what}"
            for count, what in (
                (self.cut_chars, "more characters"),
                (self.cut_bytes, "more bytes"),
                (self.cut_items, "more items"),
                (self.cut_deep, f"nested more than {_MAX_DEPTH} levels deep"),
            )
            if count
        ]
        if self.cut_deep:  # "1 value nested …", "3 values nested …"
            plural = "values" if self.cut_deep > 1 else "value"
            parts[-1] = parts[-1].replace(" nested", f" {plural} nested", 1)
        return f"… (truncated, {', '.join(parts)})"

    def value(self, value: Any, depth: int = 0) -> Any:
        """One value as JSON-ready data; whatever breaks while reading it describes it instead."""
        try:
            return self._value(value, depth)
        except _STOP:
            raise
        except BaseException as err:  # noqa: BLE001 - a broken __repr__, RecursionError, …
            return self.text(_unprintable(value, err), depth)

    def _value(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if value is None or kind is bool:
            self.room -= 5
            return value
        if kind is str:
            return self.text(value, depth)
        if kind is int:
            return self.integer(value, depth)
        if kind is float:
            return self.real(value)
        if kind in (dict, list, tuple, set, frozenset):
            return self.container(value, depth)
        if kind in (bytes, bytearray):
            return self.octets(value, depth)
        # Anything else is user code, which may say how it wants to be read.
        method = _real_method(value, "_repr_llm_")
        if method is not None:
            text = method()
            if not isinstance(text, str):
                problem = f"_repr_llm_() returned {_type_name(text)}, not str"
                return self.text(f"<unprintable {_type_name(value)}: {problem}>", depth)
            return self.text(str.__str__(text), depth)
        if isinstance(value, enum.Enum):
            return self.value(value.value, depth + 1)
        # Subclasses of the built-ins, read through the built-in methods so that an override
        # (a __str__ or __int__ that raises) cannot get in the way.
        if isinstance(value, str):
            return self.text(str.__str__(value), depth)
        if isinstance(value, int):
            return self.integer(int.__int__(value), depth)
        if isinstance(value, float):
            return self.real(float.__float__(value))
        if isinstance(value, (dict, list, tuple, set, frozenset)) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)
        ):
            return self.container(value, depth)
        if isinstance(value, (bytes, bytearray)):
            return self.octets(value, depth)
        return self.text(repr(value), depth)

    def text(self, text: str, depth: int) -> str:
        """A string, cut (with a note saying how much) when its JSON would not fit."""
        room = max(self.room - _MARKER_RESERVE * depth, _MIN_ROOM)
        if len(text) + 2 <= room:  # a cheap first look before the exact, escaped length
            clean = _clean(text)
            size = _json_len(clean)
            if size <= room:
                self.room -= size
                return clean
        keep = max(room - 60, 0)
        while True:
            shown = f"{_clean(text[:keep])}… (truncated, {len(text) - keep:,} more characters)"
            size = _json_len(shown)
            if size <= room or keep == 0:
                break
            keep = max(min(keep - 1, keep * room // size), 0)  # escapes took more room
        self.cut_chars += len(text) - keep
        self.room -= size
        return shown

    def integer(self, number: int, depth: int) -> int | str:
        if number.bit_length() <= _INT_BITS:
            try:
                size = len(int.__repr__(number))
            except ValueError:  # the interpreter's int→str limit was set lower than usual
                size = None
            if size is not None and size <= self.room - _MARKER_RESERVE * depth:
                self.room -= size
                return number
        return self.text(_describe_int(number), depth)

    def real(self, number: float) -> float | str:
        if math.isfinite(number):
            self.room -= len(float.__repr__(number))
            return number
        text = "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
        self.room -= len(text) + 2
        return text

    def octets(self, data: bytes | bytearray, depth: int) -> str:
        room = max(self.room - _MARKER_RESERVE * depth, _MIN_ROOM)
        keep = max(room // 6, 1)  # b"\x00" is four characters of repr, five of JSON
        text = repr(bytes(data[:keep]))
        if len(data) > keep:
            self.cut_bytes += len(data) - keep
            text += f"… (truncated, {len(data) - keep:,} more bytes)"
        return self.text(text, depth)

    def container(self, value: Any, depth: int) -> Any:
        ident = id(value)
        if ident in self._open:
            return self.text(f"<cycle: this {_type_name(value)} contains itself>", depth)
        if depth >= _MAX_DEPTH:
            self.cut_deep += 1
            return self.text(f"<{_type_name(value)} nested too deeply to show>", depth)
        self._open.add(ident)
        try:
            if isinstance(value, dict):
                return self.mapping(value.items(), len(value), depth)
            if not isinstance(value, (list, tuple, set, frozenset)):  # a dataclass instance
                fields = dataclasses.fields(value)
                pairs = ((field.name, getattr(value, field.name)) for field in fields)
                return self.mapping(pairs, len(fields), depth)
            items = _ordered(value) if isinstance(value, (set, frozenset)) else value
            return self.sequence(items, len(value), depth)
        finally:
            self._open.discard(ident)

    def _full(self, depth: int) -> bool:
        return self.room - _MARKER_RESERVE * (depth + 1) < _MIN_ROOM

    def sequence(self, items: Iterable[Any], size: int, depth: int) -> list[Any]:
        out: list[Any] = []
        self.room -= 2
        for index, item in enumerate(items):
            if self._full(depth):
                more = max(size - index, 1)
                self.cut_items += more
                out.append(self.text(f"… ({more:,} more items)", depth + 1))
                break
            if index:
                self.room -= 2
            out.append(self.value(item, depth + 1))
        return out

    def mapping(self, pairs: Iterable[tuple[Any, Any]], size: int, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.room -= 2
        for index, (key, item) in enumerate(pairs):
            if self._full(depth):
                more = max(size - index, 1)
                self.cut_items += more
                out["… (truncated)"] = self.text(f"{more:,} more entries", depth + 1)
                break
            if index:
                self.room -= 2
            name = self.key(key, depth + 1)
            if name in out:  # two keys that read alike, such as 1 and "1"
                name = f"{name} ({index})"
            self.room -= 2
            out[name] = self.value(item, depth + 1)
        return out

    def key(self, key: Any, depth: int) -> str:
        """A dict key as JSON's string key: as ``json.dumps`` writes it, else its ``repr()``."""
        try:
            if isinstance(key, str):
                text = str.__str__(key)
            elif key is None or isinstance(key, bool):
                text = json.dumps(key)
            elif isinstance(key, int) and not isinstance(key, enum.Enum):
                number = int.__int__(key)
                text = (
                    int.__repr__(number)
                    if number.bit_length() <= _INT_BITS
                    else _describe_int(number)
                )
            elif isinstance(key, float):
                text = json.dumps(float.__float__(key))
            else:
                text = repr(key)
        except _STOP:
            raise
        except BaseException as err:  # noqa: BLE001 - as for values: describe what broke
            text = _unprintable(key, err)
        return self.text(text, depth)


def _json_len(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False))


def _ordered(values: set[Any] | frozenset[Any]) -> Iterable[Any]:
    """A set's items, sorted when that is cheap and possible, so the text does not vary."""
    if len(values) > _SORT_MAX:
        return values
    try:
        return sorted(values)
    except _STOP:
        raise
    except BaseException:  # noqa: BLE001 - unorderable (or a broken __lt__): as they come
        return values


def _describe_int(number: int) -> str:
    """An int too long to write out: its leading digits, digit count and last digits. Exact
    up to ``_EXACT_INT_BITS`` bits; beyond, the leading digits and the count are estimates."""
    size = abs(number)
    sign = "-" if number < 0 else ""
    exponent = math.floor(math.log10(size))
    if size.bit_length() <= _EXACT_INT_BITS:
        if size < 10**exponent:  # log10 rounds near powers of ten
            exponent -= 1
        elif size >= 10 ** (exponent + 1):
            exponent += 1
        lead = size // 10 ** (exponent - 6)
        head, count = f"{lead // 10**6}.{lead % 10**6:06d}", f"{exponent + 1:,}"
    else:
        head = f"{10 ** (math.log10(size) - exponent):.6f}"
        count = f"about {exponent + 1:,}"
    return (
        f"{sign}{head}…e+{exponent} (an int of {count} digits ending in "
        f"…{size % 10**6:06d}; too long to write out)"
    )


def _real_method(value: Any, name: str) -> Callable[[], Any] | None:
    try:
        if getattr(value, _CANARY, None) is not None:
            return None
        method = getattr(value, name, None)
    except _STOP:
        raise
    except BaseException:  # noqa: BLE001 - a __getattr__ that raises: no such method then
        return None
    return method if callable(method) else None


def _type_name(value: Any) -> str:
    try:
        name = type(value).__name__
    except _STOP:
        raise
    except BaseException:  # noqa: BLE001 - a metaclass with a broken __name__
        return "object"
    return name if isinstance(name, str) else "object"


def _describe_exception(err: BaseException) -> str:
    """``Type: message`` of an exception, even one whose ``__str__`` raises."""
    name = _type_name(err)
    if isinstance(err, SystemExit):
        code = err.code
        shown = "" if code is None else _clip(_safe_repr(code), 200)
        return f"SystemExit: the tool called sys.exit({shown}); it stopped, the kernel did not"
    try:
        message = str(err)
    except _STOP:
        raise
    except BaseException as inner:  # noqa: BLE001 - a __str__ that raises
        message = f"<unprintable message: {_type_name(inner)}>"
    message = _clip(message, _ERROR_CHARS)
    return f"{name}: {message}" if message else name


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except _STOP:
        raise
    except BaseException as err:  # noqa: BLE001
        return f"<unprintable {_type_name(value)}: {_type_name(err)}>"


def _unprintable(value: Any, err: BaseException) -> str:
    return f"<unprintable {_type_name(value)}: {_clip(_describe_exception(err), 300)}>"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (truncated, {len(text) - limit:,} more characters)"


def _clean(text: str) -> str:
    """The text with lone surrogates (which UTF-8 cannot carry) replaced by U+FFFD; a valid pair
    written as two code points, as JSON escapes write it, becomes its character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _cut_json_text(text: str, limit: int) -> str:
    """The start of a JSON text that is too long, wrapped so that the result is valid JSON."""
    keep = limit - _WRAP_RESERVE
    while True:
        note = f"… (truncated, {len(text) - keep:,} more characters)"
        wrapped = json.dumps(
            {"truncated": True, "note": note, "start": text[:keep]}, ensure_ascii=False
        )
        if len(wrapped) <= limit or keep == 0:
            return wrapped
        keep = max(min(keep - 1, keep * limit // len(wrapped)), 0)
