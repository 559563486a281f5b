"""Named chats made of turns, as pure values: no I/O, no clock, no client.

A *turn* is one user message and everything the assistant did in answer (its messages: tool calls,
tool results, the reply). A :class:`Conversation` keeps its turns in notebook order and knows the
two rules that make notebook chat sane:

* re-running a cell replaces that cell's earlier turn *in place* (keyed by the frontend's cell id),
  and the request for it carries only the turns before it;
* when the chat no longer fits the model's context, the oldest turns are left out of the request
  (never deleted), and the caller is told how many.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._messages import Message, system, text_part
from ._streaming import Usage

__all__ = ["Conversation", "Turn", "estimate_tokens", "strip_images"]

#: A turn's status: the reply finished, a stream broke after text arrived, or the user stopped it.
STATUSES = ("complete", "partial", "interrupted")


def estimate_tokens(message: Message) -> int:
    """A cheap, deliberately generous token estimate (≈ 4 characters a token, plus framing).

    Used only to decide what to leave out when a chat outgrows the context; the API's own
    ``usage`` is what the footer and the cost show.
    """
    tokens = 4 + math.ceil(len(message.text) / 4)
    for call in message.tool_calls:
        tokens += math.ceil((len(call.name) + len(call.arguments)) / 4)
    # An image costs at most about 1,100 tokens at the sizes we send (see _images).
    tokens += 1105 * len(message.images)
    return tokens


@dataclass(frozen=True)
class Turn:
    """One exchange of a chat. ``replies`` are the assistant's (and tools') messages, in order."""

    id: str
    chat: str
    user: Message
    replies: tuple[Message, ...] = ()
    cell_id: str | None = None
    model: str = ""
    served_model: str = ""
    usage: Usage | None = None
    cost: float | None = None
    finish_reason: str | None = None
    status: str = "complete"
    created: float = 0.0

    @property
    def messages(self) -> tuple[Message, ...]:
        return (self.user, *self.replies)

    @property
    def text(self) -> str:
        """The assistant's final text (the last assistant message that has any)."""
        for message in reversed(self.replies):
            if message.role == "assistant" and message.text:
                return message.text
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chat": self.chat,
            "user": self.user.to_dict(),
            "replies": [m.to_dict() for m in self.replies],
            "cell_id": self.cell_id,
            "model": self.model,
            "served_model": self.served_model,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "cost": self.cost,
            "finish_reason": self.finish_reason,
            "status": self.status,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        usage = data.get("usage")
        return cls(
            id=str(data["id"]),
            chat=str(data.get("chat") or "main"),
            user=Message.from_dict(data["user"]),
            replies=tuple(Message.from_dict(m) for m in data.get("replies") or ()),
            cell_id=data.get("cell_id"),
            model=str(data.get("model") or ""),
            served_model=str(data.get("served_model") or ""),
            usage=Usage.from_dict(usage) if usage else None,
            cost=data.get("cost"),
            finish_reason=data.get("finish_reason"),
            status=str(data.get("status") or "complete"),
            created=float(data.get("created") or 0.0),
        )


@dataclass
class Conversation:
    """One named chat of a notebook: an optional system prompt and its turns in order."""

    name: str
    system: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def position_of_cell(self, cell_id: str | None) -> int | None:
        """Index of the turn recorded for ``cell_id``, if that cell has run in this chat."""
        if cell_id is None:
            return None
        for index, turn in enumerate(self.turns):
            if turn.cell_id == cell_id:
                return index
        return None

    def record(self, turn: Turn) -> tuple[int, Turn | None]:
        """Add ``turn``, replacing the same cell's earlier turn in place; returns the position
        and the turn that was replaced (or ``None`` when it was appended)."""
        position = self.position_of_cell(turn.cell_id)
        if position is None:
            self.turns.append(turn)
            return len(self.turns) - 1, None
        replaced = self.turns[position]
        self.turns[position] = turn
        return position, replaced

    def request_messages(
        self, user: Message, *, cell_id: str | None = None, budget: int | None = None
    ) -> tuple[list[Message], int, int]:
        """The messages to send for a new ``user`` message, the number of turns left out, and
        the number of earlier images left out.

        A re-run cell sees only the turns before its own. With a ``budget`` (tokens), what does
        not fit is left out oldest first — images before whole turns, since an image costs as
        much as pages of text and the words around it usually still make sense without it. The
        system prompt and the new message always stay.
        """
        position = self.position_of_cell(cell_id)
        history = list(self.turns if position is None else self.turns[:position])
        head = [system(self.system)] if self.system else []
        omitted_turns = omitted_images = 0
        if budget is not None:
            fixed = sum(estimate_tokens(m) for m in (*head, user))
            sizes = [sum(estimate_tokens(m) for m in t.messages) for t in history]
            total = fixed + sum(sizes)
            for index, turn in enumerate(history):
                if total <= budget:
                    break
                if any(m.images for m in turn.messages):
                    slim = _without_images(turn)
                    omitted_images += sum(len(m.images) for m in turn.messages)
                    new_size = sum(estimate_tokens(m) for m in slim.messages)
                    total += new_size - sizes[index]
                    history[index], sizes[index] = slim, new_size
            while history and total > budget:
                total -= sizes.pop(0)
                history.pop(0)  # its images, if any, were counted when they were slimmed away
                omitted_turns += 1
        messages = head + [m for turn in history for m in turn.messages] + [user]
        return messages, omitted_turns, omitted_images

    def clear(self) -> None:
        self.turns.clear()


def strip_images(message: Message) -> Message:
    """The message with each image replaced by a short note, so the model knows one was there."""
    if not message.images or not isinstance(message.content, tuple):
        return message
    parts = tuple(
        p if p.get("type") != "image_url" else text_part("[an image was here; left out]")
        for p in message.content
    )
    return replace(message, content=parts)


def _without_images(turn: Turn) -> Turn:
    return replace(
        turn, user=strip_images(turn.user), replies=tuple(strip_images(m) for m in turn.replies)
    )
