"""``Client`` and ``AsyncClient``: thin httpx shells around the sans-IO core.

Everything that is not I/O lives in ``_request`` (bodies, errors, retry policy) and
``_streaming`` (chunks → events → reply); the shells here send, sleep and read. Two shells exist
because the magic streams synchronously (so a kernel interrupt stops it at once) while the widgets
stream as asyncio tasks (so the kernel stays responsive and Stop can cancel).

Usage::

    with Client() as client:                      # no key: the offline emulator
        reply = client.chat("Hello", model="openai/gpt-4o")
        with client.stream("Tell me more") as stream:
            for event in stream:
                ...
            print(stream.reply.usage)

Retries happen only before the first byte of a reply: once a stream has begun, a failure raises
:class:`~ofox_jupyter.StreamError` with the partial reply rather than silently starting over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import httpx
from httpx_sse import EventSource, SSEError

from ._catalog import ModelInfo, parse_models
from ._config import DEFAULT_MODEL, Settings, display_url, resolve_settings, scrub
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ConfigError,
    StreamError,
    ToolError,
)
from ._messages import Message, attach_images, user
from ._request import RetryPolicy, build_chat_body, encode_body, status_error
from ._streaming import (
    MalformedChunk,
    Reply,
    StreamEvent,
    StreamState,
    events_of_reply,
    reply_from_completion,
)
from ._version import __version__

#: Set on a replayed response (``_recording.REPLAY_HEADER``, not imported: httpx-only here).
REPLAY_HEADER = "x-ofox-replayed"

if TYPE_CHECKING:
    from ._tool_loop import ToolRun

__all__ = ["AsyncChatStream", "AsyncClient", "ChatStream", "Client"]

_log = logging.getLogger("ofox_jupyter")


class _ScrubSecrets(logging.Filter):
    """Takes every live secret (keys, base-URL passwords) out of httpx's and httpcore's log
    records. Filters run only for records that are emitted, so this costs nothing unless the
    user turned those loggers' DEBUG output on — exactly when a header would be printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format: leave it to logging
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_ScrubSecrets())

Messages = str | Sequence[Message | Mapping[str, Any]]

# A transport is never a real server, so an offline client with one injected talks to it instead
# of starting the emulator; the URL only has to be well formed.
_INJECTED_OFFLINE_URL = "http://127.0.0.1:9/v1"


class _Core:
    """State and decisions shared by both shells: settings, URLs, headers, error mapping."""

    def __init__(self, settings: Settings, *, has_transport: bool) -> None:
        self.settings = settings
        self.retry = RetryPolicy(max_retries=settings.max_retries)
        self._has_transport = has_transport
        self._base_url: str | None = None if settings.offline else settings.base_url

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            if self._has_transport:
                self._base_url = _INJECTED_OFFLINE_URL
            else:
                from .emulator import shared_emulator  # only offline clients pay for the server

                self._base_url = shared_emulator().base_url
                _log.info(self.offline_notice)
        return self._base_url

    @property
    def offline_notice(self) -> str | None:
        if not self.settings.offline:
            return None
        return (
            "ofox: no OFOX_API_KEY set — replies come from the built-in offline emulator, "
            "not a real model (set OFOX_API_KEY or run %ofox login)"
        )

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self, *, stream: bool = False, body: bool = False) -> dict[str, str]:
        headers = {"User-Agent": f"ofox-jupyter/{__version__}", "Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        if stream:
            headers["Accept"] = "text/event-stream"
            headers["Cache-Control"] = "no-store"
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.reveal()}"
        return headers

    def http_timeout(self) -> httpx.Timeout:
        t = self.settings.timeouts
        # "read" covers the wait for the response head; it is lowered to between_chunks once a
        # stream has begun (see start_stream).
        return httpx.Timeout(connect=t.connect, read=t.first_byte, write=t.write, pool=t.connect)

    def transport_error(self, exc: Exception) -> APIError:
        """An httpx failure before the reply began, as one of our errors (key never included)."""
        where = display_url(self.base_url)
        if isinstance(exc, httpx.TimeoutException):
            phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "first byte"
            return APITimeoutError(f"timed out waiting for {where} ({phase})")
        return APIConnectionError(f"could not reach {where}: {_describe(exc)}")

    def status_error(self, response: httpx.Response) -> APIStatusError:
        return status_error(
            response.status_code, response.headers, response.content, self.settings.api_key
        )

    def start_stream(self, response: httpx.Response, model: str) -> StreamState:
        # The head has arrived: from now on a gap between chunks, not the first byte, is the
        # limit. httpcore reads this dict when the body iteration starts.
        timeout = response.request.extensions.get("timeout")
        if isinstance(timeout, dict):
            timeout["read"] = self.settings.timeouts.between_chunks
        state = StreamState(model, offline=self.settings.offline, secret=self.settings.api_key)
        state.accumulator.replayed = response.headers.get(REPLAY_HEADER)
        return state

    def stream_failure(self, state: StreamState, exc: Exception) -> StreamError:
        if isinstance(exc, httpx.TimeoutException):
            seconds = self.settings.timeouts.between_chunks
            return state.broken("timeout", f"the stream stalled: no data for {seconds:g} s")
        if isinstance(exc, SSEError):
            return state.broken("malformed", f"not an event stream: {exc}")
        return state.broken("disconnected", f"the connection broke mid-stream: {_describe(exc)}")

    @staticmethod
    def retryable_transport(exc: Exception, method: str) -> bool:
        """Whether a failure before the reply is safe to retry.

        A chat POST whose request may have reached the model is not sent again: a first-byte
        timeout could otherwise cost three completions and three times the wait. Failures to
        connect, and a kept-alive connection the server had already closed, are safe.
        """
        if method == "GET":
            return True
        return isinstance(
            exc,
            (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.PoolTimeout,
                httpx.RemoteProtocolError,
            ),
        )

    def response_error(self, response: httpx.Response) -> tuple[APIError, bool]:
        """The error for a non-2xx response (its body read), and whether to retry it."""
        if response.status_code < 400:
            location = response.headers.get("location", "?")
            return (
                APIConnectionError(
                    f"{display_url(self.base_url)} redirected ({response.status_code}) to "
                    f"{display_url(scrub(location))}",
                    hint="set OFOX_BASE_URL to the API's final address",
                ),
                False,
            )
        error = self.status_error(response)
        return error, self.retry.retryable_status(error.status)

    def give_up_or_wait(
        self,
        attempt: int,
        error: APIError,
        headers: Mapping[str, str] | None,
        retryable: bool,
    ) -> float:
        """Seconds to wait before the next attempt; raises ``error`` when retrying is over."""
        delay = self.retry.delay(attempt, headers) if retryable else None
        if delay is None:
            error.retryable = retryable  # a caller that retries on its own (a batch) reads it
            raise error
        _log.info("ofox: %s — retrying in %.2f s", error.message, delay)
        return delay

    def describe(self, cls: str) -> str:
        key = "set" if self.settings.api_key is not None else "none"
        where = "offline emulator" if self.settings.offline else self.settings.shown_url
        return f"<{cls} {where} key={key}>"


def _describe(exc: Exception) -> str:
    text = scrub(str(exc)).strip()[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _chat_body(
    model: str | None,
    messages: Messages,
    streamed: bool,
    images: Sequence[Any] = (),
    detail: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    tools = options.get("tools")
    if tools:
        # Python functions are welcome: their definitions are built from their signatures.
        from ._tools import Tool

        options["tools"] = [
            t if isinstance(t, Mapping) else Tool.from_function(t).definition() for t in tools
        ]
    if "stream" in options:
        raise TypeError(
            "chat() does not take stream=: call stream() for a streamed reply (ChatStream), "
            "chat() for a whole one"
        )
    body = build_chat_body(
        model=model or DEFAULT_MODEL, messages=messages, stream=streamed, **options
    )
    if images:
        from ._images import prepare_image  # Pillow only when an image is actually sent

        parts = [prepare_image(image, detail).part for image in images]
        body["messages"] = attach_images(body["messages"], parts)
    return body


def _tool_loop(
    messages: Messages,
    tools: Sequence[Callable[..., Any]],
    max_rounds: int,
    options: dict[str, Any],
) -> tuple[Generator[tuple[list[Any], dict[str, Any]], tuple[Reply, str], ToolRun], list[Any]]:
    """``run``'s loop over ``messages`` (a prompt string becomes one user message), and the
    tools' definitions."""
    from ._tool_loop import tool_rounds
    from ._tools import ToolRegistry

    if "tools" in options or options.get("stream"):
        raise TypeError("run() takes the tools as Python functions in tools=, and does not stream")
    registry = ToolRegistry(tools)
    if not registry:
        raise ToolError("run() needs at least one tool", hint="or call chat()")
    start = [user(messages)] if isinstance(messages, str) else list(messages)
    # Wire dicts ride along untouched: the loop only appends to the list, and the body builder
    # takes both kinds.
    loop = tool_rounds(cast("list[Message]", start), options, registry, max_rounds)
    return loop, registry.definitions()


def _injected(transport: Any) -> bool:
    """A transport that stands in for the network (tests, a replay), not one that forwards to
    it (a recording): only the former needs no server behind the URL."""
    return transport is not None and not getattr(transport, "forwards_to_network", False)


def _ran(run: ToolRun) -> ToolRun:
    """The end of ``run()``'s loop: a Ctrl-C inside a tool stops the caller's code too."""
    if run.status == "interrupted":
        raise KeyboardInterrupt
    return run


class ChatStream:
    """A streamed reply. Iterate it for :data:`StreamEvent` values; ``reply`` waits for the end.

    Events are buffered, so iterating again replays what arrived and then continues. The HTTP
    response is closed when the stream ends, fails, is closed, or leaves its ``with`` block.
    """

    def __init__(self, response: httpx.Response, core: _Core, model: str) -> None:
        self._response = response
        self._core = core
        self._state = core.start_stream(response, model)
        self._events: list[StreamEvent] = []
        self._reply: Reply | None = None
        self._live = self._read()

    def _read(self) -> Generator[StreamEvent, None, None]:
        state, buffer = self._state, self._events
        try:
            if not _is_event_stream(self._response):
                yield from self._from_plain_json()
                return
            for sse in EventSource(self._response).iter_sse():
                for event in state.on_event(sse.event, sse.data):
                    buffer.append(event)
                    yield event
                if state.done:
                    break
            self._reply = state.on_end()
        except (httpx.TransportError, SSEError) as exc:
            raise self._core.stream_failure(state, exc) from None
        finally:
            self._response.close()

    def _from_plain_json(self) -> Iterator[StreamEvent]:
        """Servers that ignore ``stream: true`` answer with one JSON body; replay it as events."""
        self._response.read()
        self._reply = _parse_completion(
            self._response, self._state.accumulator.requested_model, self._core
        )
        self._state.done = True
        self._events.extend(events_of_reply(self._reply))
        yield from list(self._events)

    def __iter__(self) -> Iterator[StreamEvent]:
        yield from list(self._events)
        # Not `yield from`: that would close the live reader when a caller stops iterating early,
        # and a later iteration could then not continue where this one left off.
        for event in self._live:  # noqa: UP028
            yield event

    @property
    def reply(self) -> Reply:
        """The complete reply, reading the rest of the stream first if need be."""
        for _ in self._live:
            pass
        if self._reply is None:  # closed before the end
            return self.partial()
        return self._reply

    def text(self) -> str:
        return self.reply.text

    def partial(self) -> Reply:
        """What has arrived so far (``complete=False`` unless the stream has finished)."""
        if self._reply is not None:
            return self._reply
        return self._state.accumulator.reply(complete=False)

    def close(self) -> None:
        """Stop reading; what arrived stays available from :meth:`partial`."""
        self._live.close()
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream:
    """The asyncio twin of :class:`ChatStream`: ``async for event in stream``; ``await
    stream.get_reply()``."""

    def __init__(self, response: httpx.Response, core: _Core, model: str) -> None:
        self._response = response
        self._core = core
        self._state = core.start_stream(response, model)
        self._events: list[StreamEvent] = []
        self._reply: Reply | None = None
        self._live = self._read()

    async def _read(self) -> AsyncGenerator[StreamEvent, None]:
        state, buffer = self._state, self._events
        try:
            if not _is_event_stream(self._response):
                await self._response.aread()
                self._reply = _parse_completion(
                    self._response, state.accumulator.requested_model, self._core
                )
                state.done = True
                buffer.extend(events_of_reply(self._reply))
                for event in list(buffer):
                    yield event
                return
            async for sse in EventSource(self._response).aiter_sse():
                for event in state.on_event(sse.event, sse.data):
                    buffer.append(event)
                    yield event
                if state.done:
                    break
            self._reply = state.on_end()
        except (httpx.TransportError, SSEError) as exc:
            raise self._core.stream_failure(state, exc) from None
        finally:
            await self._response.aclose()

    async def __aiter__(self) -> AsyncGenerator[StreamEvent, None]:
        for event in list(self._events):
            yield event
        async for event in self._live:
            yield event

    async def get_reply(self) -> Reply:
        async for _ in self._live:
            pass
        return self._reply if self._reply is not None else self.partial()

    def partial(self) -> Reply:
        if self._reply is not None:
            return self._reply
        return self._state.accumulator.reply(complete=False)

    async def aclose(self) -> None:
        await self._live.aclose()
        await self._response.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _is_event_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


_CHAT_DOC = """
        ``messages`` is a prompt string or a list of messages (:class:`Message` or wire dicts).
        Options: ``temperature`` (0–2), ``max_tokens`` (≥ 1), ``top_p`` ((0, 1]),
        ``frequency_penalty``/``presence_penalty`` (−2–2), ``stop``, ``seed``, ``tools`` (OpenAI
        tool definitions, or Python functions), ``tool_choice``, ``response_format``,
        ``provider`` (OfoxAI routing and failover; see :func:`provider_options`),
        ``include_usage`` (streams), ``extra_body`` (more top-level fields, passed through as
        they are), and ``images`` (PIL images,
        matplotlib figures, bytes, paths or URLs, attached to the last user message) with
        ``detail`` (auto/low/high).
"""


class Client:
    """Synchronous OfoxAI client.

    **Parameters:**

    * ``api_key`` — defaults to ``OFOX_API_KEY``; never shown in any repr, log or error.
    * ``base_url`` — defaults to ``OFOX_BASE_URL``, then ``https://api.ofox.ai/v1``;
      ``"offline"`` (or no key with the default URL) uses the built-in emulator.
    * ``timeout`` — a :class:`Timeouts` or one number of seconds for every phase.
    * ``max_retries`` — retries before the first byte (408/409/429/5xx, connection errors).
    * ``transport`` / ``http_client`` — inject an httpx transport or client (tests, proxies).
    * ``event_hooks`` — httpx's ``{"request": [...], "response": [...]}`` hooks of the client we
      create (see every response's headers, e.g. the ``x-ratelimit-*`` ones).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Any = None,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        settings = resolve_settings(api_key, base_url, timeout=timeout, max_retries=max_retries)
        self._core = _Core(settings, has_transport=_injected(transport) or http_client is not None)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport, timeout=self._core.http_timeout(), event_hooks=event_hooks
        )

    @property
    def offline(self) -> bool:
        """Whether replies come from the built-in emulator."""
        return self._core.settings.offline

    @property
    def offline_notice(self) -> str | None:
        """The one-line notice to show when offline, else ``None``."""
        return self._core.offline_notice

    @property
    def base_url(self) -> str:
        """Where requests go (starts the emulator when offline)."""
        return self._core.base_url

    def __repr__(self) -> str:
        return self._core.describe("ofox_jupyter.Client")

    def _send(self, request: httpx.Request) -> httpx.Response:
        """Send with retries before the first byte; return a response whose status is 2xx."""
        for attempt in range(self._core.retry.max_retries + 1):
            headers: Mapping[str, str] | None = None
            try:
                response = self._http.send(request, stream=True)
            except httpx.InvalidURL as exc:
                raise ConfigError(f"invalid base URL: {exc}") from None
            except (httpx.RequestError, SSEError) as exc:
                error: APIError = self._core.transport_error(exc)
                retryable = self._core.retryable_transport(exc, request.method)
            else:
                if 200 <= response.status_code < 300:
                    return response
                try:
                    response.read()
                except httpx.RequestError as exc:
                    error = self._core.transport_error(exc)
                    retryable = self._core.retryable_transport(exc, request.method)
                else:
                    error, retryable = self._core.response_error(response)
                    headers = response.headers
                finally:
                    response.close()
            wait = self._core.give_up_or_wait(attempt, error, headers, retryable)
            time.sleep(wait)
        raise AssertionError("unreachable: give_up_or_wait raises on the last attempt")

    def _post_chat(self, body: dict[str, Any]) -> httpx.Response:
        request = self._http.build_request(
            "POST",
            self._core.url("/chat/completions"),
            content=encode_body(body),
            headers=self._core.headers(stream=bool(body.get("stream")), body=True),
        )
        return self._send(request)

    def chat(self, messages: Messages, *, model: str | None = None, **options: Any) -> Reply:
        """One chat completion, not streamed; returns the :class:`Reply`."""
        body = _chat_body(model, messages, False, **options)
        response = _read_body(self._post_chat(body), self._core)
        return _parse_completion(response, body["model"], self._core)

    def stream(self, messages: Messages, *, model: str | None = None, **options: Any) -> ChatStream:
        """One chat completion, streamed; returns a :class:`ChatStream` (use it in ``with``)."""
        body = _chat_body(model, messages, True, **options)
        return ChatStream(self._post_chat(body), self._core, body["model"])

    def run(
        self,
        messages: Messages,
        *,
        tools: Sequence[Callable[..., Any]],
        model: str | None = None,
        max_rounds: int = 8,
        **options: Any,
    ) -> ToolRun:
        """A chat in which the model may call ``tools`` (Python functions): every call is run
        and its result sent back, until the model answers without calls (or ``max_rounds``
        rounds have run). Returns a :class:`ToolRun`: the final ``reply`` (and ``text``), and
        ``replies`` / ``results``, every tool call and result in order. The loop is the one
        ``%%ofox --tools`` uses."""
        loop, definitions = _tool_loop(messages, tools, max_rounds, options)
        request = next(loop)
        while True:
            sent, params = request
            reply = self.chat(sent, model=model, tools=definitions, **params)
            try:
                request = loop.send((reply, "complete"))
            except StopIteration as done:
                return _ran(done.value)

    chat.__doc__ = (chat.__doc__ or "") + _CHAT_DOC
    stream.__doc__ = (stream.__doc__ or "") + _CHAT_DOC

    def models(self) -> list[ModelInfo]:
        """The live catalog (``GET /models``), every model including non-chat ones."""
        request = self._http.build_request(
            "GET", self._core.url("/models"), headers=self._core.headers()
        )
        return parse_models(_json_body(_read_body(self._send(request), self._core), self._core))

    def model(self, model_id: str) -> ModelInfo:
        """One catalog entry (``GET /models/{id}``)."""
        request = self._http.build_request(
            "GET", self._core.url(f"/models/{model_id}"), headers=self._core.headers()
        )
        return ModelInfo.from_dict(
            _json_body(_read_body(self._send(request), self._core), self._core)
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """Asynchronous OfoxAI client; the same parameters and behaviour as :class:`Client`, and
    ``max_connections`` (100): requests under way at once at most."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Any = None,
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
        max_connections: int = 100,
    ) -> None:
        settings = resolve_settings(api_key, base_url, timeout=timeout, max_retries=max_retries)
        self._core = _Core(settings, has_transport=_injected(transport) or http_client is not None)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport,
            timeout=self._core.http_timeout(),
            event_hooks=event_hooks,
            # httpx's default pool is 100 connections; a batch may keep more requests under way.
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
        )

    @property
    def offline(self) -> bool:
        return self._core.settings.offline

    @property
    def offline_notice(self) -> str | None:
        return self._core.offline_notice

    @property
    def base_url(self) -> str:
        return self._core.base_url

    def __repr__(self) -> str:
        return self._core.describe("ofox_jupyter.AsyncClient")

    async def _send(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self._core.retry.max_retries + 1):
            headers: Mapping[str, str] | None = None
            try:
                response = await self._http.send(request, stream=True)
            except httpx.InvalidURL as exc:
                raise ConfigError(f"invalid base URL: {exc}") from None
            except (httpx.RequestError, SSEError) as exc:
                error: APIError = self._core.transport_error(exc)
                retryable = self._core.retryable_transport(exc, request.method)
            else:
                if 200 <= response.status_code < 300:
                    return response
                try:
                    await response.aread()
                except httpx.RequestError as exc:
                    error = self._core.transport_error(exc)
                    retryable = self._core.retryable_transport(exc, request.method)
                else:
                    error, retryable = self._core.response_error(response)
                    headers = response.headers
                finally:
                    await response.aclose()
            wait = self._core.give_up_or_wait(attempt, error, headers, retryable)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: give_up_or_wait raises on the last attempt")

    async def _post_chat(self, body: dict[str, Any]) -> httpx.Response:
        url = self._core.url("/chat/completions")  # may start the emulator: before building
        request = self._http.build_request(
            "POST",
            url,
            content=encode_body(body),
            headers=self._core.headers(stream=bool(body.get("stream")), body=True),
        )
        return await self._send(request)

    async def chat(self, messages: Messages, *, model: str | None = None, **options: Any) -> Reply:
        """One chat completion, not streamed."""
        body = _chat_body(model, messages, False, **options)
        response = await _aread_body(await self._post_chat(body), self._core)
        return _parse_completion(response, body["model"], self._core)

    async def stream(
        self, messages: Messages, *, model: str | None = None, **options: Any
    ) -> AsyncChatStream:
        """One chat completion, streamed; returns an :class:`AsyncChatStream`."""
        body = _chat_body(model, messages, True, **options)
        return AsyncChatStream(await self._post_chat(body), self._core, body["model"])

    async def run(
        self,
        messages: Messages,
        *,
        tools: Sequence[Callable[..., Any]],
        model: str | None = None,
        max_rounds: int = 8,
        **options: Any,
    ) -> ToolRun:
        """:meth:`Client.run` on the event loop (async tools are awaited in their own loop)."""
        loop, definitions = _tool_loop(messages, tools, max_rounds, options)
        request = next(loop)
        while True:
            sent, params = request
            reply = await self.chat(sent, model=model, tools=definitions, **params)
            try:
                request = loop.send((reply, "complete"))
            except StopIteration as done:
                return _ran(done.value)

    chat.__doc__ = (chat.__doc__ or "") + _CHAT_DOC
    stream.__doc__ = (stream.__doc__ or "") + _CHAT_DOC

    async def models(self) -> list[ModelInfo]:
        url = self._core.url("/models")
        request = self._http.build_request("GET", url, headers=self._core.headers())
        response = await _aread_body(await self._send(request), self._core)
        return parse_models(_json_body(response, self._core))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _json_body(response: httpx.Response, core: _Core) -> Any:
    """The JSON of a response whose body has been read; a clear error if it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise APIConnectionError(
            f"{display_url(core.base_url)} answered with something that is not JSON",
            hint="check OFOX_BASE_URL points at an OpenAI-compatible /v1 endpoint",
        ) from None


def _read_body(response: httpx.Response, core: _Core) -> httpx.Response:
    """Read the whole body (which closes the response); transport failures become our errors."""
    try:
        response.read()
    except httpx.RequestError as exc:
        raise core.transport_error(exc) from None
    finally:
        response.close()
    return response


async def _aread_body(response: httpx.Response, core: _Core) -> httpx.Response:
    try:
        await response.aread()
    except httpx.RequestError as exc:
        raise core.transport_error(exc) from None
    finally:
        await response.aclose()
    return response


def _parse_completion(response: httpx.Response, model: str, core: _Core) -> Reply:
    body = _json_body(response, core)
    if not isinstance(body, dict):
        raise APIConnectionError("the completion body is not a JSON object")
    if "error" in body and not body.get("choices"):
        # A 200 that carries an error (seen from some upstreams) is still an error, reported
        # with the status it really came with.
        raise core.status_error(httpx.Response(response.status_code, json=body))
    problem = None
    try:
        reply = reply_from_completion(body, model, offline=core.settings.offline)
        replayed = response.headers.get(REPLAY_HEADER)
        return replace(reply, replayed=replayed) if replayed else reply
    except MalformedChunk as err:
        problem = str(err)
    raise APIError(f"the API sent an unusable reply: {problem}", hint="try again, or another model")
