"""A plain copy of a widget's content, so a notebook reopened without its kernel still shows it.

ipywidgets keeps its state in the kernel: a saved notebook reopened later (no kernel, or a new one)
shows "Error displaying widget: model not found" where the chat or the comparison was, and its
conversation is gone from view (style.md, "Known traps"). So each panel publishes, right below
itself, a *transcript* output — the conversation, or the comparison's columns, as Markdown — kept
up to date through its display id after every exchange (a display update from a widget's
callback reaches the cell, and the saved notebook holds the updated copy).

A small style sheet in the transcript decides which of the two shows, in JupyterLab and Notebook 7:
while the panel is alive the transcript is hidden (no double conversation); once the panel is
dead (reopened without its kernel) the error is hidden and the transcript shows. Where the style
does not apply (an untrusted notebook, whose HTML is sanitized, or another frontend), both show:
the transcript is still there to read.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from ._conversation import Conversation
from ._markdown import dollars, protect_currency, quoted

__all__ = ["TRANSCRIPT_CLASS", "chat_transcript", "columns_transcript", "wrap_transcript"]

TRANSCRIPT_CLASS = "ofox-transcript"
#: Panels' CSS classes (``_widgets.py``): a live panel renders an element with one of them.
_PANELS = ".ofox-chat, .ofox-compare"
_STYLE = (
    "<style>"
    # The panel is alive: the transcript below it is not needed.
    f".jp-OutputArea-child:has({_PANELS}) + .jp-OutputArea-child:has(.{TRANSCRIPT_CLASS})"
    "{display:none}"
    # The panel is dead (its widget model is gone): hide the error, the transcript shows instead.
    f".jp-OutputArea-child:not(:has({_PANELS})):has(+ .jp-OutputArea-child .{TRANSCRIPT_CLASS})"
    "{display:none}"
    "</style>"
)


def wrap_transcript(title: str, markdown: str, plain: str) -> dict[str, str]:
    """The transcript output's bundle: a title line, then ``markdown`` (``plain`` for frontends
    that show text only)."""
    head = f'<div class="{TRANSCRIPT_CLASS}">\n\n*{dollars(html.escape(title))}*\n\n'
    return {
        "text/markdown": f"{_STYLE}\n\n{head}{markdown}\n\n</div>",
        "text/plain": f"{title}\n\n{plain}".rstrip(),
    }


def chat_transcript(conversation: Conversation | None, name: str) -> dict[str, str]:
    """A chat's turns, in full, as the chat panel shows them."""
    turns = conversation.turns if conversation is not None else []
    count = f"{len(turns)} turn{'s' * (len(turns) != 1)}"
    markdown: list[str] = []
    plain: list[str] = []
    for turn in turns:
        images = len(turn.user.images)
        attached = f" *(+{images} image{'s' * (images != 1)})*" if images else ""
        answer = protect_currency(turn.text) or "*(no text)*"
        status = f"\n\n*{turn.status}*" if turn.status != "complete" else ""
        model = turn.served_model or turn.model
        you = f"**You**{attached}\n\n{quoted(turn.user.text)}"
        markdown.append(f"{you}\n\n**{model}**\n\n{answer}{status}")
        plain.append(f"You: {turn.user.text}\n{model}: {turn.text}")
    return wrap_transcript(
        f"chat {name} · {count} (a copy that stays readable without the kernel)",
        "\n\n---\n\n".join(markdown),
        "\n\n".join(plain),
    )


def columns_transcript(
    prompt: str, labels: Sequence[str], markdown_grid: str, plain: str
) -> dict[str, str]:
    """A comparison's last run: its prompt and columns."""
    return wrap_transcript(
        f"comparison of {len(labels)} columns (a copy that stays readable without the kernel)",
        f"{quoted(prompt)}\n\n{markdown_grid}",
        f"{prompt}\n\n{plain}",
    )
