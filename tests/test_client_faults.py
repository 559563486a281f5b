"""The fault matrix over real HTTP: our client against the emulator on 127.0.0.1.

Each injected fault ends one of two ways: retried and succeeded, or one clear error — with the
partial reply kept wherever text had already arrived.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from conftest import TEST_KEY

from ofox_jupyter import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
    TextDelta,
    Timeouts,
    provider_options,
)
from ofox_jupyter._request import RetryPolicy


def fault(spec: str) -> str:
    """A prompt that injects ``spec``, with a unique tag so ``*N`` counters never collide."""
    return f"Tell me about faults. [emulator-fault: {spec}#{uuid.uuid4().hex[:8]}]"


def chat_requests(emu) -> int:
    return sum(1 for r in emu.requests if r.path.endswith("/chat/completions"))


@pytest.fixture
def client(emu):
    c = Client(TEST_KEY, base_url=emu.base_url)
    c._core.retry = RetryPolicy(max_retries=2, initial=0.01, maximum=0.05)
    yield c
    c.close()


def test_streams_text_usage_and_served_model(client, emu):
    with client.stream("Hello emulator", model="openai/gpt-4o") as stream:
        deltas = [e.text for e in stream if isinstance(e, TextDelta)]
        reply = stream.reply
    assert len(deltas) > 3 and "".join(deltas) == reply.text
    assert "Hello emulator" in reply.text and reply.model == "openai/gpt-4o"
    assert reply.usage is not None and reply.usage.completion_tokens == len(deltas)
    body = emu.requests[-1].body
    assert body["stream_options"] == {"include_usage": True}
    assert emu.requests[-1].headers["authorization"] == f"Bearer {TEST_KEY}"


def test_streamed_equals_non_streamed(client):
    streamed = client.stream("same words", model="openai/gpt-4o").reply
    plain = client.chat("same words", model="openai/gpt-4o")
    assert streamed.text == plain.text and plain.finish_reason == streamed.finish_reason == "stop"
    assert plain.usage == streamed.usage


@pytest.mark.parametrize("spec", ["429:0*1", "500*2", "502*1", "503*2"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_retryable_faults_are_retried_and_succeed(client, emu, spec, stream):
    prompt = fault(spec)
    reply = client.stream(prompt).reply if stream else client.chat(prompt)
    assert reply.complete and "Tell me about faults" in reply.text
    expected = 1 + int(spec.split("*")[1])
    assert chat_requests(emu) == expected


def test_retries_run_out(client, emu):
    with pytest.raises(ServerError) as info:
        client.chat(fault("500*3"))
    assert chat_requests(emu) == 3 and info.value.status == 500
    assert info.value.type == "internal_error"


def test_long_rate_limit_hint_is_not_waited_for(client, emu):
    started = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        client.chat(fault("429:300"))
    assert time.monotonic() - started < 2 and chat_requests(emu) == 1
    assert info.value.retry_after == 300 and info.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize(
    "spec, cls, fragment",
    [
        ("401", AuthenticationError, "authentication_error invalid_api_key"),
        ("400", BadRequestError, "unknown provider type"),
    ],
)
def test_client_faults_give_one_clear_error(client, emu, spec, cls, fragment):
    with pytest.raises(cls) as info:
        client.stream(fault(spec))
    assert fragment in str(info.value) and "\n" not in info.value.one_line()
    assert chat_requests(emu) == 1


def test_wrong_key_and_unknown_model(emu):
    with Client("sk-wrong", base_url=emu.base_url) as c, pytest.raises(AuthenticationError):
        c.chat("hi")
    with Client(TEST_KEY, base_url=emu.base_url) as c, pytest.raises(NotFoundError):
        c.chat("hi", model="nobody/nothing")


def test_slow_first_byte_within_and_beyond_the_timeout(emu):
    patient = Timeouts(connect=2, first_byte=3, between_chunks=3)
    with Client(TEST_KEY, base_url=emu.base_url, timeout=patient) as c:
        assert c.stream(fault("slow:0.3")).reply.complete
    hasty = Timeouts(connect=2, first_byte=0.15, between_chunks=3)
    with Client(TEST_KEY, base_url=emu.base_url, timeout=hasty, max_retries=0) as c:
        with pytest.raises(APITimeoutError, match="first byte"):
            c.stream(fault("slow:1"))


def test_stall_mid_stream_hits_the_between_chunk_timeout(emu):
    # First byte may take 3 s, but once streaming a 0.6 s silence is too long.
    timeouts = Timeouts(connect=2, first_byte=3, between_chunks=0.25)
    with Client(TEST_KEY, base_url=emu.base_url, timeout=timeouts) as c:
        stream = c.stream(fault("stall:1"))
        with pytest.raises(StreamError) as info:
            stream.reply  # noqa: B018
    err = info.value
    assert err.kind == "timeout" and "stalled" in str(err)
    assert err.partial.text and not err.partial.complete
    assert chat_requests(emu) == 1  # a stream that has begun is never retried
    relaxed = Timeouts(connect=2, first_byte=3, between_chunks=3)
    with Client(TEST_KEY, base_url=emu.base_url, timeout=relaxed) as c:
        assert c.stream(fault("stall:0.4")).reply.complete


@pytest.mark.parametrize(
    "spec, kind, fragment",
    [
        ("disconnect:3", "disconnected", "connection broke"),
        ("malformed:2", "malformed", "not JSON"),
        ("error-openai:2", "error_event", "The server had an error"),
        ("error-openai-event:2", "error_event", "The server had an error"),
        ("error-openrouter:2", "error_event", "Provider disconnected unexpectedly"),
    ],
)
def test_broken_streams_keep_the_partial_reply(client, emu, spec, kind, fragment):
    stream = client.stream(fault(spec))
    seen: list[str] = []
    with pytest.raises(StreamError) as info:
        for event in stream:
            if isinstance(event, TextDelta):
                seen.append(event.text)
    err = info.value
    assert err.kind == kind and fragment in str(err)
    assert err.partial.text == "".join(seen) and err.partial.text
    assert not err.partial.complete and stream.partial().text == err.partial.text
    assert chat_requests(emu) == 1


def test_stream_without_done_is_complete(client):
    reply = client.stream(fault("no-done")).reply
    assert reply.complete and reply.finish_reason == "stop"


def test_fallback_names_the_model_that_answered(client, emu):
    provider = provider_options("latency", ["openai/gpt-4o"])
    reply = client.chat("hi", model="openai/gpt-4-turbo", provider=provider)
    assert reply.model == "openai/gpt-4o" and reply.fell_back
    streamed = client.stream(fault("502"), model="openai/gpt-4o-mini", provider=provider).reply
    assert streamed.model == "openai/gpt-4o" and streamed.requested_model == "openai/gpt-4o-mini"
    assert emu.requests[-1].body["provider"] == {
        "routing": "latency",
        "fallback": ["openai/gpt-4o"],
    }


def test_tool_calls_arrive_in_fragments_and_join(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    reply = client.stream('Use get_weather {"city": "Paris"} please', tools=tools).reply
    assert reply.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("get_weather", '{"city": "Paris"}')
    ]


def test_reasoning_kept_apart(client):
    reply = client.stream("think first", model="deepseek/deepseek-v4-pro").reply
    assert reply.reasoning and reply.reasoning not in reply.text


def test_models_from_the_emulator(client):
    models = {m.id: m for m in client.models()}
    assert models["deepseek/deepseek-v3.2"].vision is False
    assert models["openai/gpt-4o"].vision and models["openai/gpt-4o"].prompt_price == 0.0000025
    assert not models["openai/text-embedding-3-small"].is_chat
    assert client.model("anthropic/claude-sonnet-4.5").completion_price == 0.000015


def test_connection_refused_is_one_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    with Client(TEST_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1) as c:
        c._core.retry = RetryPolicy(max_retries=1, initial=0.01)
        with pytest.raises(APIConnectionError, match="could not reach") as info:
            c.chat("hi")
    assert TEST_KEY not in str(info.value)


def test_offline_default_uses_the_shared_emulator():
    from ofox_jupyter.emulator import shared_emulator

    with Client() as c:
        assert c.offline and c.offline_notice and "offline emulator" in c.offline_notice
        reply = c.chat("no key here")
        assert c.base_url == shared_emulator().base_url
    assert reply.offline and "no key here" in reply.text


def test_async_client_against_the_emulator(emu):
    async def main() -> tuple[str, str, str]:
        async with AsyncClient(TEST_KEY, base_url=emu.base_url) as c:
            c._core.retry = RetryPolicy(max_retries=2, initial=0.01)
            stream = await c.stream(fault("503*1"))
            text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
            plain = (await c.chat("async plain")).text
            broken = await c.stream(fault("disconnect:2"))
            try:
                await broken.get_reply()
            except StreamError as err:
                partial = err.partial.text
            else:
                partial = "<no error>"
        return text, plain, partial

    text, plain, partial = asyncio.run(main())
    assert "Tell me about faults" in text and "async plain" in plain
    assert partial and partial != "<no error>"
