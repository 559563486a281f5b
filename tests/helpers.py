"""Test helpers: SSE byte builders, an httpx transport that serves them in chosen pieces, and a
display publisher that records what a frontend would show."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
from IPython.core.displaypub import DisplayPublisher


class ChunkedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in exactly the given byte pieces (as the network might)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = list(pieces)

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces

    async def __aiter__(self) -> Any:
        for piece in self._pieces:
            yield piece


def sse(*payloads: dict[str, Any] | str) -> bytes:
    """SSE bytes: each dict becomes ``data: <json>``, each string is written as it is."""
    out = []
    for payload in payloads:
        if isinstance(payload, str):
            out.append(payload)
        else:
            out.append(f"data: {json.dumps(payload, ensure_ascii=False)}\n\n")
    return "".join(out).encode()


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-t",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": extra.pop("model", "openai/gpt-4o"),
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    body.update(extra)
    return body


def usage_chunk(prompt: int = 5, completion: int = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-t",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "openai/gpt-4o",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def sse_response(pieces: Iterable[bytes], status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "text/event-stream"}, stream=ChunkedStream(pieces)
    )


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a queue and records every request."""

    def __init__(self, *responses: httpx.Response | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return response(request) if callable(response) else response

    def json(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


class Clock:
    """A clock that moves only when a test sets ``now`` (for throttles and timers)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RecordingPublisher(DisplayPublisher):
    """A display publisher that keeps every message (updates and clears included) and the
    outputs a frontend would show: updates applied by display id, ``clear_output(wait=True)``
    applied when the next output arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.most = 0
        self._clear_next = False
        self.clock: Clock | None = None  # stamps each message, when set

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False):  # type: ignore[no-untyped-def]
        display_id = (transient or {}).get("display_id")
        self.messages.append(
            {
                "data": data,
                "metadata": metadata or {},
                "id": display_id,
                "update": update,
                "t": self.clock() if self.clock else None,
            }
        )
        if update:
            for output in self.outputs:
                if output["id"] == display_id:
                    output["data"], output["metadata"] = data, metadata or {}
            return
        if self._clear_next:
            self.outputs, self._clear_next = [], False
        self.outputs.append({"data": data, "metadata": metadata or {}, "id": display_id})
        self.most = max(self.most, len(self.outputs))

    def clear_output(self, wait: bool = False) -> None:
        self.messages.append({"clear": wait})
        if wait:
            self._clear_next = True
        else:
            self.outputs = []
