"""History you can trust: identity that follows the notebook, many writers, a store that never
costs a reply, and the rules of a chat (system prompt, re-runs, trimming) across restarts.

In-process tests drive a real IPython shell against the emulator over HTTP; a "restart" saves the
notebook file as JupyterLab would (``conftest.save_notebook``) and loads the extension afresh.
Terminal IPython and the many-writers test run real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import restart, save_notebook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from ofox_jupyter import _history
from ofox_jupyter._conversation import Conversation, Turn, estimate_tokens, strip_images
from ofox_jupyter._history import HistoryStore
from ofox_jupyter._identity import Context, read_evidence, resolve
from ofox_jupyter._messages import assistant, image_part, user


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def cell(ip, line: str, body: str, cell_id: str | None = None):
    """Run a %%ofox cell as a frontend does; it must not fail."""
    result = ip.run_cell(f"%%ofox {line}\n{body}", cell_id=cell_id)
    assert result.error_in_exec is None and result.error_before_exec is None, result
    return result


def texts(ip, chat: str = "main") -> list[str]:
    conversation = magics(ip).session.chats.get(chat)
    return [t.user.text for t in conversation.turns] if conversation else []


def sent_users(emu) -> list[str]:
    body = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def stored(path: Path, notebook: str) -> dict[str, list[str]]:
    """What a fresh reader of the store finds for ``notebook``: user texts per chat."""
    store = HistoryStore(path)
    try:
        return {name: [t.user.text for t in c.turns] for name, c in store.load(notebook).items()}
    finally:
        store.close()


def move_to(monkeypatch, source: Path, target: Path) -> Path:
    """Rename or move the notebook file; the next kernel is started with the new path."""
    source.rename(target)
    monkeypatch.setenv("JPY_SESSION_NAME", str(target))
    return target


# -- identity follows the notebook


def test_rename_keeps_the_chats_and_a_new_notebook_at_the_old_path_starts_empty(
    ip, emu, notebook, monkeypatch, capsys
):
    cell(ip, "", "about apples", cell_id="c1")
    cell(ip, "", "about pears", cell_id="c2")
    save_notebook(ip)
    # Renamed while the kernel runs: it still has the old JPY_SESSION_NAME, and its new turns
    # must still land in the same chat.
    renamed = notebook.with_name("renamed.ipynb")
    shutil.copy(notebook, renamed)
    notebook.unlink()
    cell(ip, "", "about plums", cell_id="c3")
    save_notebook(ip, renamed)
    monkeypatch.setenv("JPY_SESSION_NAME", str(renamed))
    capsys.readouterr()
    restart(ip, save=False)
    out = capsys.readouterr().out
    assert "restored 3 turns of chat main for renamed.ipynb, formerly analysis.ipynb" in out
    assert texts(ip) == ["about apples", "about pears", "about plums"]

    # File → New → Notebook: a fresh, empty file at the path the first one had.
    notebook.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    restart(ip, save=False)
    assert "restored" not in capsys.readouterr().out
    assert magics(ip).session.chats == {}
    cell(ip, "", "a new notebook's question")
    assert sent_users(emu) == ["a new notebook's question"]


def test_moved_to_another_folder_and_restarted(ip, emu, notebook, tmp_path, monkeypatch, capsys):
    cell(ip, "-s 'Answer in French.'", "bonjour", cell_id="c1")
    save_notebook(ip)
    (tmp_path / "elsewhere").mkdir()
    move_to(monkeypatch, notebook, tmp_path / "elsewhere" / "analysis.ipynb")
    capsys.readouterr()
    restart(ip, save=False)
    assert "restored 1 turn" in capsys.readouterr().out
    cell(ip, "", "encore")
    body = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}


def test_a_copy_starts_with_the_originals_chats_then_diverges(ip, notebook, monkeypatch, capsys):
    cell(ip, "", "shared beginning", cell_id="c1")
    cell(ip, "--chat side", "a side chat", cell_id="c2")
    save_notebook(ip)
    original_id = magics(ip).session.notebook
    copy = notebook.with_name("analysis-Copy1.ipynb")
    shutil.copy(notebook, copy)  # File → Duplicate (the original stays where it was)

    monkeypatch.setenv("JPY_SESSION_NAME", str(copy))
    capsys.readouterr()
    restart(ip, save=False)
    out = capsys.readouterr().out
    assert "analysis-Copy1.ipynb is a copy of another notebook: it starts with its 2 turns" in out
    assert magics(ip).session.notebook != original_id
    assert texts(ip) == ["shared beginning"] and texts(ip, "side") == ["a side chat"]
    copy_id = magics(ip).session.notebook
    restart(ip, save=False)  # reopened before anything changed: still that copy, not another
    out = capsys.readouterr().out
    assert "restored 2 turns" in out and "is a copy" not in out
    assert magics(ip).session.notebook == copy_id
    cell(ip, "", "only in the copy", cell_id="c3")
    cell(ip, "", "shared beginning, edited in the copy", cell_id="c1")  # re-run in the copy
    save_notebook(ip)

    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    restart(ip, save=False)
    assert "restored 2 turns" in capsys.readouterr().out
    assert magics(ip).session.notebook == original_id
    assert texts(ip) == ["shared beginning"]  # the copy's turns never reach the original

    monkeypatch.setenv("JPY_SESSION_NAME", str(copy))
    restart(ip, save=False)
    out = capsys.readouterr().out
    assert "restored 3 turns" in out and "is a copy" not in out  # recognised as itself now
    assert texts(ip) == ["shared beginning, edited in the copy", "only in the copy"]


def test_a_copy_of_a_notebook_renamed_while_its_kernel_runs(ip, notebook, tmp_path):
    """The original's kernel holds its id; a copy opened meanwhile must not share it, even
    though the path the store knows for the original no longer exists."""
    cell(ip, "", "the original", cell_id="c1")
    renamed = notebook.with_name("renamed.ipynb")
    save_notebook(ip, renamed)  # saved under its new name; the kernel still runs
    copy = tmp_path / "copy.ipynb"
    shutil.copy(renamed, copy)
    path = magics(ip).session.store.path
    other = HistoryStore(path)  # a second kernel on the same store
    try:
        identity = resolve(
            other, Context("notebook", path=str(copy)), claims=path.parent / "claims"
        )
        assert identity.how == "copy" and identity.copied_from == magics(ip).session.notebook
        assert identity.copied_turns == 1
        identity.release()
    finally:
        other.close()


def test_cleared_outputs_keep_the_chat_through_cell_ids(ip, notebook, monkeypatch, capsys):
    cell(ip, "", "question one", cell_id="cell-aaa")
    cell(ip, "", "question two", cell_id="cell-bbb")
    save_notebook(ip)
    saved = json.loads(notebook.read_text())
    for entry in saved["cells"]:
        entry["outputs"] = []  # Edit → Clear Outputs of All Cells, then save
    notebook.write_text(json.dumps(saved))
    capsys.readouterr()
    restart(ip, save=False)
    assert "restored 2 turns" in capsys.readouterr().out
    # Without cell ids (saved by a tool that sends none) and without outputs: a new chat.
    for entry in saved["cells"]:
        entry["id"] = "someone-else"
    notebook.write_text(json.dumps(saved))
    restart(ip, save=False)
    assert "restored" not in capsys.readouterr().out and magics(ip).session.chats == {}


def test_terminal_ipython_keeps_chats_per_directory_and_by_history_key(ip, tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME")
    project, other = tmp_path / "project", tmp_path / "other"
    project.mkdir(), other.mkdir()
    monkeypatch.chdir(project)
    restart(ip, save=False)
    assert magics(ip).session.notebook == f"dir:{project.resolve()}"
    cell(ip, "", "a terminal question")
    restart(ip, save=False)
    assert texts(ip) == ["a terminal question"]
    monkeypatch.chdir(other)
    restart(ip, save=False)
    assert magics(ip).session.chats == {}
    ip.run_line_magic("config", "OfoxMagics.history_key = 'course'")
    assert magics(ip).session.notebook == "key:course"
    cell(ip, "", "filed under the key")
    monkeypatch.chdir(project)
    restart(ip, save=False)  # the key is configuration: it outlives the restart
    assert texts(ip) == ["filed under the key"]


def run_ipython(cwd: Path, env: dict[str, str], code: str) -> str:
    """Terminal IPython (``ipython -c``), as a user starts it in a project folder."""
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_second_terminal_ipython_in_the_same_folder_gets_the_chats(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFOX_", "JPY_"))}
    env["OFOX_HISTORY_PATH"] = str(tmp_path / "history.sqlite3")
    project = tmp_path / "project"
    project.mkdir()
    first = run_ipython(
        project,
        env,
        "ip = get_ipython(); ip.run_line_magic('load_ext', 'ofox_jupyter'); "
        "ip.run_cell_magic('ofox', '', 'What is a terminal?')",
    )
    assert "What is a terminal?" in first
    second = run_ipython(
        project,
        env,
        "ip = get_ipython(); ip.run_line_magic('load_ext', 'ofox_jupyter'); "
        "ip.run_line_magic('ofox', 'history')",
    )
    assert "restored 1 turn of chat main for directory" in second
    assert "What is a terminal?" in second
    elsewhere = run_ipython(
        tmp_path,
        env,
        "ip = get_ipython(); ip.run_line_magic('load_ext', 'ofox_jupyter'); "
        "ip.run_line_magic('ofox', 'history')",
    )
    assert "restored" not in elsewhere and "is empty" in elsewhere


# -- many writers

WRITER = textwrap.dedent(
    """
    import sys
    from IPython.core.interactiveshell import InteractiveShell

    key, cells = sys.argv[1], int(sys.argv[2])
    shell = InteractiveShell.instance()
    shell.config.OfoxMagics.history_key = key
    shell.run_line_magic("load_ext", "ofox_jupyter")
    magics = shell.magics_manager.registry["OfoxMagics"]
    magics.display_mode = "text"
    for number in range(cells):
        result = shell.run_cell(f"%%ofox\\n{key} cell {number}")
        if not result.success:
            sys.exit(f"cell {number} failed")
    print("notices:", magics.session.notices)
    """
)


def test_four_kernels_write_one_store_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFOX_", "JPY_"))}
    env["OFOX_HISTORY_PATH"] = str(tmp_path / "history.sqlite3")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    cells = 150
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), f"nb{i}", str(cells)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [w.communicate(timeout=110) for w in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err[-2000:]
        assert "cannot save" not in out and "locked" not in out + err
        assert "notices: []" in out
    for i in range(4):
        chats = stored(tmp_path / "history.sqlite3", f"key:nb{i}")
        assert chats["main"] == [f"nb{i} cell {n}" for n in range(cells)]


# -- the store never costs a reply


@pytest.fixture
def store_path(ip) -> Path:
    return magics(ip).session.store.path


def test_locked_store_keeps_the_reply_and_saves_it_later(ip, store_path, monkeypatch, capsys):
    monkeypatch.setattr(_history, "BUSY_TIMEOUT_SECONDS", 0.2)
    restart(ip, save=False)  # reopened with the short timeout
    cell(ip, "", "before the lock", cell_id="c1")
    other = sqlite3.connect(store_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another kernel holds the write lock for long
    capsys.readouterr()
    try:
        cell(ip, "-o answer", "while locked", cell_id="c2")
    finally:
        other.execute("COMMIT")
        other.close()
    out = capsys.readouterr().out
    assert "while locked" in out  # the reply was shown
    assert "cannot save to" in out and "database is locked" in out
    assert "kept in kernel memory" in out
    assert "while locked" in ip.user_ns["answer"] and ip.user_ns["_ofox"].turn is not None
    assert texts(ip) == ["before the lock", "while locked"]
    notebook = magics(ip).session.notebook
    assert stored(store_path, notebook)["main"] == ["before the lock"]
    cell(ip, "", "after the lock", cell_id="c3")  # the waiting turn is saved first
    assert stored(store_path, notebook)["main"] == [
        "before the lock",
        "while locked",
        "after the lock",
    ]
    assert "cannot save" not in capsys.readouterr().out


def test_full_disk_keeps_the_reply(ip, store_path, capsys):
    cell(ip, "", "fits")
    db = magics(ip).session.store._db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full"
    capsys.readouterr()
    cell(ip, "-o answer", "does not fit " + "x" * 20000)
    out = capsys.readouterr().out
    assert "database or disk is full" in out and out.count("ofox: cannot save") == 1
    assert "does not fit" in ip.user_ns["answer"]
    assert len(texts(ip)) == 2
    db.execute("PRAGMA max_page_count = 1073741823")
    cell(ip, "", "room again")
    assert len(stored(store_path, magics(ip).session.notebook)["main"]) == 3


def test_read_only_store_keeps_chats_in_memory(ip, emu, store_path, capsys):
    cell(ip, "", "written")
    magics(ip).session.store._db.execute("PRAGMA query_only = ON")  # as a read-only file
    capsys.readouterr()
    cell(ip, "", "not written")
    cell(ip, "", "nor this")
    out = capsys.readouterr().out
    assert out.count("readonly database") == 2
    assert texts(ip) == ["written", "not written", "nor this"]
    # The request still carries the whole chat, from memory.
    assert sent_users(emu) == ["written", "not written", "nor this"]


def test_a_deleted_database_is_recreated_with_what_memory_holds(ip, store_path, capsys):
    cell(ip, "", "first")
    cell(ip, "", "second")
    for suffix in ("", "-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    capsys.readouterr()
    cell(ip, "", "third")
    assert (
        f"ofox: the history database {store_path} was deleted; made a new one and kept this"
        " notebook's chats in it"
    ) in capsys.readouterr().out
    assert store_path.exists()
    assert stored(store_path, magics(ip).session.notebook)["main"] == ["first", "second", "third"]


def test_damaged_and_foreign_rows_are_skipped_and_counted(ip, emu, store_path, capsys):
    cell(ip, "", "good one", cell_id="c1")
    cell(ip, "", "good two", cell_id="c2")
    notebook = magics(ip).session.notebook
    with sqlite3.connect(store_path) as db:
        rows = [
            ("bad-json", "{not json", 10),
            ("no-user", json.dumps({"id": "no-user", "replies": []}), 10),
            ("wrong-types", json.dumps({"id": "x", "user": 5, "replies": "hi"}), 10),
            ("no-sizes", json.dumps({"id": "y"}), None),  # a foreign row without our columns
        ]
        for position, (turn_id, data, size) in enumerate(rows, start=10):
            db.execute(
                "INSERT INTO turns (turn_id, notebook, chat, position, data, slim_tokens, "
                "image_tokens, images) VALUES (?, ?, 'main', ?, ?, ?, 0, 0)",
                (turn_id, notebook, position, data, size),
            )
    capsys.readouterr()
    restart(ip)
    cell(ip, "", "still fine")
    out = capsys.readouterr().out
    assert "skipped 1 damaged history row" in out  # at restore: the row without sizes
    assert "skipped 3 damaged history rows" in out  # when the request loaded the window
    assert "Traceback" not in out
    assert sent_users(emu) == ["good one", "good two", "still fine"]


def test_a_store_from_a_newer_version_is_left_alone(ip, store_path, capsys):
    cell(ip, "", "before")
    with sqlite3.connect(store_path) as db:
        db.execute("PRAGMA user_version = 99")
    capsys.readouterr()
    restart(ip)
    out = capsys.readouterr().out
    assert "written by a newer ofox-jupyter (history schema 99" in out
    assert "kept in memory only" in out
    cell(ip, "-o answer", "after")
    assert "after" in ip.user_ns["answer"]
    with sqlite3.connect(store_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99


def test_a_first_layout_store_is_migrated_and_found_by_its_turns(tmp_path, monkeypatch, ip):
    """Stores written before identity existed were keyed by the notebook's path."""
    legacy = tmp_path / "legacy.sqlite3"
    old_key = str(tmp_path / "old.ipynb")
    turn = Turn(
        id="t" * 32, chat="main", user=user("from the old days"), replies=(assistant("ok"),)
    )
    with sqlite3.connect(legacy) as db:
        db.executescript(
            """
            CREATE TABLE chats (notebook TEXT NOT NULL, chat TEXT NOT NULL, system TEXT,
                PRIMARY KEY (notebook, chat));
            CREATE TABLE turns (turn_id TEXT PRIMARY KEY, notebook TEXT NOT NULL,
                chat TEXT NOT NULL, position INTEGER NOT NULL, data TEXT NOT NULL);
            CREATE TABLE images (hash TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL);
            CREATE TABLE usage (notebook TEXT NOT NULL, model TEXT NOT NULL,
                prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost REAL,
                requests INTEGER NOT NULL, PRIMARY KEY (notebook, model));
            """
        )
        db.execute("INSERT INTO chats VALUES (?, 'main', 'Be old.')", (old_key,))
        db.execute(
            "INSERT INTO turns VALUES (?, ?, 'main', 0, ?)",
            (turn.id, old_key, json.dumps(turn.to_dict())),
        )
    monkeypatch.setenv("OFOX_HISTORY_PATH", str(legacy))
    notebook = tmp_path / "old.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    ip.run_line_magic("unload_ext", "ofox_jupyter")
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "id": "c",
                        "source": "",
                        "metadata": {},
                        "outputs": [
                            {
                                "output_type": "display_data",
                                "data": {},
                                "metadata": {"ofox": {"turn_id": turn.id}},
                            }
                        ],
                    }
                ],
                "nbformat": 4,
            }
        )
    )
    ip.run_line_magic("load_ext", "ofox_jupyter")
    magics(ip).display_mode = "text"
    assert texts(ip) == ["from the old days"]
    assert magics(ip).session.chats["main"].system == "Be old."
    with sqlite3.connect(legacy) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == _history.SCHEMA_VERSION


# -- the rules of a chat, across restarts


def test_the_system_prompt_survives_a_restart(ip, emu):
    cell(ip, "-s 'Be terse.'", "hello", cell_id="c1")
    restart(ip)
    cell(ip, "", "and again", cell_id="c2")
    body = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}


def test_a_replaced_turn_does_not_come_back_after_a_restart(ip, emu):
    cell(ip, "", "draft question", cell_id="c1")
    cell(ip, "", "final question", cell_id="c1")  # the same cell, re-run
    cell(ip, "", "follow-up", cell_id="c2")
    restart(ip)
    assert texts(ip) == ["final question", "follow-up"]
    cell(ip, "", "after the restart", cell_id="c3")
    assert sent_users(emu) == ["final question", "follow-up", "after the restart"]


def test_trimming_leaves_out_the_oldest_turns_first(ip, emu, capsys):
    for i in range(5):
        cell(ip, "", f"question {i} " + "x" * 2000)
    ip.run_line_magic("config", "OfoxMagics.max_context_tokens = 2700")
    capsys.readouterr()
    cell(ip, "", "latest")
    users = sent_users(emu)
    assert users[-1] == "latest"
    kept = [u.split()[1] for u in users[:-1]]
    assert kept and kept == [str(i) for i in range(5 - len(kept), 5)]  # the newest survive
    assert f"{5 - len(kept)} earlier turns left out" in capsys.readouterr().out


# -- export


def test_export_refuses_to_overwrite_without_force(ip, tmp_path, capsys):
    cell(ip, "", "exported")
    target = tmp_path / "chat.md"
    target.write_text("precious")
    result = ip.run_cell(f"%ofox export {target}")
    assert result.error_in_exec is not None
    assert "exists; add --force to overwrite it" in str(result.error_in_exec)
    assert target.read_text() == "precious"
    capsys.readouterr()
    ip.run_line_magic("ofox", f"export {target} --force")
    assert "exported" in target.read_text()


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("missing-folder/chat.md", "No such file or directory"),
        ("a-folder.md", "Is a directory"),
        ("nul\x00byte.md", "null byte"),
    ],
)
def test_export_paths_that_cannot_be_written_are_one_line(ip, tmp_path, name, fragment):
    cell(ip, "", "exported")
    (tmp_path / "a-folder.md").mkdir()
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("ofox", f"export '{tmp_path / name}' --force")
    assert type(caught.value) is UsageError and fragment in str(caught.value)
    assert "\n" not in str(caught.value)


# -- properties: untrusted files and the request window


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["cells", "id", "outputs", "metadata", "ofox", "turn_id", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=30,
    )
)
def test_any_notebook_file_gives_evidence_or_nothing(tmp_path, document):
    path = tmp_path / "any.ipynb"
    path.write_text(json.dumps(document))
    evidence = read_evidence(path)
    assert all(isinstance(t, str) for t in evidence.turn_ids | evidence.cell_ids)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "user", "replies", "usage", "cost", "created", "cell_id", "chat"]),
        st.none()
        | st.integers()
        | st.floats()
        | st.text(max_size=4)
        | st.lists(st.dictionaries(st.sampled_from(["role", "content"]), st.text(max_size=4)))
        | st.dictionaries(
            st.sampled_from(["role", "content", "prompt_tokens"]), st.text(max_size=4)
        ),
    )
)
def test_any_stored_row_is_a_turn_or_a_value_error(data):
    try:
        turn = Turn.from_dict(data)
    except ValueError:
        return
    assert isinstance(turn, Turn)


def reference_window(turns, user_message, budget, system_prompt=None):
    """The request rule written the obvious way (every turn, every time), to hold the indexed
    one to: oldest images first, then oldest turns; the system prompt and new message stay."""
    head = [user("x")][:0]
    if system_prompt:
        from ofox_jupyter._messages import system

        head = [system(system_prompt)]
    history = list(turns)
    omitted_turns = omitted_images = 0
    fixed = sum(estimate_tokens(m) for m in (*head, user_message))
    sizes = [sum(estimate_tokens(m) for m in t.messages) for t in history]
    total = fixed + sum(sizes)
    for index, turn in enumerate(history):
        if total <= budget:
            break
        if any(m.images for m in turn.messages):
            slim_messages = [strip_images(m) for m in turn.messages]
            omitted_images += sum(len(m.images) for m in turn.messages)
            new_size = sum(estimate_tokens(m) for m in slim_messages)
            total += new_size - sizes[index]
            history[index] = Turn(
                id=turn.id, chat=turn.chat, user=slim_messages[0], replies=tuple(slim_messages[1:])
            )
            sizes[index] = new_size
    while history and total > budget:
        total -= sizes.pop(0)
        history.pop(0)
        omitted_turns += 1
    messages = head + [m for t in history for m in t.messages] + [user_message]
    return messages, omitted_turns, omitted_images


IMAGE = image_part("data:image/png;base64,AAAA")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 2), st.integers(0, 800)), max_size=12),
    st.integers(1, 12000),
    st.booleans(),
)
def test_the_indexed_window_sends_what_the_plain_rule_sends(shape, budget, lazy):
    turns = [
        Turn(
            id=f"t{i}",
            chat="main",
            user=user("q" * words, [IMAGE] * images),
            replies=(assistant("a" * answer),),
        )
        for i, (words, images, answer) in enumerate(shape)
    ]
    store = {t.id: t for t in turns}
    if lazy:  # restored from the store: only the index in memory
        chat = Conversation("main", loader=lambda ids: {i: store[i] for i in ids})
        for turn in turns:
            chat.record(turn)
        chat._loaded.clear()
    else:
        chat = Conversation("main", turns=turns)
    new = user("the new question")
    assert chat.request_messages(new, budget=budget) == reference_window(turns, new, budget)
    assert len(chat._loaded) <= len(turns)


# -- review findings: what a notebook file can contain, and stores that fail mid-session


def nbjson(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_pasted_cells_leave_a_notebooks_own_chats_alone(ip, notebook, tmp_path, monkeypatch):
    for i in range(3):
        cell(ip, "", f"A{i}", cell_id=f"a{i}")
    save_notebook(ip)
    a_cells = json.loads(notebook.read_text())["cells"]
    b = tmp_path / "b.ipynb"
    b.write_text(json.dumps(nbjson([])))
    monkeypatch.setenv("JPY_SESSION_NAME", str(b))
    restart(ip, save=False)
    cell(ip, "", "B0", cell_id="b0")
    cell(ip, "", "B1", cell_id="b1")
    save_notebook(ip, b)
    own = json.loads(b.read_text())["cells"]
    pasted = [dict(c, id=f"pasted{i}") for i, c in enumerate(a_cells)]  # with their outputs
    b.write_text(json.dumps(nbjson(own + pasted)))
    restart(ip, save=False)  # B reopened in a new kernel
    assert texts(ip) == ["B0", "B1"]


def test_one_pasted_cell_brings_its_own_turn_and_nothing_else(
    ip, notebook, tmp_path, monkeypatch, capsys
):
    for i in range(3):
        cell(ip, "", f"A{i}", cell_id=f"a{i}")
    cell(ip, "--chat secret", "a private chat", cell_id="a9")
    save_notebook(ip)
    first = json.loads(notebook.read_text())["cells"][0]
    b = tmp_path / "b.ipynb"
    b.write_text(json.dumps(nbjson([dict(first, id="fresh")])))
    monkeypatch.setenv("JPY_SESSION_NAME", str(b))
    capsys.readouterr()
    restart(ip, save=False)
    assert "starts with its 1 turn" in capsys.readouterr().out
    assert {n: texts(ip, n) for n in magics(ip).session.chats} == {"main": ["A0"]}


def test_notebooks_made_from_one_template_share_cell_ids_but_not_chats(ip, tmp_path, monkeypatch):
    template = nbjson(
        [{"cell_type": "code", "id": "tmpl-1", "metadata": {}, "source": "", "outputs": []}]
    )
    lesson1, lesson2 = tmp_path / "lesson1.ipynb", tmp_path / "lesson2.ipynb"
    lesson1.write_text(json.dumps(template))
    lesson2.write_text(json.dumps(template))
    monkeypatch.setenv("JPY_SESSION_NAME", str(lesson1))
    restart(ip, save=False)
    cell(ip, "", "lesson1 question", cell_id="tmpl-1")
    monkeypatch.setenv("JPY_SESSION_NAME", str(lesson2))
    restart(ip, save=False)
    assert texts(ip) == []


def test_a_copy_gets_what_its_file_shows_not_what_the_original_said_later(
    ip, notebook, monkeypatch
):
    cell(ip, "", "before the copy", cell_id="c1")
    save_notebook(ip)
    copy = notebook.with_name("copy.ipynb")
    shutil.copy(notebook, copy)
    cell(ip, "", "the original only", cell_id="c2")
    save_notebook(ip)
    monkeypatch.setenv("JPY_SESSION_NAME", str(copy))
    restart(ip, save=False)
    assert texts(ip) == ["before the copy"]


@pytest.mark.parametrize("layout", ["first", "current"])
def test_a_turn_with_a_damaged_content_part_is_skipped(ip, emu, store_path, layout, capsys):
    cell(ip, "", "good", cell_id="c1")
    notebook = magics(ip).session.notebook
    bad = Turn(id="d" * 32, chat="main", user=user("x"), replies=(assistant("y"),)).to_dict()
    bad["user"] = {"role": "user", "content": [{"type": "text", "text": None}]}
    with sqlite3.connect(store_path) as db:
        sizes = (None, None, None) if layout == "first" else (5, 0, 0)
        db.execute(
            "INSERT INTO turns (turn_id, notebook, chat, position, data, slim_tokens, "
            "image_tokens, images) VALUES (?, ?, 'main', 5, ?, ?, ?, ?)",
            ("d" * 32, notebook, json.dumps(bad), *sizes),
        )
        if layout == "first":
            db.execute("PRAGMA user_version = 0")  # migrated again at the next open
    capsys.readouterr()
    restart(ip)
    cell(ip, "", "still answered", cell_id="c2")
    assert sent_users(emu) == ["good", "still answered"]
    ip.run_line_magic("ofox", "history")
    out = capsys.readouterr().out
    assert "skipped 1 damaged history row" in out and "Traceback" not in out


def test_resetting_one_chat_keeps_the_unsaved_turns_of_another(ip, store_path):
    cell(ip, "", "one")
    db = magics(ip).session.store._db
    db.execute("PRAGMA query_only = ON")
    cell(ip, "", "two, not saved yet")
    cell(ip, "--chat side", "side")
    db.execute("PRAGMA query_only = OFF")
    ip.run_line_magic("ofox", "reset --chat side")
    cell(ip, "", "three")
    assert stored(store_path, magics(ip).session.notebook) == {
        "main": ["one", "two, not saved yet", "three"]
    }


def test_a_deleted_database_keeps_the_turns_outside_the_window(ip, emu, store_path, capsys):
    for i in range(7):
        cell(ip, "", f"turn {i} " + "x" * 1200)
    ip.run_line_magic("config", "OfoxMagics.max_context_tokens = 1300")
    cell(ip, "", "with a small window")
    assert len(sent_users(emu)) < 8  # only the newest turns were loaded and sent
    for suffix in ("", "-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    capsys.readouterr()
    cell(ip, "", "after the deletion")
    assert "was deleted; made a new one" in capsys.readouterr().out
    kept = stored(store_path, magics(ip).session.notebook)["main"]
    assert len(kept) == 9 and kept[-1] == "after the deletion"


def test_a_newer_store_swapped_in_mid_session_is_a_notice(ip, store_path, capsys):
    cell(ip, "", "before")
    newer = store_path.with_name("newer.sqlite3")
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    for suffix in ("-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    os.replace(newer, store_path)
    capsys.readouterr()
    cell(ip, "-o answer", "after the swap")
    out = capsys.readouterr().out
    assert "newer ofox-jupyter" in out and "after the swap" in ip.user_ns["answer"]
    assert texts(ip) == ["before", "after the swap"]


def test_a_busy_store_waits_once_per_exchange(ip, store_path, monkeypatch):
    import time

    monkeypatch.setattr(_history, "BUSY_TIMEOUT_SECONDS", 0.5)
    restart(ip, save=False)
    cell(ip, "", "first")
    other = sqlite3.connect(store_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        cell(ip, "-s 'A new system prompt.'", "usage, system prompt and turn: three writes")
        waited = time.monotonic() - started
    finally:
        other.execute("COMMIT")
        other.close()
    # One write waits (two attempts of 0.5 s); the other two are queued at once.
    assert waited < 2.5, waited
    cell(ip, "", "later")
    assert stored(store_path, magics(ip).session.notebook)["main"][-2:] == [
        "usage, system prompt and turn: three writes",
        "later",
    ]


def test_a_working_directory_that_is_not_utf8(ip, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JPY_SESSION_NAME")
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(odd)
    os.chdir(odd)
    restart(ip, save=False)
    cell(ip, "", "from a Latin-1 folder")
    restart(ip, save=False)
    assert texts(ip) == ["from a Latin-1 folder"]
    assert "Traceback" not in capsys.readouterr().out


def test_turns_the_store_lost_are_reported(ip, emu, store_path, capsys):
    cell(ip, "", "one")
    cell(ip, "", "two")
    restart(ip)
    with sqlite3.connect(store_path) as db:
        db.execute("UPDATE turns SET turn_id = 'gone' WHERE data LIKE '%\"one\"%'")
    capsys.readouterr()
    cell(ip, "", "three")
    assert "1 earlier turn of chat 'main' could not be read" in capsys.readouterr().out
    assert sent_users(emu) == ["two", "three"]


def test_unsaved_changes_are_reported_when_the_store_is_closed(ip, tmp_path, capsys):
    cell(ip, "", "saved")
    magics(ip).session.store._db.execute("PRAGMA query_only = ON")
    cell(ip, "", "not saved")
    capsys.readouterr()
    ip.run_line_magic("config", f"OfoxMagics.history_path = {str(tmp_path / 'other.sqlite3')!r}")
    assert "could not be saved before closing the history store" in capsys.readouterr().out


def test_a_notebook_path_that_is_a_fifo_does_not_hang(ip, tmp_path, monkeypatch):
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    monkeypatch.setenv("JPY_SESSION_NAME", str(fifo))
    restart(ip, save=False)  # would block forever reading the pipe
    cell(ip, "", "fine")


def test_a_turn_without_replies_comes_back_from_the_store(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    try:
        bare = Turn(id="e" * 32, chat="main", user=user("asked, never answered"))
        assert Turn.from_dict(bare.to_dict()) == bare
        store.save_turn("nb", bare)
        assert [t.user.text for t in store.load("nb")["main"].turns] == ["asked, never answered"]
        assert store.skipped == 0
    finally:
        store.close()
