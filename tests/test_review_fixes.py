"""Regression tests for defects found in review: each failed before its fix."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest
from conftest import TEST_KEY
from helpers import Recorder, chunk, sse, sse_response
from IPython.core.error import UsageError

from ofox_jupyter import APIConnectionError, Client, ServerError, StreamError, Timeouts
from ofox_jupyter._cell_options import _strict_ok

KEY = "sk-review-secret-4471"
URL = "https://api.ofox.ai/v1"


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def test_mid_stream_error_text_never_shows_the_key():
    bad = {"error": {"message": f"upstream rejected key {KEY}", "type": "auth"}}
    rec = Recorder(sse_response([sse(chunk({"content": "a"}), bad)]))
    with Client(KEY, base_url=URL, transport=httpx.MockTransport(rec)) as c:
        with pytest.raises(StreamError) as info:
            c.stream("hi").reply  # noqa: B018
    assert KEY not in str(info.value) and "********" in str(info.value)
    assert "(auth)" in str(info.value)  # the API's error type is kept


def test_streaming_request_answered_by_plain_json_error_or_html():
    error = httpx.Response(200, json={"error": {"message": "overloaded", "code": 503}})
    with Client(KEY, base_url=URL, transport=httpx.MockTransport(Recorder(error))) as c:
        with pytest.raises(ServerError, match="overloaded"):
            c.stream("hi").reply  # noqa: B018
    page = httpx.Response(
        200, text="<html>captive portal</html>", headers={"content-type": "text/html"}
    )
    with Client(KEY, base_url=URL, transport=httpx.MockTransport(Recorder(page))) as c:
        with pytest.raises(APIConnectionError, match="not JSON"):
            c.stream("hi").reply  # noqa: B018


def test_a_redirect_is_one_clear_error_not_a_reply():
    rec = Recorder(httpx.Response(301, headers={"location": "https://elsewhere/v1"}))
    with Client(KEY, base_url=URL, transport=httpx.MockTransport(rec)) as c:
        with pytest.raises(APIConnectionError, match="redirected \\(301\\) to https://elsewhere"):
            c.chat("hi")
    assert len(rec.requests) == 1


def test_a_first_byte_timeout_does_not_resend_the_chat(emu):
    hasty = Timeouts(connect=2, first_byte=0.2, between_chunks=2)
    with Client(TEST_KEY, base_url=emu.base_url, timeout=hasty, max_retries=2) as c:
        with pytest.raises(Exception, match="first byte"):
            c.chat("slow one [emulator-fault: slow:1#nodup]")
    assert sum(r.path.endswith("/chat/completions") for r in emu.requests) == 1


def test_new_with_a_failed_request_keeps_the_chat(ip, emu):
    ip.run_cell_magic("ofox", "-s 'Be kind.'", "first")
    ip.run_cell_magic("ofox", "", "second")
    with pytest.raises(UsageError, match="HTTP 401"):
        ip.run_cell_magic("ofox", "--new -s 'Be rude.'", "oops [emulator-fault: 401]")
    conversation = magics(ip).session.chats["main"]
    assert len(conversation.turns) == 2 and conversation.system == "Be kind."
    ip.run_cell_magic("ofox", "--new -s 'Be brief.'", "fresh start")
    conversation = magics(ip).session.chats["main"]
    assert [t.user.text for t in conversation.turns] == ["fresh start"]
    assert conversation.system == "Be brief."


def test_interrupt_inside_a_tool_keeps_history_valid_and_stops_the_ticker(ip):
    import threading

    ip.run_cell(
        "def stuck(x: int) -> int:\n    '''Never returns.'''\n    raise KeyboardInterrupt\n"
    )
    # A turn before the interrupted one, so that the chat exists and the check below always
    # has turns to look at (the interrupted exchange has no text, so it may add none).
    ip.run_cell_magic("ofox", "", "a plain question first")
    magics(ip).display_mode = "rich"
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(UsageError, match="interrupted"):
        ip.run_cell_magic("ofox", "--tools stuck", 'stuck {"x": 1}')
    assert "ofox-status" not in {t.name for t in threading.enumerate()} - before
    turns = magics(ip).session.chats["main"].turns
    assert turns, "the loop below must have turns to check"
    assert [t.user.text for t in turns][0] == "a plain question first"
    for turn in turns:
        assert not any(m.tool_calls for m in turn.replies), "no tool call left without a result"


def test_unusable_history_path_falls_back_to_memory(ip, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ip.run_line_magic("unload_ext", "ofox_jupyter")
    monkeypatch.setenv("OFOX_HISTORY_PATH", str(blocker / "history.sqlite3"))
    ip.run_line_magic("load_ext", "ofox_jupyter")
    out = capsys.readouterr().out
    assert "cannot keep history in" in out and "kept in memory only" in out
    magics(ip).display_mode = "text"
    ip.run_cell_magic("ofox", "", "still works")
    assert magics(ip).session.chats["main"].turns[0].user.text == "still works"


def test_history_path_change_reopens_the_store(ip, tmp_path, capsys):
    ip.run_cell_magic("ofox", "", "in the first store")
    other = tmp_path / "other.sqlite3"
    ip.run_line_magic("config", f"OfoxMagics.history_path = {str(other)!r}")
    magics(ip).display_mode = "text"
    assert magics(ip).session.store.path == other and magics(ip).session.chats == {}
    ip.run_cell_magic("ofox", "", "in the second store")
    with sqlite3.connect(other) as db:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 1


def test_export_to_a_bad_path_is_one_line(ip):
    ip.run_cell_magic("ofox", "", "something")
    with pytest.raises(UsageError, match="cannot write /no/such/dir/x.md"):
        ip.run_line_magic("ofox", "export /no/such/dir/x.md")


def test_ipython_image_with_a_url_is_sent_as_a_url(ip, emu):
    ip.run_cell("from IPython.display import Image as I\npic = I(url='https://example.com/p.png')")
    ip.run_cell_magic("ofox", "-i pic -m openai/gpt-4o", "what is it?")
    part = emu.requests[-1].body["messages"][-1]["content"][1]
    assert part["image_url"]["url"] == "https://example.com/p.png"


def test_strict_only_for_schemas_that_allow_it(ip, emu):
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    open_ = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    partial = dict(closed, required=[])
    nested = dict(closed, properties={"a": open_})
    assert _strict_ok(closed) and not _strict_ok(open_) and not _strict_ok(partial)
    assert not _strict_ok(nested)
    ip.user_ns["loose"] = open_
    ip.run_cell_magic("ofox", "--schema loose", "json please")
    assert emu.requests[-1].body["response_format"]["json_schema"]["strict"] is False
    ip.user_ns["tight"] = closed
    ip.run_cell_magic("ofox", "--schema tight", "json please")
    assert emu.requests[-1].body["response_format"]["json_schema"]["strict"] is True
    assert json.dumps(ip.user_ns["_ofox"].value)
