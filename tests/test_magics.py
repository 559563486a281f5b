"""%%ofox and %ofox on a real IPython shell, against the emulator over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
from conftest import TEST_KEY, restart
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.error import UsageError

from ofox_jupyter._render import format_cost
from ofox_jupyter._request import RetryPolicy


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def cell(ip, line: str, body: str, cell_id: str | None = None):
    """Run a %%ofox cell like a frontend would (with an optional cell id)."""
    result = ip.run_cell(f"%%ofox {line}\n{body}", cell_id=cell_id)
    return result


def last_body(emu) -> dict:
    return [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body


def chat_turns(ip, name: str = "main"):
    conversation = magics(ip).session.chats.get(name)
    return conversation.turns if conversation else []


# -- loading


def test_load_ext_imports_nothing_heavy(tmp_path):
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'ofox_jupyter')\n"
        "heavy = ['httpx', 'PIL', 'ipywidgets', 'matplotlib', 'starlette', 'uvicorn', 'tqdm']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = dict(os.environ, OFOX_HISTORY_PATH=str(tmp_path / "h.sqlite3"))
    env.pop("OFOX_API_KEY", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "offline" in out.stdout  # the one-line notice at load


def test_help_lists_the_options(ip):
    doc = magics(ip).ofox_cell.__doc__
    for option in (
        "--model",
        "--system",
        "--temperature",
        "--max-tokens",
        "--chat",
        "--new",
        "--no-history",
        "--out",
        "--format",
        "--routing",
        "--fallback",
        "--vars",
        "--no-stream",
    ):
        assert option in doc


# -- options reach the wire


def test_every_sampling_option_is_sent(ip, emu):
    cell(
        ip,
        "-m openai/gpt-4o -s 'Be terse.' -t 0.4 --max-tokens 300 --top-p 0.9 "
        "--frequency-penalty 0.5 --presence-penalty -0.5 --routing cost "
        "--fallback anthropic/claude-sonnet-4.5,google/gemini-2.5-flash",
        "What is a monad?",
    )
    body = last_body(emu)
    assert body["model"] == "openai/gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["messages"][-1] == {"role": "user", "content": "What is a monad?"}
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.4, 300, 0.9)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.5, -0.5)
    assert body["provider"] == {
        "routing": "cost",
        "fallback": ["anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"],
    }
    assert body["stream"] is True


def test_no_stream_and_out_and_underscore_ofox(ip, emu):
    cell(ip, "--no-stream -o answer", "plain please")
    assert "stream" not in last_body(emu)
    assert "plain please" in ip.user_ns["answer"]
    assert ip.user_ns["_ofox"].text == ip.user_ns["answer"]


def test_system_prompt_is_kept_for_later_turns(ip, emu):
    cell(ip, "-s 'You are a pirate.'", "hello")
    cell(ip, "", "and again")
    messages = last_body(emu)["messages"]
    assert messages[0] == {"role": "system", "content": "You are a pirate."}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("-t 3", "temperature must be in [0, 2]"),
        ("--top-p 0", "top_p"),
        ("--max-tokens 0", "max_tokens"),
        ("--presence-penalty 9", "presence_penalty"),
        ("-t warm", "invalid float value"),
        ("--routing fastest", "invalid choice"),
        ("--format html", "invalid choice"),
        ("-o 1bad", "-o needs a variable name"),
        ("--bogus", "unrecognized arguments"),
    ],
)
def test_bad_options_are_one_line_and_send_nothing(ip, emu, line, fragment):
    before = len(emu.requests)
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        ip.run_cell_magic("ofox", line, "hi")
    assert len(emu.requests) == before


def test_empty_cell(ip):
    with pytest.raises(UsageError, match="empty"):
        ip.run_cell_magic("ofox", "", "   \n")


def test_braces_are_literal_without_vars(ip, emu):
    ip.user_ns["name"] = "Ada"
    cell(ip, "", 'Hello {name}, here is JSON: {"a": 1}')
    assert last_body(emu)["messages"][-1]["content"] == 'Hello {name}, here is JSON: {"a": 1}'
    cell(ip, "--vars", 'Hello {name}, {{literal}} and {"a": 1}')
    assert last_body(emu)["messages"][-1]["content"] == 'Hello Ada, {literal} and {"a": 1}'
    with pytest.raises(UsageError, match="no variable named 'nobody'"):
        ip.run_cell_magic("ofox", "--vars", "Hi {nobody}")


# -- history


def test_rerun_replaces_the_cells_turn_in_place(ip, emu):
    cell(ip, "", "first question", cell_id="c1")
    cell(ip, "", "second question", cell_id="c2")
    cell(ip, "", "first question, rephrased", cell_id="c1")
    turns = chat_turns(ip)
    assert [t.user.text for t in turns] == ["first question, rephrased", "second question"]
    # The re-run cell saw only the turns before it: none.
    assert [m["role"] for m in last_body(emu)["messages"]] == ["user"]
    cell(ip, "", "third", cell_id="c3")
    assert [m["content"] for m in last_body(emu)["messages"] if m["role"] == "user"] == [
        "first question, rephrased",
        "second question",
        "third",
    ]


def test_without_cell_id_runs_append(ip):
    cell(ip, "", "same")
    cell(ip, "", "same")
    assert len(chat_turns(ip)) == 2


def test_named_chats_new_and_no_history(ip, emu):
    cell(ip, "--chat side", "side question")
    cell(ip, "", "main question")
    assert len(chat_turns(ip, "side")) == 1 and len(chat_turns(ip)) == 1
    cell(ip, "--chat side", "side follow-up")
    assert len(last_body(emu)["messages"]) == 3
    cell(ip, "--chat side --new", "start over")
    assert [t.user.text for t in chat_turns(ip, "side")] == ["start over"]
    assert len(last_body(emu)["messages"]) == 1
    cell(ip, "--no-history", "one-off")
    assert len(last_body(emu)["messages"]) == 1 and len(chat_turns(ip)) == 1


def test_history_survives_a_restart_and_reset_clears_both(ip, notebook, capsys):
    cell(ip, "", "remember me", cell_id="a")
    cell(ip, "--chat other", "me too", cell_id="b")
    capsys.readouterr()
    restart(ip)  # a new kernel on the same (saved) notebook
    assert "restored 2 turns" in capsys.readouterr().out
    assert [t.user.text for t in chat_turns(ip)] == ["remember me"]
    cell(ip, "", "remember me (edited)", cell_id="a")  # still replaces across the restart
    assert [t.user.text for t in chat_turns(ip)] == ["remember me (edited)"]
    ip.run_line_magic("ofox", "reset --all")
    assert "cleared every chat (2 turns)" in capsys.readouterr().out
    restart(ip, save=False)  # the file still names the old turns: they are gone from the store
    assert "restored" not in capsys.readouterr().out
    assert magics(ip).session.chats == {}


def test_reset_one_chat(ip, capsys):
    cell(ip, "", "a")
    cell(ip, "--chat b", "b")
    ip.run_line_magic("ofox", "reset --chat b")
    assert "cleared chat 'b' (1 turn)" in capsys.readouterr().out
    assert len(chat_turns(ip)) == 1 and chat_turns(ip, "b") == []


def test_oldest_turns_left_out_when_context_is_full(ip, emu, capsys):
    for i in range(4):
        cell(ip, "", f"question {i} " + "x" * 2000)
    ip.run_line_magic("config", "OfoxMagics.max_context_tokens = 2800")
    capsys.readouterr()
    cell(ip, "", "latest")
    users = [m["content"] for m in last_body(emu)["messages"] if m["role"] == "user"]
    assert users[-1] == "latest" and len(users) < 5
    left_out = 5 - len(users)
    assert f"{left_out} earlier turn" in capsys.readouterr().out
    assert len(chat_turns(ip)) == 5  # left out of the request, not deleted


def test_failed_request_adds_no_turn(ip):
    cell(ip, "", "ok")
    with pytest.raises(UsageError, match="HTTP 401"):
        ip.run_cell_magic("ofox", "", "[emulator-fault: 401]")
    assert len(chat_turns(ip)) == 1


# -- faults and interrupts


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("401", "HTTP 401 authentication_error invalid_api_key"),
        ("400", "HTTP 400 invalid_request_error: unknown provider type"),
        ("500*3", "HTTP 500 internal_error"),
    ],
)
def test_faults_before_the_stream_are_one_line(ip, spec, fragment, capfd):
    magics(ip).max_retries = 0
    result = ip.run_cell(f"%%ofox\nhello [emulator-fault: {spec}]")
    err = capfd.readouterr().err
    assert isinstance(result.error_in_exec, UsageError)
    assert fragment in str(result.error_in_exec)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("UsageError: ")


@pytest.mark.parametrize(
    "spec", ["disconnect:3", "error-openrouter:3", "malformed:3", "error-openai:3"]
)
def test_broken_streams_show_and_keep_the_partial_reply(ip, spec, capfd):
    result = ip.run_cell(f"%%ofox\nkeep what arrived [emulator-fault: {spec}]")
    out, err = capfd.readouterr()
    assert isinstance(result.error_in_exec, UsageError) and "Traceback" not in err
    turn = chat_turns(ip)[-1]
    assert turn.status == "partial" and turn.text and turn.text in out
    assert "stream broke: partial reply kept" in out
    assert ip.user_ns["_ofox"].status == "partial"


def test_retried_fault_succeeds_quietly(ip, capfd):
    magics(ip).session.client._core.retry = RetryPolicy(max_retries=2, initial=0.01)
    result = ip.run_cell("%%ofox\nsurvive [emulator-fault: 503*1#magic]")
    assert result.error_in_exec is None
    assert chat_turns(ip)[-1].status == "complete"


def test_interrupt_closes_the_stream_and_keeps_the_partial_reply(ip, emu, capfd):
    timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = ip.run_cell("%%ofox\nlong one [emulator-words: 400] [emulator-delay: 0.01]")
    finally:
        timer.cancel()
    out, err = capfd.readouterr()
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert "interrupted" in str(result.error_in_exec) and "Traceback" not in err
    turn = chat_turns(ip)[-1]
    assert turn.status == "interrupted"
    assert 0 < len(turn.text.split()) < 400  # some of the 400 words arrived, not all
    assert "interrupted: partial reply kept" in out
    full = ip.user_ns["_ofox"].reply
    assert not full.complete


# -- rich display


def test_rich_output_final_display_is_its_own_output(ip):
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        cell(ip, "", "rich please [emulator-words: 300]")
    finally:
        ip.display_pub = pub
    # The live outputs were cleared (this publisher empties its list on clear_output): what
    # stays is the reply, once, as a display_data of its own.
    [final] = capture.outputs
    assert not final["update"] and "rich please" in final["data"]["text/markdown"]
    meta = final["metadata"]["ofox"]
    assert meta["chat"] == "main" and meta["turn_id"] and meta["usage"]["completion_tokens"]
    assert TEST_KEY not in json.dumps(capture.outputs)


def test_text_format(ip):
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        cell(ip, "--format text", "plain text please")
    finally:
        ip.display_pub = pub
    final = capture.outputs[-1]["data"]
    assert list(final) == ["text/plain"] and "plain text please" in final["text/plain"]


def test_format_cost():
    assert [format_cost(c) for c in (0, 1.1e-05, 0.0042, 1.25)] == [
        "$0",
        "$0.000011",
        "$0.0042",
        "$1.25",
    ]


# -- line magics


def test_models_usage_config_history_export(ip, emu, capsys, tmp_path):
    ip.run_line_magic("ofox", "models gpt")
    out = capsys.readouterr().out
    assert "openai/gpt-4o" in out and "vision" in out and "text-embedding" not in out
    ip.run_line_magic("ofox", "models --all embedding")
    assert "text-embedding-3-small" in capsys.readouterr().out
    cell(ip, "-m openai/gpt-4o", "count my tokens")
    reply = ip.user_ns["_ofox"].reply
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    out = capsys.readouterr().out
    expected = reply.usage.prompt_tokens * 0.0000025 + reply.usage.completion_tokens * 0.00001
    assert "openai/gpt-4o" in out and format_cost(expected) in out and "total" in out
    ip.run_line_magic("ofox", "config")
    out = capsys.readouterr().out
    assert "set by OFOX_API_KEY" in out and TEST_KEY not in out
    ip.run_line_magic("ofox", "history")
    assert "count my tokens" in capsys.readouterr().out
    md, js = tmp_path / "chat.md", tmp_path / "chat.json"
    ip.run_line_magic("ofox", f"export {md}")
    ip.run_line_magic("ofox", f"export {js}")
    assert "count my tokens" in md.read_text()
    assert (
        json.loads(js.read_text())["chats"][0]["turns"][0]["user"]["content"] == "count my tokens"
    )


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("", "usage: %ofox"),
        ("nonsense", "unknown subcommand 'nonsense'"),
        ("history --what", "unknown option --what"),
        ("reset --chat a --all", "usage: %ofox reset"),
        ("export notes.txt", "unknown format"),
        ("export", "usage: %ofox export"),
        ("models a b", "at most one filter"),
    ],
)
def test_line_magic_mistakes_are_one_line(ip, line, fragment):
    with pytest.raises(UsageError, match=fragment):
        ip.run_line_magic("ofox", line)


def test_login_logout(ip, emu, monkeypatch, capsys):
    monkeypatch.delenv("OFOX_API_KEY")
    magics(ip).session.reset_client()
    with pytest.raises(UsageError, match="HTTP 401"):
        ip.run_cell_magic("ofox", "", "no key yet")  # custom base URL without a key: 401
    monkeypatch.setattr("getpass.getpass", lambda prompt="": TEST_KEY)
    ip.run_line_magic("ofox", "login")
    assert "kept in memory, never saved" in capsys.readouterr().out
    cell(ip, "", "now with a key")
    assert chat_turns(ip)[-1].text
    ip.run_line_magic("ofox", "config")
    assert "set by %ofox login" in capsys.readouterr().out
    ip.run_line_magic("ofox", "logout")
    assert "key forgotten" in capsys.readouterr().out
    with pytest.raises(UsageError, match="HTTP 401"):
        ip.run_cell_magic("ofox", "", "no key again")


# -- secrets


def test_the_key_never_leaks(ip, emu, tmp_path, capfd, monkeypatch):
    secret = TEST_KEY
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    errors = []
    try:
        monkeypatch.setattr("getpass.getpass", lambda prompt="": secret)
        cell(ip, "-s 'system' --chat s1", "hello")
        cell(ip, "--no-stream", "plain")
        for spec in ("401", "disconnect:2", "error-openai:2", "429:300"):
            result = ip.run_cell(f"%%ofox\nfault [emulator-fault: {spec}]")
            errors.append(str(result.error_in_exec))
        for sub in (
            "models",
            "usage",
            "config",
            "history",
            "history --chat s1",
            "login",
            "config",
            "logout",
            f"export {tmp_path / 'x.md'}",
            f"export {tmp_path / 'x.json'}",
        ):
            ip.run_line_magic("ofox", sub)
        errors.append(repr(magics(ip)))
        errors.append(repr(ip.user_ns["_ofox"]))
        errors.append(repr(magics(ip).session.client))
    finally:
        ip.display_pub = pub
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err
    assert secret not in json.dumps(capture.outputs, default=str)
    assert all(secret not in e for e in errors)
    assert secret not in (tmp_path / "x.md").read_text()
    assert secret not in (tmp_path / "x.json").read_text()
    store = magics(ip).session.store
    data = store.path.read_bytes()
    assert secret.encode() not in data
    wal = store.path.with_name(store.path.name + "-wal")
    assert not wal.exists() or secret.encode() not in wal.read_bytes()
    with sqlite3.connect(store.path) as db:
        dump = "\n".join(db.iterdump())
    assert secret not in dump
