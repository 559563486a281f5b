"""``--vars``: opt-in ``{name}`` interpolation of a prompt from the user namespace.

Deliberately smaller than ``str.format``: only bare names (``{df_summary}``) are replaced, ``{{``
and ``}}`` are literal braces, and anything else in braces (code, JSON, ``{x.attr}``) is left as
it is — so a prompt full of code never runs attribute lookups or format specs by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._exceptions import OfoxError

__all__ = ["interpolate"]

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(prompt: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` by ``str(namespace[name])``; an unknown name is one clear error."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in namespace:
            raise OfoxError(
                f"--vars: no variable named {name!r}",
                hint="define it first, or write {{" + name + "}} for literal braces",
            )
        try:
            text = str(namespace[name])
        except Exception as err:  # noqa: BLE001 - the user's object: any failure is theirs
            raise OfoxError(
                f"--vars: {{{name}}} could not be turned into text ({type(err).__name__}: {err})"[
                    :300
                ],
                hint="give it a __str__ that works, or pass a string",
            ) from None
        return text if isinstance(text, str) else ""

    return _FIELD.sub(substitute, prompt)
