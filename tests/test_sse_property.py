"""Property: however the network splits a valid SSE byte stream, the reply is the same.

Splits fall anywhere — inside multi-byte UTF-8 characters, between CR and LF, inside ``data:`` —
and every line-ending style the SSE spec allows (LF, CRLF, CR) is used.
"""

from __future__ import annotations

import json

import httpx
from helpers import ChunkedStream, chunk, usage_chunk
from hypothesis import given, settings
from hypothesis import strategies as st

from ofox_jupyter import Client

TEXT = st.text(
    alphabet=st.sampled_from(list('ab \n"{}\\é漢字🎉\u2028\u2029\r\t:')), min_size=1, max_size=6
)


def build_stream(pieces: list[str], args: list[str], newline: str) -> bytes:
    events: list[str] = [": OPENROUTER PROCESSING"]
    events.append(json.dumps(chunk({"role": "assistant", "content": ""}), ensure_ascii=False))
    for piece in pieces:
        events.append(json.dumps(chunk({"content": piece}), ensure_ascii=False))
    if args:
        first = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        }
        events.append(json.dumps(chunk({"tool_calls": [first]})))
        for part in args:
            frag = {"index": 0, "function": {"arguments": part}}
            events.append(json.dumps(chunk({"tool_calls": [frag]}), ensure_ascii=False))
    events.append(json.dumps(chunk({}, "tool_calls" if args else "stop")))
    events.append(json.dumps(usage_chunk(3, len(pieces))))
    events.append("[DONE]")
    lines = []
    for event in events:
        lines.append(event if event.startswith(":") else f"data: {event}")
        lines.append("")
    return (newline.join(lines) + newline).encode("utf-8")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(TEXT, min_size=1, max_size=8),
    args=st.lists(TEXT, max_size=4),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
def test_any_split_gives_the_same_reply(pieces, args, newline, cuts):
    data = build_stream(pieces, args, newline)
    parts = split(data, cuts)
    assert b"".join(parts) == data

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=ChunkedStream(parts)
        )

    with Client(
        "sk-x", base_url="https://api.ofox.ai/v1", transport=httpx.MockTransport(handler)
    ) as client:
        with client.stream("hi") as stream:
            reply = stream.reply
    assert reply.text == "".join(pieces)
    assert (
        reply.complete and reply.usage is not None and reply.usage.completion_tokens == len(pieces)
    )
    if args:
        assert [(c.name, c.arguments) for c in reply.tool_calls] == [("f", "".join(args))]
    else:
        assert reply.tool_calls == ()
