"""What the ``%ofox`` line subcommands show: each a (Markdown, plain text) pair, built here so
that the magic only parses, delegates and renders."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._budget import Budget, format_usd
from ._markdown import dollars
from ._render import format_cost, text_table

if TYPE_CHECKING:
    from ._identity import Identity
    from ._session import NotebookSession

__all__ = ["OFFLINE_SUFFIX", "restored_notice", "tools_report", "usage_report"]

OFFLINE_SUFFIX = " (offline)"  # usage rows of emulator replies (see NotebookSession._finish)


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


def restored_notice(identity: Identity, session: NotebookSession) -> str | None:
    """One line on what %load_ext found: restored chats, or a copy's start."""
    turns = sum(len(c) for c in session.chats.values())
    if not turns:
        return None
    names = ", ".join(sorted(session.chats))
    plural = "s" * (turns != 1)
    where = identity.context.label
    if identity.how == "copy":
        return (
            f"ofox: {where} is a copy of another notebook: it starts with its {turns} "
            f"turn{plural} (chat {names}); from here on the two are separate"
        )
    moved = f", formerly {Path(identity.moved_from).name}" if identity.moved_from else ""
    return f"ofox: restored {turns} turn{plural} of chat {names} for {where}{moved}"


def usage_report(rows: Sequence[tuple[Any, ...]], budget: Budget) -> tuple[str, str]:
    """``%ofox usage``: tokens and cost per model of this notebook, and the session's budget."""
    cap = ""
    if budget.limit > 0:
        cap = (
            f"Budget of this kernel session: {format_usd(budget.spent)} spent, "
            f"{format_usd(budget.left)} left of {format_usd(budget.limit)}"
        )
    if not rows:
        line = "No requests yet in this notebook." + (f"\n{cap}" if cap else "")
        return dollars(f"*{line}*".replace("\n", "*\n\n*")), line
    # The cached and reasoning columns only once some request had such tokens.
    details = any(row[5] or row[6] for row in rows)
    headers = ["model", "requests", "tokens in", "tokens out"]
    headers += ["cached", "reasoning"] if details else []
    headers.append("cost")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    plain: list[tuple[str, ...]] = []
    total_in = total_out = total_requests = total_cached = total_reasoning = 0
    charged: float | None = None
    listed = 0.0  # what the offline requests would have cost
    for model, prompt, completion, cost, requests, cached, reasoning in rows:
        offline = model.endswith(OFFLINE_SUFFIX)
        if cost is None:
            shown = "—"
        elif offline:
            shown, listed = f"({format_cost(cost)})", listed + cost
        else:
            shown, charged = format_cost(cost), (charged or 0.0) + cost
        counts = [str(requests), f"{prompt:,}", f"{completion:,}"]
        counts += [f"{cached:,}", f"{reasoning:,}"] if details else []
        lines.append(f"| `{model}` | {' | '.join(counts)} | {dollars(shown)} |")
        plain.append((model, *counts, shown))
        total_in += prompt
        total_out += completion
        total_requests += requests
        total_cached += cached
        total_reasoning += reasoning
    shown = "—" if charged is None else format_cost(charged)
    counts = [str(total_requests), f"{total_in:,}", f"{total_out:,}"]
    counts += [f"{total_cached:,}", f"{total_reasoning:,}"] if details else []
    lines.append(f"| **total** | {' | '.join(counts)} | **{dollars(shown)}** |")
    plain.append(("total", *counts, shown))
    table = text_table(headers, plain, right=tuple(range(1, len(headers))))
    if listed:
        note = f"(offline requests are not charged; at list prices: {format_cost(listed)})"
        lines.append(f"\n*{dollars(note)}*")
        table += "\n" + note
    if cap:
        lines.append(f"\n**{dollars(cap)}**")
        table += "\n" + cap
    return "\n".join(lines), table
