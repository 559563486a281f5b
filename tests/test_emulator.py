"""The offline emulator over real HTTP on 127.0.0.1: catalog, auth, validation, the deterministic
model, the exact SSE framing, fault injection, fallback, the CLI and the shared instance."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest_emulator import (
    AUTH,
    KEY,
    chart_like_image,
    data_chunks,
    image_part,
    png_data_url,
    sse_blocks,
    user,
)
from PIL import Image

from ofox_jupyter.emulator import Emulator, catalog, parse_fault, shared_emulator

GPT = "openai/gpt-4o"
HELLO = [user("hello")]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "default": 3},
                "detailed": {"type": "boolean"},
                "note": {"anyOf": [{"type": "null"}, {"type": "number"}]},
            },
            "required": ["city", "unit", "days", "note"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(emu: Emulator) -> None:
    emu.clear()


@pytest.fixture(scope="module")
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers=AUTH, timeout=10) as client:
        yield client


def chat(http: httpx.Client, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    body.setdefault("model", GPT)
    body.setdefault("messages", HELLO)
    return http.post("/chat/completions", json=body, headers=headers)


def reply(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = chat(http, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def content(http: httpx.Client, **body: Any) -> str:
    text: str = reply(http, **body)["choices"][0]["message"]["content"]
    return text


def stream_text(http: httpx.Client, headers: dict[str, str] | None = None, **body: Any) -> str:
    response = chat(http, headers=headers, stream=True, **body)
    assert response.status_code == 200, response.text
    return response.text


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def assert_common_headers(response: httpx.Response) -> None:
    assert response.headers["x-ratelimit-limit-requests"] == "200"
    assert int(response.headers["x-ratelimit-remaining-requests"]) in range(200)
    assert re.fullmatch(r"\d+(\.\d+)?s", response.headers["x-ratelimit-reset-requests"])
    assert response.headers["x-request-id"]


# --------------------------------------------------------------------------- catalog


def test_models_list_is_public_and_matches_the_catalog(emu: Emulator) -> None:
    response = httpx.get(f"{emu.base_url}/models")  # no key
    assert response.status_code == 200
    assert_common_headers(response)
    body = response.json()
    assert body["object"] == "list"
    assert body["data"] == catalog()
    assert [m["id"] for m in body["data"]] == [
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4.5",
        "google/gemini-2.5-flash",
        "deepseek/deepseek-v3.2",
        "deepseek/deepseek-v4-pro",
        "openai/text-embedding-3-small",
        "openai/gpt-4-turbo",
    ]
    fields = {
        "id", "object", "created", "owned_by", "canonical_slug", "name", "description",
        "context_length", "architecture", "pricing", "top_provider", "per_request_limits",
        "supported_parameters", "default_parameters", "expiration_date", "is_deprecated",
        "supported_endpoints",
    }  # fmt: skip
    for model in body["data"]:
        assert set(model) == fields
        assert model["object"] == "model"
        assert ": " in model["name"]
        assert all(isinstance(price, str) for price in model["pricing"].values())
        arch = model["architecture"]
        assert arch["modality"] == "+".join(arch["input_modalities"]) + "->" + "+".join(
            arch["output_modalities"]
        )


def test_catalog_prices_and_capabilities() -> None:
    by_id = {m["id"]: m for m in catalog()}
    prices = {i: (m["pricing"]["prompt"], m["pricing"]["completion"]) for i, m in by_id.items()}
    assert prices["openai/gpt-4o"] == ("0.0000025", "0.00001")
    assert prices["openai/gpt-4o-mini"] == ("0.00000015", "0.0000006")
    assert prices["anthropic/claude-sonnet-4.5"] == ("0.000003", "0.000015")
    assert prices["google/gemini-2.5-flash"] == ("0.0000003", "0.0000025")
    assert prices["deepseek/deepseek-v3.2"] == ("0.00000028", "0.00000042")
    assert prices["deepseek/deepseek-v4-pro"] == ("0.0000005", "0.000002")
    claude = by_id["anthropic/claude-sonnet-4.5"]
    assert claude["pricing"]["input_cache_read"] == "0.0000003"
    assert claude["pricing"]["input_cache_write_5m"] == "0.00000375"
    assert claude["pricing"]["input_cache_write_1h"] == "0.000006"
    assert claude["context_length"] == 200000
    assert claude["architecture"]["input_modalities"] == ["text", "image", "file"]
    assert "reasoning" in claude["supported_parameters"]
    gpt = by_id["openai/gpt-4o"]
    assert gpt["top_provider"]["max_completion_tokens"] == 16384
    assert {"tools", "tool_choice", "response_format"} <= set(gpt["supported_parameters"])
    assert by_id["google/gemini-2.5-flash"]["context_length"] == 1048576
    assert by_id["deepseek/deepseek-v3.2"]["architecture"]["input_modalities"] == ["text"]
    embedding = by_id["openai/text-embedding-3-small"]
    assert embedding["context_length"] == 0
    assert embedding["top_provider"]["max_completion_tokens"] is None
    assert embedding["architecture"]["output_modalities"] == ["embeddings"]
    assert embedding["supported_endpoints"] == ["/v1/embeddings"]
    retired = by_id["openai/gpt-4-turbo"]
    assert retired["is_deprecated"] is True
    assert retired["expiration_date"] == "2026-01-01"
    # fresh dicts every call
    by_id["openai/gpt-4o"]["pricing"]["prompt"] = "0"
    assert catalog()[0]["pricing"]["prompt"] == "0.0000025"


def test_model_detail_and_unknown_model(http: httpx.Client) -> None:
    response = http.get("/models/anthropic/claude-sonnet-4.5")
    assert response.status_code == 200
    assert response.json() == next(m for m in catalog() if m["id"] == "anthropic/claude-sonnet-4.5")
    missing = httpx.get(f"{http.base_url}models/acme/nope")
    assert missing.status_code == 404
    assert_common_headers(missing)
    assert missing.json() == {
        "error": {
            "code": "model_not_found",
            "message": "Model 'acme/nope' does not exist",
            "type": "not_found_error",
        }
    }


def test_unknown_path_and_wrong_method_are_json_errors(http: httpx.Client) -> None:
    response = http.get("/embeddings")
    assert response.status_code == 404
    assert_common_headers(response)
    assert error_of(response)["type"] == "not_found_error"
    response = http.get("/chat/completions")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# --------------------------------------------------------------------------- auth


def test_chat_needs_the_key_and_never_echoes_it(emu: Emulator) -> None:
    url = f"{emu.base_url}/chat/completions"
    body = {"model": GPT, "messages": HELLO}
    expected = {
        "error": {
            "code": "invalid_api_key",
            "message": "The provided API Key is invalid.",
            "type": "authentication_error",
        }
    }
    missing = httpx.post(url, json=body)
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-wrong-secret"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == expected
        assert_common_headers(response)
    assert "sk-wrong-secret" not in wrong.text + str(wrong.headers)
    ok = httpx.post(url, json=body, headers=AUTH)
    assert ok.status_code == 200
    assert KEY not in ok.text + str(ok.headers)


def test_emulator_without_key_accepts_any_request() -> None:
    with Emulator() as open_emu:
        response = httpx.post(
            f"{open_emu.base_url}/chat/completions", json={"model": GPT, "messages": HELLO}
        )
    assert response.status_code == 200


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": None}, "model"),
        ({"model": 5}, "model"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages[0].role"),
        ({"messages": [user("a"), {"role": "robot", "content": "x"}]}, "messages[1].role"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice"),
        ({"provider": {"routing": "fastest"}}, "provider.routing"),
        ({"provider": {"fallback": "openai/gpt-4o-mini"}}, "provider.fallback"),
        ({"provider": {"fallback": [1, 2]}}, "provider.fallback"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(
    http: httpx.Client, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"model": GPT, "messages": HELLO, **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert_common_headers(response)
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]


def test_bad_json_is_400(http: httpx.Client) -> None:
    response = http.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_boundary_values_and_unknown_fields_are_accepted(http: httpx.Client) -> None:
    body = reply(
        http,
        temperature=2,
        top_p=1,
        max_tokens=1000,
        frequency_penalty=-2,
        presence_penalty=2,
        response_format={"type": "text"},
        tool_choice="auto",
        provider={"routing": "balanced", "fallback": []},
        seed=7,
        stop=["\n\n\n"],
        some_future_field={"x": 1},
    )
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("routing", ["priority", "cost", "latency", "balanced"])
def test_every_documented_routing_is_accepted(http: httpx.Client, routing: str) -> None:
    assert chat(http, provider={"routing": routing}).status_code == 200


# --------------------------------------------------------------------------- model checks


def test_unknown_model_is_404(http: httpx.Client) -> None:
    response = chat(http, model="acme/imaginary-1")
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "model_not_found",
        "message": "Model 'acme/imaginary-1' does not exist",
        "type": "not_found_error",
    }


def test_embedding_model_is_not_a_chat_model(http: httpx.Client) -> None:
    response = chat(http, model="openai/text-embedding-3-small")
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].endswith("is not a chat model")


def test_retired_model_is_503_model_unavailable(http: httpx.Client) -> None:
    for stream in (False, True):
        response = chat(http, model="openai/gpt-4-turbo", stream=stream)
        assert response.status_code == 503
        assert response.json() == {
            "error": {
                "code": "model_unavailable",
                "message": "Model openai/gpt-4-turbo is unavailable (retired)",
                "type": "service_unavailable",
            }
        }


def test_image_to_text_only_model_is_400(http: httpx.Client) -> None:
    red = png_data_url(Image.new("RGB", (8, 8), "red"))
    response = chat(
        http,
        model="deepseek/deepseek-v3.2",
        messages=[user([{"type": "text", "text": "what?"}, image_part(red)])],
    )
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "unsupported_input",
        "message": "Model deepseek/deepseek-v3.2 does not accept image input",
        "type": "invalid_request_error",
    }


def test_context_length_exceeded(http: httpx.Client) -> None:
    fits = "x" * (4 * (128000 - 10))
    assert chat(http, model="deepseek/deepseek-v3.2", messages=[user(fits)]).status_code == 200
    too_long = "x" * (4 * 128000)
    response = chat(http, model="deepseek/deepseek-v3.2", messages=[user(too_long)])
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert "128000" in error["message"]
    # the same prompt fits Gemini's 1M window
    assert chat(http, model="google/gemini-2.5-flash", messages=[user(too_long)]).status_code == 200


# --------------------------------------------------------------------------- reply text


def test_reply_restates_prompt_and_system_prompt(http: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "Be   brief.\nAlways."},
        user("first line\nsecond line"),
    ]
    assert content(http, messages=messages) == (
        "*Offline emulator · `openai/gpt-4o` · turn 1*\n\n"
        "You said:\n\n"
        "> first line\n"
        "> second line\n\n"
        "System prompt: Be brief. Always."
    )


def test_turn_counts_user_messages_and_uses_the_last_one(http: httpx.Client) -> None:
    messages = [
        user("one"),
        {"role": "assistant", "content": "ok"},
        user([{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}]),
    ]
    body = reply(http, messages=messages, model="anthropic/claude-sonnet-4.5")
    assert body["model"] == "anthropic/claude-sonnet-4.5"
    assert body["choices"][0]["message"]["content"] == (
        "*Offline emulator · `anthropic/claude-sonnet-4.5` · turn 2*\n\nYou said:\n\n> two\n> parts"
    )


def test_reply_is_deterministic_and_shaped_like_section_5(http: httpx.Client) -> None:
    first, second = reply(http), reply(http)
    assert first["choices"] == second["choices"]
    assert first["usage"] == second["usage"]
    assert first["id"] != second["id"]
    assert first["id"].startswith("chatcmpl-")
    assert set(first) == {"id", "object", "created", "model", "choices", "usage"}
    assert first["object"] == "chat.completion"
    assert first["choices"][0]["index"] == 0
    assert first["choices"][0]["message"]["role"] == "assistant"
    assert first["choices"][0]["finish_reason"] == "stop"
    assert "reasoning_content" not in first["choices"][0]["message"]


def test_usage_counts_messages_and_pieces(http: httpx.Client) -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("first line\nsecond line")]
    body = reply(http, messages=messages)
    text = body["choices"][0]["message"]["content"]
    pieces = re.findall(r"\s*\S+\s*", text)
    assert "".join(pieces) == text
    assert body["usage"] == {
        "prompt_tokens": (4 + math.ceil(9 / 4)) + (4 + math.ceil(22 / 4)),
        "completion_tokens": len(pieces),
        "total_tokens": 17 + len(pieces),
    }


def test_max_tokens_cuts_the_reply(http: httpx.Client) -> None:
    full = content(http)
    body = reply(http, max_tokens=4)
    assert body["choices"][0]["finish_reason"] == "length"
    cut = body["choices"][0]["message"]["content"]
    assert cut == "".join(re.findall(r"\s*\S+\s*", full)[:4])
    assert body["usage"]["completion_tokens"] == 4


def test_words_marker_appends_filler_and_is_not_restated(http: httpx.Client) -> None:
    plain = reply(http, messages=[user("long please")])
    longer = reply(http, messages=[user("long please [emulator-words: 50]")])
    text = longer["choices"][0]["message"]["content"]
    assert "emulator-words" not in text
    assert text.startswith(plain["choices"][0]["message"]["content"] + "\n\nalpha bravo")
    assert text.endswith(".")
    assert longer["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] + 50


def test_filter_marker_stops_with_content_filter(http: httpx.Client) -> None:
    body = reply(http, messages=[user("say something rude [emulator-filter]")])
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert body["choices"][0]["message"]["content"] == "*Offline emulator · "
    text = stream_text(http, messages=[user("rude [emulator-filter]")])
    chunks = data_chunks(text)
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) == 3


# --------------------------------------------------------------------------- images


def test_image_description_of_a_red_png(http: httpx.Client) -> None:
    red = png_data_url(Image.new("RGB", (64, 32), (255, 0, 0)))
    body = reply(http, messages=[user([{"type": "text", "text": "what?"}, image_part(red)])])
    text = body["choices"][0]["message"]["content"]
    assert text.endswith("> what?\n\nImage 1: 64×32 RGB, mostly red.")
    # 4 + ceil(5/4) for the text, 85 + 170 × 1 tile for the image
    assert body["usage"]["prompt_tokens"] == 4 + 2 + 255
    low = reply(http, messages=[user([{"type": "text", "text": "what?"}, image_part(red, "low")])])
    assert low["usage"]["prompt_tokens"] == 4 + 2 + 85


def test_image_descriptions_colours_charts_and_remote(http: httpx.Client) -> None:
    split = Image.new("RGBA", (300, 200), (255, 255, 255, 0))  # transparent counts as white
    split.paste((30, 100, 220, 255), (0, 0, 150, 200))
    split.paste((255, 140, 0, 255), (150, 0, 200, 200))
    parts = [
        {"type": "text", "text": "compare"},
        image_part(png_data_url(chart_like_image())),
        image_part(png_data_url(split)),
        image_part(png_data_url(Image.new("RGB", (40, 40), "white"), "JPEG")),
        image_part("https://example.com/plot.png"),
    ]
    text = content(http, messages=[user(parts)])
    assert text.endswith(
        "Image 1: 640×480 RGB, mostly white; looks like a chart.\n"
        "Image 2: 300×200 RGBA, mostly blue, white and orange.\n"
        "Image 3: 40×40 RGB, mostly white.\n"
        "Image 4: remote image at https://example.com/plot.png (not fetched offline)."
    )


def test_earlier_images_are_counted_not_described(http: httpx.Client) -> None:
    red = png_data_url(Image.new("RGB", (64, 32), "red"))
    messages = [
        user([{"type": "text", "text": "look"}, image_part(red), image_part(red)]),
        {"role": "assistant", "content": "I see."},
        user("and now?"),
    ]
    text = content(http, messages=messages)
    assert text.endswith("> and now?\n\nEarlier in this conversation: 2 images.")
    assert "Image 1" not in text


def test_undecodable_image_is_400(http: httpx.Client) -> None:
    bad = "data:image/png;base64," + "aGVsbG8gd29ybGQ="  # "hello world"
    response = chat(http, messages=[user([{"type": "text", "text": "?"}, image_part(bad)])])
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert "image 1 could not be decoded" in error["message"]
    not_base64 = chat(http, messages=[user([image_part("data:image/png;base64,@@@")])])
    assert not_base64.status_code == 400


# --------------------------------------------------------------------------- SSE framing


def test_stream_framing_is_exact(http: httpx.Client) -> None:
    response = chat(http, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert_common_headers(response)
    text = response.text
    assert text.startswith(": OPENROUTER PROCESSING\n\ndata: {")
    assert text.endswith("data: [DONE]\n\n")
    blocks = sse_blocks(text)
    assert blocks[0].comment == "OPENROUTER PROCESSING" and blocks[0].data is None
    assert blocks[-1].data == "[DONE]"
    chunks = [b.json() for b in blocks[1:-1]]
    assert all(b.raw.startswith("data: ") and "\n" not in b.raw for b in blocks[1:])
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {GPT}
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert all(re.fullmatch(r"\s*\S+\s*", piece) for piece in pieces)
    whole = reply(http)
    assert "".join(pieces) == whole["choices"][0]["message"]["content"]
    assert usage_chunk["usage"] == whole["usage"]
    assert usage_chunk["usage"]["completion_tokens"] == len(pieces)


def test_stream_without_include_usage_has_no_usage(http: httpx.Client) -> None:
    chunks = data_chunks(stream_text(http))
    assert all("usage" not in chunk for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)


def test_delay_paces_chunks_and_keep_alives_fill_a_slow_start(http: httpx.Client) -> None:
    started = time.monotonic()
    text = stream_text(http, messages=[user("pace me [emulator-delay: 0.02]")])
    pieces = len(data_chunks(text)) - 2
    assert time.monotonic() - started >= 0.02 * pieces * 0.9
    # a 0.6 s start: the first keep-alive, one more after 0.5 s, then the role chunk
    started = time.monotonic()
    text = stream_text(http, headers={"X-Ofox-Emulator-Delay": "0.6"}, max_tokens=1)
    assert time.monotonic() - started >= 0.55
    assert text.startswith(": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\ndata: ")
    assert chat(http, headers={"X-Ofox-Emulator-Delay": "soon"}).status_code == 400


# --------------------------------------------------------------------------- tool calls


def tool_fragments(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        fragment
        for chunk in chunks
        if chunk["choices"]
        for fragment in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]


def test_tool_call_fragments_have_the_openai_shape(http: httpx.Client) -> None:
    prompt = 'What is get_time now, and get_weather {"city": "Paris", "days": 2}?'
    text = stream_text(http, messages=[user(prompt)], tools=[WEATHER_TOOL, TIME_TOOL])
    chunks = data_chunks(text)
    fragments = tool_fragments(chunks)
    firsts = [f for f in fragments if "id" in f]
    assert firsts == [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "get_time", "arguments": ""}},
        {"index": 1, "id": "call_2", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
    ]  # fmt: skip
    later = [f for f in fragments if "id" not in f]
    assert later and all(set(f) == {"index", "function"} for f in later)
    assert all(set(f["function"]) == {"arguments"} for f in later)
    assert all(0 < len(f["function"]["arguments"]) <= 7 for f in later)
    joined = {i: "".join(f["function"]["arguments"] for f in later if f["index"] == i)
              for i in (0, 1)}  # fmt: skip
    assert json.loads(joined[0]) == {"zone": "example"}
    assert joined[1] == '{"city": "Paris", "days": 2}'  # the prompt's JSON, verbatim
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)
    assert text.endswith("data: [DONE]\n\n")


def test_tool_calls_non_stream_and_generated_arguments(http: httpx.Client) -> None:
    body = reply(http, messages=[user("please get_weather")], tools=[WEATHER_TOOL, TIME_TOOL])
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "call_1" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    arguments = call["function"]["arguments"]
    assert json.loads(arguments) == {"city": "example", "unit": "celsius", "days": 3, "note": 1.5}
    assert body["usage"]["completion_tokens"] == math.ceil(len(arguments) / 4)


def test_tool_choice_variants(http: httpx.Client) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL]
    nothing_named = [user("hello there")]
    assert (
        "tool_calls"
        not in reply(http, messages=nothing_named, tools=tools)["choices"][0]["message"]
    )
    required = reply(http, messages=nothing_named, tools=tools, tool_choice="required")
    assert [c["function"]["name"] for c in required["choices"][0]["message"]["tool_calls"]] == [
        "get_weather"
    ]
    forced = reply(
        http,
        messages=[user("get_weather but really the time")],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [c["function"]["name"] for c in forced["choices"][0]["message"]["tool_calls"]] == [
        "get_time"
    ]
    none = reply(http, messages=[user("get_weather")], tools=tools, tool_choice="none")
    assert none["choices"][0]["finish_reason"] == "stop"
    # a name inside another word does not count
    partial = reply(http, messages=[user("my_get_weather_x")], tools=tools)
    assert partial["choices"][0]["finish_reason"] == "stop"


def test_index_zero_and_bad_args_markers(http: httpx.Client) -> None:
    prompt = "get_weather and get_time [emulator-index-zero] [emulator-bad-args]"
    tools = [WEATHER_TOOL, TIME_TOOL]
    chunks = data_chunks(stream_text(http, messages=[user(prompt)], tools=tools))
    fragments = tool_fragments(chunks)
    assert {f["index"] for f in fragments} == {0}
    assert [f["id"] for f in fragments if "id" in f] == ["call_1", "call_2"]
    body = reply(http, messages=[user(prompt)], tools=tools)
    for call in body["choices"][0]["message"]["tool_calls"]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(call["function"]["arguments"])


def tool_round(marker: str = "") -> list[dict[str, Any]]:
    return [
        user(f"weather? get_weather {marker}"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21,\n"sky": "clear"}'},
    ]


def test_tool_results_are_listed_after_a_tool_round(http: httpx.Client) -> None:
    body = reply(http, messages=tool_round(), tools=[WEATHER_TOOL])
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"] == (
        "*Offline emulator · `openai/gpt-4o` · turn 1*\n\n"
        'Tool results:\n- get_weather: {"temp": 21, "sky": "clear"}'
    )


def test_tool_loop_marker_calls_again(http: httpx.Client) -> None:
    body = reply(http, messages=tool_round("[emulator-tool-loop]"), tools=[WEATHER_TOOL])
    [call] = body["choices"][0]["message"]["tool_calls"]
    assert call["id"] == "call_2"  # numbered after the call already in the conversation


# --------------------------------------------------------------------------- JSON mode


def test_json_object_mode(http: httpx.Client) -> None:
    red = png_data_url(Image.new("RGB", (64, 32), "red"))
    messages = [user([{"type": "text", "text": "Answer in JSON"}, image_part(red)])]
    body = reply(http, messages=messages, response_format={"type": "json_object"})
    assert json.loads(body["choices"][0]["message"]["content"]) == {
        "reply": "Answer in JSON",
        "turn": 1,
        "images": ["64×32 RGB, mostly red"],
    }
    streamed = data_chunks(
        stream_text(http, messages=messages, response_format={"type": "json_object"})
    )
    pieces = [c["choices"][0]["delta"].get("content", "") for c in streamed]
    assert len([p for p in pieces if p]) > 3
    assert "".join(pieces) == body["choices"][0]["message"]["content"]


def test_json_schema_mode(http: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "score": {"type": "number"},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "version": {"const": 2},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
            "thing": {"$ref": "#/$defs/Thing"},
        },
        "required": ["title"],
        "$defs": {"Thing": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    text = content(http, response_format=response_format)
    assert json.loads(text) == {
        "title": "example",
        "score": 1.5,
        "count": 1,
        "tags": ["example"],
        "kind": "a",
        "version": 2,
        "maybe": 1,
        "nested": {"ok": True},
        "thing": {"n": 1},
    }


# --------------------------------------------------------------------------- reasoning model


def test_reasoning_model_reasons_before_answering(http: httpx.Client) -> None:
    model = "deepseek/deepseek-v4-pro"
    body = reply(http, model=model)
    message = body["choices"][0]["message"]
    assert message["reasoning_content"]
    assert message["content"].startswith("*Offline emulator · `deepseek/deepseek-v4-pro`")
    chunks = data_chunks(stream_text(http, model=model, stream_options={"include_usage": True}))
    kinds = [
        "reasoning" if "reasoning_content" in d else "content"
        for c in chunks
        if c["choices"]
        for d in [c["choices"][0]["delta"]]
        if d.get("reasoning_content") or d.get("content")
    ]
    assert kinds == sorted(kinds, key=lambda kind: kind != "reasoning")  # reasoning first
    assert kinds.count("reasoning") > 1 and kinds.count("content") > 1
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"]
    )
    assert reasoning == message["reasoning_content"]
    assert chunks[-1]["usage"]["completion_tokens"] == len(kinds)


# --------------------------------------------------------------------------- faults


def test_parse_fault_grammar() -> None:
    fault = parse_fault("429:0.5*2#mine")
    assert (fault.name, fault.seconds, fault.times, fault.tag) == ("429", 0.5, 2, "mine")
    assert parse_fault("disconnect").count == 3
    assert parse_fault("malformed:0").count == 0
    for bad in ("teapot", "slow", "429:x", "500:1", "disconnect:x", "500*0", "500*x"):
        with pytest.raises(ValueError):
            parse_fault(bad)


STATUS_BODIES: dict[str, dict[str, Any]] = {
    "401": {"code": "invalid_api_key", "message": "The provided API Key is invalid.",
            "type": "authentication_error"},
    "400": {"message": "unknown provider type: bogus [ofox.ai]", "type": "invalid_request_error",
            "code": 400},
}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
def test_status_faults(http: httpx.Client, stream: bool) -> None:
    for spec, status in [("401", 401), ("400", 400), ("500", 500), ("502", 502), ("503", 503)]:
        response = chat(http, headers={"X-Ofox-Emulator-Fault": spec}, stream=stream)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert_common_headers(response)
        error = error_of(response)
        if spec in STATUS_BODIES:
            assert error == STATUS_BODIES[spec]
        assert isinstance(error["message"], str) and error["message"]
        if spec == "500":
            assert error["type"] == "internal_error"
        if spec == "502":
            assert "type" not in error
            assert error["code"] == "upstream_error"
            assert error["message"].endswith(" [ofox.ai]")
        if spec == "503":
            assert error["type"] == "service_unavailable"


def test_rate_limit_fault_headers(http: httpx.Client) -> None:
    response = chat(http, headers={"X-Ofox-Emulator-Fault": "429"})
    assert response.status_code == 429
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"] == "1s"
    assert response.headers["retry-after"] == "1"
    error = error_of(response)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error["message"].endswith("retry after 1s")
    fractional = chat(http, headers={"X-Ofox-Emulator-Fault": "429:0.5"})
    assert fractional.headers["x-ratelimit-reset-requests"] == "0.5s"
    assert "retry-after" not in fractional.headers
    assert error_of(fractional)["message"].endswith("retry after 0.5s")
    assert chat(http, headers={"X-Ofox-Emulator-Fault": "429:7"}).headers["retry-after"] == "7"


def test_times_counts_per_exact_spec_and_tags_isolate(http: httpx.Client) -> None:
    def status(spec: str) -> int:
        return chat(http, headers={"X-Ofox-Emulator-Fault": spec}).status_code

    assert [status("500*2#times") for _ in range(4)] == [500, 500, 200, 200]
    assert status("500*2#other") == 500  # a different tag has its own counter
    assert status("500*1#times") == 500  # a different spec string, too


def test_injected_faults_queue_and_precedence(emu: Emulator, http: httpx.Client) -> None:
    emu.inject("503", times=2)
    assert chat(http, headers={"X-Ofox-Emulator-Fault": "502"}).status_code == 502  # header wins
    assert [chat(http).status_code for _ in range(3)] == [503, 503, 200]
    emu.inject("500")
    assert chat(http, messages=[user("x [emulator-fault: 401]")]).status_code == 401  # marker wins
    assert chat(http).status_code == 500
    emu.inject("500*1#queued", times=3)  # fires once, then the spec's *1 is used up
    assert [chat(http).status_code for _ in range(3)] == [500, 200, 200]
    emu.inject("500")
    emu.clear()
    assert chat(http).status_code == 200
    with pytest.raises(ValueError):
        emu.inject("explode")


def test_invalid_fault_spec_in_a_request_is_400(http: httpx.Client) -> None:
    response = chat(http, headers={"X-Ofox-Emulator-Fault": "meltdown"})
    assert response.status_code == 400
    assert "meltdown" in error_of(response)["message"]


def test_slow_delays_the_first_byte(http: httpx.Client) -> None:
    for stream in (False, True):
        started = time.monotonic()
        with http.stream(
            "POST",
            "/chat/completions",
            json={"model": GPT, "messages": HELLO, "stream": stream},
            headers={"X-Ofox-Emulator-Fault": "slow:0.3"},
        ) as response:
            assert time.monotonic() - started >= 0.3
            assert response.status_code == 200
            response.read()


def test_stall_pauses_after_two_chunks(http: httpx.Client) -> None:
    arrivals: list[float] = []
    with http.stream(
        "POST",
        "/chat/completions",
        json={"model": GPT, "messages": HELLO, "stream": True},
        headers={"X-Ofox-Emulator-Fault": "stall:0.3"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    # data lines: role, body 1, body 2, <stall>, body 3, ...
    assert gaps[2] >= 0.28
    assert max(gaps[:2] + gaps[3:]) < 0.2


def test_disconnect_breaks_the_read_without_server_noise(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012
        with http.stream(
            "POST",
            "/chat/completions",
            json={"model": GPT, "messages": HELLO, "stream": True},
            headers={"X-Ofox-Emulator-Fault": "disconnect:2"},
        ) as response:
            assert response.status_code == 200
            received.extend(line for line in response.iter_lines() if line.startswith("data: "))
    assert len(received) == 3  # role chunk + 2 content chunks
    assert not any("[DONE]" in line for line in received)
    time.sleep(0.05)
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert chat(http).status_code == 200  # the server is fine


def test_disconnect_default_and_short_streams(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, headers={"X-Ofox-Emulator-Fault": "disconnect"}, stream=True).read()
    # fewer chunks than N: the abort still happens, before the finish chunk
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, headers={"X-Ofox-Emulator-Fault": "disconnect:99"}, stream=True, max_tokens=2)


def test_malformed_chunk_then_normal_stream(http: httpx.Client) -> None:
    text = stream_text(http, headers={"X-Ofox-Emulator-Fault": "malformed:1"})
    lines = [block.raw for block in sse_blocks(text)]
    assert lines[3] == 'data: {"id": "chatcmpl-broken", "choices": ['  # role, chunk 1, broken
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[3][len("data: ") :])
    assert text.endswith("data: [DONE]\n\n")
    good = [json.loads(line[6:]) for line in lines[1:-1] if line != lines[3]]
    pieces = "".join(c["choices"][0]["delta"].get("content", "") for c in good)
    assert pieces == content(http)


@pytest.mark.parametrize("name", ["error-openai", "error-openai-event"])
def test_openai_mid_stream_error(http: httpx.Client, name: str) -> None:
    text = stream_text(http, headers={"X-Ofox-Emulator-Fault": f"{name}:2"})
    blocks = sse_blocks(text)
    last = blocks[-1]
    assert last.event == ("error" if name == "error-openai-event" else None)
    assert last.json() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "code": "server_error",
        }
    }
    assert len([b for b in blocks if b.data]) == 1 + 2 + 1  # role, 2 chunks, error
    assert "[DONE]" not in text


def test_openrouter_mid_stream_error(http: httpx.Client) -> None:
    text = stream_text(
        http,
        headers={"X-Ofox-Emulator-Fault": "error-openrouter:1"},
        stream_options={"include_usage": True},
    )
    chunks = data_chunks(text)
    assert "[DONE]" not in text
    last = chunks[-1]
    error = {"code": "server_error", "message": "Provider disconnected unexpectedly"}
    assert last["error"] == error
    assert last["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    assert last["id"] == chunks[0]["id"] and last["object"] == "chat.completion.chunk"
    assert len(chunks) == 3


def test_no_done_ends_after_finish_and_usage(http: httpx.Client) -> None:
    text = stream_text(
        http, headers={"X-Ofox-Emulator-Fault": "no-done"}, stream_options={"include_usage": True}
    )
    assert "[DONE]" not in text
    chunks = data_chunks(text)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_only_faults_do_not_touch_non_streamed_requests(http: httpx.Client) -> None:
    for spec in ("disconnect:1", "malformed:1", "error-openai:1", "stall:0.3", "no-done"):
        started = time.monotonic()
        response = chat(http, headers={"X-Ofox-Emulator-Fault": spec})
        assert response.status_code == 200
        assert time.monotonic() - started < 0.25
        assert response.json()["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- fallback


def test_fallback_from_a_retired_model_names_the_served_model(http: httpx.Client) -> None:
    fallback = ["acme/nope", "openai/text-embedding-3-small", "openai/gpt-4-turbo",
                "deepseek/deepseek-v3.2", "openai/gpt-4o-mini"]  # fmt: skip
    body = reply(http, model="openai/gpt-4-turbo", provider={"fallback": fallback})
    assert body["model"] == "deepseek/deepseek-v3.2"
    assert "`deepseek/deepseek-v3.2`" in body["choices"][0]["message"]["content"]
    chunks = data_chunks(
        stream_text(http, model="openai/gpt-4-turbo", provider={"fallback": fallback})
    )
    assert {c["model"] for c in chunks} == {"deepseek/deepseek-v3.2"}


def test_fallback_skips_text_only_models_for_images(http: httpx.Client) -> None:
    red = png_data_url(Image.new("RGB", (8, 8), "red"))
    body = reply(
        http,
        model="openai/gpt-4-turbo",
        messages=[user([image_part(red)])],
        provider={"fallback": ["deepseek/deepseek-v3.2", "google/gemini-2.5-flash"]},
    )
    assert body["model"] == "google/gemini-2.5-flash"


def test_fallback_after_injected_faults(http: httpx.Client) -> None:
    provider = {"routing": "latency", "fallback": ["anthropic/claude-sonnet-4.5"]}
    for spec in ("429", "500", "502", "503"):
        response = chat(http, headers={"X-Ofox-Emulator-Fault": spec}, provider=provider)
        assert response.status_code == 200, spec
        assert response.json()["model"] == "anthropic/claude-sonnet-4.5"
    for spec, status in (("401", 401), ("400", 400)):  # never subject to fallback
        response = chat(http, headers={"X-Ofox-Emulator-Fault": spec}, provider=provider)
        assert response.status_code == status
    unusable = chat(
        http,
        headers={"X-Ofox-Emulator-Fault": "502"},
        provider={"fallback": ["acme/nope", "openai/gpt-4-turbo"]},
    )
    assert unusable.status_code == 502  # the primary's error
    assert error_of(unusable)["code"] == "upstream_error"


# --------------------------------------------------------------------------- bookkeeping


def test_requests_are_recorded(emu: Emulator, http: httpx.Client) -> None:
    chat(http, temperature=0.5)
    http.post("/chat/completions", content=b"nope")
    http.get("/models")
    first, second, third = emu.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == AUTH["Authorization"]
    assert first.headers["content-type"] == "application/json"
    assert first.body == {"model": GPT, "messages": HELLO, "temperature": 0.5}
    assert second.body is None
    assert (third.method, third.path, third.body) == ("GET", "/v1/models", None)
    emu.clear()
    assert emu.requests == []


def test_rate_limit_headers_count_down_and_stop_at_zero() -> None:
    with Emulator() as fresh, httpx.Client(base_url=fresh.base_url) as client:
        remaining = [
            int(client.get("/models").headers["x-ratelimit-remaining-requests"]) for _ in range(203)
        ]
        reset = client.get("/models").headers["x-ratelimit-reset-requests"]
    assert remaining[:3] == [199, 198, 197]
    assert remaining[198:] == [1, 0, 0, 0, 0]
    assert re.fullmatch(r"\d+s", reset) and 1 <= int(reset[:-1]) <= 60


def test_client_going_away_stops_the_stream_quickly() -> None:
    with Emulator(delay=0.2) as slow, httpx.Client(base_url=slow.base_url) as client:
        body = {"model": GPT, "messages": [user("x [emulator-words: 200]")], "stream": True}
        with client.stream("POST", "/chat/completions", json=body) as response:
            next(response.iter_lines())
        started = time.monotonic()
        slow.stop()
        assert time.monotonic() - started < 1.0
        assert not slow.running


def test_lifecycle(emu: Emulator) -> None:
    assert emu.running
    assert emu.port > 0
    assert emu.base_url == f"http://127.0.0.1:{emu.port}/v1"
    assert emu.start() is emu  # already running: no-op
    other = Emulator()
    assert not other.running
    other.stop()  # stopping a never-started emulator is fine
    with other as started:
        assert started is other and other.running and other.port != emu.port
    assert not other.running
    other.stop()


def test_shared_emulator_is_one_running_instance() -> None:
    first = shared_emulator()
    assert shared_emulator() is first
    assert first.running
    response = httpx.post(
        f"{first.base_url}/chat/completions", json={"model": GPT, "messages": HELLO}
    )
    assert response.status_code == 200  # no key


def test_importing_the_package_is_cheap() -> None:
    code = (
        "import sys, ofox_jupyter.emulator as e; "
        "assert e.Emulator; "
        "heavy = [m for m in ('starlette', 'uvicorn', 'PIL') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_cli_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "ofox_jupyter.emulator", "--port", "0",
               "--api-key", "sk-cli", "--delay", "0"]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline()
            pattern = r"OfoxAI emulator listening on (http://127\.0\.0\.1:\d+/v1)\n"
            match = re.fullmatch(pattern, line)
            assert match, line
            base = match[1]
            assert httpx.get(f"{base}/models").status_code == 200
            body = {"model": GPT, "messages": HELLO}
            assert httpx.post(f"{base}/chat/completions", json=body).status_code == 401
            ok = httpx.post(
                f"{base}/chat/completions", json=body, headers={"Authorization": "Bearer sk-cli"}
            )
            assert ok.status_code == 200
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""


def test_cli_main_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from ofox_jupyter.emulator.__main__ import main

    with pytest.raises(SystemExit):
        main(["--delay", "-1"])
    assert "--delay" in capsys.readouterr().err


def test_uvicorn_logs_nothing_in_normal_operation(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    chat(http)
    stream_text(http)
    http.get("/models")
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]
