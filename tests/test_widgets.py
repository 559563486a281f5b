"""The chat and comparison widgets, driven the way a browser does (set values, click buttons),
against the emulator over real HTTP. The browser itself is in test_browser.py."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from IPython.core.error import UsageError


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def run(coroutine):
    """Run a browser-like script on a fresh loop, as the kernel's loop would run it; the async
    client's connections are closed on that loop before it ends."""
    from IPython import get_ipython

    async def script():
        try:
            return await coroutine
        finally:
            await magics(get_ipython()).session.aclose()

    return asyncio.run(script())


def texts(output) -> list[str]:
    return [o["data"].get("text/markdown", "") for o in output.outputs]


def test_importing_the_package_does_not_import_ipywidgets():
    import subprocess

    code = "import ofox_jupyter, sys; print('ipywidgets' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_chat_streams_into_the_view_and_shares_the_chat_with_the_magic(ip, emu, capsys):
    from ofox_jupyter import ChatWidget

    widget = ChatWidget()
    assert repr(widget) == "<ofox ChatWidget chat='main'>"
    assert "openai/gpt-4o" in widget.model.options and "ofox-chat" in widget._dom_classes
    seen: list[int] = []

    async def drive() -> None:
        widget.model.value = "openai/gpt-4o"
        widget.input.value = "Hello from the widget [emulator-words: 60] [emulator-delay: 0.005]"
        widget.send_button.click()  # what a browser click does
        assert widget.busy and widget.stop_button.disabled is False
        while widget.busy:
            seen.append(len(texts(widget.view)[-1]))
            await asyncio.sleep(0.02)
        await widget.wait()

    run(drive())
    log = texts(widget.view)
    assert log[0].startswith("**You**") and "Hello from the widget" in log[0]
    assert "Hello from the widget" in log[1] and "<sub>" not in log[1]  # the footer: once, below
    assert widget.footer.value.startswith("openai/gpt-4o")
    assert len(set(seen)) >= 3, "the reply grew in the view while streaming"
    assert widget.input.value == "" and widget.send_button.disabled is False
    assert "tokens" in widget.footer.value and "$" in widget.footer.value
    # The same chat as the magic: the widget's message shows in %ofox history.
    ip.run_line_magic("ofox", "history")
    assert "Hello from the widget" in capsys.readouterr().out
    ip.run_cell_magic("ofox", "", "and from the magic")
    assert [m["role"] for m in emu.requests[-1].body["messages"]] == ["user", "assistant", "user"]
    assert "Hello from the widget" in ChatWidget().view.outputs[0]["data"]["text/markdown"]


def test_stop_mid_stream_keeps_the_partial_reply(ip):
    from ofox_jupyter import ChatWidget

    widget = ChatWidget(chat="stopping")

    async def drive() -> float:
        widget.send("A long one [emulator-words: 400] [emulator-delay: 0.01]")
        while len(texts(widget.view)[-1]) < 80:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        widget.stop_button.click()
        await widget.wait()
        return time.monotonic() - started

    stopped_in = run(drive())
    assert stopped_in < 0.5, "Stop works at once"
    last = texts(widget.view)[-1]
    assert last.endswith("■ stopped — partial reply kept") and len(last) > 80
    assert "stopped" not in widget.footer.value  # said once, in the log
    turn = magics(ip).session.chats["stopping"].turns[-1]
    assert turn.status == "interrupted" and 0 < len(turn.text.split()) < 400


def test_errors_show_as_one_line_in_the_widget(ip):
    from ofox_jupyter import ChatWidget

    widget = ChatWidget(chat="errors")

    async def drive() -> None:
        widget.send("hi [emulator-fault: 401]")
        await widget.wait()

    run(drive())
    assert "HTTP 401" in widget.footer.value and "⚠" in widget.footer.value
    assert "errors" not in magics(ip).session.chats or not magics(ip).session.chats["errors"].turns
    widget.attach_last.value = True
    magics(ip).recent._images.clear()
    assert widget.send("see this") is None
    assert "no figure has been displayed" in widget.footer.value


def test_attach_last_figure_and_upload(ip, emu):
    from PIL import Image

    from ofox_jupyter import ChatWidget

    ip.run_cell("from PIL import Image\nImage.new('RGB', (48, 24), 'red')")
    widget = ChatWidget(chat="pictures", model="openai/gpt-4o")
    widget.attach_last.value = True
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "blue").save(buffer, format="PNG")
    import datetime

    widget.upload.value = (
        {
            "name": "blue.png",
            "type": "image/png",
            "size": 1,
            "content": memoryview(buffer.getvalue()),
            "last_modified": datetime.datetime.now(datetime.timezone.utc),
        },
    )

    async def drive() -> None:
        widget.send("what are these?")
        await widget.wait()

    run(drive())
    reply = texts(widget.view)[-1]
    assert "Image 1: 48×24 RGB, mostly red" in reply and "Image 2: 20×20 RGB, mostly blue" in reply
    assert "(+2 images)" in texts(widget.view)[0]
    assert widget.attach_last.value is False and widget.upload.value == ()


def test_compare_streams_all_columns_at_once(ip, emu):
    from ofox_jupyter import CompareWidget

    widget = CompareWidget(
        models=["openai/gpt-4o", "anthropic/claude-sonnet-4.5"], temperatures=[0, 1]
    )
    assert repr(widget) == "<ofox CompareWidget columns=4>"
    delay, words = 0.02, 30  # ≈ 0.6 s per column

    async def drive() -> None:
        widget.prompt.value = f"Compare us [emulator-words: {words}] [emulator-delay: {delay}]"
        widget.run_button.click()
        await widget.wait()

    run(drive())
    one_column = words * delay
    assert widget.total_seconds < 2 * one_column + 0.5, "concurrent, not one after another"
    bodies = [r.body for r in emu.requests if r.path.endswith("/chat/completions")][-4:]
    assert sorted((b["model"], b["temperature"]) for b in bodies) == [
        ("anthropic/claude-sonnet-4.5", 0),
        ("anthropic/claude-sonnet-4.5", 1),
        ("openai/gpt-4o", 0),
        ("openai/gpt-4o", 1),
    ]
    for column in widget.columns:
        text = texts(column.output)[0]
        assert "Compare us" in text
        assert "first token" in column.footer.value and "tokens" in column.footer.value
        assert "$" in column.footer.value
    # Each column is a turn of the comparisons' own chat, asked afresh (nothing earlier sent).
    turns = magics(ip).session.chats["compare"].turns
    assert sorted(t.model for t in turns[-4:]) == sorted(b["model"] for b in bodies)
    assert all(len(b["messages"]) == 1 for b in bodies)
    assert list(magics(ip).session.chats) == ["compare"]


def test_compare_stop_stops_every_column(ip):
    from ofox_jupyter import CompareWidget

    widget = CompareWidget(temperatures=[0.2, 1.5])

    async def drive() -> None:
        widget.run("Long [emulator-words: 300] [emulator-delay: 0.01]")
        await asyncio.sleep(0.4)
        widget.stop_button.click()
        await widget.wait()

    run(drive())
    for column in widget.columns:
        assert texts(column.output)[0].endswith("■ stopped — partial reply kept")
        assert column.footer.value == ""  # said once, under the column's text
    assert widget.status.value.startswith("stopped after")  # not "all columns done"


def test_line_magics_open_the_widgets(ip):
    from IPython.core.displaypub import CapturingDisplayPublisher

    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        ip.run_line_magic("ofox", "chat --chat side -m openai/gpt-4o")
        ip.run_line_magic("ofox", "compare -m openai/gpt-4o,google/gemini-2.5-flash -t 0,1")
    finally:
        ip.display_pub = pub
    plain = [o["data"]["text/plain"] for o in capture.outputs]
    assert plain == ["<ofox ChatWidget chat='side'>", "<ofox CompareWidget columns=4>"]
    assert all("application/vnd.jupyter.widget-view+json" in o["data"] for o in capture.outputs)
    with pytest.raises(UsageError, match="-t takes numbers"):
        ip.run_line_magic("ofox", "compare -t warm")
    with pytest.raises(UsageError, match="temperature must be in"):
        ip.run_line_magic("ofox", "compare -t 0,5")


def test_a_store_that_cannot_save_is_one_line_under_the_chat_reply(ip):
    from ofox_jupyter import ChatWidget

    ip.run_cell_magic("ofox", "", "saved first")
    magics(ip).session.store._db.execute("PRAGMA query_only = ON")  # as a read-only file
    widget = ChatWidget()

    async def drive() -> None:
        widget.send("not saved, still answered")
        await widget.wait()

    run(drive())
    assert "not saved, still answered" in texts(widget.view)[-1]
    assert widget.footer.value.count("cannot save to") == 1
    assert "readonly database" in widget.footer.value
    assert [t.user.text for t in magics(ip).session.chats["main"].turns] == [
        "saved first",
        "not saved, still answered",
    ]
    assert magics(ip).session.notices == []  # shown once, in the panel
