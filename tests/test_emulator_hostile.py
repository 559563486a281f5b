"""The emulator holds up as a server: hostile and malformed requests over real HTTP on 127.0.0.1.

Oversized bodies (declared and chunked), unauthenticated big bodies, recursive and exponentially
branching JSON schemas, deeply nested JSON, values of the wrong type anywhere in a chat request
(a hypothesis property), clients that vanish mid-stream, and the bounded record of requests.
Every answer must be an OfoxAI-shaped JSON error (or a normal reply), never a plain-text 500, a
freeze, or output in the notebook.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest_emulator import AUTH, KEY, user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofox_jupyter.emulator import Emulator

GPT = "openai/gpt-4o"
HELLO = [user("hello")]
LIMIT = 1024 * 1024  # the body limit of the module's emulator
MB = 1024 * 1024


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, max_body_bytes=LIMIT) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(emu: Emulator) -> None:
    emu.clear()


@pytest.fixture(scope="module")
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers=AUTH, timeout=10) as client:
        yield client


def chat(http: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("model", GPT)
    body.setdefault("messages", HELLO)
    return http.post("/chat/completions", json=body)


def assert_ofox_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """``response`` is a JSON error in the documented shape with ``status``; its ``error``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    return error


def megabytes(count: int) -> Iterator[bytes]:
    """``count`` MiB of JSON-ish filler, one MiB at a time (never held whole by the test)."""
    block = b" " * MB
    for _ in range(count):
        yield block


def raw_request(emu: Emulator, head: bytes) -> socket.socket:
    sock = socket.create_connection((emu.host, emu.port), timeout=5)
    sock.sendall(head)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        piece = sock.recv(65536)
        assert piece
        rest += piece
    return status, rest[:length]


# --------------------------------------------------------------------------- body size


def test_oversized_body_with_content_length_is_413_and_not_kept(
    emu: Emulator, http: httpx.Client
) -> None:
    response = http.post(
        "/chat/completions",
        content=megabytes(100),
        headers={"content-type": "application/json", "content-length": str(100 * MB)},
    )
    error = assert_ofox_error(response, 413)
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in error["message"]
    assert emu.requests == []
    assert chat(http).status_code == 200  # same pooled connection or a new one: still served


def test_oversized_chunked_body_is_413_and_not_kept(emu: Emulator, http: httpx.Client) -> None:
    response = http.post(
        "/chat/completions", content=megabytes(100), headers={"content-type": "application/json"}
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert assert_ofox_error(response, 413)["code"] == "request_too_large"
    assert emu.requests == []
    assert chat(http).status_code == 200


def test_declared_length_is_refused_before_any_body_byte(emu: Emulator) -> None:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * MB}\r\n\r\n"
    ).encode()
    with raw_request(emu, head) as sock:  # no body is ever sent
        status, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert emu.requests == []


def test_chunked_body_is_refused_while_it_streams(emu: Emulator) -> None:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    with raw_request(emu, head) as sock:
        for _ in range(LIMIT // (64 * 1024) + 2):  # just past the limit; the body never ends
            sock.sendall(chunk)
        status, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert emu.requests == []


def test_unauthenticated_big_body_is_401_and_nothing_is_recorded(emu: Emulator) -> None:
    url = f"{emu.base_url}/chat/completions"
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        response = httpx.post(
            url,
            content=megabytes(100),
            headers={**headers, "content-type": "application/json"},
            timeout=30,
        )
        assert assert_ofox_error(response, 401)["code"] == "invalid_api_key"
    small = httpx.post(url, json={"model": GPT, "messages": HELLO})
    assert_ofox_error(small, 401)
    assert emu.requests == []


def test_unknown_path_keeps_no_body(emu: Emulator, http: httpx.Client) -> None:
    response = http.post("/embeddings", content=megabytes(20))
    assert_ofox_error(response, 404)
    [recorded] = emu.requests
    assert (recorded.path, recorded.body) == ("/v1/embeddings", None)


def test_cli_has_a_body_limit() -> None:
    command = [sys.executable, "-m", "ofox_jupyter.emulator", "--port", "0",
               "--max-body-bytes", "300"]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            base = proc.stdout.readline().rsplit(" ", 1)[-1].strip()
            url = f"{base}/chat/completions"
            assert httpx.post(url, json={"model": GPT, "messages": HELLO}).status_code == 200
            big = httpx.post(url, json={"model": GPT, "messages": [user("x" * 400)]})
            assert_ofox_error(big, 413)
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""


def test_cli_rejects_a_bad_body_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from ofox_jupyter.emulator.__main__ import main

    with pytest.raises(SystemExit):
        main(["--max-body-bytes", "0"])
    assert "--max-body-bytes" in capsys.readouterr().err


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        Emulator(max_body_bytes=0)
    with pytest.raises(ValueError, match="record_limit"):
        Emulator(max_recorded=0)


# --------------------------------------------------------------------------- hostile schemas


def _recursive(width: int) -> dict[str, Any]:
    """About 480 bytes: a node whose ``width`` properties are all the node again."""
    node = {"type": "object", "properties": {f"p{i}": {"$ref": "#/$defs/n"} for i in range(width)}}
    return {"$defs": {"n": node}, "$ref": "#/$defs/n"}


def _branching(levels: int, width: int) -> dict[str, Any]:
    """Not recursive but exponential: level i has ``width`` properties that are all level i+1."""
    defs = {
        f"l{i}": {"type": "object", "properties": {f"p{j}": {"$ref": f"#/$defs/l{i + 1}"}
                                                     for j in range(width)}}
        for i in range(levels)
    }  # fmt: skip
    defs[f"l{levels}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/l0"}


HOSTILE_SCHEMAS = {
    "recursive-ref": _recursive(10),
    "root-ref": {
        "type": "object",
        "properties": {"a": {"$ref": "#"}, "b": {"$ref": "#"}},
        "required": ["a", "b"],
    },  # fmt: skip
    "ref-cycle": {
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
        "$ref": "#/$defs/a",
    },  # fmt: skip
    "anyof-recursion": {"anyOf": [{"$ref": "#"}, {"$ref": "#"}, {"type": "null"}]},
    "allof-recursion": {
        "$defs": {
            "w": {"allOf": [{"$ref": "#/$defs/w"}], "properties": {"x": {"$ref": "#/$defs/w"}}}
        },
        "$ref": "#/$defs/w",
    },  # fmt: skip
    "exponential": _branching(30, 4),
    "deep-nesting": json.loads('{"type":"object","properties":{"a":' * 30 + "{}" + "}}" * 30),
    "malformed": {
        "type": "object",
        "properties": [1, 2],
        "required": 5,
        "allOf": [{"properties": "x", "required": [[1]]}],
    },  # fmt: skip
}


def _served_while(emu: Emulator, request: Any) -> tuple[float, httpx.Response]:
    """Run ``request()`` in a thread; how long another client waits meanwhile, and its answer."""
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(request()), daemon=True)
    worker.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert httpx.get(f"{emu.base_url}/models", timeout=5).status_code == 200
    waited = time.monotonic() - started
    worker.join(5)
    assert not worker.is_alive(), "the hostile request did not finish within 5 s"
    return waited, answers[0]


@pytest.mark.parametrize("name", list(HOSTILE_SCHEMAS))
def test_hostile_json_schema_answers_quickly(emu: Emulator, http: httpx.Client, name: str) -> None:
    schema = HOSTILE_SCHEMAS[name]
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    waited, response = _served_while(emu, lambda: chat(http, response_format=response_format))
    assert waited < 2.0
    if response.status_code == 400:
        assert "json_schema.schema" in assert_ofox_error(response, 400)["message"]
    else:
        assert response.status_code == 200, response.text
        json.loads(response.json()["choices"][0]["message"]["content"])


def test_the_480_byte_recursive_schema_gets_a_finite_reply(http: httpx.Client) -> None:
    schema = _recursive(10)
    assert len(json.dumps(schema)) < 500
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    started = time.monotonic()
    body = chat(http, response_format=response_format).json()
    assert time.monotonic() - started < 2.0
    assert json.loads(body["choices"][0]["message"]["content"]) == {}


def test_recursive_tree_schema_stops_at_the_recursion(http: httpx.Client) -> None:
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
        "required": ["name", "children"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "tree", "schema": tree}}
    content = chat(http, response_format=response_format).json()["choices"][0]["message"]
    assert json.loads(content["content"]) == {
        "name": "example",
        "children": [{"name": "example", "children": []}],
    }


@pytest.mark.parametrize("name", ["recursive-ref", "root-ref", "exponential", "malformed"])
def test_hostile_tool_parameters_answer_quickly(
    emu: Emulator, http: httpx.Client, name: str
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": HOSTILE_SCHEMAS[name]}}
    waited, response = _served_while(
        emu, lambda: chat(http, messages=[user("call f please")], tools=[tool])
    )
    assert waited < 2.0
    if response.status_code == 400:
        assert "'f'" in assert_ofox_error(response, 400)["message"]
    else:
        assert response.status_code == 200, response.text
        [call] = response.json()["choices"][0]["message"]["tool_calls"]
        assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_exponential_schema_is_a_400_naming_the_field(http: httpx.Client) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": HOSTILE_SCHEMAS["exponential"]},
    }
    error = assert_ofox_error(chat(http, response_format=response_format), 400)
    assert error["type"] == "invalid_request_error"
    assert "response_format.json_schema.schema is too large" in error["message"]


# --------------------------------------------------------------------------- hostile JSON


@pytest.mark.parametrize("depth", [65, 100, 5_000, 200_000])
def test_deeply_nested_body_is_a_400(emu: Emulator, http: httpx.Client, depth: int) -> None:
    nested = "[" * depth + "0" + "]" * depth
    raw = f'{{"model":"{GPT}","messages":[{{"role":"user","content":"hi"}}],"extra":{nested}}}'
    response = http.post(
        "/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    error = assert_ofox_error(response, 400)
    assert "nested too deeply" in error["message"]
    assert emu.requests[-1].body is None
    assert chat(http).status_code == 200


def test_nesting_up_to_the_limit_is_accepted(http: httpx.Client) -> None:
    nested: Any = 0
    for _ in range(62):  # + the body object and one more level = 64
        nested = [nested]
    assert chat(http, extra=nested).status_code == 200


def test_too_many_values_is_a_400(http: httpx.Client) -> None:
    response = chat(http, extra=[0] * 250_000)
    assert "too many values" in assert_ofox_error(response, 400)["message"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"model": NaN}', "not valid JSON"),
        (b'{"temperature": Infinity}', "not valid JSON"),
        (b'{"model": 1' + b"0" * 5000 + b"}", "not valid JSON"),
        (b'{"model": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
    ],
)
def test_malformed_bodies_are_json_400s(http: httpx.Client, raw: bytes, message: str) -> None:
    response = http.post("/chat/completions", content=raw)
    assert message in assert_ofox_error(response, 400)["message"]


def test_a_lone_surrogate_in_the_prompt_is_a_400_not_a_500(http: httpx.Client) -> None:
    raw = json.dumps({"model": GPT, "messages": [user("a \ud800 b")], "stream": True})
    response = http.post("/chat/completions", content=raw.encode())
    assert "lone surrogate" in assert_ofox_error(response, 400)["message"]


# --------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": 5}, "model"),
        ({"model": ["openai/gpt-4o"]}, "model"),
        ({"messages": 5}, "messages"),
        ({"messages": {"role": "user"}}, "messages"),
        ({"messages": [5]}, "messages[0]"),
        ({"messages": [None]}, "messages[0]"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": {}}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),  # fmt: skip
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]},
            "messages[0].content[0].image_url.url",
        ),  # fmt: skip
        ({"messages": [{"role": "user", "content": "x", "name": 5}]}, "messages[0].name"),
        (
            {"messages": [user("x"), {"role": "tool", "content": "1", "tool_call_id": 7}]},
            "messages[1].tool_call_id",
        ),  # fmt: skip
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": 5}, user("x")]},
            "messages[0].tool_calls",
        ),  # fmt: skip
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": "abc"}, user("x")]},
            "messages[0].tool_calls",
        ),  # fmt: skip
        (
            {"messages": [{"role": "assistant", "tool_calls": [5]}, user("x")]},
            "messages[0].tool_calls[0]",
        ),  # fmt: skip
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": 5}]}, user("x")]},
            "messages[0].tool_calls[0].function",
        ),  # fmt: skip
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
                    },
                    user("x"),
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),  # fmt: skip
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": 1, "function": {"name": "f", "arguments": ""}}],
                    },
                    user("x"),
                ]
            },
            "messages[0].tool_calls[0].id",
        ),  # fmt: skip
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": [1]}, "temperature"),
        ({"temperature": 10**400}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"presence_penalty": -(10**400)}, "presence_penalty"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stream_options": 5}, "stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"tools": 5}, "tools"),
        ({"tools": [5]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": 5}}]},
            "tools[0].function.parameters",
        ),  # fmt: skip
        (
            {"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]},
            "tools",
        ),  # fmt: skip
        ({"tool_choice": 5}, "tool_choice"),
        ({"response_format": "json"}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": 5}},
            "response_format.json_schema",
        ),  # fmt: skip
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": 5}}},
            "response_format.json_schema.schema",
        ),  # fmt: skip
        ({"provider": 5}, "provider"),
        ({"provider": {"routing": ["cost"]}}, "provider.routing"),
        ({"provider": {"fallback": [{}]}}, "provider.fallback"),
    ],
)
def test_wrong_types_are_400s_naming_the_field(
    http: httpx.Client, change: dict[str, Any], field: str
) -> None:
    response = http.post("/chat/completions", json={"model": GPT, "messages": HELLO, **change})
    error = assert_ofox_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert field in error["message"], error["message"]


@pytest.mark.parametrize(
    "prompt",
    [
        "[emulator-words: ²]",
        "[emulator-words: 1" + "0" * 200 + "]",
        "[emulator-fault: disconnect:²]",
        "[emulator-fault: 500*²]",
        "[emulator-fault: 500*1" + "0" * 100 + "]",
        "[emulator-delay: nan]",
    ],
)
def test_odd_marker_arguments_are_400s(http: httpx.Client, prompt: str) -> None:
    assert_ofox_error(chat(http, messages=[user(prompt)]), 400)


def test_unclosed_markers_do_not_stall_the_server(emu: Emulator, http: httpx.Client) -> None:
    prompt = "[emulator-delay:" * 50_000 + "[emulator-words: " + " " * 100_000
    waited, response = _served_while(emu, lambda: chat(http, messages=[user(prompt)]))
    assert waited < 2.0
    assert response.status_code in (200, 400), response.text


def test_deeply_nested_json_in_a_prompt_naming_a_tool(http: httpx.Client) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    prompt = "f " + '{"a":' * 100_000
    response = chat(http, messages=[user(prompt)], tools=[tool])
    assert response.status_code == 200, response.text
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["arguments"] == "{}"


def test_an_unexpected_error_is_a_logged_json_500(
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from ofox_jupyter.emulator import _app

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("emulator bug")

    monkeypatch.setattr(_app, "complete", boom)
    caplog.set_level(logging.DEBUG)
    response = chat(http)
    error = assert_ofox_error(response, 500)
    assert (error["code"], error["type"]) == ("internal_error", "internal_error")
    assert "emulator bug" not in response.text
    time.sleep(0.05)
    records = [r for r in caplog.records if r.name == "ofox_jupyter.emulator"]
    assert records and records[0].levelno == logging.ERROR and records[0].exc_info
    assert not [r for r in caplog.records if r.name.startswith(("uvicorn", "asyncio"))]
    assert capfd.readouterr() == ("", "")
    monkeypatch.undo()
    assert chat(http).status_code == 200


# --------------------------------------------------------------------------- property


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)

BASE: dict[str, Any] = {
    "model": GPT,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "weather? get_weather"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
            "name": "ann",
        },
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
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "user", "content": "and get_weather in Paris?"},
    ],
    "temperature": 0.5,
    "top_p": 1,
    "max_tokens": 50,
    "max_completion_tokens": 60,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "stream": False,
    "stream_options": {"include_usage": True},
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city"],
                },
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "properties": {}}},
    },
    "provider": {"routing": "cost", "fallback": ["openai/gpt-4o-mini"]},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position in ``value`` (the root excluded)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


PATHS = [(), *_paths(BASE)]


def _holds(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return isinstance(key, str)
    return isinstance(container, list) and isinstance(key, int) and key < len(container)


def _replace(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``body`` with ``value`` at ``path``, unless an earlier change removed that position."""
    if not path:
        return value
    target = body
    for key in path[:-1]:
        if not _holds(target, key) or (isinstance(target, dict) and key not in target):
            return body
        target = target[key]
    if _holds(target, path[-1]):
        target[path[-1]] = value
    return body


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(st.tuples(st.sampled_from(PATHS), JSON_VALUES), min_size=1, max_size=3),
    st.booleans(),
)
def test_any_json_anywhere_gets_a_json_answer(
    http: httpx.Client, changes: list[tuple[tuple[Any, ...], Any]], drop: bool
) -> None:
    body: Any = copy.deepcopy(BASE)
    for path, value in changes:
        if drop and len(path) == 1 and isinstance(body, dict):
            body.pop(path[0], None)
        else:
            body = _replace(body, path, value)
    response = http.post("/chat/completions", json=body)
    assert response.status_code in (200, 400, 404), response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        assert response.status_code == 200
        assert response.text.endswith("data: [DONE]\n\n")
        return
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code == 200:
        assert response.json()["object"] == "chat.completion"
    else:
        assert_ofox_error(response, response.status_code)


def test_the_server_is_fine_after_the_property(http: httpx.Client) -> None:
    assert chat(http).status_code == 200


# --------------------------------------------------------------------------- disconnects


def _long_stream() -> dict[str, Any]:
    return {"model": GPT, "messages": [user("x [emulator-words: 30000]")], "stream": True}


@contextlib.contextmanager
def kernel_like_logging() -> Iterator[None]:
    """No logging configured, as in a fresh Jupyter kernel, where a record of WARNING or above
    that finds no handler is printed to stderr (``logging.lastResort``): pytest's own handlers
    are taken off the root logger meanwhile (inside the test: pytest adds them per phase)."""
    saved = logging.root.handlers[:]
    logging.root.handlers.clear()
    try:
        yield
    finally:
        logging.root.handlers[:] = saved


def test_client_closing_mid_stream_writes_nothing(
    emu: Emulator, http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    with kernel_like_logging():
        for _ in range(3):
            with httpx.Client(base_url=emu.base_url, headers=AUTH, timeout=10) as client:
                with client.stream("POST", "/chat/completions", json=_long_stream()) as response:
                    lines = response.iter_lines()
                    received = [next(lines) for _ in range(6)]
            assert any(line.startswith("data: ") for line in received)
        time.sleep(0.3)
        assert chat(http).status_code == 200
        time.sleep(0.1)
    assert capfd.readouterr() == ("", "")


def test_client_resetting_mid_stream_writes_nothing(
    emu: Emulator, http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    payload = json.dumps(_long_stream()).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with kernel_like_logging():
        for _ in range(3):
            sock = raw_request(emu, head + payload)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # an RST: the server's next writes fail
        time.sleep(0.3)
        assert chat(http).status_code == 200
        time.sleep(0.1)
    assert capfd.readouterr() == ("", "")


def test_a_vanished_client_is_not_written_to(
    emu: Emulator, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=emu.base_url, headers=AUTH, timeout=10) as client:
        with client.stream("POST", "/chat/completions", json=_long_stream()) as response:
            next(response.iter_lines())
    time.sleep(0.3)
    assert chat(http).status_code == 200
    assert not [r for r in caplog.records if "socket.send()" in r.getMessage()]
    assert not [r for r in caplog.records if r.name.startswith(("uvicorn", "asyncio"))]


def test_other_threads_keep_their_asyncio_and_uvicorn_logs(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    logging.getLogger("asyncio").warning("socket.send() raised exception.")
    logging.getLogger("uvicorn.error").warning("someone else's server")
    assert [r.name for r in caplog.records] == ["asyncio", "uvicorn.error"]


# --------------------------------------------------------------------------- bookkeeping


def test_the_record_of_requests_is_bounded() -> None:
    with Emulator(max_recorded=3) as small, httpx.Client(base_url=small.base_url) as client:
        for n in range(7):
            client.post("/chat/completions", json={"model": GPT, "messages": [user(f"n{n}")]})
        recorded = small.requests
    assert [r.body["messages"][0]["content"] for r in recorded if r.body] == ["n4", "n5", "n6"]


def test_the_default_record_keeps_the_last_thousand() -> None:
    with Emulator() as fresh, httpx.Client(base_url=fresh.base_url) as client:
        for _ in range(1003):
            client.get("/models")
        assert len(fresh.requests) == 1000
