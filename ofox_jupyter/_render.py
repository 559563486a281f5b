"""What a finished exchange looks like: reply, tool-call blocks, thumbnails, footer, metadata.

Pure functions from an :class:`~ofox_jupyter._session.Exchange` to MIME bundles, shared by the
live display, the widgets and the exports, so that every front end shows the same thing and the
rendering can be tested without a display. Nothing here imports IPython.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._markdown import dollars, protect_currency
from ._messages import Message
from ._session import Exchange
from ._streaming import Usage
from ._tools import ToolResult

if TYPE_CHECKING:
    from ._images import PreparedImage

__all__ = [
    "call_block",
    "final_bundle",
    "footer_parts",
    "PLAIN_COPY_LIMIT",
    "format_cost",
    "provenance",
    "render_replies",
    "text_table",
    "thinking_block",
    "thumbnails_bundle",
    "token_counts",
]


def format_cost(cost: float) -> str:
    """Dollars, two significant digits for tiny sums: ``$0.000011``, ``$0.0042``, ``$1.25``."""
    if cost <= 0:
        return "$0"
    if cost >= 0.01:
        return f"${cost:.2f}"
    decade = math.floor(math.log10(cost))
    digits = 1 - decade  # two significant digits
    if round(cost, digits) >= 10 ** (decade + 1):  # 0.00999 rounds up to the next decade
        digits -= 1
    return f"${cost:.{digits}f}"


def token_counts(usage: Usage) -> str:
    """``1,200 → 80 tokens``, with ``(1,000 cached, 50 reasoning)`` when the API said so."""
    text = f"{usage.prompt_tokens:,} → {usage.completion_tokens:,} tokens"
    extras = []
    if usage.cached_tokens:
        extras.append(f"{usage.cached_tokens:,} cached")
    if usage.reasoning_tokens:
        extras.append(f"{usage.reasoning_tokens:,} reasoning")
    return f"{text} ({', '.join(extras)})" if extras else text


_CLOSE_DETAILS = re.compile(r"</(details|summary)", re.IGNORECASE)


def thinking_block(
    reasoning: str, seconds: float | None, *, markdown: bool = True, live: bool = False
) -> str:
    """A reasoning model's thinking: collapsed under ``thought for 2.1 s`` (Markdown), or just
    that line in plain text — the thinking itself is for those who open it."""
    if live:
        label = "thinking…" + (f" {seconds:.1f} s" if seconds is not None else "")
    elif seconds is not None:
        label = f"thought for {seconds:.1f} s"
    else:
        label = "thought before answering"  # not streamed: no duration to tell
    if not markdown:
        return f"({label})"
    # The thinking is the model's text: it must not be able to close the block it sits in.
    body = _CLOSE_DETAILS.sub(r"&lt;/\1", protect_currency(reasoning.strip()))
    return f"<details><summary>{label}</summary>\n\n{body}\n\n</details>"


def footer_parts(exchange: Exchange) -> tuple[list[str], list[str]]:
    """The footer's facts and its warnings, as short phrases."""
    reply = exchange.reply
    facts: list[str] = []
    if reply.fell_back and exchange.fallback_asked:
        facts.append(f"answered by {reply.model} (fallback from {reply.requested_model})")
    else:
        facts.append(reply.model)
    if exchange.chat != "main":
        facts.append(f"chat {exchange.chat}")
    if reply.usage is not None:
        facts.append(token_counts(reply.usage))
    if exchange.cost is not None:
        # Offline nothing is charged; the list price is still worth seeing while learning.
        cost = format_cost(exchange.cost)
        facts.append(f"would cost {cost}" if reply.offline else cost)
    if exchange.first_token_seconds is not None:
        facts.append(f"first token {exchange.first_token_seconds:.2f} s")
    facts.append(f"{exchange.total_seconds:.2f} s")
    if reply.replayed:
        facts.append(f"replayed from {reply.replayed}")
    elif reply.offline:
        facts.append("offline emulator")
    warnings: list[str] = []
    if (
        exchange.status == "complete"
        and not reply.text
        and not reply.tool_calls
        and not exchange.tool_results
    ):
        warnings.append("the model sent an empty reply")
    warnings.extend(reply.warnings)
    if exchange.key_redacted:
        warnings.append("the API key was in the prompt: taken out before sending")
    if reply.finish_reason == "length":
        warnings.append("cut off: raise --max-tokens")
    elif reply.finish_reason == "content_filter":
        warnings.append("stopped by the content filter")
    if exchange.omitted_turns:
        n = exchange.omitted_turns
        warnings.append(f"{n} earlier turn{'s' * (n != 1)} left out (context full)")
    if exchange.omitted_images:
        n = exchange.omitted_images
        warnings.append(f"{n} earlier image{'s' * (n != 1)} left out (context full)")
    if exchange.round_limit_hit:
        n = exchange.tool_rounds
        warnings.append(
            f"stopped after {n} tool round{'s' * (n != 1)} (raise OfoxMagics.max_tool_rounds)"
        )
    if exchange.status == "interrupted":
        kept = exchange.turn is not None or bool(reply.text)
        warnings.append("interrupted: partial reply kept" if kept else "interrupted: nothing kept")
    elif exchange.status == "partial":
        warnings.append("stream broke: partial reply kept")
    return facts, warnings


def provenance(exchange: Exchange) -> dict[str, Any]:
    """Output metadata saying where a reply came from — never anything secret."""
    reply = exchange.reply
    return {
        "ofox": {
            "chat": exchange.chat,
            "turn_id": exchange.turn.id if exchange.turn else None,
            "model": reply.model,
            "requested_model": reply.requested_model,
            "status": exchange.status,
            "finish_reason": reply.finish_reason,
            "offline": reply.offline,
            "usage": None if reply.usage is None else reply.usage.to_dict(),
            "cost": exchange.cost,
        }
    }


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_block(
    name: str, arguments: str, result: ToolResult | None, *, markdown: bool = True
) -> str:
    """One tool call as a collapsible block (Markdown) or a line (plain text)."""
    try:
        pretty_args = json.dumps(json.loads(arguments), ensure_ascii=False, indent=2)
    except ValueError:
        pretty_args = arguments
    if result is None:
        state, outcome = "…", ""
    elif result.ok:
        state, outcome = "✓", result.content
    else:
        state, outcome = "✗", result.error or result.content
    if not markdown:
        line = f"tool {name}({_short(arguments, 80)}) {state}"
        return line + (f" {_short(outcome, 200)}" if outcome else "")
    summary = html.escape(f"tool {name}({_short(arguments, 60)}) {state}", quote=False)
    body = f"arguments:\n\n```json\n{pretty_args}\n```"
    if result is not None:
        label = "result" if result.ok else "error"
        body += f"\n\n{label}:\n\n```\n{_short(outcome, 4000)}\n```"
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def render_replies(exchange: Exchange, *, markdown: bool = True) -> str:
    """The reply as the user should read it: any text and tool calls of every round, in order,
    then the final answer; a JSON-mode value pretty-printed."""
    results = {r.call.id: r for r in exchange.tool_results}
    pieces: list[str] = []
    if exchange.reasoning:
        pieces.append(
            thinking_block(exchange.reasoning, exchange.reasoning_seconds, markdown=markdown)
        )
    replies: Sequence[Message] = exchange.replies
    for message in replies:
        if message.role != "assistant":
            continue
        if message.text:
            pieces.append(protect_currency(message.text) if markdown else message.text)
        for call in message.tool_calls:
            pieces.append(
                call_block(call.name, call.arguments, results.get(call.id), markdown=markdown)
            )
    if not replies and exchange.reply.text:
        text = exchange.reply.text
        pieces.append(protect_currency(text) if markdown else text)
    if exchange.value is not None and markdown and pieces:
        pretty = json.dumps(exchange.value, ensure_ascii=False, indent=2)
        pieces[-1] = f"```json\n{pretty}\n```"
    return "\n\n".join(pieces)


#: A Markdown reply longer than this has a shortened ``text/plain`` copy: its first half, and how
#: much more there is (as IPython's own Markdown objects have a short ``text/plain``). The reply is
#: sent once, not twice; the Markdown is what frontends show, and ``_ofox.text`` holds it all.
PLAIN_COPY_LIMIT = 200


def final_bundle(exchange: Exchange, fmt: str) -> dict[str, str]:
    """The finished reply with its footer, as a MIME bundle."""
    facts, warnings = footer_parts(exchange)
    text = render_replies(exchange, markdown=False)
    plain_footer = " · ".join(facts + [f"⚠ {w}" for w in warnings])
    if fmt == "text":
        return {"text/plain": f"{text}\n\n— {plain_footer}" if text else f"— {plain_footer}"}
    if len(text) > PLAIN_COPY_LIMIT:
        rest = len(text) - PLAIN_COPY_LIMIT // 2
        text = f"{text[: PLAIN_COPY_LIMIT // 2]}… ({rest:,} more characters in the Markdown)"
    plain = f"{text}\n\n— {plain_footer}" if text else f"— {plain_footer}"
    shown = [dollars(html.escape(f)) for f in facts] + [
        f"⚠ {dollars(html.escape(w))}" for w in warnings
    ]
    footer = "<sub>" + " · ".join(shown) + "</sub>"
    body = render_replies(exchange) or "*(no text)*"
    return {"text/markdown": f"{body}\n\n{footer}", "text/plain": plain}


def thumbnails_bundle(images: Sequence[PreparedImage]) -> dict[str, str]:
    """A row of thumbnails of the images sent, and a plain-text line saying what they were."""
    described = []
    tags = []
    for image in images:
        if image.width and image.mime:
            what = f"{image.width}×{image.height} {image.mime.split('/')[-1]}"
        else:
            what = "URL, sent as is"
        described.append(f"{image.source or 'image'} ({what})")
        title = html.escape(f"{image.source}: {what}", quote=True)
        if image.thumbnail:
            tags.append(
                f'<img src="{image.thumbnail}" title="{title}" alt="{title}" '
                'style="height:80px;margin:0 6px 0 0;border:1px solid #ddd">'
            )
        else:
            tags.append(f'<a href="{html.escape(image.url, quote=True)}">{title}</a>')
    count = len(images)
    plain = f"[sent {count} image{'s' * (count != 1)}: {', '.join(described)}]"
    return {
        "text/html": '<div class="ofox-images">' + "".join(tags) + "</div>",
        "text/plain": plain,
    }


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> str:
    """Rows as a plain-text table for a terminal: a header, a rule, columns as wide as their
    widest cell (numbers, the columns in ``right``, aligned right)."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])
