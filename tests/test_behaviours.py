"""Tests that can fail: one focused test (or a few) for each behaviour a planted bug once broke
without the rest of the suite noticing.

Expectations are computed apart from the code under test: token counts by replaying the recorded
request bodies against the emulator, request counts from what the emulator received, boundaries
from the documented ranges (product.md), fixed numbers from fake transports.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from types import SimpleNamespace

import httpx
import pytest
from conftest import TEST_KEY, restart
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.error import UsageError

from ofox_jupyter import (
    AsyncClient,
    Client,
    ConfigError,
    OfoxError,
    RateLimitError,
    RequestValidationError,
    StreamError,
)
from ofox_jupyter import _client as client_module
from ofox_jupyter._catalog import ModelInfo
from ofox_jupyter._config import Secret, is_loopback_host, resolve_settings, scrub
from ofox_jupyter._conversation import Conversation, Turn, estimate_tokens
from ofox_jupyter._history import HistoryStore
from ofox_jupyter._messages import assistant, user
from ofox_jupyter._render import footer_parts, format_cost, provenance
from ofox_jupyter._request import (
    MAX_TOKENS_LIMIT,
    RetryPolicy,
    build_chat_body,
    check_ranges,
    retry_after_seconds,
    status_error,
)
from ofox_jupyter._session import (
    CATALOG_RETRY_SECONDS,
    AskOptions,
    Exchange,
    NotebookSession,
    _parse_json_reply,
)
from ofox_jupyter._streaming import Reply, StreamState, TextDelta, Usage
from ofox_jupyter._tools import ToolRegistry
from ofox_jupyter.emulator import catalog

KEY = "sk-behaviours-secret-5e21c7"
URL = "https://api.ofox.ai/v1"


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def cell(ip, line: str, body: str, cell_id: str | None = None):
    """Run a %%ofox cell as a frontend does; it must not fail."""
    result = ip.run_cell(f"%%ofox {line}\n{body}", cell_id=cell_id)
    assert result.error_in_exec is None and result.error_before_exec is None, result
    return result


def chat_bodies(emu) -> list[dict]:
    return [r.body for r in emu.requests if r.path.endswith("/chat/completions")]


def replayed_usage(base_url: str, body: dict) -> dict[str, int]:
    """What the emulator counts for ``body``, asked again without streaming and without our
    client: the independent source of truth for token counts."""
    plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    response = httpx.post(
        f"{base_url}/chat/completions",
        json=plain,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["usage"]


def completion_body(
    text: str | None = "hi",
    *,
    tool_calls: list[dict] | None = None,
    usage: tuple[int, int] = (1, 1),
    finish: str = "stop",
    model: str = "openai/gpt-4o",
) -> dict:
    message: dict = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }


class FakeGateway:
    """A MockTransport handler: an empty catalog, and chat completions from a queue."""

    def __init__(self, *completions: dict) -> None:
        self.completions = list(completions)
        self.chat_requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        self.chat_requests.append(json.loads(request.content))
        return httpx.Response(200, json=self.completions.pop(0))


def fake_session(gateway: FakeGateway, **kw) -> NotebookSession:
    return NotebookSession(
        notebook="nb-test",
        client_factory=lambda: Client(KEY, base_url=URL, transport=httpx.MockTransport(gateway)),
        **kw,
    )


def exchange_of(**reply_fields) -> Exchange:
    fields = {"text": "hi", "model": "openai/gpt-4o", "requested_model": "openai/gpt-4o"}
    fields.update(reply_fields)
    return Exchange(Reply(**fields), "main")


# -- 1. sampling ranges: every boundary, on both sides

ACCEPTED = [
    ("temperature", 0.0),
    ("temperature", 2.0),
    ("top_p", 1e-9),
    ("top_p", 1.0),
    ("frequency_penalty", -2.0),
    ("frequency_penalty", 2.0),
    ("presence_penalty", -2.0),
    ("presence_penalty", 2.0),
    ("max_tokens", 1),
    ("max_tokens", MAX_TOKENS_LIMIT),
]
REJECTED = [
    ("temperature", -1e-7),
    ("temperature", 2.0000001),
    ("top_p", 0.0),
    ("top_p", -0.5),
    ("top_p", 1.0000001),
    ("frequency_penalty", -2.0000001),
    ("frequency_penalty", 2.0000001),
    ("presence_penalty", -2.0000001),
    ("presence_penalty", 2.0000001),
    ("max_tokens", 0),
    ("max_tokens", MAX_TOKENS_LIMIT + 1),
]


@pytest.mark.parametrize("name, value", ACCEPTED)
def test_range_edges_are_accepted(name, value):
    check_ranges({name: value})
    body = build_chat_body(model="m", messages="hi", stream=False, **{name: value})
    assert body[name] == value


@pytest.mark.parametrize("name, value", REJECTED)
def test_just_outside_a_range_is_refused(name, value):
    with pytest.raises(RequestValidationError, match=name):
        check_ranges({name: value})
    with pytest.raises(RequestValidationError, match=name):
        build_chat_body(model="m", messages="hi", stream=False, **{name: value})


OPTION = {
    "temperature": "-t",
    "top_p": "--top-p",
    "frequency_penalty": "--frequency-penalty",
    "presence_penalty": "--presence-penalty",
    "max_tokens": "--max-tokens",
}


def _option(name, value) -> str:
    shown = str(value) if isinstance(value, int) else repr(float(value))
    return f"{OPTION[name]} {shown}"


@pytest.mark.parametrize("name, value", ACCEPTED)
def test_the_magic_sends_values_at_the_edges(ip, emu, name, value):
    cell(ip, _option(name, value), "edge case")
    assert chat_bodies(emu)[-1][name] == value


@pytest.mark.parametrize("name, value", REJECTED)
def test_the_magic_refuses_values_past_the_edges_in_one_line(ip, emu, name, value):
    before = len(emu.requests)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("ofox", _option(name, value), "past the edge")
    message = str(info.value)
    assert name in message and "\n" not in message
    assert len(emu.requests) == before, "nothing may be sent"


# -- 2. retry-after-ms is honoured, and before retry-after


def test_retry_after_ms_decides_the_delay():
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    policy = RetryPolicy(max_retries=2)
    assert policy.delay(0, {"retry-after-ms": "250"}) == 0.25  # a hint: no jitter
    assert policy.delay(1, {"retry-after-ms": "250", "retry-after": "30"}) == 0.25
    # retry-after alone would be over the hint limit; the millisecond hint is what counts.
    assert policy.delay(0, {"retry-after-ms": "20", "retry-after": "3600"}) == 0.02
    assert policy.delay(0, {"retry-after-ms": str(61_000)}) is None  # too long to wait
    assert policy.delay(2, {"retry-after-ms": "250"}) is None  # retries used up


def _rate_limited_then_ok() -> list[httpx.Response]:
    hint = {"retry-after-ms": "20", "retry-after": "3600"}
    return [
        httpx.Response(429, json={"error": {"message": "slow down"}}, headers=hint),
        httpx.Response(200, json=completion_body("made it")),
    ]


def test_a_429_with_retry_after_ms_is_retried_after_that_wait(monkeypatch):
    responses = _rate_limited_then_ok()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses.pop(0)

    waits: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=waits.append))
    with Client(KEY, base_url=URL, transport=httpx.MockTransport(handler)) as c:
        assert c.chat("hi").text == "made it"
    assert len(seen) == 2 and waits == [0.02]


def test_the_async_client_honours_retry_after_ms_too():
    responses = _rate_limited_then_ok()

    async def handler(request: httpx.Request) -> httpx.Response:
        return responses.pop(0)

    async def go() -> str:
        async with AsyncClient(KEY, base_url=URL, transport=httpx.MockTransport(handler)) as c:
            return (await c.chat("hi")).text

    assert asyncio.run(go()) == "made it" and not responses


def test_retry_after_alone_over_the_limit_gives_up_at_once():
    # The counterpart of the tests above: the same 429 without the ms hint is not retried.
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            429, json={"error": {"message": "x"}}, headers={"retry-after": "3600"}
        )

    with Client(KEY, base_url=URL, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(RateLimitError):
            c.chat("hi")
    assert len(calls) == 1


# -- 3. trimming leaves out the oldest turns


def _five_turns() -> list[Turn]:
    return [
        Turn(
            id=f"t{i}",
            chat="main",
            user=user(f"question {i} " + "x" * 400),
            replies=(assistant(f"answer {i} " + "y" * 400),),
        )
        for i in range(5)
    ]


@pytest.mark.parametrize("lazy", [False, True], ids=["in-memory", "restored"])
@pytest.mark.parametrize("keep", [0, 1, 2, 4, 5])
@pytest.mark.parametrize("prompt", [None, "Be terse."])
def test_a_budget_for_k_turns_sends_the_newest_k(lazy, keep, prompt):
    turns = _five_turns()
    if lazy:
        by_id = {t.id: t for t in turns}
        chat = Conversation("main", prompt, loader=lambda ids: {i: by_id[i] for i in ids})
        for turn in turns:
            chat.record(turn)
        chat._loaded.clear()
    else:
        chat = Conversation("main", prompt, turns)
    new = user("the new question")
    sizes = [sum(estimate_tokens(m) for m in t.messages) for t in turns]
    assert len(set(sizes)) == 1  # every turn costs the same, so only the order decides
    fixed = estimate_tokens(new) + (4 + -(-len(prompt) // 4) if prompt else 0)
    exact = fixed + sizes[0] * keep
    for budget, expected in ((exact, keep), (exact + sizes[0] - 1, keep)):
        messages, omitted, images = chat.request_messages(new, budget=budget)
        kept = [m.text.split()[1] for m in messages if m.role == "user"][:-1]
        assert kept == [str(i) for i in range(5 - expected, 5)], (budget, kept)
        assert omitted == 5 - expected and images == 0
        assert messages[-1] is new
        assert (messages[0].role == "system") == bool(prompt)
    if keep:
        messages, omitted, _ = chat.request_messages(new, budget=exact - 1)
        assert omitted == 6 - keep
        assert [m.text.split()[1] for m in messages if m.role == "user"][:-1] == [
            str(i) for i in range(6 - keep, 5)
        ]


# -- 4. the system prompt is stored, and changes to it too


def test_the_store_keeps_a_chats_system_prompt(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.save_chat("nb", "main", "Be terse.")
    store.save_chat("nb", "other", None)
    store.close()
    store = HistoryStore(path)  # a restart: a fresh reader of the same file
    systems = {index.name: index.system for index in store.index("nb")}
    assert systems == {"main": "Be terse.", "other": None}
    assert store.load("nb")["main"].system == "Be terse."
    store.close()


def test_the_store_keeps_the_newest_system_prompt(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.save_chat("nb", "main", "Be terse.")
    store.save_turn("nb", Turn(id="t1", chat="main", user=user("q"), replies=(assistant("a"),)))
    store.save_chat("nb", "main", "Be verbose.")
    store.save_turn("nb", Turn(id="t2", chat="main", user=user("q2"), replies=(assistant("b"),)))
    store.save_chat("nb", "side", "First.")
    store.save_chat("nb", "side", None)  # the prompt removed
    store.close()
    store = HistoryStore(path)
    assert {i.name: i.system for i in store.index("nb")} == {"main": "Be verbose.", "side": None}
    assert store.index("someone-else") == []
    store.close()


def test_a_changed_system_prompt_survives_a_restart(ip, emu):
    cell(ip, "-s 'Be terse.'", "hello", cell_id="c1")
    cell(ip, "-s 'Be thorough.'", "and now?", cell_id="c2")
    restart(ip)
    assert magics(ip).session.chats["main"].system == "Be thorough."
    cell(ip, "", "after the restart", cell_id="c3")
    assert chat_bodies(emu)[-1]["messages"][0] == {"role": "system", "content": "Be thorough."}


# -- 5. a re-run cell's replaced row leaves the store


def _turn(turn_id: str, cell_id: str, text: str) -> Turn:
    return Turn(
        id=turn_id, chat="main", user=user(text), replies=(assistant("ok"),), cell_id=cell_id
    )


def test_save_turn_with_replaces_takes_the_old_rows_place(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.save_turn("nb", _turn("a", "c1", "draft"))
    store.save_turn("nb", _turn("b", "c2", "second"))
    store.save_turn("nb", _turn("c", "c3", "third"))
    store.save_turn("nb", _turn("a2", "c1", "final"), replaces="a")
    store.close()
    with sqlite3.connect(path) as db:
        ids = [row[0] for row in db.execute("SELECT turn_id FROM turns ORDER BY position")]
    assert ids == ["a2", "b", "c"]
    store = HistoryStore(path)
    assert [t.user.text for t in store.load("nb")["main"].turns] == ["final", "second", "third"]
    (index,) = store.index("nb")
    assert list(index.columns[0]) == ["a2", "b", "c"]
    store.close()


def test_a_rerun_cell_leaves_one_row_in_the_store(ip, tmp_path):
    cell(ip, "", "draft", cell_id="c1")
    cell(ip, "", "other", cell_id="c2")
    cell(ip, "", "final", cell_id="c1")  # the first cell, re-run
    path = magics(ip).session.store.path
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT data FROM turns ORDER BY position").fetchall()
    assert [json.loads(data)["user"]["content"] for (data,) in rows] == ["final", "other"]
    restart(ip)
    turns = magics(ip).session.chats["main"].turns
    assert [t.user.text for t in turns] == ["final", "other"]


def test_replacing_a_row_that_is_gone_appends(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_turn("nb", _turn("a", "c1", "one"))
    store.save_turn("nb", _turn("b", "c2", "two"), replaces="no-such-turn")
    assert [t.user.text for t in store.load("nb")["main"].turns] == ["one", "two"]
    store.close()


# -- 6. finish_reason "length" warns in the footer


def test_footer_warns_when_the_reply_was_cut_off():
    _, warnings = footer_parts(exchange_of(finish_reason="length"))
    assert "cut off: raise --max-tokens" in warnings
    _, warnings = footer_parts(exchange_of(finish_reason="stop"))
    assert not any("cut off" in w for w in warnings)


def test_max_tokens_cut_shows_the_warning(ip, emu, capsys):
    capsys.readouterr()
    cell(ip, "--max-tokens 3", "tell me a long story")
    out = capsys.readouterr().out
    assert ip.user_ns["_ofox"].reply.finish_reason == "length"
    assert "⚠ cut off: raise --max-tokens" in out
    assert chat_bodies(emu)[-1]["max_tokens"] == 3


# -- 7. the key is redacted wherever it occurs, however often
#
# Each test has a key of its own, held by exactly one Secret: scrub() passes over every live
# secret, so copies of one key in several Secrets would each take out one more occurrence and
# hide a redaction that stops at the first.


def fresh_key(tag: str) -> str:
    return f"sk-{tag}-{os.urandom(8).hex()}"


def test_redact_and_scrub_take_out_every_occurrence():
    key = fresh_key("redact")
    secret = Secret(key)
    text = f"{key} then {key}, and again:{key}{key}"
    assert secret.redact(text) == "******** then ********, and again:****************"
    scrubbed = scrub(text)
    assert key not in scrubbed and scrubbed.count("********") == 4


def test_status_errors_redact_every_copy_of_the_key():
    key = fresh_key("status")
    secret = Secret(key)
    body = json.dumps(
        {
            "error": {
                "message": " ".join([f"{key} rejected"] * 6),
                "type": " ".join([key] * 2),
                "code": "/".join([key] * 2),
            }
        }
    ).encode()
    err = status_error(401, {}, body, secret)
    everything = f"{err} {err!r} {err.one_line()} {err.api_message} {err.type} {err.code}"
    assert key not in everything
    assert err.api_message.count("********") == 6


def test_stream_errors_redact_every_copy_of_the_key():
    key = fresh_key("stream")
    state = StreamState("openai/gpt-4o", secret=Secret(key))
    data = json.dumps({"error": {"message": " and ".join([key] * 6), "type": f"{key}|{key}"}})
    with pytest.raises(StreamError) as info:
        state.on_event("", data)
    assert key not in f"{info.value} {info.value.api_type}"
    assert str(info.value).count("********") == 8  # the type is in the message too
    state = StreamState("openai/gpt-4o", secret=Secret(key))
    with pytest.raises(StreamError) as info:
        state.on_event("", "not json " + " ".join([key] * 2))
    assert key not in str(info.value)


def test_a_client_stream_error_quoting_the_key_many_times():
    key = fresh_key("client")
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "openai/gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}],
    }
    bad = {"error": {"message": "upstream got " + ", ".join([key] * 6), "type": "auth"}}
    payload = "".join(f"data: {json.dumps(p)}\n\n" for p in (chunk, bad)).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    with Client(key, base_url=URL, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(StreamError) as info:
            c.stream("hi").reply  # noqa: B018
    assert key not in str(info.value) and str(info.value).count("********") == 6
    assert info.value.partial.text == "a"


# -- 8. loopback means loopback, not a name that starts like one


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1.example.com", "localhost.evil.com", "127.evil.com", "localhostx", "128.0.0.1"],
)
def test_names_that_only_start_like_loopback_are_not(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"]
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1.example.com/v1",
        "http://localhost.evil.com/v1",
        "http://127.0.0.1.example.com:8000/v1",
        "http://localhost.evil.com:80",
    ],
)
def test_the_key_never_goes_over_http_to_a_lookalike(url):
    with pytest.raises(ConfigError, match="plain http"):
        resolve_settings(KEY, url)
    with pytest.raises(ConfigError, match="plain http"):
        Client(KEY, base_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://[::1]", "http://[::1]:8000/v1", "http://localhost"]
)
def test_the_key_may_go_over_http_to_loopback(url):
    settings = resolve_settings(KEY, url)
    assert settings.base_url == url and not settings.offline


# -- 9. a failed catalog fetch is tried again later


class FlakyCatalog:
    """A client whose first ``models()`` fails and whose later ones succeed."""

    def __init__(self) -> None:
        self.calls = 0

    def models(self) -> list[ModelInfo]:
        self.calls += 1
        if self.calls == 1:
            raise OfoxError("network blip")
        return [ModelInfo(id="openai/gpt-4o", context_length=128_000)]

    def close(self) -> None:
        pass


def test_a_failed_catalog_fetch_is_retried_after_the_pause():
    now = [1000.0]
    client = FlakyCatalog()
    session = NotebookSession(notebook="nb", client_factory=lambda: client, clock=lambda: now[0])
    assert session.catalog() == {} and client.calls == 1
    now[0] += CATALOG_RETRY_SECONDS / 2
    assert session.catalog() == {} and client.calls == 1  # not hammered
    now[0] += CATALOG_RETRY_SECONDS
    assert list(session.catalog()) == ["openai/gpt-4o"] and client.calls == 2
    now[0] += 10 * CATALOG_RETRY_SECONDS
    assert list(session.catalog()) == ["openai/gpt-4o"] and client.calls == 2  # kept once good
    assert session.model_info("openai/gpt-4o").context_length == 128_000


# -- 10. a fenced JSON reply is unwrapped in JSON mode


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"a": 1, "b": [2, 3]}\n```',
        '```\n{"a": 1, "b": [2, 3]}\n```',
        '  ```json {"a": 1, "b": [2, 3]}```  ',
    ],
)
def test_fenced_json_is_unwrapped(text):
    exchange = exchange_of(text=text)
    _parse_json_reply(exchange)
    assert exchange.error is None and exchange.value == {"a": 1, "b": [2, 3]}


def test_json_mode_session_unwraps_a_fenced_reply():
    gateway = FakeGateway(completion_body('```json\n{"ok": true}\n```'))
    session = fake_session(gateway)
    options = AskOptions(
        model="openai/gpt-4o",
        stream=False,
        params={"response_format": {"type": "json_object"}},
        expect_json=True,
    )
    exchange = session.ask("answer in JSON", options)
    assert exchange.error is None and exchange.value == {"ok": True}


# -- 11. the JSON export keeps the system prompt


def test_json_export_keeps_the_system_prompt(ip, tmp_path, capsys):
    cell(ip, "-s 'Answer like a pirate.'", "where is the treasure?")
    cell(ip, "--chat plain", "no system prompt here")
    target = tmp_path / "chats.json"
    ip.run_line_magic("ofox", f"export {target}")
    chats = {c["name"]: c for c in json.loads(target.read_text(encoding="utf-8"))["chats"]}
    assert chats["main"]["system"] == "Answer like a pirate."
    assert chats["plain"]["system"] is None
    assert chats["main"]["turns"][0]["user"]["content"] == "where is the treasure?"
    markdown = tmp_path / "chats.md"
    ip.run_line_magic("ofox", f"export {markdown}")
    assert "**System:** Answer like a pirate." in markdown.read_text(encoding="utf-8")


# -- 12. output metadata says what the reply really is


@pytest.mark.parametrize("status", ["complete", "partial", "interrupted"])
def test_provenance_carries_the_exchange_status(status):
    exchange = exchange_of(complete=status == "complete")
    exchange.status = status
    assert provenance(exchange)["ofox"]["status"] == status


def test_a_broken_streams_output_metadata_says_partial(ip, emu):
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    finals = []
    try:
        for body in ("tell me [emulator-fault: disconnect:3]", "and now whole"):
            # One publisher per cell, as each cell has its own outputs (a reply's live outputs
            # are cleared, which this publisher does to all it holds).
            ip.display_pub = capture = CapturingDisplayPublisher()
            try:
                ip.run_cell_magic("ofox", "", body)
            except UsageError as err:
                assert "mid-stream" in str(err) or "broke" in str(err)
            finals += [o["metadata"]["ofox"] for o in capture.outputs if "ofox" in o["metadata"]]
    finally:
        ip.display_pub = pub
    assert [m["status"] for m in finals] == ["partial", "complete"]
    assert ip.user_ns["_ofox"].status == "complete"


# -- 13. the first token's time is not the total time


def test_footer_shows_first_token_and_total_apart():
    exchange = exchange_of()
    exchange.first_token_seconds, exchange.total_seconds = 0.25, 3.5
    facts, _ = footer_parts(exchange)
    assert "first token 0.25 s" in facts and "3.50 s" in facts


def test_session_times_the_first_token_and_the_whole_reply_apart(emu):
    now = [0.0]
    first_text_at: list[float] = []

    def listener(event) -> None:
        if isinstance(event, TextDelta) and not first_text_at:
            first_text_at.append(now[0])
        now[0] += 1.0  # every event takes a second of fake time

    session = NotebookSession(
        notebook="nb",
        client_factory=lambda: Client(TEST_KEY, base_url=emu.base_url),
        clock=lambda: now[0],
    )
    try:
        exchange = session.ask(
            "one two three four five", AskOptions(model="openai/gpt-4o"), listener
        )
    finally:
        session.client.close()
    assert first_text_at and exchange.first_token_seconds == first_text_at[0]
    assert exchange.total_seconds == now[0] > exchange.first_token_seconds


def test_the_printed_footer_times_are_different(ip, capsys):
    capsys.readouterr()
    cell(ip, "", "slowly [emulator-delay: 0.03] [emulator-words: 20]")
    out = capsys.readouterr().out
    first, total = map(float, re.search(r"first token ([\d.]+) s · ([\d.]+) s", out).groups())
    assert first < total


# -- 14. options the user did not give are not sent


BARE_STREAM = {"model", "messages", "stream", "stream_options"}


def test_a_plain_cell_sends_no_sampling_options(ip, emu):
    cell(ip, "", "just a question")
    body = chat_bodies(emu)[-1]
    assert set(body) == BARE_STREAM, sorted(set(body) - BARE_STREAM)
    assert body["stream_options"] == {"include_usage": True}
    cell(ip, "--no-stream", "another question")
    assert set(chat_bodies(emu)[-1]) == {"model", "messages"}


def test_build_chat_body_adds_nothing_unasked():
    assert set(build_chat_body(model="m", messages="hi", stream=False)) == {"model", "messages"}
    assert set(build_chat_body(model="m", messages="hi", stream=True)) == BARE_STREAM


def test_one_option_sends_that_option_only(ip, emu):
    cell(ip, "-t 0.3", "warm")
    assert set(chat_bodies(emu)[-1]) == BARE_STREAM | {"temperature"}
    cell(ip, "--top-p 0.5", "narrow")
    assert set(chat_bodies(emu)[-1]) == BARE_STREAM | {"top_p"}


# -- usage: summed over tool rounds, offline apart, request counts


@pytest.fixture
def mean_tool(ip):
    ip.run_cell(
        "def mean(numbers: list[float]) -> float:\n"
        "    '''Arithmetic mean.'''\n"
        "    return sum(numbers) / len(numbers)\n"
    )
    yield
    ip.user_ns.pop("mean", None)


def _usage_rows(out: str) -> dict[str, list[str]]:
    """The plain-text ``%ofox usage`` table: model → [requests, tokens in, tokens out, cost]."""
    rows = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 5 and words[-4].isdigit():
            rows[" ".join(words[:-4])] = words[-4:]
    return rows


def test_tool_rounds_sum_their_usage(ip, emu, mean_tool, capsys):
    cell(ip, "-m openai/gpt-4o --tools mean", 'mean {"numbers": [1, 3]}')
    exchange = ip.user_ns["_ofox"]
    bodies = chat_bodies(emu)
    assert len(bodies) == 2 and exchange.tool_rounds == 1
    each = [replayed_usage(emu.base_url, body) for body in bodies]
    prompt = sum(u["prompt_tokens"] for u in each)
    completion = sum(u["completion_tokens"] for u in each)
    usage = exchange.reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, completion)
    assert usage.total_tokens == prompt + completion
    out = capsys.readouterr().out
    assert f"{prompt:,} → {completion:,} tokens" in out
    ip.run_line_magic("ofox", "usage")
    row = _usage_rows(capsys.readouterr().out)["openai/gpt-4o"]
    assert row[:3] == ["2", f"{prompt:,}", f"{completion:,}"]


def test_tool_loop_usage_with_known_counts():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "double", "arguments": '{"x": 2}'},
    }
    gateway = FakeGateway(
        completion_body(None, tool_calls=[call], usage=(11, 3), finish="tool_calls"),
        completion_body("it is 4", usage=(20, 7)),
    )

    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    session = fake_session(gateway)
    options = AskOptions(model="openai/gpt-4o", stream=False, tools=ToolRegistry([double]))
    exchange = session.ask("double 2", options)
    assert len(gateway.chat_requests) == 2 and exchange.requests == 2
    assert exchange.reply.usage == Usage(prompt_tokens=31, completion_tokens=10, total_tokens=41)
    assert exchange.turn is not None and exchange.turn.usage == exchange.reply.usage


def test_usage_request_counts_come_from_what_was_sent(ip, emu, mean_tool, capsys):
    cell(ip, "-m openai/gpt-4o", "first")
    cell(ip, "-m openai/gpt-4o --tools mean", 'mean {"numbers": [2, 4]}')
    cell(ip, "-m openai/gpt-4o --no-stream", "third")
    bodies = chat_bodies(emu)
    each = [replayed_usage(emu.base_url, body) for body in bodies]
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    rows = _usage_rows(capsys.readouterr().out)
    prompt = sum(u["prompt_tokens"] for u in each)
    completion = sum(u["completion_tokens"] for u in each)
    assert rows["openai/gpt-4o"][:3] == [str(len(bodies)), f"{prompt:,}", f"{completion:,}"]
    assert len(bodies) == 4
    assert rows["total"][:3] == [str(len(bodies)), f"{prompt:,}", f"{completion:,}"]


def test_offline_replies_are_listed_apart(ip, emu, capsys):
    from ofox_jupyter.emulator import shared_emulator

    cell(ip, "-m openai/gpt-4o", "a real one")
    (online_body,) = chat_bodies(emu)
    online = replayed_usage(emu.base_url, online_body)
    ip.run_line_magic("config", "OfoxMagics.base_url = 'offline'")
    offline_emu = shared_emulator()
    before = len(offline_emu.requests)
    cell(ip, "-m openai/gpt-4o", "an offline one, a little longer than the first")
    assert ip.user_ns["_ofox"].offline
    (offline_body,) = [
        r.body for r in offline_emu.requests[before:] if r.path.endswith("/chat/completions")
    ]
    offline = replayed_usage(emu.base_url, offline_body)
    assert offline != online
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    out = capsys.readouterr().out
    rows = _usage_rows(out)
    price = {m["id"]: m["pricing"] for m in catalog()}["openai/gpt-4o"]

    def cost(u):
        return u["prompt_tokens"] * float(price["prompt"]) + u["completion_tokens"] * float(
            price["completion"]
        )

    assert rows["openai/gpt-4o"] == [
        "1",
        f"{online['prompt_tokens']:,}",
        f"{online['completion_tokens']:,}",
        format_cost(cost(online)),
    ]
    assert rows["openai/gpt-4o (offline)"] == [
        "1",
        f"{offline['prompt_tokens']:,}",
        f"{offline['completion_tokens']:,}",
        f"({format_cost(cost(offline))})",
    ]
    assert rows["total"][0] == "2"
    assert rows["total"][3] == format_cost(cost(online))  # only what was really charged
    assert f"at list prices: {format_cost(cost(offline))}" in out


# -- found while writing these tests


def test_an_interrupt_before_any_text_does_not_claim_a_partial_reply(ip, capsys):
    ip.run_cell(
        "def stuck(x: int) -> int:\n    '''Never returns.'''\n    raise KeyboardInterrupt\n"
    )
    capsys.readouterr()
    try:
        with pytest.raises(UsageError, match="interrupted"):
            ip.run_cell_magic("ofox", "--tools stuck", 'stuck {"x": 1}')
    finally:
        ip.user_ns.pop("stuck", None)
    assert "main" not in magics(ip).session.chats  # indeed nothing was kept
    assert ip.user_ns["_ofox"].text == ""
    assert "partial reply kept" not in capsys.readouterr().out
