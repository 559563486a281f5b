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
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._messages import Message, system, text_part
from ._streaming import Usage

__all__ = [
    "UNSET",
    "Conversation",
    "Turn",
    "TurnLoader",
    "estimate_tokens",
    "strip_images",
    "turn_sizes",
]

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
    """One exchange of a chat. ``replies`` are the assistant's (and tools') messages, in order.

    ``reasoning`` is what a reasoning model thought before answering (and ``reasoning_seconds``
    how long, when streamed): kept for the record and the exports, but not part of
    :attr:`messages`, so it is never sent back to the model.
    """

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
    reasoning: str = ""
    reasoning_seconds: float | None = None

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
        data: dict[str, Any] = {
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
        if self.reasoning:  # only then: turns without reasoning keep their old shape
            data["reasoning"] = self.reasoning
            data["reasoning_seconds"] = self.reasoning_seconds
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        """A turn from its stored JSON; ``ValueError`` when the data is not a turn (a corrupt
        or foreign row), whatever is wrong with it."""
        try:
            if not isinstance(data, Mapping) or not isinstance(data.get("user"), Mapping):
                raise ValueError("not a turn")
            replies = data.get("replies")
            replies = [] if replies is None else replies
            usage = data.get("usage")
            cell_id = data.get("cell_id")
            cost = data.get("cost")
            finish = data.get("finish_reason")
            reasoning = data.get("reasoning")
            seconds = data.get("reasoning_seconds")
            if not isinstance(replies, list) or not all(isinstance(m, Mapping) for m in replies):
                raise ValueError("replies must be a list of messages")
            return cls(
                id=str(data["id"]),
                chat=str(data.get("chat") or "main"),
                user=Message.from_dict(data["user"]),
                replies=tuple(Message.from_dict(m) for m in replies),
                cell_id=cell_id if isinstance(cell_id, str) else None,
                model=str(data.get("model") or ""),
                served_model=str(data.get("served_model") or ""),
                usage=Usage.from_dict(usage) if isinstance(usage, Mapping) else None,
                cost=float(cost) if isinstance(cost, (int, float)) else None,
                finish_reason=finish if isinstance(finish, str) else None,
                status=str(data.get("status") or "complete"),
                created=float(data.get("created") or 0.0),
                reasoning=reasoning if isinstance(reasoning, str) else "",
                reasoning_seconds=float(seconds)
                if isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                else None,
            )
        except (KeyError, TypeError, AttributeError, OverflowError) as err:
            raise ValueError(f"not a turn: {err}") from None


class _Unset:
    """Marks "no override" where ``None`` is a meaningful value (no system prompt)."""


UNSET = _Unset()


#: The window of turns a chat keeps loaded is what its last request sent; older turns stay in the
#: store until asked for. Turns are fetched from it in batches of this many ids.
LOAD_BATCH = 500


def turn_sizes(turn: Turn) -> tuple[int, int, int]:
    """(tokens without its images, extra tokens its images add, number of images) of ``turn``:
    what deciding a request's window needs, computed once per turn and kept with it."""
    full = slim = images = 0
    for message in turn.messages:
        full += estimate_tokens(message)
        if message.images:
            images += len(message.images)
            slim += estimate_tokens(strip_images(message))
        else:
            slim += estimate_tokens(message)
    return slim, full - slim, images


#: Loads turns by id (from the history store); ids it cannot produce are simply missing.
TurnLoader = Callable[[Sequence[str]], Mapping[str, Turn]]


class Conversation:
    """One named chat of a notebook: an optional system prompt and its turns in order.

    Only a compact index of the turns is always in memory (ids, cell ids and token sizes, a few
    dozen bytes a turn); the turns themselves are loaded through ``loader`` when a request needs
    them, and only the window that was last sent stays loaded. So one more cell costs what it
    sends, not what the chat has accumulated: a 10,000-turn chat builds its request from the
    same few dozen turns as a 100-turn one. Without a loader every turn stays in memory.
    """

    def __init__(
        self,
        name: str,
        system: str | None = None,
        turns: Iterable[Turn] = (),
        *,
        loader: TurnLoader | None = None,
    ) -> None:
        self.name = name
        self.system = system
        self.loader = loader
        self._ids: list[str] = []
        self._cells: dict[str, int] = {}
        self._slim = array("q")  # tokens of each turn with its images left out
        self._extra = array("q")  # tokens its images add
        self._images = array("q")  # images it holds
        #: The three arrays' sums over the whole chat, kept up to date: a request's window is
        #: then decided without a pass over every turn.
        self._totals = [0, 0, 0]
        self._loaded: dict[str, Turn] = {}
        #: Turns that exist only in memory (the store failed or there is none): never evicted.
        self._pinned: set[str] = set()
        #: Turns the loader could not produce (a corrupt or vanished row), so far.
        self.unavailable = 0
        for turn in turns:
            self.record(turn)

    def __repr__(self) -> str:
        return f"<Conversation {self.name!r}: {len(self)} turns>"

    def __len__(self) -> int:
        return len(self._ids)

    # -- building the index

    def add_entry(
        self, turn_id: str, cell_id: str | None, slim: int, extra: int, images: int
    ) -> None:
        """Append a turn known only by its index entry (restored from the store)."""
        if cell_id:
            self._cells[cell_id] = len(self._ids)
        self._ids.append(turn_id)
        self._slim.append(slim)
        self._extra.append(extra)
        self._images.append(images)
        self._totals[0] += slim
        self._totals[1] += extra
        self._totals[2] += images

    def add_entries(
        self,
        ids: Sequence[str],
        cells: Sequence[str | None],
        slim: Sequence[int],
        extra: Sequence[int],
        images: Sequence[int],
    ) -> None:
        """:meth:`add_entry` for a whole restored chat at once (columns, in order)."""
        offset = len(self._ids)
        self._ids.extend(ids)
        self._cells.update({c: offset + i for i, c in enumerate(cells) if c})
        for column, values, total in (
            (self._slim, slim, 0),
            (self._extra, extra, 1),
            (self._images, images, 2),
        ):
            column.extend(values)
            self._totals[total] += sum(values)

    def _sums(self, end: int) -> tuple[int, int, int]:
        """Sizes of the turns before ``end``: the kept totals, or (a re-run cell) a sum."""
        if end == len(self._ids):
            slim, extra, images = self._totals
            return slim, extra, images
        return sum(self._slim[:end]), sum(self._extra[:end]), sum(self._images[:end])

    def pin(self, turn_id: str, pinned: bool = True) -> None:
        """Keep ``turn_id`` in memory (it is not safely in the store), or let it go again."""
        if pinned:
            self._pinned.add(turn_id)
        else:
            self._pinned.discard(turn_id)

    def release_pins(self) -> None:
        """Everything is in the store now: any turn may leave memory again."""
        self._pinned.clear()

    @property
    def pinned(self) -> tuple[Turn, ...]:
        """The turns that exist only in memory, in chat order."""
        return tuple(self._loaded[i] for i in self._ids if i in self._pinned)

    @property
    def loaded(self) -> tuple[Turn, ...]:
        """The turns in memory now, in chat order."""
        return tuple(self._loaded[i] for i in self._ids if i in self._loaded)

    # -- reading

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    @property
    def turns(self) -> list[Turn]:
        """Every turn, in order (loaded for the occasion; those the store lost are skipped).

        For reports and exports; requests use :meth:`request_messages`, which loads only what
        it sends."""
        found = self._fetch(self._ids, keep=False)
        return [found[i] for i in self._ids if i in found]

    def position_of_cell(self, cell_id: str | None) -> int | None:
        """Index of the turn recorded for ``cell_id``, if that cell has run in this chat."""
        if cell_id is None:
            return None
        return self._cells.get(cell_id)

    def _fetch(self, ids: Sequence[str], *, keep: bool) -> dict[str, Turn]:
        found = {i: self._loaded[i] for i in ids if i in self._loaded}
        missing = [i for i in ids if i not in found]
        if missing and self.loader is not None:
            for start in range(0, len(missing), LOAD_BATCH):
                found.update(self.loader(missing[start : start + LOAD_BATCH]))
        if keep:
            self._loaded.update(found)
        return found

    # -- writing

    def record(self, turn: Turn) -> tuple[int, Turn | None]:
        """Add ``turn``, replacing the same cell's earlier turn in place; returns the position
        and the turn that was replaced (or ``None`` when it was appended; a replaced turn the
        store can no longer produce comes back as a stub with its id only)."""
        slim, extra, images = turn_sizes(turn)
        position = self.position_of_cell(turn.cell_id)
        self._loaded[turn.id] = turn
        if position is None:
            self.add_entry(turn.id, turn.cell_id, slim, extra, images)
            return len(self._ids) - 1, None
        old_id = self._ids[position]
        replaced = self._loaded.pop(old_id, None) or Turn(
            id=old_id, chat=self.name, user=Message(role="user", content="")
        )
        self._pinned.discard(old_id)
        self._ids[position] = turn.id
        self._totals[0] += slim - self._slim[position]
        self._totals[1] += extra - self._extra[position]
        self._totals[2] += images - self._images[position]
        self._slim[position], self._extra[position] = slim, extra
        self._images[position] = images
        return position, replaced

    def clear(self) -> None:
        self._ids.clear()
        self._cells.clear()
        del self._slim[:], self._extra[:], self._images[:]
        self._totals = [0, 0, 0]
        self._loaded.clear()
        self._pinned.clear()

    # -- the request

    def request_messages(
        self,
        user: Message,
        *,
        cell_id: str | None = None,
        budget: int | None = None,
        system_prompt: str | None | _Unset = UNSET,
    ) -> tuple[list[Message], int, int]:
        """The messages to send for a new ``user`` message, the number of turns left out, and
        the number of earlier images left out.

        A re-run cell sees only the turns before its own. With a ``budget`` (tokens), what does
        not fit is left out oldest first — images before whole turns, since an image costs as
        much as pages of text and the words around it usually still make sense without it. The
        system prompt (this chat's, or ``system_prompt``) and the new message always stay.

        The window is chosen from the index alone (sums over arrays of sizes), so only the turns
        that are sent are loaded and turned into messages.
        """
        prompt = self.system if isinstance(system_prompt, _Unset) else system_prompt
        head = [system(prompt)] if prompt else []
        position = self.position_of_cell(cell_id)
        end = len(self._ids) if position is None else position
        start, slimmed, slim_all, omitted_images = 0, frozenset[int](), False, 0
        if budget is not None and end:
            fixed = sum(estimate_tokens(m) for m in (*head, user))
            text, extra, images = self._sums(end)
            over = fixed + text + extra - budget
            if over > 0 and fixed + text <= budget:
                # All the words fit; leave out images, oldest first, until the rest fits.
                chosen = []
                for index in range(end):
                    if over <= 0:
                        break
                    if self._images[index]:
                        over -= self._extra[index]
                        omitted_images += self._images[index]
                        chosen.append(index)
                slimmed = frozenset(chosen)
            elif over > 0:
                # Not even the words fit: no images at all, and the newest turns that fit.
                omitted_images, slim_all = images, True
                room, start = budget - fixed, end
                while start > 0 and self._slim[start - 1] <= room:
                    room -= self._slim[start - 1]
                    start -= 1
        window = self._ids[start:end]
        found = self._fetch(window, keep=True)
        if self.loader is not None:
            # What was sent stays loaded; older turns go back to living in the store only.
            keep = set(window) | self._pinned
            for turn_id in [i for i in self._loaded if i not in keep]:
                del self._loaded[turn_id]
        missing = sum(1 for i in window if i not in found)
        if missing:
            self.unavailable += missing
        messages = list(head)
        for index in range(start, end):
            turn = found.get(self._ids[index])
            if turn is None:
                continue
            if index in slimmed or (slim_all and self._images[index]):
                turn = _without_images(turn)
            messages.extend(turn.messages)
        messages.append(user)
        return messages, start, omitted_images


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
