"""The official openai SDK against the emulator: if the SDK is happy, the wire protocol is right.

Written against openai 3.57 (its transport is the ``httpx2`` fork); ``max_retries=0`` so every
error surfaces at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest_emulator import KEY

from ofox_jupyter.emulator import Emulator

GPT = "openai/gpt-4o"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    },
]


def user(text: str) -> Any:
    """A user message (typed ``Any`` so the SDK's TypedDict overloads stay out of the way)."""
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[openai.OpenAI]:
    emu.clear()
    sdk = openai.OpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0, timeout=10)
    try:
        yield sdk
    finally:
        sdk.close()


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "anthropic/claude-sonnet-4.5" in ids and len(ids) == 8
    assert client.models.retrieve("openai/gpt-4o-mini").id == "openai/gpt-4o-mini"


def test_streamed_text_equals_non_streamed(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "system", "content": "Be brief."}, user("one\ntwo three")]
    whole = client.chat.completions.create(model=GPT, messages=messages)
    assert whole.model == GPT
    assert whole.choices[0].finish_reason == "stop"
    text = whole.choices[0].message.content
    assert text is not None and "> one\n> two three" in text
    pieces: list[str] = []
    ids: set[str] = set()
    finish = None
    with client.chat.completions.create(model=GPT, messages=messages, stream=True) as stream:
        for chunk in stream:
            ids.add(chunk.id)
            choice = chunk.choices[0]
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == text
    assert finish == "stop"
    assert len(ids) == 1 and ids != {whole.id}
    assert whole.usage is not None
    assert len([p for p in pieces if p]) == whole.usage.completion_tokens


def test_include_usage_gives_a_final_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=GPT,
            messages=[user("count me")],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(chunk.usage is None for chunk in body)
    assert last.usage.completion_tokens == len([c for c in body if c.choices[0].delta.content])


def test_fragmented_tool_calls_reassemble(client: openai.OpenAI) -> None:
    prompt = 'Check get_weather {"city": "Lyon", "days": 2} and get_time.'
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model=GPT, messages=[user(prompt)], tools=TOOLS, stream=True
    ):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for fragment in choice.delta.tool_calls or []:
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            if fragment.id:
                call["id"] = fragment.id
            if fragment.function and fragment.function.name:
                call["name"] = fragment.function.name
            if fragment.function and fragment.function.arguments:
                call["arguments"] += fragment.function.arguments
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Lyon", "days": 2}
    assert json.loads(calls[1]["arguments"]) == {"zone": "example"}
    assert len({call["id"] for call in calls.values()}) == 2

    whole = client.chat.completions.create(model=GPT, messages=[user(prompt)], tools=TOOLS)
    message = whole.choices[0].message
    assert message.content is None and message.tool_calls is not None
    assert [(c.id, c.model_dump()["function"]["arguments"]) for c in message.tool_calls] == [
        (calls[i]["id"], calls[i]["arguments"]) for i in sorted(calls)
    ]


def test_tool_round_trip(client: openai.OpenAI) -> None:
    messages: list[Any] = [user("get_weather please")]
    first = client.chat.completions.create(model=GPT, messages=messages, tools=TOOLS)
    message = first.choices[0].message
    assert message.tool_calls
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'})
    second = client.chat.completions.create(model=GPT, messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content is not None
    assert second.choices[0].message.content.endswith('Tool results:\n- get_weather: {"temp": 21}')


def test_json_mode(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[user("Reply in JSON")],
        response_format={"type": "json_object"},
    )
    assert json.loads(whole.choices[0].message.content or "") == {
        "reply": "Reply in JSON",
        "turn": 1,
        "images": [],
    }
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    structured = client.chat.completions.create(
        model=GPT,
        messages=[user("Reply in JSON")],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": schema, "strict": True},
        },
    )
    assert json.loads(structured.choices[0].message.content or "") == {"answer": "example", "n": 1}


def test_errors_map_to_sdk_exceptions(emu: Emulator, client: openai.OpenAI) -> None:
    messages: Any = [user("hi")]
    wrong = openai.OpenAI(base_url=emu.base_url, api_key="sk-wrong", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as auth:
            wrong.chat.completions.create(model=GPT, messages=messages)
    finally:
        wrong.close()
    assert auth.value.status_code == 401
    assert "sk-wrong" not in str(auth.value)

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(
            model=GPT, messages=messages, extra_headers={"X-Ofox-Emulator-Fault": "429"}
        )
    assert limited.value.response.headers["retry-after"] == "1"

    emu.inject("500")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=GPT, messages=messages, stream=True)

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="acme/nope", messages=messages)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=GPT, messages=messages, temperature=3)


def test_mid_stream_openai_error_raises(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=GPT,
        messages=[user("hi")],
        stream=True,
        extra_headers={"X-Ofox-Emulator-Fault": "error-openai:2"},
    )
    with pytest.raises(openai.APIError, match="The server had an error"):
        for _ in stream:
            pass


def test_fallback_via_extra_body(client: openai.OpenAI) -> None:
    fallback = {"provider": {"routing": "cost", "fallback": ["anthropic/claude-sonnet-4.5"]}}
    whole = client.chat.completions.create(
        model="openai/gpt-4-turbo", messages=[user("hi")], extra_body=fallback
    )
    assert whole.model == "anthropic/claude-sonnet-4.5"
    models = {
        chunk.model
        for chunk in client.chat.completions.create(
            model="openai/gpt-4-turbo", messages=[user("hi")], extra_body=fallback, stream=True
        )
    }
    assert models == {"anthropic/claude-sonnet-4.5"}
    with pytest.raises(openai.InternalServerError) as retired:
        client.chat.completions.create(model="openai/gpt-4-turbo", messages=[user("hi")])
    assert retired.value.status_code == 503
