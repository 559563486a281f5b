"""``--vars``: opt-in ``{name}`` interpolation of a prompt from the user namespace.

Deliberately smaller than ``str.format``: only bare names (``{df}``), IPython's input and output
history (``{In[3]}``, ``{Out[3]}``, negative numbers counting back) and the last error
(``{Err}``) are replaced; ``{{`` and ``}}`` are literal braces; anything else in braces (code,
JSON, ``{x.attr}``) is left as it is — so a prompt full of code never runs attribute lookups or
format specs by accident. Every value goes out as :func:`._context.describe` makes it: a
DataFrame as its shape, dtypes and first rows, anything within a size budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._context import describe
from ._exceptions import OfoxError

__all__ = ["interpolate"]

_FIELD = re.compile(
    r"\{\{|\}\}|\{(?:(?P<history>In|Out)\[(?P<number>-?\d{1,9})\]|(?P<name>[A-Za-z_][A-Za-z0-9_]*))\}"
)


def _history(namespace: Mapping[str, Any], which: str, number: int) -> Any:
    """``In[n]`` / ``Out[n]`` as IPython keeps them (a negative ``n`` counts back from the
    current cell, as ``In[-1]`` is the cell itself)."""
    table = namespace.get(which)
    if which == "In" and isinstance(table, list):
        if -len(table) <= number < len(table):
            return table[number]
    elif which == "Out" and isinstance(table, dict):
        count = len(namespace.get("In") or ()) - 1  # this cell's number
        key = number if number >= 0 else count + 1 + number  # Out[-1] is this cell's, as In[-1]
        if key in table:
            return table[key]
    hint = "In[n] is the source of cell n; Out[n] its result, if it had one"
    raise OfoxError(f"--vars: {{{which}[{number}]}} does not exist", hint=hint)


def interpolate(
    prompt: str,
    namespace: Mapping[str, Any],
    specials: Mapping[str, Callable[[], str]] | None = None,
) -> str:
    """Replace the fields of ``prompt`` (see the module docstring); a name neither in
    ``namespace`` nor in ``specials`` (``Err`` → the last error) is one clear error."""
    specials = specials or {}

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        if match.group("history"):
            value = _history(namespace, match.group("history"), int(match.group("number")))
        else:
            name = match.group("name")
            if name in namespace:
                value = namespace[name]
            elif name in specials:
                return specials[name]()
            else:
                raise OfoxError(
                    f"--vars: no variable named {name!r}",
                    hint="define it first, or write {{" + name + "}} for literal braces",
                )
        try:
            text = describe(value)
        except Exception as err:  # noqa: BLE001 - the user's object: any failure is theirs
            raise OfoxError(
                f"--vars: {token} could not be turned into text ({type(err).__name__}: {err})"[
                    :300
                ],
                hint="give it a __repr__ that works, or pass a string",
            ) from None
        return text

    return _FIELD.sub(substitute, prompt)
