"""The sans-IO accumulator: chunks in, events and a reply out."""

from __future__ import annotations

import pytest
from helpers import chunk, usage_chunk

from ofox_jupyter import (
    FinishEvent,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from ofox_jupyter._streaming import ChunkAccumulator, StreamState, reply_from_completion


def feed_all(state: StreamState, *chunks: dict) -> list:
    import json

    events = []
    for c in chunks:
        events += state.on_event("message", json.dumps(c))
    return events


def test_text_usage_and_finish():
    state = StreamState("openai/gpt-4o")
    events = feed_all(
        state,
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        usage_chunk(3, 2),
    )
    assert state.on_event("message", "[DONE]") == []
    reply = state.on_end()
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo")]
    assert FinishEvent("stop") in events
    assert any(isinstance(e, UsageEvent) and e.usage.total_tokens == 5 for e in events)
    assert reply.text == "Hello" and reply.finish_reason == "stop" and reply.complete
    assert reply.usage is not None and reply.usage.prompt_tokens == 3


def test_reasoning_is_kept_apart_from_text():
    state = StreamState("m")
    events = feed_all(
        state,
        chunk({"reasoning_content": "think "}),
        chunk({"content": "answer"}),
        chunk({}, "stop"),
    )
    assert ReasoningDelta("think ") in events
    reply = state.on_end()
    assert reply.text == "answer" and reply.reasoning == "think "


def test_tool_call_fragments_join_per_index():
    state = StreamState("m")
    events = feed_all(
        state,
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "clock", "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
        chunk({}, "tool_calls"),
    )
    reply = state.on_end()
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_a", "weather", '{"city": "Paris"}'),
        ("call_b", "clock", "{}"),
    ]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_a", "weather", "")
    assert deltas[2] == ToolCallDelta(0, None, None, '{"city":')
    assert reply.finish_reason == "tool_calls"
    assert reply.message.to_dict()["tool_calls"][0]["function"]["name"] == "weather"


def test_upstream_reusing_index_zero_keeps_calls_apart():
    state = StreamState("m")
    feed_all(
        state,
        chunk(
            {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": "{"}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        chunk(
            {"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "b", "arguments": "{}"}}]}
        ),
        chunk({}, "tool_calls"),
    )
    reply = state.on_end()
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("c1", "a", "{}"),
        ("c2", "b", "{}"),
    ]


def test_unknown_fields_are_ignored():
    state = StreamState("m")
    c = chunk({"content": "x", "weird": [1]}, None, system_fingerprint="fp", provider="azure")
    feed_all(state, c, chunk({}, "stop"))
    assert state.on_end().text == "x"


def test_no_done_after_finish_is_complete_but_without_finish_is_broken():
    ok = StreamState("m")
    feed_all(ok, chunk({"content": "a"}), chunk({}, "stop"))
    assert ok.on_end().complete

    cut = StreamState("m")
    feed_all(cut, chunk({"content": "partial"}))
    with pytest.raises(StreamError) as info:
        cut.on_end()
    assert info.value.kind == "incomplete"
    assert info.value.partial.text == "partial" and not info.value.partial.complete


@pytest.mark.parametrize(
    "payload, event",
    [
        ({"error": {"message": "boom", "type": "server_error"}}, "message"),
        ({"error": {"message": "boom", "type": "server_error"}}, "error"),
        (
            chunk({"content": "!"}, "error", error={"code": "server_error", "message": "boom"}),
            "message",
        ),
    ],
    ids=["openai-bare", "openai-event", "openrouter"],
)
def test_mid_stream_errors_carry_the_partial_reply(payload, event):
    import json

    state = StreamState("m")
    feed_all(state, chunk({"content": "so far"}))
    with pytest.raises(StreamError) as info:
        state.on_event(event, json.dumps(payload))
    err = info.value
    assert err.kind == "error_event" and "boom" in str(err)
    assert err.partial.text.startswith("so far") and not err.partial.complete


def test_malformed_chunk_is_a_stream_error():
    state = StreamState("m")
    feed_all(state, chunk({"content": "ok"}))
    with pytest.raises(StreamError) as info:
        state.on_event("message", '{"id": "x", "choices": [')
    assert info.value.kind == "malformed" and info.value.partial.text == "ok"


def test_served_model_is_taken_from_the_chunks():
    acc = ChunkAccumulator("openai/gpt-4-turbo")
    acc.feed(chunk({"content": "x"}, "stop", model="openai/gpt-4o"))
    reply = acc.reply()
    assert reply.model == "openai/gpt-4o" and reply.fell_back


def test_non_streamed_completion():
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "openai/gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "reasoning_content": "hmm"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 150, "total_tokens": 175},
    }
    reply = reply_from_completion(body, "openai/gpt-4o")
    assert (reply.text, reply.reasoning, reply.usage.total_tokens) == ("hi", "hmm", 175)
