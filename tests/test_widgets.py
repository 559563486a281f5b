"""The chat and comparison widgets, driven the way a browser does (set values, click buttons),
against the emulator over real HTTP. The browser itself is in test_browser.py."""

from __future__ import annotations

import asyncio
import json
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


def log(widget) -> list[str]:
    """The chat log's messages, oldest first: the history Output's, then one Output each."""
    return [text for output in widget.messages.children for text in texts(output)]


def test_importing_the_package_does_not_import_ipywidgets(tmp_path):
    """Neither ``import ofox_jupyter`` nor ``%load_ext ofox_jupyter`` imports ipywidgets or
    anywidget; the widgets' module does."""
    import os
    import subprocess

    code = (
        "import sys\n"
        "import ofox_jupyter\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'ofox_jupyter')\n"
        "gui = lambda: sorted(m for m in ('anywidget', 'ipywidgets') if m in sys.modules)\n"
        "print(gui())\n"
        "ofox_jupyter.ChatWidget\n"
        "print(gui())\n"
    )
    env = dict(os.environ, OFOX_HISTORY_PATH=str(tmp_path / "h.sqlite3"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "['anywidget', 'ipywidgets']"]


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
            seen.append(len(log(widget)[-1]))
            await asyncio.sleep(0.02)
        await widget.wait()

    run(drive())
    shown = log(widget)
    assert shown[0].startswith("**You**") and "Hello from the widget" in shown[0]
    assert (
        "Hello from the widget" in shown[1] and "<sub>" not in shown[1]
    )  # the footer: once, below
    assert widget.footer.value.startswith("openai/gpt-4o")
    assert len(set(seen)) >= 3, "the reply grew in the view while streaming"
    assert widget.input.value == "" and widget.send_button.disabled is False
    assert "tokens" in widget.footer.value and "$" in widget.footer.value
    # The same chat as the magic: the widget's message shows in %ofox history.
    ip.run_line_magic("ofox", "history")
    assert "Hello from the widget" in capsys.readouterr().out
    ip.run_cell_magic("ofox", "", "and from the magic")
    assert [m["role"] for m in emu.requests[-1].body["messages"]] == ["user", "assistant", "user"]
    assert "Hello from the widget" in log(ChatWidget())[0]


def test_stop_mid_stream_keeps_the_partial_reply(ip):
    from ofox_jupyter import ChatWidget

    widget = ChatWidget(chat="stopping")

    async def drive() -> float:
        widget.send("A long one [emulator-words: 400] [emulator-delay: 0.01]")
        while len(log(widget)[-1]) < 80:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        widget.stop_button.click()
        await widget.wait()
        return time.monotonic() - started

    stopped_in = run(drive())
    assert stopped_in < 0.5, "Stop works at once"
    last = log(widget)[-1]
    assert last.endswith("■ stopped — partial reply kept") and len(last) > 80
    assert "stopped" not in widget.footer.value  # said once, in the log
    turn = magics(ip).session.chats["stopping"].turns[-1]
    assert turn.status == "interrupted" and 0 < len(turn.text.split()) < 400


def from_the_browser(widget, data: dict) -> None:
    """A comm message from the widget's view in the browser, as the kernel hands it over."""
    widget._handle_msg({"content": {"data": data}, "buffers": []})


def press_enter(widget, text: str) -> None:
    """What the input box does on Enter: empty itself, then send its text to the kernel."""
    from_the_browser(widget.input, {"method": "update", "state": {"value": ""}, "buffer_paths": []})
    from_the_browser(
        widget.input, {"method": "custom", "content": {"event": "submit", "text": text}}
    )


def test_enter_in_the_input_box_sends_and_a_busy_panel_gives_the_text_back(ip, emu):
    from ofox_jupyter import ChatWidget
    from ofox_jupyter._widgets import ChatInput

    widget = ChatWidget(chat="enter")
    box = widget.input
    assert isinstance(box, ChatInput) and "ofox-chat-input" in box._dom_classes
    assert "Enter to send, Shift+Enter for a new line" in box.placeholder
    assert {"value", "placeholder"} <= set(box.keys)  # synced with the browser's box
    requests = len(emu.requests)

    async def drive() -> None:
        from_the_browser(box, {"method": "update", "state": {"value": "typing"}})
        assert box.value == "typing" and not widget.busy  # typing sends nothing
        press_enter(widget, "Sent with Enter [emulator-words: 20]")
        assert widget.busy and box.value == ""
        # Enter again while the reply streams: not sent, and the text is back in the box.
        press_enter(widget, "too early")
        assert box.value == "too early"
        from_the_browser(box, {"method": "custom", "content": "not ours"})  # ignored
        await widget.wait()

    run(drive())
    shown = log(widget)
    assert "Sent with Enter" in shown[-2] and "Sent with Enter" in shown[-1]
    assert "too early" not in "".join(shown)
    chats = [r for r in emu.requests[requests:] if r.path.endswith("/chat/completions")]
    assert len(chats) == 1
    assert box.value == "too early"  # still there, to send once the reply is done


class WireComm:
    """Stands in for the kernel's comm: counts the bytes each message would put on the wire,
    its content and metadata packed as ipykernel packs them (JSON, UTF-8) plus its buffers."""

    def __init__(self) -> None:
        from comm.base_comm import BaseComm

        self.sent: list[tuple[str, int]] = []
        wire = self

        class Comm(BaseComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                content = {"data": data, "comm_id": self.comm_id, **keys}
                packed = [
                    json.dumps(x, default=str, ensure_ascii=False) for x in (content, metadata)
                ]
                size = sum(len(p.encode()) for p in packed) + sum(len(b) for b in buffers or ())
                wire.sent.append((msg_type, size))

        self.comm_class = Comm

    def create_comm(self, *args, **kwargs):
        return self.comm_class(*args, **kwargs)

    def bytes_since(self, start: int) -> int:
        return sum(size for _, size in self.sent[start:])


def test_a_streamed_reply_costs_bytes_of_the_reply_not_of_the_chat(ip, monkeypatch):
    """In a chat of 300 turns, everything the panel sends while a reply streams (and is
    finished) is a small multiple of that reply: no update re-sends the conversation."""
    import comm

    from ofox_jupyter import ChatWidget
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import assistant, user

    wire = WireComm()
    monkeypatch.setattr(comm, "create_comm", wire.create_comm)
    conversation = magics(ip).session.conversation("long")
    for n in range(300):
        turn = Turn(
            id=f"old-{n}",
            chat="long",
            user=user(f"question {n}: " + "why? " * 40),
            replies=(assistant(f"answer {n}: " + "because. " * 60),),
        )
        conversation.record(turn)
        conversation.pin(turn.id)  # in kernel memory only: this test needs no store
    widget = ChatWidget(chat="long")
    opened = wire.bytes_since(0)
    assert opened > 300 * 700, "the panel shows the chat's history"
    start = len(wire.sent)
    updates: list[int] = []

    async def drive() -> None:
        widget.send("A long one [emulator-words: 1500] [emulator-delay: 0.001]")
        while widget.busy:
            updates.append(len(wire.sent))
            await asyncio.sleep(0.01)
        await widget.wait()

    run(drive())
    reply = magics(ip).session.chats["long"].turns[-1].text
    reply_bytes = len(reply.encode())
    streamed = wire.bytes_since(start)
    # UpdateThrottle lets updates re-send about three times the reply, plus 16 KiB early on.
    assert streamed <= 5 * reply_bytes + 20_000, (streamed, reply_bytes)
    assert max(size for _, size in wire.sent[start:]) < 2 * reply_bytes
    assert reply_bytes > 9_000 and log(widget)[-1].startswith(reply[:100])
    assert len(set(updates)) >= 4, "the reply was seen growing"


def test_a_reply_is_paced_and_text_held_back_shows_when_the_model_pauses():
    """While a reply streams, text that would cost more than it adds waits, and shows once it
    has waited ``max_gap`` even if no more text comes; the final render drops what waits."""
    import ipywidgets as widgets

    from ofox_jupyter._display import MAX_GAP
    from ofox_jupyter._widgets import _LiveMessage

    output = widgets.Output()
    reply = _LiveMessage(output)

    def shown() -> str:
        return output.outputs[0]["data"]["text/markdown"]

    async def drive() -> None:
        reply.stream({"text/markdown": "… waiting for the model"})  # the status line: at once
        assert shown() == "… waiting for the model"
        reply.pace()
        reply.stream({"text/markdown": "x" * 1000})  # the first text: at once
        assert shown() == "x" * 1000
        reply.stream({"text/markdown": "x" * 1010})  # 10 more would cost 1010: it waits
        assert shown() == "x" * 1000
        await asyncio.sleep(MAX_GAP + 0.1)  # the model pauses
        assert shown() == "x" * 1010
        reply.stream({"text/markdown": "x" * 1020})
        reply.show("final")  # the final render; nothing held back shows after it
        await asyncio.sleep(MAX_GAP + 0.1)
        assert shown() == "final"

    asyncio.run(drive())


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
    reply = log(widget)[-1]
    assert "Image 1: 48×24 RGB, mostly red" in reply and "Image 2: 20×20 RGB, mostly blue" in reply
    assert "(+2 images)" in log(widget)[0]
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
    # A column streams its restated prompt, the words, and (with a temperature) a sampled
    # continuation of up to 80 words: about (words + 100) chunks at most. Four of them one
    # after another would take four times that.
    one_column = (words + 100) * delay
    assert widget.total_seconds < 2 * one_column, "concurrent, not one after another"
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
    plain = [o["data"]["text/plain"].splitlines()[0] for o in capture.outputs]
    # Each panel, then its plain copy (kept up to date through its display id).
    assert plain == [
        "<ofox ChatWidget chat='side'>",
        "chat side · 0 turns (a copy that stays readable without the kernel)",
        "<ofox CompareWidget columns=4>",
        "comparison of openai/gpt-4o · t=0, openai/gpt-4o · t=1, google/gemini-2.5-flash · t=0,"
        " google/gemini-2.5-flash · t=1 (not run yet)",
    ]
    widget = "application/vnd.jupyter.widget-view+json"
    assert [widget in o["data"] for o in capture.outputs] == [True, False, True, False]
    assert [bool(o["transient"]) for o in capture.outputs] == [False, True, False, True]
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
    assert "not saved, still answered" in log(widget)[-1]
    assert widget.footer.value.count("cannot save to") == 1
    assert "readonly database" in widget.footer.value
    assert [t.user.text for t in magics(ip).session.chats["main"].turns] == [
        "saved first",
        "not saved, still answered",
    ]
    assert magics(ip).session.notices == []  # shown once, in the panel


def test_a_panel_leaves_a_plain_copy_that_follows_the_conversation(ip, emu):
    """What a notebook reopened without its kernel shows in place of the panel."""
    from IPython.core.displaypub import CapturingDisplayPublisher

    from ofox_jupyter import ChatWidget, CompareWidget

    ip.run_cell_magic("ofox", "", "from the magic, $5")
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        chat = ChatWidget()
        compare = CompareWidget(temperatures=[0, 1])
        from IPython.display import display

        display(chat)
        display(compare)

        async def drive() -> None:
            chat.send("from the panel")
            await chat.wait()
            compare.run("side by side")
            await compare.wait()

        run(drive())
    finally:
        ip.display_pub = pub
    first = capture.outputs[1]["data"]["text/markdown"]
    assert "from the magic, \\\\$5" in first and "from the panel" not in first
    updates = [o for o in capture.outputs if o["update"]]
    chat_copy = [o for o in updates if "chat main" in o["data"]["text/plain"]][-1]["data"]
    assert chat_copy["text/plain"].startswith("chat main · 2 turns")
    assert "You: from the panel" in chat_copy["text/plain"]
    assert 'class="ofox-transcript"' in chat_copy["text/markdown"]
    assert "<style>" in chat_copy["text/markdown"]  # hides the copy while the panel is alive
    compare_copy = [o for o in updates if "comparison of" in o["data"]["text/plain"]][-1]["data"]
    assert "side by side" in compare_copy["text/plain"]
    assert compare_copy["text/markdown"].count('<div style="flex:1 1 240px') == 2
    assert "=== openai/gpt-4o-mini · t=1 ===" in compare_copy["text/plain"]
