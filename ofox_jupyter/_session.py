"""One notebook's chats and the work of one exchange: build the request, stream it, record it.

:class:`NotebookSession` owns the conversations (in memory and in the :class:`HistoryStore`), a
lazily created client, and the model catalog (for context sizes and prices). :meth:`ask` runs one
exchange and reports every stream event to a listener, so the magic and the widgets render the
same exchange their own way. Nothing here imports IPython; httpx is only imported with the client.

Failure rules (product.md, "Conversation history"): a request that fails before any text arrives
adds no turn; a stream that breaks or is interrupted keeps its partial text, marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._budget import Budget
from ._config import scrub
from ._conversation import Conversation, Turn, estimate_tokens, strip_images
from ._exceptions import ImageError, OfoxError, StreamError
from ._history import StoreError, is_busy
from ._markdown import protect_currency
from ._messages import Message, user
from ._streaming import (
    ReasoningDelta,
    Reply,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    events_of_reply,
    json_of_text,
)
from ._tool_loop import RoundStart, ToolRun, tool_rounds
from ._tools import ToolRegistry, ToolResult, stub_definition

if TYPE_CHECKING:
    from ._catalog import ModelInfo
    from ._client import AsyncClient, Client
    from ._history import HistoryStore

__all__ = [
    "AskOptions",
    "Exchange",
    "Interrupted",
    "NotebookSession",
    "RoundStart",
    "SessionEvent",
]


#: What a listener hears: stream events, each tool result as it is computed, and new rounds.
SessionEvent = StreamEvent | ToolResult | RoundStart
Listener = Callable[[SessionEvent], None]
#: What one request gave: the reply, its status, the stream error if any, first-token seconds,
#: and how long the model reasoned (seconds from its first reasoning to its first text or tool
#: call; ``None`` when it did not reason, or the reply was not streamed).
Outcome = tuple[Reply, str, OfoxError | None, float | None, float | None]


def _ignore(event: SessionEvent) -> None:
    return None


#: What a failing history store raises: SQLite's errors, the file system's, ours (a newer
#: schema appearing under us), and text SQLite cannot encode.
STORE_ERRORS = (sqlite3.Error, OSError, StoreError, ValueError)
#: Context assumed for a model the catalog does not know (or when it cannot be fetched), so
#: that a long chat is still trimmed rather than sent (and loaded) whole.
FALLBACK_CONTEXT_TOKENS = 128_000

#: Room kept for the reply when deciding how much history fits the model's context.
REPLY_RESERVE_TOKENS = 1024
#: Seconds before a failed catalog fetch is tried again.
CATALOG_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class AskOptions:
    """What one exchange asks for; the magic and the widgets both build these."""

    model: str
    chat: str = "main"
    system: str | None = None
    new: bool = False
    history: bool = True  # False: a one-off; history neither sent nor recorded
    context: bool = True  # False: the chat's earlier turns are not sent (the turn is recorded)
    stream: bool = True
    cell_id: str | None = None
    images: tuple[Mapping[str, Any], ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # temperature, provider, …
    tools: ToolRegistry | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    max_tool_rounds: int = 5
    expect_json: bool = False  # parse the reply as JSON (JSON mode or a schema)


@dataclass
class Exchange:
    """The outcome of one exchange — what ``_ofox`` holds after a ``%%ofox`` cell."""

    reply: Reply
    chat: str
    status: str = "complete"  # complete | partial | interrupted
    turn: Turn | None = None
    omitted_turns: int = 0
    omitted_images: int = 0
    first_token_seconds: float | None = None
    total_seconds: float = 0.0
    cost: float | None = None
    error: OfoxError | None = None
    replies: tuple[Message, ...] = ()  # every assistant and tool message, in order
    tool_results: tuple[ToolResult, ...] = ()
    tool_rounds: int = 0
    round_limit_hit: bool = False
    #: Whether the request named fallback models (OfoxAI's ``provider.fallback``): only then is
    #: a different served model a *fallback*, not just the gateway's name for the same model.
    fallback_asked: bool = False
    value: Any = None  # the parsed reply in JSON mode
    #: The model's reasoning over every request of the exchange (shown collapsed, kept in the
    #: turn, never sent back), and the seconds it took when the reply was streamed.
    reasoning: str = ""
    reasoning_seconds: float | None = None
    #: The API key was in the prompt or the system prompt, and was taken out before sending.
    key_redacted: bool = False

    @property
    def text(self) -> str:
        return self.reply.text

    @property
    def requests(self) -> int:
        """HTTP requests the exchange made: the first, and one more per tool round."""
        return self.tool_rounds + 1

    @property
    def offline(self) -> bool:
        return self.reply.offline

    def __repr__(self) -> str:
        return (
            f"<ofox Exchange chat={self.chat!r} model={self.reply.model!r} status={self.status} "
            f"text={self.reply.text[:40]!r}{'…' if len(self.reply.text) > 40 else ''}>"
        )


class Interrupted(OfoxError):
    """The user interrupted the kernel; ``exchange`` holds what had arrived (maybe nothing)."""

    hint = "the partial reply was kept"

    def __init__(self, exchange: Exchange | None) -> None:
        if exchange is None or not exchange.reply.text:
            super().__init__("interrupted before the reply began", hint="nothing was recorded")
        else:
            super().__init__("interrupted")
        self.exchange = exchange


def _called_tools(messages: Sequence[Message]) -> set[str]:
    """The names of the tools that the assistant messages among ``messages`` called."""
    return {call.name for m in messages if m.role == "assistant" for call in m.tool_calls}


def _without_secrets(prompt: str, options: AskOptions) -> tuple[str, AskOptions, bool]:
    """The prompt and the system prompt with the API key (any live secret) taken out, and
    whether there was one: a value pulled in by ``--vars`` or ``{Err}`` may hold it."""
    clean = scrub(prompt)
    system = options.system
    clean_system = scrub(system) if system else system
    if clean_system != system:
        options = replace(options, system=clean_system)
    return clean, options, clean != prompt or clean_system != system


class NotebookSession:
    """All chats of one notebook, shared by the magic and the widgets."""

    def __init__(
        self,
        *,
        notebook: str,
        client_factory: Callable[[], Client],
        async_client_factory: Callable[[], AsyncClient] | None = None,
        store: HistoryStore | None = None,
        max_context_tokens: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notebook = notebook
        self.store = store
        self.max_context_tokens = max_context_tokens
        self._client_factory = client_factory
        self._async_client_factory = async_client_factory
        self._client: Client | None = None
        self._async_client: AsyncClient | None = None
        self._catalog: dict[str, ModelInfo] | None = None
        self._catalog_failed_at: float | None = None
        self.catalog_skipped = 0
        self._clock = clock
        #: One line each about the history store (a failure, a re-created file, skipped rows),
        #: for the front end to show once and clear.
        self.notices: list[str] = []
        #: Writes the store refused, in order; tried again before the next write.
        self._pending: list[tuple[str | None, Callable[[HistoryStore], None]]] = []
        self._store_busy = False
        self._last_failure: BaseException = sqlite3.OperationalError("database is locked")
        self._skipped_reported = 0
        self.chats: dict[str, Conversation] = {}
        #: What this kernel session may spend and has spent (OfoxMagics.max_cost).
        self.budget = Budget()
        if store is not None:
            store.owner = notebook
            try:
                for index in store.index(notebook):
                    chat = Conversation(index.name, index.system, loader=self._load_turns)
                    self.chats[index.name] = index.into(chat)
            except STORE_ERRORS as err:
                self._store_failed(err, "read")
            self._report_skipped()

    # -- the client and the catalog

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    @property
    def async_client(self) -> AsyncClient:
        if self._async_client is None:
            if self._async_client_factory is None:
                raise OfoxError("this session has no async client (widgets need one)")
            self._async_client = self._async_client_factory()
        return self._async_client

    def reset_client(self) -> None:
        """Forget the clients (after login, logout or a config change); the next use makes new
        ones. The async client's connections belong to the kernel's loop, so it is closed there."""
        if self._client is not None:
            self._client.close()
        self._client = None
        if self._async_client is not None:
            client, self._async_client = self._async_client, None
            try:
                asyncio.get_running_loop().create_task(client.aclose())
            except RuntimeError:
                pass  # no loop is running: nothing was left open on one
        self._catalog = None

    async def aclose(self) -> None:
        """Close the async client on the loop it ran on (tests and short-lived loops)."""
        if self._async_client is not None:
            client, self._async_client = self._async_client, None
            await client.aclose()

    def _catalog_due(self, refresh: bool) -> bool:
        if refresh or self._catalog is None:
            return True
        # A failed fetch is not final: try again a minute later (a blip must not switch off
        # trimming, vision checks and prices for the whole session).
        return self._catalog_failed_at is not None and (
            self._clock() - self._catalog_failed_at > CATALOG_RETRY_SECONDS
        )

    def _catalog_result(self, models: list[ModelInfo] | None) -> dict[str, ModelInfo]:
        if models is None:
            self._catalog, self._catalog_failed_at = {}, self._clock()
        else:
            self._catalog, self._catalog_failed_at = {m.id: m for m in models}, None
            #: Catalog entries left out as malformed (``%ofox models`` says how many).
            self.catalog_skipped = int(getattr(models, "skipped", 0))
        return self._catalog

    def catalog(self, *, refresh: bool = False) -> dict[str, ModelInfo]:
        """The model catalog by id, fetched once; empty when the server has no usable catalog."""
        if self._catalog_due(refresh):
            try:
                return self._catalog_result(self.client.models())
            except OfoxError:
                if refresh:
                    raise
                return self._catalog_result(None)
        assert self._catalog is not None
        return self._catalog

    async def acatalog(self) -> dict[str, ModelInfo]:
        """:meth:`catalog` for the event loop: fetched with the async client, never blocking."""
        if self._catalog_due(False):
            try:
                return self._catalog_result(await self.async_client.models())
            except OfoxError:
                return self._catalog_result(None)
        assert self._catalog is not None
        return self._catalog

    def model_info(self, model: str) -> ModelInfo | None:
        return self.catalog().get(model)

    # -- chats

    def conversation(self, name: str) -> Conversation:
        if name not in self.chats:
            self.chats[name] = Conversation(name, loader=self._load_turns)
        return self.chats[name]

    # -- the store: every failure becomes a notice, never a lost reply

    def _load_turns(self, ids: Sequence[str]) -> Mapping[str, Turn]:
        if self.store is None:
            return {}
        try:
            found = self.store.load_turns(ids)
        except STORE_ERRORS as err:
            self._store_failed(err, "read")
            return {}
        self._report_skipped()
        return found

    def _report_skipped(self) -> None:
        skipped = self.store.skipped if self.store is not None else 0
        if skipped > self._skipped_reported:
            new = skipped - self._skipped_reported
            self._skipped_reported = skipped
            self.notices.append(
                f"ofox: skipped {new} damaged history row{'s' * (new != 1)} in "
                f"{self._where()} (not turns this version can read)"
            )

    def _where(self) -> str:
        return str(self.store.path) if self.store is not None and self.store.path else "memory"

    def _store_failed(self, err: BaseException, what: str) -> None:
        reason = str(err) or type(err).__name__
        if what == "read":
            notice = (
                f"ofox: cannot read history from {self._where()} ({reason}); "
                "earlier turns are left out for now"
            )
        else:
            notice = (
                f"ofox: cannot save to {self._where()} ({reason}); this chat is kept in "
                "kernel memory and saved when the store works again"
            )
        if notice not in self.notices:  # one line per cell, however many writes it made
            self.notices.append(notice)

    def _write(self, operation: Callable[[HistoryStore], None], chat: str | None = None) -> bool:
        """Run one write (about ``chat``, if it concerns one), after any the store refused
        before; on failure keep it for later. Returns whether everything reached the store
        (then no turn needs to stay pinned in memory).

        After the store was busy (another kernel holding the lock past the timeout), the rest
        of the exchange's writes are queued without waiting again: an exchange makes several
        writes, and each would otherwise wait the whole timeout once more. The next exchange
        tries again.
        """
        store = self.store
        if store is None:
            return False
        queue = [*self._pending, (chat, operation)]
        self._pending = []
        if self._store_busy:
            self._pending = queue
            self._store_failed(self._last_failure, "write")
            return False
        try:
            if store.reopen_if_gone():
                self.notices.append(
                    f"ofox: the history database {self._where()} was deleted; made a new one "
                    "and kept this notebook's chats in it"
                )
        except STORE_ERRORS as err:
            self._pending = queue
            self._store_failed(err, "write")
            return False
        for index, (_, step) in enumerate(queue):
            try:
                step(store)
            except STORE_ERRORS as err:
                self._pending = queue[index:]
                self._store_failed(err, "write")
                if isinstance(err, sqlite3.OperationalError) and is_busy(err):
                    self._store_busy, self._last_failure = True, err
                return False
        for conversation in self.chats.values():
            conversation.release_pins()
        return True

    @property
    def unsaved(self) -> int:
        """Writes still waiting for the store (turns, usage, system prompts)."""
        return len(self._pending)

    def flush(self) -> bool:
        """Try once more to save what the store refused before (the session is closing)."""
        if not self._pending:
            return True
        self._store_busy = False
        last_chat, last = self._pending.pop()
        return self._write(last, last_chat)

    def reset(self, chat: str | None = None) -> int:
        """Clear one chat (or every chat) in memory and in the store; returns turns removed."""
        names = list(self.chats) if chat is None else [chat]
        removed = 0
        for name in names:
            conversation = self.chats.pop(name, None)
            removed += len(conversation) if conversation else 0
        # Writes still waiting for the store would bring the cleared turns back; those of the
        # other chats must still be made.
        self._pending = [(c, op) for c, op in self._pending if chat is not None and c != chat]
        self._store_busy = False
        self._write(lambda store: store.clear(self.notebook, chat), chat)
        return removed

    def _budget(self, model: str, params: Mapping[str, Any]) -> int | None:
        limit = self.max_context_tokens
        if not limit:
            info = self.model_info(model)
            limit = info.context_length if info else 0
        if not limit:
            limit = FALLBACK_CONTEXT_TOKENS
        reserve = params.get("max_tokens") or REPLY_RESERVE_TOKENS
        return max(limit - int(reserve), 1)

    # -- one exchange

    def ask(self, prompt: str, options: AskOptions, listener: Listener | None = None) -> Exchange:
        """Send ``prompt`` in ``options.chat`` and stream the answer to ``listener``.

        Raises the client's :class:`OfoxError` when the request fails before any text arrives
        (nothing is recorded), :class:`Interrupted` on a kernel interrupt (the partial reply is
        recorded, marked), and returns an :class:`Exchange` otherwise — with ``error`` set when the
        stream broke after text had arrived.
        """
        self.client  # noqa: B018 - built now, its key is a live secret that scrub() knows
        prompt, options, redacted = _without_secrets(prompt, options)
        message, messages, system_prompt, omitted = self._prepare(prompt, options)
        with self._holding(options, messages) as held:
            steps = self._steps(messages, options, listener)
            request = next(steps)
            while True:
                outcome = self._request(*request, options, listener)
                try:
                    request = steps.send(outcome)
                except StopIteration as done:
                    exchange: Exchange = done.value
                    break
        exchange.omitted_turns, exchange.omitted_images = omitted
        exchange.key_redacted = redacted
        self._finish(exchange, message, options, system_prompt, held)
        return exchange

    async def ask_async(
        self, prompt: str, options: AskOptions, listener: Listener | None = None
    ) -> Exchange:
        """:meth:`ask` on the event loop, for the widgets: the same exchange, recorded the same
        way; cancelling the task stops the stream and keeps the partial reply (``Interrupted``)."""
        try:
            await self.acatalog()  # so that _prepare finds it cached and never blocks the loop
        except asyncio.CancelledError:
            raise Interrupted(None) from None
        prompt, options, redacted = _without_secrets(prompt, options)
        message, messages, system_prompt, omitted = self._prepare(prompt, options)
        with self._holding(options, messages) as held:
            steps = self._steps(messages, options, listener)
            request = next(steps)
            while True:
                outcome = await self._arequest(*request, options, listener)
                try:
                    request = steps.send(outcome)
                except StopIteration as done:
                    exchange: Exchange = done.value
                    break
        exchange.omitted_turns, exchange.omitted_images = omitted
        exchange.key_redacted = redacted
        self._finish(exchange, message, options, system_prompt, held)
        return exchange

    def _prepare(
        self, prompt: str, options: AskOptions
    ) -> tuple[Message, list[Message], str | None, tuple[int, int]]:
        """The user message, the messages to send, the system prompt the chat will have, and the
        (turns, images) left out. Nothing is changed here: ``--new`` and ``-s`` take effect in
        :meth:`_finish`, so a request that fails costs no history."""
        existing = self.chats.get(options.chat)
        if not (options.history and options.context) or options.new or existing is None:
            base = Conversation(options.chat)
        else:
            base = existing
        system = base.system if options.system is None else (options.system or None)
        message = user(prompt, options.images)
        self._store_busy = False  # a new exchange: the store may be free again
        try:
            budget = self._budget(options.model, options.params) if options.history else None
            unavailable = base.unavailable
            messages, omitted, omitted_images = base.request_messages(
                message, cell_id=options.cell_id, budget=budget, system_prompt=system
            )
            if base.unavailable > unavailable:
                lost = base.unavailable - unavailable
                self.notices.append(
                    f"ofox: {lost} earlier turn{'s' * (lost != 1)} of chat {options.chat!r} "
                    f"could not be read from {self._where()} and {'were' if lost != 1 else 'was'} "
                    "left out"
                )
            if not _asks_fallback(options.params.get("provider")):
                self.check_retired(options.model)  # with a fallback, the gateway moves on
            if options.images:
                self.check_vision(options.model)
            elif not self._takes_images(options.model):
                # Earlier turns had images but this model reads text only: send notes instead.
                messages = [strip_images(m) for m in messages]
        except KeyboardInterrupt:
            raise Interrupted(None) from None
        return message, messages, system, (omitted, omitted_images)

    @contextlib.contextmanager
    def _holding(self, options: AskOptions, messages: Sequence[Message]) -> Iterator[float]:
        """The budget's check before sending (OfoxMagics.max_cost): the worst case, set aside
        while the exchange runs (settled by :meth:`_finish`, or released if it fails)."""
        held = 0.0
        if self.budget.limit > 0:
            prompt_tokens = sum(estimate_tokens(m) for m in messages)
            info = self.model_info(options.model)
            held = self.budget.hold(info, prompt_tokens, options.params.get("max_tokens"))
        try:
            yield held
        except BaseException:
            self.budget.settle(held, 0.0)  # failed or stopped: what it cost is not known here
            raise

    def _takes_images(self, model: str) -> bool:
        info = self.model_info(model)
        return info is None or info.vision  # unknown to the catalog: let the server decide

    def check_retired(self, model: str) -> None:
        """Refuse, before any request, a model the catalog marks as retired (deprecated): the
        gateway would only answer with an error that reads like a passing failure."""
        info = self.model_info(model)
        if info is not None and info.deprecated:
            raise OfoxError(
                f"{model} is retired (the catalog marks it deprecated)",
                hint="pick another model: %ofox models lists the current ones",
            )

    def check_vision(self, model: str) -> None:
        """Refuse, before any request, to send images to a model the catalog says is text-only."""
        if not self._takes_images(model):
            raise ImageError(
                f"{model} does not accept images",
                hint="pick a vision model (%ofox models shows a vision badge)",
            )

    def _steps(
        self, messages: list[Message], options: AskOptions, listener: Listener | None
    ) -> Generator[tuple[list[Message], dict[str, Any], float], Outcome, Exchange]:
        """One exchange as a generator, shared by :meth:`ask` and :meth:`ask_async`: it yields
        each request to make — (messages, params, start time) — receives its outcome, runs any
        tool calls, and returns the :class:`Exchange`. A request, and while the model calls
        tools, their results and another request — at most ``max_tool_rounds`` times."""
        started = self._clock()
        notify = listener or (lambda event: None)
        registry = options.tools
        params = dict(options.params)
        definitions = registry.definitions() if registry else []
        # Earlier turns' tool calls need their tools defined (some upstreams refuse the tool
        # messages otherwise); those that cannot run now are defined but not to be called.
        offered = {d["function"]["name"] for d in definitions}
        earlier = sorted(_called_tools(messages) - offered)
        definitions += [stub_definition(name) for name in earlier]
        if definitions:
            params["tools"] = definitions
            if options.tool_choice is not None:
                params["tool_choice"] = options.tool_choice
            elif not registry:
                params["tool_choice"] = "none"
        usages: list[Usage] = []
        thoughts: list[str] = []
        thinking: list[float] = []
        first: float | None = None
        error: OfoxError | None = None
        loop = tool_rounds(messages, params, registry, options.max_tool_rounds, notify)
        request = next(loop)
        while True:
            reply, status, error, first_at, thought = yield (*request, started)
            first = first if first is not None else first_at
            if reply.reasoning:
                thoughts.append(reply.reasoning)
            if thought is not None:
                thinking.append(thought)
            if reply.usage is not None:
                usages.append(reply.usage)
            try:
                request = loop.send((reply, status))
            except StopIteration as done:
                run: ToolRun = done.value
                break
        reply, status = run.reply, run.status
        replies, results, rounds, limit_hit = run.replies, run.results, run.rounds, run.limit_hit
        if len(usages) > 1:
            reply = replace(reply, usage=Usage.total(usages))
        exchange = Exchange(
            reply,
            options.chat,
            status=status,
            first_token_seconds=first,
            total_seconds=self._clock() - started,
            error=error,
            replies=tuple(replies),
            tool_results=tuple(results),
            tool_rounds=rounds,
            round_limit_hit=limit_hit,
            fallback_asked=_asks_fallback(params.get("provider")),
            reasoning="\n\n".join(thoughts),
            reasoning_seconds=sum(thinking) if thinking else None,
        )
        if options.expect_json and status == "complete" and not limit_hit:
            _parse_json_reply(exchange)
        return exchange

    def _request(
        self,
        messages: list[Message],
        params: Mapping[str, Any],
        started: float,
        options: AskOptions,
        listener: Listener | None,
    ) -> Outcome:
        """One request, streamed or not: (reply, status, stream error, first-token seconds)."""
        notify = listener or _ignore
        client = self.client
        if not options.stream:
            try:
                reply = client.chat(messages, model=options.model, **params)
            except KeyboardInterrupt:
                raise Interrupted(None) from None
            for event in events_of_reply(reply):
                notify(event)
            return reply, "complete", None, None, None  # not streamed: nothing to time
        try:
            stream = client.stream(messages, model=options.model, **params)
        except KeyboardInterrupt:
            raise Interrupted(None) from None
        first: float | None = None
        timer = _ReasoningTimer(self._clock)
        try:
            for event in stream:
                if first is None and isinstance(event, (TextDelta, ReasoningDelta, ToolCallDelta)):
                    first = self._clock() - started
                timer.see(event)
                notify(event)
            return stream.reply, "complete", None, first, timer.seconds()
        except KeyboardInterrupt:
            stream.close()
            return stream.partial(), "interrupted", None, first, timer.seconds()
        except StreamError as err:
            return err.partial, "partial", err, first, timer.seconds()

    async def _arequest(
        self,
        messages: list[Message],
        params: Mapping[str, Any],
        started: float,
        options: AskOptions,
        listener: Listener | None,
    ) -> Outcome:
        """:meth:`_request` with the async client; a cancelled task keeps the partial reply."""
        notify = listener or _ignore
        client = self.async_client
        if not options.stream:
            try:
                reply = await client.chat(messages, model=options.model, **params)
            except asyncio.CancelledError:
                raise Interrupted(None) from None
            for event in events_of_reply(reply):
                notify(event)
            return reply, "complete", None, None, None  # not streamed: nothing to time
        try:
            stream = await client.stream(messages, model=options.model, **params)
        except asyncio.CancelledError:
            raise Interrupted(None) from None
        first: float | None = None
        timer = _ReasoningTimer(self._clock)
        try:
            async for event in stream:
                if first is None and isinstance(event, (TextDelta, ReasoningDelta, ToolCallDelta)):
                    first = self._clock() - started
                timer.see(event)
                notify(event)
            return await stream.get_reply(), "complete", None, first, timer.seconds()
        except asyncio.CancelledError:
            # Stop was pressed: the owner cancelled this task on purpose, so the cancellation
            # ends here and the partial reply is kept, as a kernel interrupt does for the magic.
            await stream.aclose()
            return stream.partial(), "interrupted", None, first, timer.seconds()
        except StreamError as err:
            return err.partial, "partial", err, first, timer.seconds()

    def _finish(
        self,
        exchange: Exchange,
        message: Message,
        options: AskOptions,
        system_prompt: str | None,
        held: float = 0.0,
    ) -> None:
        reply = exchange.reply
        # The served model's prices, or the requested one's when the gateway names it otherwise.
        info = self.model_info(reply.model) or self.model_info(reply.requested_model)
        exchange.cost = info.cost(reply.usage) if info and reply.usage else None
        self.budget.settle(held, exchange.cost)  # no usage reported: the worst case counts
        if reply.usage is not None:  # cost at list price
            self.record_usage(
                reply.model, reply.usage, exchange.cost, exchange.requests, reply.offline
            )
        has_content = bool(reply.text or exchange.replies)
        if options.history and (exchange.status == "complete" or has_content):
            if options.new:
                self.reset(options.chat)
            conversation = self.conversation(options.chat)
            if conversation.system != system_prompt:
                conversation.system = system_prompt
                self._write(
                    lambda store: store.save_chat(self.notebook, options.chat, system_prompt),
                    options.chat,
                )
            turn = Turn(
                id=os.urandom(16).hex(),  # not uuid: importing it costs milliseconds at load
                chat=options.chat,
                user=message,
                replies=exchange.replies or (reply.message,),
                cell_id=options.cell_id,
                model=options.model,
                served_model=reply.model,
                usage=reply.usage,
                cost=exchange.cost,
                finish_reason=reply.finish_reason,
                status=exchange.status,
                created=time.time(),
                reasoning=exchange.reasoning,
                reasoning_seconds=exchange.reasoning_seconds,
            )
            _, replaced = conversation.record(turn)
            replaced_id = replaced.id if replaced is not None else None
            # Kept in memory until the store has it: a refused write costs no turn.
            conversation.pin(turn.id)
            self._write(
                lambda store: store.save_turn(self.notebook, turn, replaces=replaced_id),
                options.chat,
            )
            exchange.turn = turn
        if exchange.status == "interrupted":
            raise Interrupted(exchange)

    # -- reports

    def record_usage(
        self, model: str, usage: Usage, cost: float | None, requests: int, offline: bool
    ) -> None:
        """Add to this notebook's ``%ofox usage`` (a turn's, or a batch's per model)."""
        # Offline replies cost nothing: counted apart, never mixed with real spend.
        label = f"{model} (offline)" if offline else model
        self._write(
            lambda store: store.add_usage(
                self.notebook,
                label,
                usage.prompt_tokens,
                usage.completion_tokens,
                cost,
                requests=requests,
                cached=usage.cached_tokens,
                reasoning=usage.reasoning_tokens,
            )
        )

    def usage_rows(self) -> list[tuple[str, int, int, float | None, int, int, int]]:
        """(model, tokens in, tokens out, cost, requests, cached tokens, reasoning tokens)."""
        if self.store is None:
            return []
        try:
            return self.store.usage(self.notebook)
        except STORE_ERRORS as err:
            self._store_failed(err, "read")
            return []

    def export(self, path: Path, chat: str | None = None) -> int:
        """Write the chats (or one) to ``path`` as Markdown (``.md``) or JSON (``.json``)."""
        chats = [self.chats[chat]] if chat else list(self.chats.values())
        if path.suffix.lower() == ".json":
            data = {
                "notebook": self.notebook,
                "chats": [
                    {"name": c.name, "system": c.system, "turns": [t.to_dict() for t in c.turns]}
                    for c in chats
                ],
            }
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        elif path.suffix.lower() in {".md", ".markdown"}:
            path.write_text(render_markdown(chats), encoding="utf-8")
        else:
            raise OfoxError(
                f"cannot export to {path.name}: unknown format", hint="use a .md or .json path"
            )
        return sum(len(c.turns) for c in chats)


def render_markdown(chats: list[Conversation]) -> str:
    """Chats as a Markdown document: one section per chat, one block per message (a reasoning
    model's thinking collapsed above its reply)."""
    from ._render import thinking_block  # _render builds on this module

    lines: list[str] = []
    for conversation in chats:
        lines.append(f"# Chat `{conversation.name}`\n")
        if conversation.system:
            lines.append(f"**System:** {protect_currency(conversation.system)}\n")
        for number, turn in enumerate(conversation.turns, 1):
            mark = "" if turn.status == "complete" else f" ({turn.status})"
            images = len(turn.user.images)
            attached = f" — {images} image{'s' * (images != 1)}" if images else ""
            lines.append(f"## {number}. You{attached}\n\n{protect_currency(turn.user.text)}\n")
            model = turn.served_model or turn.model
            thought = (
                thinking_block(turn.reasoning, turn.reasoning_seconds) + "\n\n"
                if turn.reasoning
                else ""
            )
            lines.append(f"## {number}. {model}{mark}\n\n{thought}{protect_currency(turn.text)}\n")
    return "\n".join(lines)


def render_history(conversation: Conversation, *, limit: int = 240) -> tuple[str, str]:
    """A chat at a glance, as (Markdown, plain text): one numbered item per turn, each side cut
    to ``limit`` characters. ``%ofox export`` writes the whole of it."""
    turns = conversation.turns
    head = f"chat {conversation.name} · {len(turns)} turn{'s' * (len(turns) != 1)}"
    if conversation.system:
        head += f" · system: {_glance(conversation.system, 80)}"
    markdown, plain = [f"**{protect_currency(head)}**", ""], [head, ""]
    for number, turn in enumerate(turns, 1):
        mark = "" if turn.status == "complete" else f" ({turn.status})"
        images = len(turn.user.images)
        attached = f" (+{images} image{'s' * (images != 1)})" if images else ""
        model = turn.served_model or turn.model
        if turn.reasoning:  # at a glance, only that it thought (the export keeps the thinking)
            seconds = turn.reasoning_seconds
            mark += f" (thought for {seconds:.1f} s)" if seconds is not None else " (thought)"
        question, answer = _glance(turn.user.text, limit), _glance(turn.text, limit)
        markdown.append(
            f"{number}. **You**{attached}: {protect_currency(question)}  \n"
            f"   **{model}**{mark}: {protect_currency(answer)}"
        )
        plain.append(f"{number}. You{attached}: {question}\n   {model}{mark}: {answer}")
    return "\n".join(markdown), "\n".join(plain)


def _glance(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with a note of how much is left."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}… ({len(flat) - limit:,} more characters)"


def _asks_fallback(provider: Any) -> bool:
    return isinstance(provider, Mapping) and bool(provider.get("fallback"))


class _ReasoningTimer:
    """How long a streamed reply reasoned: from its first reasoning piece to the first text or
    tool call after it (or to the end, when nothing followed)."""

    __slots__ = ("_clock", "_start", "_end")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start: float | None = None
        self._end: float | None = None

    def see(self, event: StreamEvent) -> None:
        if isinstance(event, ReasoningDelta):
            if self._start is None:
                self._start = self._clock()
        elif self._start is not None and self._end is None:
            if isinstance(event, (TextDelta, ToolCallDelta)):
                self._end = self._clock()

    def seconds(self) -> float | None:
        if self._start is None:
            return None
        end = self._end if self._end is not None else self._clock()
        return max(end - self._start, 0.0)


def _parse_json_reply(exchange: Exchange) -> None:
    """JSON mode: the reply's text as a Python value, or a clear error that keeps the text."""
    try:
        exchange.value = json_of_text(exchange.reply.text)
    except json.JSONDecodeError as err:
        exchange.error = OfoxError(
            f"the reply is not valid JSON ({err.msg}, line {err.lineno} column {err.colno})",
            hint="the raw text is kept in _ofox.text",
        )
