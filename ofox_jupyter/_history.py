"""Chats that survive kernel restarts: a small SQLite store under the Jupyter data directory.

One database for all notebooks, keyed by the notebook's path (see :func:`notebook_key`). Each turn
is one row of JSON, so adding a turn to a long chat is one indexed insert; re-running a cell
replaces its row in place. Images are stored once per content hash (``images`` table), and turns
refer to them by ``ofox-image:<sha256>`` instead of repeating a base64 blob in every row.

The API key is never written here: turns hold messages and usage, nothing from the client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._conversation import Conversation, Turn

__all__ = ["HistoryStore", "default_history_path", "notebook_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    notebook TEXT NOT NULL, chat TEXT NOT NULL, system TEXT,
    PRIMARY KEY (notebook, chat));
CREATE TABLE IF NOT EXISTS turns (
    turn_id TEXT PRIMARY KEY, notebook TEXT NOT NULL, chat TEXT NOT NULL,
    position INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS turns_by_chat ON turns (notebook, chat, position);
CREATE TABLE IF NOT EXISTS images (hash TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    notebook TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost REAL, requests INTEGER NOT NULL,
    PRIMARY KEY (notebook, model));
"""

_DATA_URL = re.compile(r"^data:(image/[\w.+-]+);base64,(.*)$", re.S)
_IMAGE_REF = "ofox-image:"


def default_history_path() -> Path:
    """``OFOX_HISTORY_PATH``, else ``<jupyter data dir>/ofox/history.sqlite3``."""
    explicit = os.environ.get("OFOX_HISTORY_PATH")
    if explicit:
        return Path(explicit).expanduser()
    try:
        from jupyter_core.paths import jupyter_data_dir

        data_dir = Path(jupyter_data_dir())
    except ImportError:  # plain IPython without Jupyter installed
        data_dir = Path(os.environ.get("JUPYTER_DATA_DIR") or "~/.local/share/jupyter")
    return data_dir.expanduser() / "ofox" / "history.sqlite3"


def notebook_key(user_ns: Mapping[str, Any] | None = None) -> tuple[str, bool]:
    """Which notebook this kernel runs, and whether that key survives a restart.

    Jupyter Server tells kernels their notebook in ``JPY_SESSION_NAME``; VS Code puts the file in
    ``__vsc_ipynb_file__``. Without either, the key is per kernel and history does not carry over.
    """
    session = os.environ.get("JPY_SESSION_NAME")
    if session:
        return session, True
    vscode = (user_ns or {}).get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and vscode:
        return vscode, True
    # Only ask ipykernel when it is already running this process: importing it just to find out
    # would cost terminal IPython ~160 ms (zmq, jupyter_client) at every %load_ext.
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    app = getattr(kernelapp, "IPKernelApp", None)
    if app is not None and app.initialized():
        try:
            return f"kernel:{Path(app.instance().connection_file).stem}", False
        except Exception:  # noqa: BLE001 - an unusual kernel set-up: fall back to the process
            pass
    return f"process:{os.getpid()}", False


class HistoryStore:
    """SQLite persistence of chats. Safe to call from the kernel's threads (one lock)."""

    def __init__(self, path: Path | str | None) -> None:
        """Open (or create) the store at ``path``; ``None`` keeps it in memory only."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        if self.path is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                # WAL + NORMAL: a turn is durable across kernel restarts and costs ~1 ms to add.
                self._db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:
                pass  # e.g. a network file system without shared memory: the default journal
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading

    def load(self, notebook: str) -> dict[str, Conversation]:
        """Every chat of ``notebook``, turns in order, images restored."""
        with self._lock:
            chats = {
                name: Conversation(name=name, system=system)
                for name, system in self._db.execute(
                    "SELECT chat, system FROM chats WHERE notebook = ?", (notebook,)
                )
            }
            rows = self._db.execute(
                "SELECT chat, data FROM turns WHERE notebook = ? ORDER BY chat, position",
                (notebook,),
            ).fetchall()
            images: dict[str, str] = {}
            for chat, data in rows:
                payload = json.loads(data)
                self._restore_images(payload, images)
                conversation = chats.setdefault(chat, Conversation(name=chat))
                conversation.turns.append(Turn.from_dict(payload))
        return chats

    def usage(self, notebook: str) -> list[tuple[str, int, int, float | None, int]]:
        """Rows of (model, prompt tokens, completion tokens, cost, requests) for ``notebook``."""
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT model, prompt_tokens, completion_tokens, cost, requests FROM usage "
                    "WHERE notebook = ? ORDER BY model",
                    (notebook,),
                )
            )

    # -- writing

    def save_chat(self, notebook: str, chat: str, system: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO chats (notebook, chat, system) VALUES (?, ?, ?) "
                "ON CONFLICT (notebook, chat) DO UPDATE SET system = excluded.system",
                (notebook, chat, system),
            )

    def save_turn(self, notebook: str, turn: Turn, replaces: Turn | None = None) -> None:
        """Persist ``turn``; when it ``replaces`` an earlier one, it takes that one's place."""
        data = turn.to_dict()
        with self._transaction() as db:
            self._store_images(db, data)
            position: int | None = None
            if replaces is not None:
                row = db.execute(
                    "SELECT position FROM turns WHERE turn_id = ?", (replaces.id,)
                ).fetchone()
                if row is not None:
                    position = row[0]
                    db.execute("DELETE FROM turns WHERE turn_id = ?", (replaces.id,))
            if position is None:
                row = db.execute(
                    "SELECT COALESCE(MAX(position), -1) + 1 FROM turns "
                    "WHERE notebook = ? AND chat = ?",
                    (notebook, turn.chat),
                ).fetchone()
                position = row[0]
            db.execute(
                "INSERT OR IGNORE INTO chats (notebook, chat) VALUES (?, ?)", (notebook, turn.chat)
            )
            db.execute(
                "INSERT INTO turns (turn_id, notebook, chat, position, data) "
                "VALUES (?, ?, ?, ?, ?)",
                (turn.id, notebook, turn.chat, position, json.dumps(data, ensure_ascii=False)),
            )

    def add_usage(
        self,
        notebook: str,
        model: str,
        prompt: int,
        completion: int,
        cost: float | None,
        requests: int = 1,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO usage (notebook, model, prompt_tokens, completion_tokens, cost, "
                "requests) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notebook, model) DO UPDATE SET "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "cost = CASE WHEN cost IS NULL AND excluded.cost IS NULL THEN NULL "
                "ELSE COALESCE(cost, 0) + COALESCE(excluded.cost, 0) END, "
                "requests = requests + excluded.requests",
                (notebook, model, prompt, completion, cost, requests),
            )

    def clear(self, notebook: str, chat: str | None = None) -> None:
        """Forget one chat of ``notebook``, or all of them (and its usage) when ``chat`` is None."""
        with self._transaction() as db:
            if chat is None:
                db.execute("DELETE FROM turns WHERE notebook = ?", (notebook,))
                db.execute("DELETE FROM chats WHERE notebook = ?", (notebook,))
                db.execute("DELETE FROM usage WHERE notebook = ?", (notebook,))
            else:
                db.execute("DELETE FROM turns WHERE notebook = ? AND chat = ?", (notebook, chat))
                db.execute("DELETE FROM chats WHERE notebook = ? AND chat = ?", (notebook, chat))
            # Images no turn refers to any more would otherwise stay forever.
            live = {
                ref
                for (data,) in db.execute("SELECT data FROM turns")
                for ref in re.findall(_IMAGE_REF + r"([0-9a-f]{64})", data)
            }
            for (digest,) in db.execute("SELECT hash FROM images").fetchall():
                if digest not in live:
                    db.execute("DELETE FROM images WHERE hash = ?", (digest,))

    # -- images by content hash

    @staticmethod
    def _image_parts(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The ``image_url`` dicts of a turn's JSON, each replaced by a fresh copy first, so
        rewriting their URLs can never reach a message still in memory."""
        for message in (data["user"], *data["replies"]):
            content = message.get("content")
            if isinstance(content, list):
                for part in content:
                    if part.get("type") == "image_url":
                        part["image_url"] = dict(part["image_url"])
                        yield part["image_url"]

    def _store_images(self, db: sqlite3.Connection, data: dict[str, Any]) -> None:
        for image in self._image_parts(data):
            match = _DATA_URL.match(image.get("url", ""))
            if not match:
                continue  # an http(s) URL is stored as it is
            raw = base64.b64decode(match.group(2))
            digest = hashlib.sha256(raw).hexdigest()
            db.execute(
                "INSERT OR IGNORE INTO images (hash, mime, data) VALUES (?, ?, ?)",
                (digest, match.group(1), raw),
            )
            image["url"] = _IMAGE_REF + digest

    def _restore_images(self, data: dict[str, Any], cache: dict[str, str]) -> None:
        for image in self._image_parts(data):
            url = image.get("url", "")
            if not url.startswith(_IMAGE_REF):
                continue
            digest = url[len(_IMAGE_REF) :]
            if digest not in cache:
                row = self._db.execute(
                    "SELECT mime, data FROM images WHERE hash = ?", (digest,)
                ).fetchone()
                cache[digest] = (
                    f"data:{row[0]};base64,{base64.b64encode(row[1]).decode()}" if row else url
                )
            image["url"] = cache[digest]
