"""%%ofox --image: names, 'last', thumbnails, history with images, and one-line mistakes."""

from __future__ import annotations

import re

import pytest
from conftest import restart
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.error import UsageError
from PIL import Image


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def turns(ip, chat="main"):
    conversation = magics(ip).session.chats.get(chat)
    return conversation.turns if conversation else []


def described(ip) -> list[str]:
    return re.findall(r"^Image \d+: (.*)$", ip.user_ns["_ofox"].text, re.M)


@pytest.fixture
def red(ip):
    ip.user_ns["red"] = Image.new("RGB", (64, 32), "red")
    yield ip.user_ns["red"]
    ip.user_ns.pop("red", None)


def test_named_image_and_detail(ip, emu, red):
    ip.run_cell_magic("ofox", "-i red --detail low", "what is this?")
    assert described(ip) == ["64×32 RGB, mostly red."]
    part = emu.requests[-1].body["messages"][-1]["content"][1]
    assert part["image_url"]["detail"] == "low"
    assert part["image_url"]["url"].startswith("data:image/png;base64,")


def test_last_is_the_most_recently_displayed_image(ip, emu):
    ip.run_cell("from PIL import Image\nImage.new('RGB', (30, 20), 'blue')")  # shown as Out[]
    ip.run_cell("from IPython.display import display\ndisplay(Image.new('RGB', (40, 10), 'green'))")
    ip.run_cell_magic("ofox", "-i last", "and this?")
    assert described(ip)[0].startswith("40×10 RGB, mostly green")


def test_last_before_anything_was_displayed(ip):
    magics(ip).recent._images.clear()
    with pytest.raises(UsageError, match="no image has been displayed"):
        ip.run_cell_magic("ofox", "-i last", "?")


def test_literal_url_and_path(ip, emu, tmp_path, red):
    path = tmp_path / "red.png"
    red.save(path)
    ip.run_cell_magic("ofox", f"-i {path} -i https://example.com/x.png", "two")
    assert described(ip) == [
        "64×32 RGB, mostly red.",
        "remote image at https://example.com/x.png (not fetched offline).",
    ]


@pytest.mark.parametrize(
    "setup, line, fragment",
    [
        ("", "-i nothing_here", "no variable named 'nothing_here'"),
        ("thing = 42", "-i thing", "thing: cannot send a int as an image"),
        ("blob = b'not an image at all'", "-i blob", "blob: not an image"),
        ("path = '/no/such.png'", "-i path", "no such file: /no/such.png"),
        ("", "-i /missing.png", "no such file: /missing.png"),
        (
            "from PIL import Image; red = Image.new('RGB', (4, 4))",
            "-i red -m deepseek/deepseek-v3.2",
            "does not accept images",
        ),
        (
            "from PIL import Image; red = Image.new('RGB', (4, 4))",
            "-i red --detail max",
            "invalid choice",
        ),
    ],
)
def test_bad_images_are_one_line_and_send_nothing(ip, emu, setup, line, fragment):
    ip.run_cell(setup)
    before = len(emu.requests)
    with pytest.raises(UsageError, match=fragment):
        ip.run_cell_magic("ofox", line, "look")
    assert [r for r in emu.requests[before:] if r.path.endswith("/chat/completions")] == []


def test_thumbnails_are_shown_above_the_reply(ip, red):
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        ip.run_cell_magic("ofox", "-i red", "what is this?")
    finally:
        ip.display_pub = pub
    first = capture.outputs[0]["data"]
    assert first["text/plain"] == "[sent 1 image: red (64×32 png)]"
    assert '<img src="data:image/jpeg;base64,' in first["text/html"]
    assert "what is this?" in capture.outputs[-1]["data"]["text/markdown"]


def test_images_stay_in_history_and_survive_a_restart(ip, emu, red):
    ip.run_cell_magic("ofox", "-i red", "remember this picture")
    ip.run_cell_magic("ofox", "", "what colour was it?")
    assert "Earlier in this conversation: 1 image." in ip.user_ns["_ofox"].text
    sent = emu.requests[-1].body["messages"][0]["content"][1]["image_url"]["url"]
    assert sent.startswith("data:image/png;base64,")
    restart(ip)
    ip.run_cell_magic("ofox", "", "and after a restart?")
    assert "Earlier in this conversation: 1 image." in ip.user_ns["_ofox"].text
    restored = emu.requests[-1].body["messages"][0]["content"][1]["image_url"]["url"]
    assert restored == sent  # the same bytes, from the store's content-hash table
    store = magics(ip).session.store
    import sqlite3

    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1
        data = "".join(row[0] for row in db.execute("SELECT data FROM turns"))
    assert "base64" not in data and "ofox-image:" in data  # stored once, referred to by hash


def test_text_only_model_gets_notes_instead_of_earlier_images(ip, emu, red):
    ip.run_cell_magic("ofox", "-i red", "a picture")
    ip.run_cell_magic("ofox", "-m deepseek/deepseek-v3.2", "text model now")
    first = emu.requests[-1].body["messages"][0]["content"]
    assert first[1] == {"type": "text", "text": "[an image was here; left out]"}


def test_oldest_images_are_left_out_first_when_context_is_full(ip, emu, red, capsys):
    ip.run_cell_magic("ofox", "-i red", "picture one")
    ip.run_cell_magic("ofox", "-i red", "picture two")
    ip.run_line_magic("config", "OfoxMagics.max_context_tokens = 2500")
    capsys.readouterr()
    ip.run_cell_magic("ofox", "", "short question")
    messages = emu.requests[-1].body["messages"]
    users = [m for m in messages if m["role"] == "user"]
    assert len(users) == 3  # every turn kept…
    assert users[0]["content"][1] == {"type": "text", "text": "[an image was here; left out]"}
    assert users[1]["content"][1]["type"] == "image_url"  # …only the oldest image left out
    assert "1 earlier image left out" in capsys.readouterr().out
