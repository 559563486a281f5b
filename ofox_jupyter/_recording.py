"""Record a lesson once, replay it anywhere: httpx transports for the client.

:class:`RecordingTransport` sits in front of the real transport and appends every exchange with
the API — the request body (no headers, so no credential), the response status, and the body as
it arrived, piece by piece with its timing — to a JSON Lines file, one exchange per line, readable
and diffable. :class:`ReplayTransport` answers from such a file: a request whose method, path and
body match a recorded one gets that response, streamed at the recorded pace (or at once with
``fast``); anything else gets one line saying it is not in the recording, or goes to a fallback
transport (the emulator) when one is given. Matching is on the request's content, so re-running
a lesson's cells in order matches, and an edited cell does not.

Why not vcrpy (which supports httpx): it patches httpx globally, keeps a streamed body as one
block (no pacing on replay), and stores headers unless each one is filtered; a transport of our
own plugs into the client's ``transport=`` and records what a lesson needs, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from ._config import scrub

__all__ = [
    "REPLAY_HEADER",
    "Recording",
    "RecordingFile",
    "RecordingTransport",
    "ReplayTransport",
    "Tape",
    "request_key",
]

#: Set on every replayed response (the footer says "replayed").
REPLAY_HEADER = "x-ofox-replayed"
#: Response headers worth keeping: what the client reads besides the body.
_KEPT_HEADERS = ("content-type", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")


def _body(request: httpx.Request) -> Any:
    content = request.content
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")


def request_key(method: str, path: str, body: Any) -> str:
    """What a recorded exchange is found by: method, path (after the base URL's ``/v1``) and the
    body, canonically serialised."""
    text = json.dumps([method, path, body], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _path(request: httpx.Request) -> str:
    """The API path (``/chat/completions``), whatever base URL the client used."""
    path = request.url.path
    index = path.find("/v1/")
    return path[index + 3 :] if index >= 0 else path


class RecordingFile:
    """The file a recording goes to, shared by the sync and async transports of a kernel."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recorded = 0
        self.failed = 0
        self.failure: str | None = None
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        # No secret may reach the file, even one a server echoed back in an error body. ASCII
        # escapes keep a piece cut inside a character (a lone surrogate here) writable.
        line = scrub(json.dumps(entry, ensure_ascii=True))
        with self._lock:
            try:
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(line + "\n")
            except OSError as err:  # the reply goes on; %ofox record stop says what was lost
                self.failed += 1
                self.failure = err.strerror or str(err)
                return
            self.recorded += 1


class RecordingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Forwards to ``inner`` and appends each exchange to ``path`` (see the module docstring)."""

    #: The client still needs a real server behind its URL (the emulator, offline).
    forwards_to_network = True

    def __init__(self, inner: Any, writer: RecordingFile | Path) -> None:
        self.inner = inner
        self.writer = writer if isinstance(writer, RecordingFile) else RecordingFile(writer)

    def _entry(self, request: httpx.Request, response: httpx.Response) -> dict[str, Any]:
        return {
            "method": request.method,
            "path": _path(request),
            "request": _body(request),
            "status": response.status_code,
            "headers": {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers},
            "chunks": [],
        }

    def _start(self, request: httpx.Request, response: httpx.Response) -> _Taking:
        return _Taking(self._entry(request, response))

    @staticmethod
    def _passing(response: httpx.Response, stream: Any) -> httpx.Response:
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        taking = self._start(request, response)

        def pieces() -> Iterator[bytes]:
            try:
                for piece in response.stream:
                    taking.note(piece)
                    yield piece
            finally:
                self.writer.write(taking.entry)

        return self._passing(response, _SyncPieces(pieces(), response))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        taking = self._start(request, response)

        async def pieces() -> AsyncIterator[bytes]:
            try:
                async for piece in response.stream:
                    taking.note(piece)
                    yield piece
            finally:
                self.writer.write(taking.entry)

        return self._passing(response, _AsyncPieces(pieces(), response))

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Taking:
    """One exchange being recorded: its entry, and each body piece noted with its time."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry
        self._started = time.monotonic()

    def note(self, piece: bytes) -> None:
        at = round(time.monotonic() - self._started, 4)
        self.entry["chunks"].append([at, _text(piece)])


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", "surrogateescape")


class _SyncPieces(httpx.SyncByteStream):
    def __init__(self, pieces: Iterator[bytes], response: httpx.Response) -> None:
        self._pieces, self._response = pieces, response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces

    def close(self) -> None:
        self._response.close()


class _AsyncPieces(httpx.AsyncByteStream):
    def __init__(self, pieces: AsyncIterator[bytes], response: httpx.Response) -> None:
        self._pieces, self._response = pieces, response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._pieces:
            yield piece

    async def aclose(self) -> None:
        await self._response.aclose()


#: The longest pause a replay keeps between two pieces, in seconds (a recording is untrusted).
_MAX_PAUSE = 60.0


def _check(entry: Any) -> None:
    """A recording is a file from outside: every field the replay reads has the right type, and
    what it would do with them (send headers, encode pieces, wait) cannot fail or hang."""
    status, headers, chunks = entry["status"], entry.get("headers", {}), entry["chunks"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError("status")
    if not isinstance(headers, dict) or not all(
        k in _KEPT_HEADERS and isinstance(v, str) and v.isascii() and v.isprintable()
        for k, v in headers.items()
    ):
        raise ValueError("headers")
    if not isinstance(chunks, list):
        raise ValueError("chunks")
    previous = 0.0
    for chunk in chunks:
        if not (isinstance(chunk, list) and len(chunk) == 2 and isinstance(chunk[1], str)):
            raise ValueError("chunks")
        at = chunk[0]
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ValueError("chunk time")
        if not previous <= at <= previous + _MAX_PAUSE:  # also refuses NaN and infinities
            raise ValueError("chunk time")
        previous = float(at)
        chunk[1].encode("utf-8", "surrogateescape")  # UnicodeEncodeError is a ValueError


class Recording:
    """A recording read once (and checked), shared by the transports that replay it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, list[dict[str, Any]]] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = request_key(entry["method"], entry["path"], entry["request"])
                _check(entry)
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path.name}, line {number}: not a recorded exchange") from None
            self._entries.setdefault(key, []).append(entry)
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def find(self, request: httpx.Request) -> dict[str, Any] | None:
        key = request_key(request.method, _path(request), _body(request))
        entries = self._entries.get(key)
        if not entries:
            return None
        # The same request twice (a cell run twice) is answered in the recorded order, the
        # last answer again once they are used up.
        with self._lock:
            index = self._used.get(key, 0)
            self._used[key] = index + 1
        return entries[min(index, len(entries) - 1)]


class ReplayTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers from a recording (see the module docstring)."""

    def __init__(
        self, recording: Recording | Path, *, fast: bool = False, fallback: Any = None
    ) -> None:
        self.recording = recording if isinstance(recording, Recording) else Recording(recording)
        self.path = self.recording.path
        self.fast = fast
        self.fallback = fallback
        self.replayed = 0

    def _find(self, request: httpx.Request) -> dict[str, Any] | None:
        return self.recording.find(request)

    def _missing(self, request: httpx.Request) -> httpx.Response:
        message = (
            f"this request is not in the recording {self.path.name} (was the cell edited?): "
            "record the lesson again, or replay with --fallback-emulator"
        )
        body = {"error": {"message": message, "type": "not_recorded", "code": "not_recorded"}}
        return httpx.Response(404, json=body, headers={REPLAY_HEADER: "missing"})

    def _response(self, entry: dict[str, Any], stream: Any) -> httpx.Response:
        headers = {**entry.get("headers", {}), REPLAY_HEADER: self.path.name}
        self.replayed += 1
        return httpx.Response(entry["status"], headers=headers, stream=stream)

    def _pieces(self, entry: dict[str, Any]) -> list[tuple[float, bytes]]:
        return [
            (float(at), text.encode("utf-8", "surrogateescape")) for at, text in entry["chunks"]
        ]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        entry = self._find(request)
        if entry is None:
            if self.fallback is not None:
                return self.fallback.handle_request(request)  # type: ignore[no-any-return]
            return self._missing(request)
        pieces, fast = self._pieces(entry), self.fast

        class Paced(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                started = time.monotonic()
                for at, piece in pieces:
                    if not fast:
                        time.sleep(max(0.0, at - (time.monotonic() - started)))
                    yield piece

        return self._response(entry, Paced())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        entry = self._find(request)
        if entry is None:
            if self.fallback is not None:
                return await self.fallback.handle_async_request(request)  # type: ignore[no-any-return]
            return self._missing(request)
        pieces, fast = self._pieces(entry), self.fast

        class Paced(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                started = time.monotonic()
                for at, piece in pieces:
                    if not fast:
                        await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
                    yield piece

        return self._response(entry, Paced())


class Tape:
    """What ``%ofox record`` / ``%ofox replay`` set up for the kernel's clients."""

    def __init__(
        self, mode: str, path: Path, *, fast: bool = False, fallback_emulator: bool = False
    ) -> None:
        self.mode = mode  # "record" or "replay"
        self.path = path
        self.fast = fast
        self.fallback_emulator = fallback_emulator
        # Read (or opened) now, once: a bad file is one line at once, not at the next cell.
        self.recording = Recording(path) if mode == "replay" else None
        self.file = RecordingFile(path) if mode == "record" else None
        if self.file is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.open("a", encoding="utf-8").close()

    def transport(self, *, asynchronous: bool) -> Any:
        """A transport for a new client (sync or async)."""
        if self.file is not None:
            inner = httpx.AsyncHTTPTransport() if asynchronous else httpx.HTTPTransport()
            return RecordingTransport(inner, self.file)
        assert self.recording is not None
        fallback = _EmulatorFallback(asynchronous) if self.fallback_emulator else None
        return ReplayTransport(self.recording, fast=self.fast, fallback=fallback)


class _EmulatorFallback:
    """Sends what a replay does not hold to the built-in emulator (``--fallback-emulator``)."""

    def __init__(self, asynchronous: bool) -> None:
        self._http: Any = httpx.AsyncHTTPTransport() if asynchronous else httpx.HTTPTransport()

    def _to_emulator(self, request: httpx.Request) -> httpx.Request:
        from .emulator import shared_emulator

        url = shared_emulator().base_url + _path(request)
        # Not the key (the emulator needs none), nor the host of the URL the client used.
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")
        }
        return httpx.Request(request.method, url, headers=headers, content=request.content)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._http.handle_request(self._to_emulator(request))  # type: ignore[no-any-return]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._http.handle_async_request(self._to_emulator(request))  # type: ignore[no-any-return]
