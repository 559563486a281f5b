"""Response bodies: the non-streamed JSON, and the SSE stream written byte by byte with its faults.

The emulator writes its own SSE bytes (``data: <json>\\n\\n``, comment lines starting with ``:``)
and never uses the client's decoder, so a bug on one side cannot cancel out one on the other.

Stream layout (OpenAI convention, ofox-api.md §6)::

    : OPENROUTER PROCESSING                       (repeated every 0.5 s while the start is delayed)
    data: {... "delta": {"role": "assistant", "content": ""} ...}
    data: {... "delta": {"reasoning_content": "…"} ...}      (reasoning models; "reasoning"
                                                             with [emulator-reasoning: N])
    data: {... "delta": {"content": "…"} ...}                (one word piece per chunk)
    data: {... "delta": {"tool_calls": [{"index": 0, "id": …, "function": {"name": …,
                                          "arguments": ""}}]}}        (first fragment of a call)
    data: {... "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "≤7 chars"}}]}}
    data: {... "delta": {}, "finish_reason": "stop"}
    data: {... "choices": [], "usage": {...}}       (only with stream_options.include_usage)
    data: [DONE]

Every chunk has the same ``id`` and ``created``; with ``include_usage`` every chunk before the
usage chunk carries ``"usage": null``.  ``delay`` seconds pass before the role chunk and between
chunks after it, and once more between the last reasoning chunk and the answer (the model
"finishing its thought", so a client can measure how long it thought).  Fault counts
(``disconnect:N`` …) count the chunks after the role chunk; when a stream has fewer, the fault
happens right before the finish chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._faults import FaultSpec
from ._log import DELIBERATE_ABORT
from ._model import Completion

__all__ = [
    "DELIBERATE_ABORT",
    "KEEP_ALIVE",
    "SSEResponse",
    "StreamPlan",
    "chunk_payloads",
    "completion_body",
    "sse_data",
]

KEEP_ALIVE = b": OPENROUTER PROCESSING\n\n"
_KEEP_ALIVE_EVERY = 0.5
_ARGUMENT_PIECE = 7
_STALL_AFTER = 2
_COUNTED = frozenset(
    {"disconnect", "malformed", "error-openai", "error-openai-event", "error-openrouter"}
)
_MALFORMED = b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
_OPENAI_ERROR = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "code": "server_error",
    }
}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def sse_data(payload: Any) -> bytes:
    """One SSE event: ``data: <compact JSON>`` and a blank line."""
    return f"data: {_dumps(payload)}\n\n".encode()


def completion_body(
    completion: Completion, completion_id: str, created: int, choices: int = 1
) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` object (ofox-api.md §5)."""
    message: dict[str, Any] = {"role": "assistant", "content": completion.content}
    if completion.reasoning is not None:
        message[completion.reasoning_field] = completion.reasoning
    if completion.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in completion.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": completion.model,
        "choices": [
            {
                "index": index,
                # Choice 2 and on say which they are (the emulator's replies are deterministic).
                "message": message
                if index == 0
                else {**message, "content": f"{completion.content}\n\n*Choice {index + 1}.*"},
                "finish_reason": completion.finish_reason,
            }
            for index in range(choices)
        ],
        "usage": completion.usage,
    }


@dataclass(frozen=True)
class StreamPlan:
    """Everything one stream needs: the answer, its ids, usage option, pacing and fault."""

    completion: Completion
    completion_id: str
    created: int
    include_usage: bool
    delay: float
    fault: FaultSpec | None = None


@dataclass(frozen=True)
class _Chunks:
    role: dict[str, Any]
    body: list[dict[str, Any]]
    finish: dict[str, Any]
    usage: dict[str, Any] | None
    openrouter_error: dict[str, Any]


def chunk_payloads(plan: StreamPlan) -> _Chunks:
    """The JSON payloads of every chunk of ``plan``'s stream, in order."""
    completion = plan.completion

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": plan.completion_id,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": completion.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if plan.include_usage:
            payload["usage"] = None
        return payload

    field = completion.reasoning_field
    body = [chunk({field: piece}) for piece in completion.reasoning_pieces]
    body += [chunk({"content": piece}) for piece in completion.content_pieces]
    for call in completion.tool_calls:
        first = {
            "index": call.index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        body.append(chunk({"tool_calls": [first]}))
        for start in range(0, len(call.arguments), _ARGUMENT_PIECE):
            piece = call.arguments[start : start + _ARGUMENT_PIECE]
            body.append(
                chunk({"tool_calls": [{"index": call.index, "function": {"arguments": piece}}]})
            )
    usage = None
    if plan.include_usage:
        usage = {
            "id": plan.completion_id,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": completion.model,
            "choices": [],
            "usage": completion.usage,
        }
    openrouter_error = chunk({"content": ""}, "error")
    openrouter_error["error"] = {
        "code": "server_error",
        "message": "Provider disconnected unexpectedly",
    }
    return _Chunks(
        role=chunk({"role": "assistant", "content": ""}),
        body=body,
        finish=chunk({}, completion.finish_reason),
        usage=usage,
        openrouter_error=openrouter_error,
    )


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _ClientGone(Exception):
    """The client went away: nothing more is written (it would only reach a dead socket)."""


class SSEResponse(Response):
    """A ``text/event-stream`` response that writes ``plan`` chunk by chunk, faults included.

    It is a raw ASGI response (no task group) so that timing is exact, a client that goes away
    stops the stream at once, and a ``disconnect`` fault can end the connection mid-body.

    The event loop gets a turn after every chunk, even with no delay: a stream that never yields
    would only notice a vanished client at its end, after writing every remaining chunk into the
    lost connection (asyncio logs ``socket.send() raised exception.`` for each of them).
    """

    def __init__(self, plan: StreamPlan, headers: dict[str, str]) -> None:
        super().__init__(status_code=200)
        self.plan = plan
        merged = {**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
        self.raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in merged.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await self._write(send, watcher)
        except _ClientGone:
            pass
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])

    async def _write(self, send: Send, watcher: asyncio.Future[None]) -> None:
        async def write(data: bytes) -> None:
            """Send one piece; raise ``_ClientGone`` once the client has disconnected."""
            if watcher.done():
                raise _ClientGone
            await send({"type": "http.response.body", "body": data, "more_body": True})
            # One turn of the loop: a lost connection is reported (connection_lost, then our
            # watcher) before the next piece, so at most a write or two reach a dead socket.
            await asyncio.sleep(0)

        async def pause(seconds: float) -> bool:
            """Sleep; ``False`` when the client went away meanwhile."""
            if seconds > 0:
                await asyncio.wait([watcher], timeout=seconds)
            return not watcher.done()

        async def end() -> None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        plan, fault = self.plan, self.plan.fault
        chunks = chunk_payloads(plan)
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await write(KEEP_ALIVE)
        # the delayed start: another keep-alive after every full 0.5 s of waiting
        steps = [_KEEP_ALIVE_EVERY] * int(plan.delay // _KEEP_ALIVE_EVERY)
        if plan.delay - sum(steps) > 1e-6:
            steps.append(plan.delay - sum(steps))
        for number, step in enumerate(steps, start=1):
            if not await pause(step):
                raise _ClientGone
            if number < len(steps):
                await write(KEEP_ALIVE)
        await write(sse_data(chunks.role))

        at = -1  # how many body chunks go out before the fault strikes (-1: never)
        if fault is not None and fault.name == "stall":
            at = _STALL_AFTER
        elif fault is not None and fault.name in _COUNTED:
            at = fault.count
        loop = asyncio.get_running_loop()
        # Chunks are paced against a schedule rather than by sleeping ``delay`` after each one:
        # the event loop's timers are coarse (about 1 ms), so per-chunk sleeps could never reach
        # rates like 2,000 chunks/s; sleeping only when ahead of schedule keeps the average exact.
        due = loop.time()
        thought = len(plan.completion.reasoning_pieces)  # body chunks that are reasoning
        for sent in range(len(chunks.body) + 1):
            if sent == min(at, len(chunks.body)):
                outcome = await self._fault(fault, chunks, write, pause)
                if outcome == "abort":
                    DELIBERATE_ABORT.set(True)
                    return
                if outcome == "end":
                    await end()
                    return
                if outcome == "gone":
                    raise _ClientGone
                due = loop.time()  # a stall is a pause, not a debt to pay back in a burst
            if sent == len(chunks.body):
                break
            if sent > 0 and plan.delay > 0:
                due += plan.delay * (2 if sent == thought else 1)
                ahead = due - loop.time()
                if ahead > 0.001 and not await pause(ahead):
                    raise _ClientGone
            await write(sse_data(chunks.body[sent]))

        await write(sse_data(chunks.finish))
        if chunks.usage is not None:
            await write(sse_data(chunks.usage))
        if fault is None or fault.name != "no-done":
            await write(b"data: [DONE]\n\n")
        await end()

    async def _fault(
        self,
        fault: FaultSpec | None,
        chunks: _Chunks,
        write: Callable[[bytes], Awaitable[None]],
        pause: Callable[[float], Awaitable[bool]],
    ) -> str:
        """Apply a mid-stream fault; returns "continue", "end", "abort" or "gone"."""
        if fault is None:
            return "continue"
        if fault.name == "stall":
            return "continue" if await pause(fault.seconds) else "gone"
        if fault.name == "disconnect":
            return "abort"
        if fault.name == "malformed":
            await write(_MALFORMED)
            return "continue"
        if fault.name == "error-openai":
            await write(sse_data(_OPENAI_ERROR))
            return "end"
        if fault.name == "error-openai-event":
            await write(b"event: error\n" + sse_data(_OPENAI_ERROR))
            return "end"
        if fault.name == "error-openrouter":
            await write(sse_data(chunks.openrouter_error))
            return "end"
        return "continue"
