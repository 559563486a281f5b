"""What a batch is given: the items (a list, a generator, a pandas Series or DataFrame) and the
prompt template filled for each. Pure: pandas is never imported (a DataFrame is recognised by
its type's module), images are recognised without importing Pillow or matplotlib.

The template knows three fields, like ``%%ofox --vars`` deliberately fewer than ``str.format``:
``{item}``, ``{item.field}`` and ``{item[key]}`` (a dict's key, a row's column, an object's
attribute); ``{{`` and ``}}`` are literal braces; any other braces (code, JSON) stay as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._config import scrub
from ._context import bounded, describe
from ._exceptions import OfoxError

__all__ = ["Items", "check_template", "fill", "has_fields", "is_image", "items_of", "label_of"]

_FIELD = re.compile(
    r"\{\{|\}\}|\{item(?:\.(?P<attr>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<key>[^\[\]{}]+)\])?\}"
)
#: Something meant as a field that is not one: ``{item!r}``, ``{item:>5}``, ``{item.name }``.
_NEAR = re.compile(r"\{item(?=[!:.\[\s])[^{}]*\}")
#: What one field may bring into a prompt (a huge value is cut, with a note of what was cut).
FIELD_BUDGET = 4000
#: File names sent as images when an item is a path (a ``pathlib.Path``, or a ``str`` naming an
#: existing file).
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Items:
    """The items of a batch, as a list, and where they came from: ``index`` is the pandas
    ``Index`` (names and levels kept) when the input was pandas, else ``None``; ``kind`` is
    ``"list"``, ``"series"`` or ``"frame"``."""

    values: list[Any]
    kind: str = "list"
    index: Any = None
    #: The Series' name or the DataFrame's columns (to name the result columns after them).
    name: Any = None


def _pandas(value: object, name: str) -> bool:
    kind = type(value)
    return kind.__module__.split(".")[0] == "pandas" and kind.__name__ == name


def check_template(template: str) -> None:
    """Refuse what looks like a field but is not one (else every item would get the same
    prompt, with the braces in it)."""
    plain = template.replace("{{", "\0\0").replace("}}", "\0\0")
    for match in _NEAR.finditer(plain):
        if not _FIELD.fullmatch(match.group(0)):
            raise OfoxError(
                f"{match.group(0)} in the prompt is not a field",
                hint="write {item}, {item.name} or {item[key]} ({{ and }} for literal braces)",
            )


def has_fields(template: str) -> bool:
    """Whether the template takes anything from its item."""
    return any(m.group(0) not in ("{{", "}}") for m in _FIELD.finditer(template))


def items_of(items: Any) -> Items:
    """Check and list ``items``; something that is not a collection of items is one clear
    :class:`OfoxError`."""
    if _pandas(items, "DataFrame"):
        # As dicts of Python values: iterrows() would make each row one Series of one dtype
        # (an int id beside a float column would be sent as "1.0").
        rows = items.to_dict("records")
        return Items(rows, "frame", items.index, list(items.columns))
    if _pandas(items, "Series"):
        return Items(list(items.tolist()), "series", items.index, items.name)
    if isinstance(items, (str, bytes, bytearray)):
        raise OfoxError(
            f"items is one {type(items).__name__}, not a collection of items",
            hint="pass a list, e.g. [text] or text.splitlines()",
        )
    if isinstance(items, Mapping):
        raise OfoxError(
            "items is a dict: which of its keys or values are the items?",
            hint="pass list(d.values()), list(d.items()) or a list of dicts",
        )
    if is_image(items):
        raise OfoxError("items is one image, not a collection", hint="pass a list: [image]")
    if not isinstance(items, Iterable):
        raise OfoxError(
            f"items must be a list (or any iterable, a Series, a DataFrame), "
            f"not a {type(items).__name__}"
        )
    try:
        return Items(list(items))
    except Exception as err:  # noqa: BLE001 - the user's iterable: any failure is theirs
        raise OfoxError(
            scrub(f"items could not be listed ({type(err).__name__}: {err})")[:300]
        ) from None


def is_image(value: object) -> bool:
    """Whether ``value`` goes to the model as an image rather than as text: a PIL image, a
    matplotlib figure, ``IPython.display.Image``, bytes, a ``pathlib.Path`` to an image file, or
    a string that is the path of an existing image file."""
    module = type(value).__module__
    if module.startswith("PIL.") or (
        module.startswith("matplotlib.") and hasattr(value, "savefig")
    ):
        return True
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, os.PathLike) and not isinstance(value, str):
        return os.path.splitext(os.fspath(value))[1].lower() in _IMAGE_SUFFIXES
    if isinstance(value, str):
        # A list of image file names is a list of images: a string that names an existing
        # image file is sent as the image (any other string is text).
        return (
            len(value) < 4096
            and "\n" not in value
            and os.path.splitext(value)[1].lower() in _IMAGE_SUFFIXES
            and os.path.isfile(value)
        )
    return module.startswith("IPython.") and type(value).__name__ == "Image"


def label_of(value: object, position: int) -> str:
    """How an image item is named in the prompt: its file name, else ``image N`` (from 1)."""
    if isinstance(value, (str, os.PathLike)):
        return os.path.basename(os.fspath(value)) or f"image {position + 1}"
    return f"image {position + 1}"


def fill(template: str, item: Any, position: int) -> str:
    """``template`` with the fields of ``item`` (the ``position``-th, from 0) filled in."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        field = match.group("attr") or match.group("key")
        if field is None:
            return _text(item, position)
        return _text(_field(item, field.strip(), token, position), position)

    return _FIELD.sub(substitute, template)


def _field(item: Any, name: str, token: str, position: int) -> Any:
    try:
        if isinstance(item, Mapping) or _pandas(item, "Series"):
            if name in item:
                return item[name]
            for key in item.keys():  # a column named by a number: {item[3]}
                if not isinstance(key, str) and str(key) == name:
                    return item[key]
        elif isinstance(item, (list, tuple)) and name.lstrip("-").isdigit():
            if -len(item) <= int(name) < len(item):  # a pair from list(d.items()): {item[0]}
                return item[int(name)]
        elif not name.startswith("_") and hasattr(item, name):
            return getattr(item, name)
    except Exception as err:  # noqa: BLE001 - the user's object: any failure is theirs
        raise OfoxError(
            scrub(f"item {position}: {token} failed ({type(err).__name__}: {err})")[:300]
        ) from None
    have = scrub(_names(item))
    raise OfoxError(
        f"item {position} has no {scrub(name)!r} for {scrub(token)}",
        hint=f"it has: {have}" if have else "use {item} for the whole item",
    )


def _names(item: Any) -> str:
    try:
        if isinstance(item, Mapping) or _pandas(item, "Series"):
            names = [str(k) for k in list(item.keys())[:12]]
        else:
            names = [n for n in dir(item) if not n.startswith("_")][:12]
    except Exception:  # noqa: BLE001 - the user's object
        return ""
    return ", ".join(names)


def _text(value: Any, position: int) -> str:
    """A value as prompt text: a string as it is, an image by its name, a dict or a row as
    ``name: value`` lines, anything else as :func:`._context.describe` shows it."""
    if isinstance(value, str):
        return bounded(value, FIELD_BUDGET)
    if is_image(value):
        return label_of(value, position)
    try:
        if isinstance(value, Mapping) or _pandas(value, "Series"):
            lines = [f"{key}: {_scalar(v)}" for key, v in value.items()]
            return bounded("\n".join(lines), FIELD_BUDGET)
        return describe(value, FIELD_BUDGET)
    except Exception as err:  # noqa: BLE001 - the user's object: any failure is theirs
        raise OfoxError(
            scrub(f"item {position} could not be turned into text ({type(err).__name__}: {err})")[
                :300
            ],
            hint="give it a __repr__ that works, or pass strings",
        ) from None


def _scalar(value: Any) -> str:
    text = value if isinstance(value, str) else describe(value, 400)
    return " ".join(text.split())
