"""What the ``%ofox`` line subcommands show: each a (Markdown, plain text) pair, built here so
that the magic only parses, delegates and renders."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from typing import Any

from ._markdown import dollars

__all__ = ["tools_report"]


def tools_report(chat: str, functions: Mapping[str, Callable[..., Any]]) -> tuple[str, str]:
    """The standing tools of ``chat``: each name, description and parameters' JSON schema."""
    from ._tools import Tool

    if not functions:
        line = (
            f"chat {chat} has no standing tools: %ofox tools add F,G (or @ofox_jupyter.tool) "
            "offers functions in every later cell"
        )
        return dollars(html.escape(line)), line
    markdown = [f"**Tools offered in every cell of chat {dollars(html.escape(chat))}**"]
    plain = [f"Tools offered in every cell of chat {chat}:"]
    for name, function in functions.items():
        spec = Tool.from_function(function)
        schema = json.dumps(spec.parameters, indent=2, ensure_ascii=False)
        description = dollars(html.escape(spec.description))
        markdown.append(
            f"- `{name}`: {description}\n\n  ```json\n  " + schema.replace("\n", "\n  ") + "\n  ```"
        )
        params = ", ".join(spec.parameters.get("properties", {}))
        plain.append(f"  {name}({params}): {spec.description}")
    return "\n\n".join(markdown), "\n".join(plain)
