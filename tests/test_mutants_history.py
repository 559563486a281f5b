"""The history store's behaviour pinned down where mutation testing found the suite silent.

bench/mutation.py mutates ``ofox_jupyter/_history.py`` and runs the fast tests against each
mutant; these tests fail for mutants the rest of the suite let through. Each one states something
a caller of :class:`~ofox_jupyter._history.HistoryStore` (the session, an export, another kernel
on the same file) can see — what is stored and read back, which images are stored once by
content hash and restored, how a turn with a damaged image row comes back, how a database that
another kernel holds locked is told apart from other failures, how long a write at
``%load_ext`` may wait, what a re-created file does when the copy into it fails — not how the
code computes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from ofox_jupyter import _history
from ofox_jupyter._conversation import Conversation, Turn
from ofox_jupyter._history import HistoryStore, is_busy
from ofox_jupyter._messages import Message, assistant, image_part, text_part, user

#: A 1x1 PNG: the bytes an image part's data URL carries.
RAW = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
PAYLOAD = base64.b64encode(RAW).decode()
DATA_URL = f"data:image/png;base64,{PAYLOAD}"
DIGEST = hashlib.sha256(RAW).hexdigest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[HistoryStore]:
    opened = HistoryStore(path)
    try:
        yield opened
    finally:
        opened.close()


def image_turn(turn_id: str, *parts: dict, text: str = "look", chat: str = "main") -> Turn:
    return Turn(
        id=turn_id,
        chat=chat,
        user=user(text, parts),
        replies=(assistant(f"about {text}"),),
        model="m",
        created=1.0,
    )


def loaded(store: HistoryStore, notebook: str = "nb", chat: str = "main") -> list[Turn]:
    return store.load(notebook)[chat].turns


def raw_rows(path: Path) -> list[str]:
    """The turns' JSON as it lies in the file (what another tool, or a backup, sees)."""
    with closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT data FROM turns")]


def image_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def url_of(turn: Turn, index: int = 0) -> str:
    return turn.user.images[index]["image_url"]["url"]


# -- images: stored once by content hash, restored exactly


def test_a_turn_with_an_image_comes_back_exactly_as_it_was_saved(store):
    turn = image_turn("t1", image_part(DATA_URL, detail="low"))
    store.save_turn("nb", turn)
    assert loaded(store) == [turn]
    # Saving rewrote the stored copy's URL, never the message still in memory.
    assert url_of(turn) == DATA_URL and turn.user.images[0]["image_url"] == {
        "url": DATA_URL,
        "detail": "low",
    }


def test_an_image_is_stored_once_by_content_hash_and_restored_everywhere(store, path):
    store.save_turn("nb", image_turn("t1", image_part(DATA_URL), text="one"))
    store.save_turn("nb", image_turn("t2", image_part(DATA_URL), text="two", chat="side"))
    store.save_turn("nb2", image_turn("t3", image_part(DATA_URL), text="three"))
    assert image_rows(path) == 1
    assert not any(PAYLOAD in data for data in raw_rows(path))  # no row repeats the blob
    chats = store.load("nb")
    assert [url_of(t) for c in chats.values() for t in c.turns] == [DATA_URL, DATA_URL]
    assert [url_of(t) for t in loaded(store, "nb2")] == [DATA_URL]


@pytest.mark.parametrize(
    "first",
    [
        pytest.param("https://example.org/cat.png", id="a web link"),
        pytest.param("data:image/png;base64,abc", id="a data URL that is not base64"),
    ],
)
def test_an_image_after_one_kept_as_it_came_is_still_stored_by_hash(store, path, first):
    turn = image_turn("t1", image_part(first), image_part(DATA_URL))
    store.save_turn("nb", turn)
    assert image_rows(path) == 1
    assert not any(PAYLOAD in data for data in raw_rows(path))
    [back] = loaded(store)
    assert [url_of(back, 0), url_of(back, 1)] == [first, DATA_URL]
    assert back == turn


def test_base64_wrapped_across_lines_is_still_one_image_stored_by_hash(store, path):
    wrapped = "data:image/png;base64," + base64.encodebytes(RAW * 8).decode()  # 76-char lines
    assert "\n" in wrapped
    store.save_turn("nb", image_turn("t1", image_part(wrapped)))
    store.save_turn("nb", image_turn("t2", image_part(wrapped)))
    assert image_rows(path) == 1
    first_line = wrapped.split(",", 1)[1].splitlines()[0]
    assert not any(first_line in data for data in raw_rows(path))
    for turn in loaded(store):
        header, payload = url_of(turn).split(",", 1)
        assert header == "data:image/png;base64" and base64.b64decode(payload) == RAW * 8


def test_a_web_link_that_names_a_stored_images_hash_is_kept_as_it_is(store):
    """Content-addressed hosting puts the image's SHA-256 in its URL; that URL is the user's,
    not a reference to the store's copy of the same picture."""
    store.save_turn("nb", image_turn("t1", image_part(DATA_URL), text="inline"))
    link = f"https://ab/{DIGEST}"  # as long a prefix as the store's own references have
    store.save_turn("nb", image_turn("t2", image_part(link), text="linked"))
    assert [url_of(t) for t in loaded(store)] == [DATA_URL, link]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("DELETE FROM images", id="image row gone"),
        pytest.param("UPDATE images SET data = 'not bytes'", id="image row holds text"),
    ],
)
def test_a_turn_whose_image_row_is_damaged_still_comes_back(store, path, damage):
    """...with a note where the image was: never the store's internal reference, which would
    go to the API as an image URL no model can read."""
    from ofox_jupyter._history import LOST_IMAGE_NOTE

    store.save_turn("nb", image_turn("t1", image_part(DATA_URL), text="with a picture"))
    with closing(sqlite3.connect(path)) as db:
        db.execute(damage)
        db.commit()
    turns = loaded(store)
    assert [(t.user.text, t.text) for t in turns] == [
        (f"with a picture\n{LOST_IMAGE_NOTE}", "about with a picture")
    ]
    assert turns[0].user.images == ()
    assert store.skipped == 0


def test_only_image_parts_are_stored_as_images(store, path):
    """A part of another type that happens to carry an ``image_url`` field is not an image to
    the message (it is neither counted nor left out as one), nor to the store."""
    odd = {"type": "input_file", "image_url": {"url": DATA_URL}}
    turn = Turn(
        id="t1",
        chat="main",
        user=Message(role="user", content=(text_part("see"), odd)),
        replies=(assistant("ok"),),
    )
    assert turn.user.images == ()
    store.save_turn("nb", turn)
    assert image_rows(path) == 0
    assert loaded(store) == [turn]


# -- text, chats and the index


def test_half_an_emoji_is_stored_as_a_replacement_character(store):
    """A lone surrogate (a stream cut inside an emoji's escape) must not come back from the
    store: it could not be sent, exported or shown as UTF-8."""
    turn = Turn(id="t1", chat="main", user=user("café 😀"), replies=(assistant("half \ud83d"),))
    store.save_turn("nb", turn)
    [back] = loaded(store)
    assert back.user.text == "café 😀"
    assert back.text == "half \ufffd"
    back.text.encode("utf-8")


def test_load_gives_each_chat_under_its_own_name_with_its_system_prompt(store):
    store.save_chat("nb", "side", "Be brief.")
    store.save_turn("nb", image_turn("t1", text="a"))
    store.save_turn("nb", image_turn("t2", text="b", chat="side"))
    chats = store.load("nb")
    assert {key: (c.name, c.system, len(c)) for key, c in chats.items()} == {
        "main": ("main", None, 1),
        "side": ("side", "Be brief.", 1),
    }


_FIRST_LAYOUT = """
CREATE TABLE chats (notebook TEXT NOT NULL, chat TEXT NOT NULL, system TEXT,
    PRIMARY KEY (notebook, chat));
CREATE TABLE turns (turn_id TEXT PRIMARY KEY, notebook TEXT NOT NULL,
    chat TEXT NOT NULL, position INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE images (hash TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE usage (notebook TEXT NOT NULL, model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost REAL,
    requests INTEGER NOT NULL, PRIMARY KEY (notebook, model));
"""


def test_a_migrated_first_layout_chat_is_windowed_like_the_chat_it_was(path):
    turns = [
        Turn(
            id=f"t{i}",
            chat="main",
            user=user(f"question {i} " + "x" * 2000),
            replies=(assistant("y" * 400),),
        )
        for i in range(4)
    ]
    with closing(sqlite3.connect(path)) as db:
        db.executescript(_FIRST_LAYOUT)
        for position, turn in enumerate(turns):
            db.execute(
                "INSERT INTO turns VALUES (?, 'nb', 'main', ?, ?)",
                (turn.id, position, json.dumps(turn.to_dict())),
            )
        db.commit()
    store = HistoryStore(path)  # migrated: each turn gets its sizes
    try:
        [index] = store.index("nb")
        restored = index.into(Conversation("main", loader=store.load_turns))
        new = user("and now?")
        messages, left_out, _ = restored.request_messages(new, budget=1500)
        assert left_out > 0  # the oldest turns do not fit
        assert (messages, left_out) == Conversation("main", turns=turns).request_messages(
            new, budget=1500
        )[:2]
    finally:
        store.close()


# -- many kernels: a locked database, and writes that must not hang


@pytest.fixture
def other_kernel(path: Path, store: HistoryStore) -> Iterator[sqlite3.Connection]:
    """Another connection that holds the store's write lock until the test ends."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield other
        finally:
            other.execute("COMMIT")


def test_a_write_blocked_by_another_kernel_fails_as_busy(path, monkeypatch):
    monkeypatch.setattr(_history, "BUSY_TIMEOUT_SECONDS", 0.1)
    store = HistoryStore(path)
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError) as locked:
                store.save_chat("nb", "main", "Be brief.")
            other.execute("COMMIT")
        assert is_busy(locked.value)
        store.save_chat("nb", "main", "Be brief.")  # free again
        assert store.load("nb")["main"].system == "Be brief."
    finally:
        store.close()


def test_a_read_only_or_full_store_is_not_busy(store):
    store._db.execute("PRAGMA query_only = ON")  # as a read-only file
    with pytest.raises(sqlite3.OperationalError) as read_only:
        store.save_chat("nb", "main", None)
    store._db.execute("PRAGMA query_only = OFF")
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full"
    with pytest.raises(sqlite3.OperationalError) as full:
        store.save_turn("nb", image_turn("t1", text="x" * 50000))
    assert "readonly" in str(read_only.value) and "full" in str(full.value)
    assert not is_busy(read_only.value) and not is_busy(full.value)


@pytest.mark.parametrize(
    "message, busy",
    [
        ("database is locked", True),
        ("database table is locked", True),
        ("database schema is locked: main", True),
        ("Database Is Locked", True),
        ("database is busy", True),
        ("disk I/O error", False),
        ("attempt to write a readonly database", False),
        ("database or disk is full", False),
        ("no such table: turns", False),
    ],
)
def test_busy_is_told_from_the_wording_of_the_error(message, busy):
    assert is_busy(sqlite3.OperationalError(message)) is busy


def test_copying_chats_at_load_ext_gives_up_quickly_when_another_kernel_writes(store, other_kernel):
    """A copy's chats are copied at ``%load_ext``, which must not hang on another kernel: it
    waits briefly and tries once, where a turn's write waits and retries."""
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as locked:
        store.fork("nb1", "nb2")
    waited = time.monotonic() - started
    assert is_busy(locked.value)
    assert waited < 1.5, waited


# -- the file deleted under a running kernel


def test_a_recreated_file_that_cannot_take_the_old_rows_still_works(store, path):
    """Another program made a database at the path after ours was deleted; its own
    ``notebooks`` table cannot take our rows. The store says it re-created its file (so the
    session saves again what it holds) and goes on working."""
    store.owner = "nb"
    store.save_turn("nb", image_turn("t1", text="before"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with closing(sqlite3.connect(path)) as foreign:
        foreign.execute("CREATE TABLE notebooks (id TEXT PRIMARY KEY, kernel TEXT)")
        foreign.commit()
    assert store.reopen_if_gone() is True
    assert store.reopen_if_gone() is False
    store.save_turn("nb", image_turn("t1", text="before"))  # what the session re-saves
    store.save_turn("nb", image_turn("t2", text="after"))
    assert [t.user.text for t in loaded(store)] == ["before", "after"]
    assert os.path.exists(path)


def test_an_image_in_url_safe_base64_is_kept_exactly(store):
    """Standard base64 is decoded strictly: URL-safe base64 (``-`` and ``_``) stays inline as it
    came rather than losing characters and coming back as another image."""
    import base64

    raw = bytes(range(256)) * 3
    url = "data:image/png;base64," + base64.urlsafe_b64encode(raw).decode()
    assert "-" in url and "_" in url
    store.save_turn("nb", image_turn("t1", image_part(url), text="odd"))
    assert url_of(loaded(store)[0]) == url
