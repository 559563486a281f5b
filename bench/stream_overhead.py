"""Client cost per streamed chunk: ofox_jupyter vs the openai SDK vs bare httpx-sse + json.loads.

All three read the same 20,000-chunk SSE body from an in-memory transport (one network read per
event, the worst case for per-chunk overhead), so what is measured is the client's own work:
SSE decoding, JSON parsing, and building whatever it hands to the caller. No network, no server.

    python bench/stream_overhead.py [--chunks 20000] [--repeat 5]

Targets (product.md): ours/openai ≤ 0.5, ours/bare ≤ 1.5.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator

import httpx
import httpx_sse

URL = "https://api.ofox.ai/v1"


def make_events(count: int) -> list[bytes]:
    """``count`` content chunks plus the finish chunk, the usage chunk and ``[DONE]``."""
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "openai/gpt-4o",
    }
    events = []
    for i in range(count):
        body = dict(
            base,
            choices=[{"index": 0, "delta": {"content": f"word{i % 97} "}, "finish_reason": None}],
        )
        events.append(f"data: {json.dumps(body)}\n\n".encode())
    finish = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    events.append(f"data: {json.dumps(finish)}\n\n".encode())
    usage = {"prompt_tokens": 10, "completion_tokens": count, "total_tokens": count + 10}
    events.append(f"data: {json.dumps(dict(base, choices=[], usage=usage))}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return events


class Pieces(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.pieces)


def run_ours(events: list[bytes]) -> int:
    from ofox_jupyter import Client, TextDelta

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Pieces(events)
        )

    with Client("sk-bench", base_url=URL, transport=httpx.MockTransport(handler)) as client:
        with client.stream("hi", model="openai/gpt-4o") as stream:
            n = sum(1 for e in stream if isinstance(e, TextDelta))
            assert stream.reply.usage is not None
    return n


def run_bare(events: list[bytes]) -> int:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Pieces(events)
        )

    n = 0
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        with httpx_sse.connect_sse(
            client,
            "POST",
            URL + "/chat/completions",
            json={"model": "openai/gpt-4o", "stream": True},
        ) as source:
            for sse in source.iter_sse():
                if sse.data == "[DONE]":
                    break
                chunk = json.loads(sse.data)
                for choice in chunk["choices"]:
                    if choice["delta"].get("content"):
                        n += 1
    return n


def run_openai(events: list[bytes]) -> int:
    import httpx2
    import openai

    class Pieces2(httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            return iter(events)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Pieces2())

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = openai.OpenAI(api_key="sk-bench", base_url=URL, http_client=http, max_retries=0)
    n = 0
    stream = client.chat.completions.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            n += 1
    http.close()
    return n


def best_of(
    fn: Callable[[list[bytes]], int], events: list[bytes], repeat: int, expected: int
) -> float:
    fn(events[:50] + events[-3:])  # warm-up: imports and first-call costs are not per chunk
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        n = fn(events)
        times.append(time.perf_counter() - started)
        if n != expected:
            raise SystemExit(f"{fn.__name__} saw {n} content chunks, expected {expected}")
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    events = make_events(args.chunks)
    runs = {}
    for name, fn in [
        ("bare httpx-sse + json.loads", run_bare),
        ("ofox_jupyter", run_ours),
        ("openai SDK", run_openai),
    ]:
        try:
            runs[name] = best_of(fn, events, args.repeat, args.chunks)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
    print(f"stream of {args.chunks:,} chunks, best of {args.repeat} runs, µs per chunk:")
    for name, seconds in runs.items():
        print(f"  {name:<28} {seconds / args.chunks * 1e6:8.2f}")
    ours = runs["ofox_jupyter"]
    if "openai SDK" in runs:
        print(f"ours / openai SDK = {ours / runs['openai SDK']:.2f}  (target ≤ 0.5)")
    print(f"ours / bare       = {ours / runs['bare httpx-sse + json.loads']:.2f}  (target ≤ 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
