"""A tool's return value as the text the model reads: bounded JSON, whatever the value.

:func:`serialise` walks the value within a character budget (a huge string, list or int is cut
while it is read, never rendered in full first), keeps it valid JSON, and turns anything that
cannot be printed into a short description instead of an exception. The helpers that make an
exception or a value into safe, short text are here too, for the tool registry's error results.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "ERROR_CHARS",
    "MAX_RESULT_CHARS",
    "STOP",
    "clean_text",
    "clip",
    "describe_exception",
    "serialise",
]

#: A tool's result is cut to this many characters before it goes back to the model.
MAX_RESULT_CHARS = 20_000


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
    except STOP:
        raise
    except BaseException as err:  # noqa: BLE001 - e.g. MemoryError; the model still gets an answer
        text = json.dumps(clip(_unprintable(value, err), ERROR_CHARS), ensure_ascii=False)
    if len(text) > limit:  # the budget is exact but for escapes; a last resort, kept valid JSON
        text = _cut_json_text(text, limit)
    return clean_text(text)


#: The smallest ``limit`` :func:`serialise` accepts: room for the note of a cut result.
_MIN_LIMIT = 200
_WRAP_RESERVE = 160  # room for {"truncated": true, "note": …, "value": …} around a cut value
_MARKER_RESERVE = 40  # room, per open container, for its "… (N more items)"
_MIN_ROOM = 100  # a container shows another item only while this much room is left
_MAX_DEPTH = 20
_INT_BITS = 14_000  # ≈ 4,200 digits: written in full (Python's int→str limit is 4,300 digits)
_EXACT_INT_BITS = 300_000  # a longer int's digit count is estimated (exact division is slow)
_SORT_MAX = 1_000
ERROR_CHARS = 2_000
# Raised to stop what runs, never a tool's answer: the user's interrupt, a generator's close.
STOP = (KeyboardInterrupt, GeneratorExit)
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
        except STOP:
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
            clean = clean_text(text)
            size = _json_len(clean)
            if size <= room:
                self.room -= size
                return clean
        keep = max(room - 60, 0)
        while True:
            shown = f"{clean_text(text[:keep])}… (truncated, {len(text) - keep:,} more characters)"
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
        except STOP:
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
    except STOP:
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
    except STOP:
        raise
    except BaseException:  # noqa: BLE001 - a __getattr__ that raises: no such method then
        return None
    return method if callable(method) else None


def _type_name(value: Any) -> str:
    try:
        name = type(value).__name__
    except STOP:
        raise
    except BaseException:  # noqa: BLE001 - a metaclass with a broken __name__
        return "object"
    return name if isinstance(name, str) else "object"


def describe_exception(err: BaseException) -> str:
    """``Type: message`` of an exception, even one whose ``__str__`` raises."""
    name = _type_name(err)
    if isinstance(err, SystemExit):
        code = err.code
        shown = "" if code is None else clip(_safe_repr(code), 200)
        return f"SystemExit: the tool called sys.exit({shown}); it stopped, the kernel did not"
    try:
        message = str(err)
    except STOP:
        raise
    except BaseException as inner:  # noqa: BLE001 - a __str__ that raises
        message = f"<unprintable message: {_type_name(inner)}>"
    message = clip(message, ERROR_CHARS)
    return f"{name}: {message}" if message else name


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except STOP:
        raise
    except BaseException as err:  # noqa: BLE001
        return f"<unprintable {_type_name(value)}: {_type_name(err)}>"


def _unprintable(value: Any, err: BaseException) -> str:
    return f"<unprintable {_type_name(value)}: {clip(describe_exception(err), 300)}>"


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (truncated, {len(text) - limit:,} more characters)"


def clean_text(text: str) -> str:
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
