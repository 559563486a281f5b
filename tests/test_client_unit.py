"""Client unit tests over httpx.MockTransport: request shape, errors, retries, secrets.

The fault matrix over real HTTP against the emulator is in test_client_faults.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import httpx
import pytest
from helpers import Recorder, chunk, sse, sse_response, usage_chunk

import ofox_jupyter
from ofox_jupyter import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConfigError,
    NotFoundError,
    OfoxError,
    PermissionDeniedError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    StreamError,
    TextDelta,
    provider_options,
)

KEY = "sk-unit-secret-93b1f0"
URL = "https://api.ofox.ai/v1"


def completion(text: str = "hi", model: str = "openai/gpt-4o") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


def error(status: int, body: dict | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json=body or {"error": {"message": "nope"}},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def client(rec: Recorder, **kw) -> Client:
    return Client(KEY, base_url=URL, transport=httpx.MockTransport(rec), **kw)


def test_request_carries_every_field_and_extensions():
    rec = Recorder(completion())
    with client(rec) as c:
        reply = c.chat(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            model="openai/gpt-4o",
            temperature=0.2,
            max_tokens=10,
            top_p=0.9,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            stop=["\n"],
            seed=7,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            tool_choice="f",
            response_format={"type": "json_object"},
            provider=provider_options("latency", ["anthropic/claude-sonnet-4.5"]),
            extra_body={"model_routing_config": {"preference": "cost"}},
        )
    assert reply.text == "hi"
    body = rec.json()
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["temperature"] == 0.2 and body["max_tokens"] == 10 and body["top_p"] == 0.9
    assert body["frequency_penalty"] == 0.5 and body["presence_penalty"] == -0.5
    assert body["stop"] == ["\n"] and body["seed"] == 7
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"] == {"type": "json_object"}
    assert body["provider"] == {"routing": "latency", "fallback": ["anthropic/claude-sonnet-4.5"]}
    assert body["model_routing_config"] == {"preference": "cost"}
    assert "stream" not in body
    request = rec.requests[0]
    assert request.url == URL + "/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_stream_asks_for_usage_and_event_stream():
    rec = Recorder(
        sse_response(
            [sse(chunk({"content": "a"}), chunk({}, "stop"), usage_chunk(), "data: [DONE]\n\n")]
        )
    )
    with client(rec) as c, c.stream("hi") as s:
        assert s.reply.text == "a"
        assert s.reply.usage.total_tokens == 12
    body = rec.json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert rec.requests[0].headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"temperature": 2.5}, "temperature must be in [0, 2]"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"presence_penalty": -2.5}, "presence_penalty"),
        ({"tool_choice": 5}, "tool_choice"),
    ],
)
def test_bad_values_fail_before_sending(options, fragment):
    rec = Recorder(completion())
    with (
        client(rec) as c,
        pytest.raises(
            RequestValidationError,
            match=fragment.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]"),
        ),
    ):
        c.chat("hi", **options)
    assert rec.requests == []


def test_routing_is_checked():
    with pytest.raises(RequestValidationError, match="routing"):
        provider_options("fastest")
    assert provider_options() is None


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
    ],
)
def test_status_decides_the_class(status, cls):
    rec = Recorder(error(status, {"error": {"message": "m", "type": "t", "code": "c"}}))
    with client(rec, max_retries=0) as c, pytest.raises(cls) as info:
        c.chat("hi")
    assert info.value.status == status
    assert str(info.value) == f"HTTP {status} t c: m"


def test_error_body_variants():
    # The observed real shape: numeric code equal to the status, message tagged [ofox.ai].
    rec = Recorder(
        error(
            400,
            {
                "error": {
                    "message": "unknown provider type: x [ofox.ai]",
                    "type": "invalid_request_error",
                    "code": 400,
                }
            },
        )
    )
    with client(rec) as c, pytest.raises(BadRequestError) as info:
        c.chat("hi")
    assert info.value.code == 400 and info.value.type == "invalid_request_error"
    assert str(info.value) == "HTTP 400 invalid_request_error: unknown provider type: x [ofox.ai]"
    # The docs' short examples leave out type.
    rec = Recorder(error(502, {"error": {"code": "upstream_error", "message": "upstream failed"}}))
    with client(rec, max_retries=0) as c, pytest.raises(ServerError) as info:
        c.chat("hi")
    assert info.value.type is None and str(info.value) == "HTTP 502 upstream_error: upstream failed"
    # Not JSON at all.
    rec = Recorder(httpx.Response(503, text="<html>bad gateway</html>"))
    with client(rec, max_retries=0) as c, pytest.raises(ServerError, match="no error message"):
        c.chat("hi")


def test_retries_then_succeeds_honouring_retry_after_ms():
    rec = Recorder(error(503, retry_after_ms="50"), error(429, retry_after="0"), completion("ok"))
    started = time.monotonic()
    with client(rec) as c:
        assert c.chat("hi").text == "ok"
    assert len(rec.requests) == 3
    assert time.monotonic() - started >= 0.05


def test_ratelimit_reset_header_is_a_duration():
    # The reset header comes on every response; it is a wait hint only when none are left.
    rec = Recorder(
        error(500, x_ratelimit_reset_requests="60s", x_ratelimit_remaining_requests="7"),
        error(429, x_ratelimit_reset_requests="120ms", x_ratelimit_remaining_requests="0"),
        completion("ok"),
    )
    started = time.monotonic()
    with client(rec) as c:
        assert c.chat("hi").text == "ok"
    assert 0.12 <= time.monotonic() - started < 5


def test_gives_up_after_max_retries_and_on_long_hints():
    rec = Recorder(error(500, retry_after="0"))
    with client(rec, max_retries=2) as c, pytest.raises(ServerError):
        c.chat("hi")
    assert len(rec.requests) == 3
    rec = Recorder(error(429, retry_after="3600"))
    with client(rec) as c, pytest.raises(RateLimitError) as info:
        c.chat("hi")
    assert len(rec.requests) == 1 and info.value.retry_after == 3600


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(status):
    rec = Recorder(error(status))
    with client(rec) as c, pytest.raises(APIStatusError):
        c.chat("hi")
    assert len(rec.requests) == 1


def _all_request_errors() -> list[type[httpx.RequestError]]:
    found = []
    for obj in vars(httpx).values():
        if inspect.isclass(obj) and issubclass(obj, httpx.RequestError):
            found.append(obj)
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("exc_class", _all_request_errors(), ids=lambda c: c.__name__)
def test_every_httpx_request_error_is_mapped(exc_class):
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc_class("failed", request=request)

    with Client(KEY, base_url=URL, transport=httpx.MockTransport(boom), max_retries=0) as c:
        with pytest.raises(OfoxError) as info:
            c.chat("hi")
    expected = (
        APITimeoutError if issubclass(exc_class, httpx.TimeoutException) else APIConnectionError
    )
    assert isinstance(info.value, expected)
    assert KEY not in str(info.value)


def test_connection_errors_are_retried():
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return completion("finally")

    with Client(KEY, base_url=URL, transport=httpx.MockTransport(flaky)) as c:
        c._core.retry = ofox_jupyter._request.RetryPolicy(max_retries=2, initial=0.01)
        assert c.chat("hi").text == "finally"
    assert len(calls) == 3


def test_broken_stream_keeps_partial_text():
    class Breaks(httpx.SyncByteStream):
        def __iter__(self):
            yield sse(chunk({"content": "half "}), chunk({"content": "a reply"}))
            raise httpx.RemoteProtocolError("peer closed connection")

    rec = Recorder(
        httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Breaks())
    )
    with client(rec) as c:
        stream = c.stream("hi")
        seen = []
        with pytest.raises(StreamError) as info:
            for event in stream:
                seen.append(event)
    assert info.value.kind == "disconnected"
    assert info.value.partial.text == "half a reply" and not info.value.partial.complete
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["half ", "a reply"]
    assert len(rec.requests) == 1  # never retried once the stream had begun


def test_stream_from_a_server_that_ignores_stream_true():
    rec = Recorder(completion("whole"))
    with client(rec) as c, c.stream("hi") as s:
        assert [e for e in s if isinstance(e, TextDelta)] == [TextDelta("whole")]
        assert s.reply.text == "whole"


def test_stream_replays_and_partial():
    rec = Recorder(
        sse_response(
            [
                sse(
                    chunk({"content": "a"}),
                    chunk({"content": "b"}),
                    chunk({}, "stop"),
                    "data: [DONE]\n\n",
                )
            ]
        )
    )
    with client(rec) as c, c.stream("hi") as s:
        first = next(iter(s))
        assert first == TextDelta("a")
        assert s.partial().text == "a" and not s.partial().complete
        assert [e.text for e in s if isinstance(e, TextDelta)] == ["a", "b"]
        assert s.reply.complete


def test_models_prices_are_numbers():
    rec = Recorder(
        httpx.Response(
            200,
            json={
                "object": "list",
                "data": [
                    {
                        "id": "a/b",
                        "context_length": 1000,
                        "pricing": {"prompt": "0.000003", "completion": "0.000015"},
                        "architecture": {
                            "input_modalities": ["text", "image"],
                            "output_modalities": ["text"],
                        },
                        "supported_parameters": ["tools", "response_format"],
                    },
                    {
                        "id": "e/mb",
                        "context_length": 0,
                        "pricing": {"prompt": "0", "completion": "0"},
                        "architecture": {
                            "input_modalities": ["text"],
                            "output_modalities": ["embeddings"],
                        },
                        "supported_endpoints": ["/v1/embeddings"],
                    },
                    {"no": "id"},
                ],
            },
        )
    )
    with client(rec) as c:
        models = c.models()
    assert [m.id for m in models] == ["a/b", "e/mb"]
    a, e = models
    assert a.prompt_price == 0.000003 and a.completion_price == 0.000015
    assert a.vision and a.tools and a.json_mode and a.is_chat
    assert not e.is_chat and e.prompt_price == 0.0
    assert rec.requests[0].url == URL + "/models"


def test_key_is_never_shown():
    rec = Recorder(
        error(
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {KEY}",
                    "type": "authentication_error",
                }
            },
        )
    )
    with client(rec) as c:
        assert KEY not in repr(c)
        assert KEY not in repr(c._core.settings)
        with pytest.raises(AuthenticationError) as info:
            c.chat("hi")
    err = info.value
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in err.one_line()
    assert "********" in str(err)


@pytest.mark.parametrize("url", ["http://api.example.com/v1", "http://10.0.0.5:8000/v1"])
def test_refuses_key_over_plain_http_to_remote_hosts(url):
    with pytest.raises(ConfigError, match="plain http"):
        Client(KEY, base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:1/v1",
        "http://[::1]:8000/v1",
        "https://api.example.com/v1",
    ],
)
def test_allows_loopback_http_and_https(url):
    Client(KEY, base_url=url).close()


def test_bad_base_url():
    with pytest.raises(ConfigError, match="not an http"):
        Client(KEY, base_url="ftp://x")


def test_offline_default_without_key(monkeypatch):
    c = Client(transport=httpx.MockTransport(lambda r: completion()))
    assert c.offline and "offline emulator" in (c.offline_notice or "")
    monkeypatch.setenv("OFOX_BASE_URL", "offline")
    assert Client(KEY, transport=httpx.MockTransport(lambda r: completion())).offline
    monkeypatch.delenv("OFOX_BASE_URL")
    monkeypatch.setenv("OFOX_API_KEY", KEY)
    online = Client(transport=httpx.MockTransport(lambda r: completion()))
    assert not online.offline and online.offline_notice is None


def test_async_client_parity():
    async def main() -> tuple[str, str, int]:
        rec = Recorder(
            error(503, retry_after="0"),
            sse_response(
                [
                    sse(
                        chunk({"content": "as"}),
                        chunk({"content": "ync"}),
                        chunk({}, "stop"),
                        usage_chunk(),
                        "data: [DONE]\n\n",
                    )
                ]
            ),
        )
        async with AsyncClient(KEY, base_url=URL, transport=httpx.MockTransport(rec)) as c:
            stream = await c.stream("hi")
            texts = [e.text async for e in stream if isinstance(e, TextDelta)]
            reply = await stream.get_reply()
            rec2 = Recorder(completion("plain"))
            c2 = AsyncClient(KEY, base_url=URL, transport=httpx.MockTransport(rec2))
            plain = (await c2.chat("hi")).text
            await c2.aclose()
        return "".join(texts) + reply.text, plain, len(rec.requests)

    streamed, plain, requests = asyncio.run(main())
    assert streamed == "asyncasync" and plain == "plain" and requests == 2


def test_async_errors_are_mapped():
    async def main() -> None:
        rec = Recorder(error(401))
        async with AsyncClient(KEY, base_url=URL, transport=httpx.MockTransport(rec)) as c:
            await c.chat("hi")

    with pytest.raises(AuthenticationError):
        asyncio.run(main())


def test_public_exports_are_sorted_and_complete():
    exported = ofox_jupyter.__all__
    assert exported == sorted(exported, key=str.casefold)
    for name in exported:
        assert getattr(ofox_jupyter, name) is not None
    with pytest.raises(AttributeError):
        ofox_jupyter.nope  # noqa: B018
    assert json.loads(json.dumps(exported))
