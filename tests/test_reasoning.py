"""Reasoning models and usage details: the thinking block, cached and reasoning tokens, the
cache-read price, the store's schema 3 — over real HTTP against the emulator where it can be."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest
from conftest import TEST_KEY
from IPython.core.displaypub import CapturingDisplayPublisher

from ofox_jupyter._catalog import ModelInfo
from ofox_jupyter._conversation import Conversation, Turn
from ofox_jupyter._display import LiveReply
from ofox_jupyter._history import SCHEMA_VERSION, HistoryStore
from ofox_jupyter._messages import assistant, user
from ofox_jupyter._render import final_bundle, footer_parts, thinking_block, token_counts
from ofox_jupyter._session import Exchange
from ofox_jupyter._streaming import ReasoningDelta, Reply, TextDelta, Usage
from ofox_jupyter.emulator import catalog

SONNET = "anthropic/claude-sonnet-4.5"


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def cell(ip, line: str, body: str, cell_id: str | None = None):
    result = ip.run_cell(f"%%ofox {line}\n{body}", cell_id=cell_id)
    assert result.error_in_exec is None and result.error_before_exec is None, result
    return result


def chat_bodies(emu) -> list[dict]:
    return [r.body for r in emu.requests if r.path.endswith("/chat/completions")]


def post(emu, **body):
    request = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    request.update(body)
    return httpx.post(
        f"{emu.base_url}/chat/completions",
        json=request,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=30,
    )


def sse_chunks(text: str) -> list[dict]:
    return [
        json.loads(line[len("data: ") :])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


# -- the emulator's markers, on the wire


def test_reasoning_marker_streams_reasoning_before_the_content(emu):
    prompt = "think first [emulator-reasoning: 7]"
    response = post(
        emu,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert response.status_code == 200
    chunks = sse_chunks(response.text)
    kinds = [
        "reasoning" if "reasoning" in d else "content"
        for c in chunks
        if c["choices"]
        for d in [c["choices"][0]["delta"]]
        if d.get("reasoning") or d.get("content")
    ]
    assert kinds[:7] == ["reasoning"] * 7 and set(kinds[7:]) == {"content"}
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 7}
    assert usage["completion_tokens"] == len(kinds)
    # Not streamed: the whole reasoning in message.reasoning, the same count.
    whole = post(emu, messages=[{"role": "user", "content": prompt}]).json()
    assert len(whole["choices"][0]["message"]["reasoning"].split()) == 7
    assert whole["usage"] == usage


def test_cached_marker_is_reported_and_capped_at_the_prompt(emu):
    small = post(emu, messages=[{"role": "user", "content": "hi [emulator-cached: 3]"}]).json()
    assert small["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    huge = post(emu, messages=[{"role": "user", "content": "hi [emulator-cached: 999999]"}])
    usage = huge.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
    plain = post(emu).json()["usage"]
    assert "prompt_tokens_details" not in plain and "completion_tokens_details" not in plain


@pytest.mark.parametrize(
    "marker", ["[emulator-reasoning: x]", "[emulator-reasoning: 100001]", "[emulator-cached: -1]"]
)
def test_malformed_markers_are_a_json_400(emu, marker):
    response = post(emu, messages=[{"role": "user", "content": f"hi {marker}"}])
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_catalog_has_cache_read_prices():
    prices = {m["id"]: m["pricing"] for m in catalog()}
    assert prices[SONNET]["input_cache_read"] == "0.0000003"
    assert float(prices["openai/gpt-4o"]["input_cache_read"]) > 0


# -- the magic


def test_thinking_is_one_line_in_text_mode_and_kept_in_the_turn(ip, emu, capsys):
    cell(ip, "", "think about it [emulator-reasoning: 6] [emulator-delay: 0.02]")
    out = capsys.readouterr().out
    exchange = ip.user_ns["_ofox"]
    assert exchange.reasoning.split() == "alpha bravo charlie delta echo foxtrot.".split()
    # Six chunks of thinking, 0.02 s apart, plus a beat before the answer: at least 0.1 s.
    assert exchange.reasoning_seconds is not None and exchange.reasoning_seconds >= 0.09
    line = re.search(r"\(thought for (\d+\.\d) s\)", out)
    assert line is not None and out.index(line.group(0)) < out.index("think about it")
    assert "foxtrot" not in out  # the terminal is not flooded with the thinking
    assert "(6 reasoning)" in out
    assert exchange.turn.reasoning == exchange.reasoning
    assert exchange.turn.reasoning_seconds == exchange.reasoning_seconds


def test_rich_output_has_a_collapsed_thinking_block(ip, emu):
    class KeepEverything(CapturingDisplayPublisher):
        def clear_output(self, wait=False):  # the live outputs' updates are what is checked
            pass

    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = KeepEverything()
    try:
        cell(ip, "", "rich thought [emulator-reasoning: 40] [emulator-delay: 0.005]")
    finally:
        ip.display_pub = pub
    live = [o["data"].get("text/markdown", "") for o in capture.outputs if o["update"]]
    assert any("<summary>thinking…" in text for text in live)
    final = capture.outputs[-1]["data"]
    markdown = final["text/markdown"]
    block = re.match(
        r"<details><summary>thought for \d+\.\d s</summary>\n\n(.*?)</details>", markdown, re.S
    )
    assert block is not None and "alpha bravo" in block.group(1)
    assert markdown.index("</details>") < markdown.index("rich thought")
    assert "(40 reasoning)" in markdown
    assert final["text/plain"].startswith("(thought for ")
    assert "alpha bravo" not in final["text/plain"]
    meta = capture.outputs[-1]["metadata"]["ofox"]["usage"]
    assert meta["completion_tokens_details"] == {"reasoning_tokens": 40}


def test_reasoning_is_never_sent_back(ip, emu):
    cell(ip, "", "first [emulator-reasoning: 5]")
    cell(ip, "", "second")
    first, second = chat_bodies(emu)
    assert len(second["messages"]) == 3  # user, assistant, user
    sent = json.dumps(second["messages"])
    assert "alpha" not in sent and "thought" not in sent
    assert "reasoning" not in json.dumps(second["messages"][1])
    assert set(second["messages"][1]) <= {"role", "content", "tool_calls", "name"}


def test_cached_tokens_cost_the_cache_price(ip, emu, capsys):
    cell(ip, f"-m {SONNET}", "cached prompt [emulator-cached: 10] [emulator-reasoning: 3]")
    out = capsys.readouterr().out
    exchange = ip.user_ns["_ofox"]
    usage = exchange.reply.usage
    assert (usage.cached_tokens, usage.reasoning_tokens) == (10, 3)
    assert (
        f"{usage.prompt_tokens:,} → {usage.completion_tokens:,} tokens (10 cached, 3 reasoning)"
        in out
    )
    price = {m["id"]: m["pricing"] for m in catalog()}[SONNET]
    expected = (
        (usage.prompt_tokens - 10) * float(price["prompt"])
        + 10 * float(price["input_cache_read"])
        + usage.completion_tokens * float(price["completion"])
    )
    assert exchange.cost == pytest.approx(expected)


def test_usage_table_gains_cached_and_reasoning_columns(ip, emu, capsys):
    cell(ip, "-m openai/gpt-4o", "plain")
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    out = capsys.readouterr().out
    assert "cached" not in out and "reasoning" not in out  # nothing to show yet
    cell(ip, "-m openai/gpt-4o", "again [emulator-cached: 4] [emulator-reasoning: 2]")
    cell(ip, f"-m {SONNET}", "other [emulator-cached: 5]")
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "model",
        "requests",
        "tokens",
        "in",
        "tokens",
        "out",
        "cached",
        "reasoning",
        "cost",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.strip()}
    assert rows["openai/gpt-4o"][0] == "2" and rows["openai/gpt-4o"][3:5] == ["4", "2"]
    assert rows[SONNET][3:5] == ["5", "0"]
    assert rows["total"][3:5] == ["9", "2"]


def test_non_streamed_reasoning_has_no_duration(ip, emu, capsys):
    cell(ip, "--no-stream", "no stream [emulator-reasoning: 4]")
    out = capsys.readouterr().out
    exchange = ip.user_ns["_ofox"]
    assert exchange.reasoning and exchange.reasoning_seconds is None
    assert "(4 reasoning)" in out
    bundle = final_bundle(exchange, "markdown")
    assert "<summary>thought before answering</summary>" in bundle["text/markdown"]


def test_history_and_exports_keep_the_reasoning(ip, emu, tmp_path, capsys):
    cell(ip, "", "remember this [emulator-reasoning: 3] [emulator-delay: 0.01]")
    seconds = ip.user_ns["_ofox"].reasoning_seconds
    capsys.readouterr()
    ip.run_line_magic("ofox", "history")
    assert "(thought for " in capsys.readouterr().out
    ip.run_line_magic("ofox", f"export {tmp_path / 'chat.json'}")
    data = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    (turn,) = data["chats"][0]["turns"]
    assert turn["reasoning"] == "alpha bravo charlie."
    assert turn["reasoning_seconds"] == pytest.approx(seconds)
    ip.run_line_magic("ofox", f"export {tmp_path / 'chat.md'}")
    text = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert "<details><summary>thought for " in text and "alpha bravo charlie." in text


# -- pure parts


def test_usage_details_of_the_wrong_type_are_ignored():
    base = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    for details in (
        {"prompt_tokens_details": "n/a"},
        {"prompt_tokens_details": {"cached_tokens": "10"}},
        {"prompt_tokens_details": {"cached_tokens": True}},
        {"prompt_tokens_details": {"cached_tokens": -1}},
        {"prompt_tokens_details": {"cached_tokens": 1.5}},
        {"prompt_tokens_details": None, "completion_tokens_details": []},
        {"completion_tokens_details": {"reasoning_tokens": None}},
        {"completion_tokens_details": {"reasoning_tokens": 2**60}},
    ):
        usage = Usage.from_dict({**base, **details})
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 20, 120)
        assert (usage.cached_tokens, usage.reasoning_tokens) == (0, 0)
        assert usage.to_dict() == base
    usage = Usage.from_dict(
        {
            **base,
            "prompt_tokens_details": {"cached_tokens": 500, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 7},
        }
    )
    assert (usage.cached_tokens, usage.reasoning_tokens) == (100, 7)  # capped at the prompt
    assert Usage.from_dict(usage.to_dict()) == usage
    # The main counts stay strict.
    with pytest.raises(ValueError, match="prompt_tokens"):
        Usage.from_dict({"prompt_tokens": "n/a", "prompt_tokens_details": {"cached_tokens": 1}})


def test_cost_with_and_without_a_cache_price():
    usage = Usage(1200, 80, 1280, cached_tokens=1000, reasoning_tokens=50)
    cached = ModelInfo.from_dict(
        {
            "id": "m",
            "pricing": {"prompt": "0.000003", "completion": "0.000015", "input_cache_read": "3e-7"},
        }
    )
    assert cached.cache_read_price == pytest.approx(3e-7)
    assert cached.cost(usage) == pytest.approx(200 * 3e-6 + 1000 * 3e-7 + 80 * 1.5e-5)
    plain = ModelInfo.from_dict({"id": "m", "pricing": {"prompt": "0.000003", "completion": "0"}})
    assert plain.cache_read_price is None
    assert plain.cost(usage) == pytest.approx(1200 * 3e-6)
    odd = ModelInfo.from_dict(
        {"id": "m", "pricing": {"prompt": "1", "completion": "1", "input_cache_read": "n/a"}}
    )
    assert odd.cache_read_price is None and odd.cost(usage) == 1280
    assert token_counts(usage) == "1,200 → 80 tokens (1,000 cached, 50 reasoning)"
    assert token_counts(Usage(5, 7, 12)) == "5 → 7 tokens"


def test_history_does_not_send_reasoning_back():
    turn = Turn(
        id="t1",
        chat="main",
        user=user("why?"),
        replies=(assistant("because"),),
        reasoning="SECRET THOUGHTS",
        reasoning_seconds=1.5,
    )
    conversation = Conversation("main", turns=[turn])
    messages, _, _ = conversation.request_messages(user("and then?"))
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    assert "SECRET" not in json.dumps([m.to_dict() for m in messages])
    data = turn.to_dict()
    assert data["reasoning"] == "SECRET THOUGHTS" and Turn.from_dict(data) == turn
    # Stored values of the wrong type are dropped, not fatal.
    odd = Turn.from_dict({**data, "reasoning": 5, "reasoning_seconds": "long"})
    assert odd.reasoning == "" and odd.reasoning_seconds is None
    assert "reasoning" not in Turn.from_dict({**data, "reasoning": ""}).to_dict()


def test_live_reply_shows_thinking_through_a_sink():
    """The widgets' path: a LiveReply with a sink gets the same thinking block."""
    now = [0.0]
    shown: list[dict[str, str]] = []
    live = LiveReply("m", sink=shown.append, clock=lambda: now[0], tick_seconds=0, max_rate=1000)
    live.start()
    for word in ("one ", "two ", "three "):
        now[0] += 0.5
        live(ReasoningDelta(word))
    now[0] += 0.6
    live(TextDelta("answer"))
    markdown = [b["text/markdown"] for b in shown if "text/markdown" in b]
    assert any("<summary>thinking… 1.0 s</summary>" in m for m in markdown)
    assert "<summary>thought for 1.6 s</summary>" in markdown[-1]
    assert markdown[-1].index("</details>") < markdown[-1].index("answer")


def test_thinking_block_cannot_close_itself():
    block = thinking_block("a </details> b </SUMMARY> c", 1.0)
    assert block.count("</details>") == 1 and "</SUMMARY>" not in block
    assert thinking_block("x", 2.06, markdown=False) == "(thought for 2.1 s)"


def test_footer_and_plain_text_of_a_reasoned_reply():
    reply = Reply(
        text="hi",
        model="m",
        requested_model="m",
        reasoning="hmm",
        usage=Usage(1200, 80, 1280, cached_tokens=1000, reasoning_tokens=50),
    )
    exchange = Exchange(reply, "main", reasoning="hmm", reasoning_seconds=2.1)
    facts, _ = footer_parts(exchange)
    assert "1,200 → 80 tokens (1,000 cached, 50 reasoning)" in facts
    assert final_bundle(exchange, "text")["text/plain"].startswith("(thought for 2.1 s)\n\nhi")


# -- the store


_V2_SCHEMA = """
CREATE TABLE notebooks (id TEXT PRIMARY KEY, path TEXT, kernel TEXT, parent TEXT,
    created REAL NOT NULL, seen REAL NOT NULL);
CREATE TABLE chats (notebook TEXT NOT NULL, chat TEXT NOT NULL, system TEXT,
    PRIMARY KEY (notebook, chat));
CREATE TABLE turns (turn_id TEXT PRIMARY KEY, notebook TEXT NOT NULL, chat TEXT NOT NULL,
    position INTEGER NOT NULL, data TEXT NOT NULL,
    cell_id TEXT, origin TEXT, slim_tokens INTEGER, image_tokens INTEGER, images INTEGER);
CREATE TABLE images (hash TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE usage (notebook TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost REAL, requests INTEGER NOT NULL,
    PRIMARY KEY (notebook, model));
PRAGMA user_version = 2;
"""


def test_a_v2_store_gains_the_usage_columns(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    turn = Turn(id="t1", chat="main", user=user("old question"), replies=(assistant("old"),))
    with sqlite3.connect(path) as db:
        db.executescript(_V2_SCHEMA)
        db.execute(
            "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?)", ("nb", "openai/gpt-4o", 10, 5, 0.5, 2)
        )
        db.execute(
            "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("t1", "nb", "main", 0, json.dumps(turn.to_dict()), None, None, 9, 0, 0),
        )
        db.execute("INSERT INTO chats VALUES ('nb', 'main', NULL)")
    db.close()
    assert SCHEMA_VERSION == 3
    store = HistoryStore(path)
    try:
        assert store.usage("nb") == [("openai/gpt-4o", 10, 5, 0.5, 2, 0, 0)]
        store.add_usage("nb", "openai/gpt-4o", 100, 50, 0.25, cached=30, reasoning=7)
        assert store.usage("nb") == [("openai/gpt-4o", 110, 55, 0.75, 3, 30, 7)]
        (chat,) = store.load("nb").values()
        assert [t.text for t in chat.turns] == ["old"]
        reasoned = Turn(
            id="t2", chat="main", user=user("q"), replies=(assistant("a"),), reasoning="hm"
        )
        store.save_turn("nb", reasoned)
        assert store.load_turns(["t2"])["t2"].reasoning == "hm"
    finally:
        store._db.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()
    HistoryStore(path)._db.close()  # opens again as it is, nothing to migrate
