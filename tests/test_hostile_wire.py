"""Hostile input from every side: the key, what the wire sends, what the user types.

Nothing from outside may become a traceback or show the key: a key with a control character is
refused by name, a key a server echoes is taken out of every field, a chunk, completion, error
body or catalog entry of the wrong shape is one line (the partial reply kept), and any string in
any ``%%ofox`` option is either used or one ``UsageError`` line.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import httpx
import pytest
from conftest import TEST_KEY
from helpers import chunk, sse, sse_response, usage_chunk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from ofox_jupyter import Client
from ofox_jupyter._catalog import parse_models
from ofox_jupyter._config import check_api_key, display_url, resolve_settings
from ofox_jupyter._exceptions import APIError, ConfigError, OfoxError, StreamError
from ofox_jupyter._request import encode_body, status_error
from ofox_jupyter._streaming import MalformedChunk, reply_from_completion

KEY = "sk-ofox-HOSTILE-0123456789abcdef"


def client_for(handler: Any, key: str = KEY) -> Client:
    return Client(
        api_key=key,
        base_url="https://api.example.test/v1",
        transport=httpx.MockTransport(handler),
        max_retries=0,
    )


def streamed(client: Client) -> Any:
    with client.stream("hi", model="openai/gpt-4o") as stream:
        for _ in stream:
            pass
        return stream.reply


def everything_about(err: BaseException) -> str:
    """Every text an exception carries that a user or a log could see, chained ones too."""
    texts = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(getattr(current, "args", ()))]
        for name in ("type", "code", "api_type", "api_message", "message", "hint"):
            texts.append(str(getattr(current, name, "")))
        partial = getattr(current, "partial", None)
        if partial is not None:
            texts.append(partial.text)
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


# -- the key


@pytest.mark.parametrize(
    "key, named",
    [
        ("sk-abc\ndef", "a line break at position 7"),
        ("sk-abc\r\ndef", "a line break at position 7"),
        ("sk-abc def", "a space or tab at position 7"),
        ("sk-abc\tdef", "a space or tab"),
        ("sk-abc\x00def", "a control character (U+0000)"),
        ("sk-abc\x7fdef", "a control character (U+007F)"),
        ("sk-abc\u200bdef", "U+200B ZERO WIDTH SPACE"),
        ("sk-abcdéf", "U+00E9"),
    ],
)
def test_a_broken_key_is_refused_by_name_never_shown(key, named):
    with pytest.raises(ConfigError) as caught:
        Client(api_key=key, base_url="https://api.example.test/v1")
    text = caught.value.one_line()
    assert named in text and "\n" not in text
    assert "abc" not in text and "def" not in text  # no part of the key


def test_a_key_with_surrounding_whitespace_is_trimmed_not_refused():
    assert check_api_key("  sk-ok-123 \n") == "sk-ok-123"


def test_percent_login_refuses_a_broken_key_in_one_line(ip, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt: "sk-pasted\nacross-lines")
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("ofox", "login")
    assert "line break" in str(caught.value) and "pasted" not in str(caught.value)


def test_a_key_echoed_in_every_field_is_taken_out_of_every_one():
    body = json.dumps(
        {
            "error": {
                "message": f"bad key {KEY}, really {KEY}",
                "type": f"invalid_{KEY}",
                "code": f"key={KEY}",
            }
        }
    ).encode()
    with client_for(lambda request: httpx.Response(401, content=body)) as client:
        with pytest.raises(APIError) as caught:
            client.chat("hi", model="openai/gpt-4o")
    assert KEY not in everything_about(caught.value)
    assert "********" in str(caught.value)


def test_a_key_crossing_the_cut_keeps_no_prefix():
    message = "x" * 290 + KEY + "y" * 50  # the cut (300) falls inside the key
    client = Client(api_key=KEY, base_url="https://api.example.test/v1")  # makes KEY live
    error = status_error(400, {}, json.dumps({"error": {"message": message}}).encode(), None)
    assert KEY[:8] not in error.api_message and "********" in error.api_message
    client.close()


def test_a_key_in_a_mid_stream_error_and_a_malformed_chunk_is_gone_with_no_context():
    def handler(request: httpx.Request) -> httpx.Response:
        return sse_response(
            [
                sse(chunk({"content": "partial "})),
                f'data: {{"not json {KEY}\n\n'.encode(),
            ]
        )

    with client_for(handler) as client, pytest.raises(StreamError) as caught:
        list(client.stream("hi", model="openai/gpt-4o"))
    assert caught.value.partial.text == "partial "
    assert KEY not in everything_about(caught.value)
    assert caught.value.__context__ is None


def test_a_password_in_the_base_url_is_never_shown():
    url = "https://alice:s3cret-pass@api.example.test/v1"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}")

    client = Client(api_key=KEY, base_url=url, transport=httpx.MockTransport(refuse), max_retries=0)
    assert "s3cret" not in repr(client) and "alice" not in repr(client)
    with pytest.raises(APIError) as caught:
        client.chat("hi", model="openai/gpt-4o")
    assert "s3cret" not in everything_about(caught.value)
    assert display_url(url) == "https://***@api.example.test/v1"
    with pytest.raises(ConfigError) as bad:
        resolve_settings(KEY, "ftp://bob:hunter2@host/v1")
    assert "hunter2" not in bad.value.one_line()
    client.close()


def test_httpx_and_httpcore_debug_logs_never_show_the_key_or_password(caplog):
    url = "https://alice:s3cret-pass@api.example.test/v1"
    with caplog.at_level(logging.DEBUG):
        client = Client(
            api_key=KEY,
            base_url=url,
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"data": []})),
        )
        logging.getLogger("httpx").debug("sending to %s with Bearer %s", url, KEY)
        logging.getLogger("httpcore").debug(f"headers [(b'Authorization', b'Bearer {KEY}')]")
        client.models()
        client.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged and KEY not in logged and "s3cret-pass" not in logged


# -- the wire: wrong types, one line each, partial kept


@pytest.mark.parametrize(
    "bad, named",
    [
        (chunk({"content": 5}), "delta.content is a number"),
        ({**chunk(), "choices": [None]}, "a choice is null"),
        ({**chunk(), "choices": "all"}, "choices is text"),
        ({**chunk(), "choices": [{"index": 0, "delta": "hi"}]}, "delta is text"),
        (chunk({"tool_calls": 5}), "delta.tool_calls is a number"),
        (chunk({"tool_calls": [{"index": "a"}]}), "index is text"),
        (chunk(finish=7), "finish_reason is a number"),
    ],
)
def test_a_chunk_of_the_wrong_shape_is_one_line_and_keeps_the_partial(bad, named):
    def handler(request: httpx.Request) -> httpx.Response:
        return sse_response([sse(chunk({"content": "kept"}), bad, "data: [DONE]\n\n")])

    with client_for(handler) as client, pytest.raises(StreamError) as caught:
        list(client.stream("hi", model="openai/gpt-4o"))
    assert named in str(caught.value) and caught.value.partial.text == "kept"
    assert caught.value.kind == "malformed"


@pytest.mark.parametrize("usage", [7, "lots", {"prompt_tokens": "n/a"}, {"total_tokens": -1}])
def test_an_unusable_usage_object_is_a_warning_not_a_failure(usage):
    def handler(request: httpx.Request) -> httpx.Response:
        bad = {**usage_chunk(), "usage": usage}
        return sse_response(
            [sse(chunk({"content": "fine"}, finish="stop"), bad, "data: [DONE]\n\n")]
        )

    with client_for(handler) as client:
        reply = streamed(client)
    assert reply.text == "fine" and reply.usage is None
    assert reply.warnings and "usage" in reply.warnings[0]


def test_a_stream_of_only_done_is_an_empty_reply_with_a_warning(ip, emu):
    from ofox_jupyter._render import footer_parts

    def handler(request: httpx.Request) -> httpx.Response:
        return sse_response([b"data: [DONE]\n\n"])

    with client_for(handler) as client:
        reply = streamed(client)
    assert reply.text == ""
    from ofox_jupyter._session import Exchange

    _, warnings = footer_parts(Exchange(reply, "main"))
    assert "the model sent an empty reply" in warnings


@pytest.mark.parametrize(
    "body, named",
    [
        ({"choices": [{"message": "hi"}]}, "message is text"),
        ({"choices": [{"message": {"content": 5}}]}, "message.content is a number"),
        ({"choices": [None]}, "choices[0] is null"),
        ({"choices": {"0": {}}}, "choices is an object"),
        ({"choices": [{"message": {"tool_calls": 3}}]}, "tool_calls is not a list"),
    ],
)
def test_a_completion_of_the_wrong_shape_is_one_line(body, named):
    with client_for(lambda request: httpx.Response(200, json=body)) as client:
        with pytest.raises(APIError) as caught:
            client.chat("hi", model="openai/gpt-4o")
    assert named in str(caught.value) and "\n" not in caught.value.one_line()


def test_a_200_that_carries_an_error_says_so():
    body = {"error": {"message": "upstream exploded", "type": "upstream_error"}}
    with client_for(lambda request: httpx.Response(200, json=body)) as client:
        with pytest.raises(APIError) as caught:
            client.chat("hi", model="openai/gpt-4o")
    text = str(caught.value)
    assert "answered 200 with an error" in text and "HTTP 500" not in text
    assert "upstream exploded" in text


def test_bad_catalog_entries_are_skipped_and_counted(ip, emu, capsys):
    entries = [
        {"id": "good/model", "context_length": 1000},
        {"id": "bad/context", "context_length": "n/a"},
        {"id": "bad/arch", "architecture": "text"},
        {"id": "bad/pricing", "pricing": ["0.1"]},
        {"id": 5},
        "not an entry",
        None,
    ]
    models = parse_models({"data": entries})
    assert [m.id for m in models] == ["good/model"] and models.skipped == 6


# -- property tests: any JSON in any position

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)

CHUNK_PATHS = [
    ("id",),
    ("model",),
    ("choices",),
    ("choices", 0),
    ("choices", 0, "index"),
    ("choices", 0, "delta"),
    ("choices", 0, "delta", "content"),
    ("choices", 0, "delta", "tool_calls"),
    ("choices", 0, "delta", "reasoning_content"),
    ("choices", 0, "finish_reason"),
    ("usage",),
    ("usage", "prompt_tokens"),
    ("error",),
    ("error", "message"),
    ("error", "code"),
]


def put(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


def base_chunk() -> dict[str, Any]:
    body = chunk({"content": "x", "tool_calls": [{"index": 0, "function": {"name": "f"}}]})
    body["usage"] = {"prompt_tokens": 1}
    body["error"] = {"message": "m", "code": 1}
    return body


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CHUNK_PATHS), JSON)
def test_any_json_in_any_chunk_position_is_a_reply_or_one_line(path, value):
    bad = put(base_chunk(), path, value)
    if path[0] != "error":
        del bad["error"]
    payload = json.dumps(bad).replace('"x"', json.dumps(KEY), 1) if path == ("id",) else None

    def handler(request: httpx.Request) -> httpx.Response:
        return sse_response(
            [
                sse(
                    chunk({"content": "kept"}),
                    payload or bad,
                    chunk(finish="stop"),
                    "data: [DONE]\n\n",
                )
            ]
        )

    with client_for(handler) as client:
        try:
            reply = streamed(client)
        except StreamError as err:
            assert "\n" not in err.one_line() and err.partial.text.startswith("kept")
            assert KEY not in everything_about(err)
        else:
            assert reply.text.startswith("kept")


COMPLETION_PATHS = [
    ("choices",),
    ("choices", 0),
    ("choices", 0, "message"),
    ("choices", 0, "message", "content"),
    ("choices", 0, "message", "tool_calls"),
    ("choices", 0, "finish_reason"),
    ("usage",),
    ("model",),
    ("id",),
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(COMPLETION_PATHS), JSON)
def test_any_json_in_any_completion_position_is_a_reply_or_one_line(path, value):
    body = {
        "id": "c",
        "model": "m",
        "choices": [{"message": {"content": "hi", "tool_calls": []}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1},
    }
    put(body, path, value)
    try:
        reply = reply_from_completion(body, "openai/gpt-4o")
    except MalformedChunk as err:
        assert "\n" not in str(err)
    else:
        assert isinstance(reply.text, str)


@settings(max_examples=200, deadline=None)
@given(JSON, st.integers(min_value=400, max_value=599))
def test_any_error_body_is_one_line_without_the_key(value, status):
    client = Client(api_key=KEY, base_url="https://api.example.test/v1")  # the key is live
    for body in (
        value,
        {"error": value},
        {"error": {"message": value, "type": value, "code": value}},
    ):
        raw = json.dumps(body).replace('""', json.dumps(KEY))
        error = status_error(status, {}, raw.encode(), None)
        assert "\n" not in error.one_line() and KEY not in everything_about(error)
        assert len(error.one_line()) < 600
    client.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "name",
                    "context_length",
                    "architecture",
                    "pricing",
                    "top_provider",
                    "supported_parameters",
                    "is_deprecated",
                ]
            ),
            JSON,
            max_size=6,
        ),
        max_size=5,
    )
)
def test_any_catalog_entry_is_a_model_or_skipped(entries):
    models = parse_models({"data": entries})
    assert len(models) + models.skipped == len(entries)
    for model in models:
        assert isinstance(model.id, str) and model.context_length >= 0
        assert model.prompt_price is None or math.isfinite(model.prompt_price)


# -- what the user types: any string in any option

OPTIONS = [
    "-m",
    "-s",
    "-t",
    "--max-tokens",
    "--top-p",
    "--frequency-penalty",
    "--presence-penalty",
    "--chat",
    "-o",
    "-i",
    "--detail",
    "--schema",
    "--tools",
    "--tool-choice",
    "--format",
    "--routing",
    "--fallback",
]
NASTY = st.sampled_from(
    [
        "nan",
        "inf",
        "-inf",
        "1e999",
        "2",
        "2.0000001",
        "0",
        "-0",
        "",
        " ",
        "\ud800",
        "a\x00b",
        "9" * 400,
        "'",
        '"',
        "{x}",
        "$5",
        "--",
        "-",
        "é",
        "openai/gpt-4o",
        "main",
    ]
) | st.text(max_size=12)


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), NASTY), max_size=3), NASTY)
def test_any_option_value_is_used_or_one_usage_line(ip, capsys, options, prompt):
    magics = ip.magics_manager.registry["OfoxMagics"]
    line = " ".join(f"{flag} {shell_quote(value)}" for flag, value in options)
    before = sum(len(c) for c in magics.session.chats.values())
    try:
        ip.run_cell_magic("ofox", line, prompt or "hello")
        succeeded = True
    except UsageError as err:
        assert type(err) is UsageError and "\n" not in str(err).strip()
        succeeded = False
    out = capsys.readouterr()
    assert TEST_KEY not in out.out + out.err
    after = sum(len(c) for c in magics.session.chats.values())
    assert after - before in ((0, 1) if succeeded else (0,))
    json.dumps([t.to_dict() for c in magics.session.chats.values() for t in c.loaded])


@settings(max_examples=200, deadline=None)
@given(JSON | st.sets(st.integers(), max_size=3) | st.just(float("nan")))
def test_any_value_in_a_request_body_is_encoded_or_named(value):
    try:
        encoded = encode_body({"model": "m", "messages": [], "response_format": {"schema": value}})
    except OfoxError as err:
        assert "response_format.schema" in str(err) or "cannot send" in str(err)
    else:
        json.loads(encoded)


def test_vars_values_that_cannot_print_or_hold_surrogates(ip, emu):
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    ip.user_ns["odd"] = Unprintable()
    with pytest.raises(UsageError, match=r"\{odd\} could not be turned into text"):
        ip.run_cell_magic("ofox", "--vars", "look: {odd}")
    ip.user_ns["half"] = "half an emoji: \ud83d"
    ip.run_cell_magic("ofox", "--vars -o answer", "say {half}")
    sent = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    assert sent["messages"][-1]["content"] == "say half an emoji: \ufffd"
    ip.run_line_magic("ofox", "history")  # prints without an encoding error
