"""Chats that survive kernel restarts: one SQLite store under the Jupyter data directory.

One database for every notebook, keyed by an opaque notebook id (``_identity`` decides which id a
kernel works under: it follows the notebook through renames and copies). Each turn is one row of
JSON plus the few numbers a request needs to choose its window (cell id, token sizes), so
restoring a chat reads the index only and adding a turn is one indexed insert; re-running a cell
replaces its row in place. Images are stored once per content hash (``images``), and turns refer
to them as ``ofox-image:<sha256>`` instead of repeating a base64 blob in every row.

Many kernels write one store at once: every write is a transaction that takes the write lock up
front (``BEGIN IMMEDIATE``) with a busy timeout, retried a few times, so two notebooks side by side
never see "database is locked". What is read back is untrusted (another version, another tool,
a damaged file): a row that is not a turn is skipped and counted, never raised.

The API key is never written here: turns hold messages and usage, nothing from the client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from ._conversation import Conversation, Turn, turn_sizes
from ._messages import utf8_safe

__all__ = [
    "SCHEMA_VERSION",
    "HistoryStore",
    "NotebookRecord",
    "StoreError",
    "default_history_path",
]

#: ``PRAGMA user_version`` of the layout below. 0 is the first layout (no version set), which is
#: migrated in place; a higher number than this is a newer ofox-jupyter's, which we do not write.
#: 2 → 3 added the cached and reasoning token counts to ``usage``.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notebooks (
    id TEXT PRIMARY KEY, path TEXT, kernel TEXT, parent TEXT,
    created REAL NOT NULL, seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS notebooks_by_kernel ON notebooks (kernel);
CREATE TABLE IF NOT EXISTS chats (
    notebook TEXT NOT NULL, chat TEXT NOT NULL, system TEXT,
    PRIMARY KEY (notebook, chat));
CREATE TABLE IF NOT EXISTS turns (
    turn_id TEXT PRIMARY KEY, notebook TEXT NOT NULL, chat TEXT NOT NULL,
    position INTEGER NOT NULL, data TEXT NOT NULL,
    cell_id TEXT, origin TEXT, slim_tokens INTEGER, image_tokens INTEGER, images INTEGER);
CREATE INDEX IF NOT EXISTS turns_index ON turns (
    notebook, chat, position, turn_id, cell_id, slim_tokens, image_tokens, images);
CREATE INDEX IF NOT EXISTS turns_by_cell ON turns (cell_id) WHERE cell_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS turns_by_origin ON turns (origin) WHERE origin IS NOT NULL;
CREATE TABLE IF NOT EXISTS images (hash TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    notebook TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost REAL, requests INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notebook, model));
"""

#: What a re-created file takes over from the deleted one, for the notebook that runs here.
_CARRIED = (
    ("notebooks", "id, path, kernel, parent, created, seen", "id"),
    ("chats", "notebook, chat, system", "notebook"),
    (
        "turns",
        "turn_id, notebook, chat, position, data, cell_id, origin, slim_tokens, image_tokens, "
        "images",
        "notebook",
    ),
    (
        "usage",
        "notebook, model, prompt_tokens, completion_tokens, cost, requests, cached_tokens, "
        "reasoning_tokens",
        "notebook",
    ),
)

_SCHEMA_STATEMENTS = tuple(s.strip() for s in _SCHEMA.split(";") if s.strip())

#: Columns the first layout's ``turns`` lacked; added (and filled in) when it is migrated.
_NEW_TURN_COLUMNS = ("cell_id", "origin", "slim_tokens", "image_tokens", "images")
#: Columns ``usage`` lacked before schema 3 (counts of older requests stay 0).
_NEW_USAGE_COLUMNS = ("cached_tokens", "reasoning_tokens")

#: How long one write waits for another kernel's write to finish, and how often it tries again
#: after that before the turn is kept in memory instead (see ``NotebookSession``).
BUSY_TIMEOUT_SECONDS = 2.0
WRITE_ATTEMPTS = 2
#: How long writes at ``%load_ext`` (recording where a notebook is, copying a copy's chats) wait.
IMPATIENT_SECONDS = 0.3

_DATA_URL = re.compile(r"^data:(image/[\w.+-]+);base64,(.*)$", re.S)
_IMAGE_REF = "ofox-image:"
#: Identifiers per ``IN (...)`` list: well under SQLite's smallest variable limit (999).
_IN_BATCH = 400
#: The rows a restore can use: sized as this version sizes turns (checked by SQLite, not Python).
_SIZED = (
    "typeof(slim_tokens) = 'integer' AND typeof(image_tokens) = 'integer' "
    "AND typeof(images) = 'integer'"
)

T = TypeVar("T")


class StoreError(Exception):
    """The store cannot be used as asked (a newer schema, a file that is not a database)."""


@dataclass(frozen=True)
class NotebookRecord:
    """What the store knows of one notebook id: where it was last seen, by which kernel."""

    id: str
    path: str | None
    kernel: str | None
    parent: str | None
    created: float


@dataclass(frozen=True)
class ChatIndex:
    """A chat as restored: its system prompt and its turns' index, as columns in chat order
    (ids, cell ids, sizes without images, extra size of images, images), or empty."""

    name: str
    system: str | None
    columns: list[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def into(self, conversation: Conversation) -> Conversation:
        if self.columns:
            ids, cells, slim, extra, images = self.columns
            conversation.add_entries(
                [str(i) for i in ids],
                [c if isinstance(c, str) else None for c in cells],
                slim,
                extra,
                images,
            )
        return conversation


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


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


def _marks(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))


class HistoryStore:
    """SQLite persistence of chats. Safe to call from the kernel's threads (one lock).

    Every method may raise ``sqlite3.Error`` or ``OSError`` (locked past the timeout, disk full,
    read-only); :class:`~ofox_jupyter._session.NotebookSession` turns those into a notice and
    keeps the turn in memory. ``StoreError`` at opening means the file is not ours to write.
    """

    def __init__(self, path: Path | str | None) -> None:
        """Open (or create) the store at ``path``; ``None`` keeps it in memory only."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        #: Rows read back that were not turns (damaged, or written by something else), so far.
        self.skipped = 0
        self._identity: tuple[int, int] | None = None
        self._recreated = False
        #: The notebook whose rows are carried into a re-created file (the session's own).
        self.owner: str | None = None
        self._db = self._open()

    # -- opening, and noticing that the file was deleted under us

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            for statement in _SCHEMA_STATEMENTS:
                db.execute(statement)
            return db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            try:
                # WAL: readers never wait for a writer, and a turn costs ~1 ms to add.
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:
                pass  # e.g. a network file system without shared memory: the default journal
            db.execute("PRAGMA synchronous=NORMAL")
            self._prepare_schema(db)
        except BaseException:
            db.close()
            raise
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)
        return db

    def _prepare_schema(self, db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer ofox-jupyter (history schema {version}, "
                f"this one knows {SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        for attempt in range(WRITE_ATTEMPTS):
            try:
                db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()  # another kernel's work?
            if version < SCHEMA_VERSION:
                self._migrate(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an older layout (or an empty file) to this one, keeping every chat and count."""
        metered = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
        if metered:
            for column in _NEW_USAGE_COLUMNS:
                if column not in metered:
                    db.execute(f"ALTER TABLE usage ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        existing = {row[1] for row in db.execute("PRAGMA table_info(turns)")}
        # The first layout's index on (notebook, chat, position) is replaced by one that also
        # holds what a restore reads, so a restore never has to visit the rows themselves.
        db.execute("DROP INDEX IF EXISTS turns_by_chat")
        if existing:
            for column in _NEW_TURN_COLUMNS:
                if column not in existing:
                    kind = "TEXT" if column in ("cell_id", "origin") else "INTEGER"
                    db.execute(f"ALTER TABLE turns ADD COLUMN {column} {kind}")
        for statement in _SCHEMA_STATEMENTS:  # tables and indexes that are missing
            db.execute(statement)
        rows = db.execute("SELECT turn_id, data FROM turns WHERE slim_tokens IS NULL").fetchall()
        for turn_id, data in rows:
            turn = _parse_turn(turn_id, data)
            if turn is None:
                continue  # left without sizes: skipped (and counted) whenever it is read
            slim, extra, images = _sizes(turn)
            db.execute(
                "UPDATE turns SET cell_id = ?, slim_tokens = ?, image_tokens = ?, images = ? "
                "WHERE turn_id = ?",
                (turn.cell_id, slim, extra, images, turn_id),
            )

    def _check_file(self) -> bool:
        """Re-create the database when its file was deleted or replaced while we held it open:
        SQLite would otherwise keep writing into the deleted file, and every later turn would
        be lost without a word. Returns whether it did."""
        if self.path is None or self._identity is None:
            return False
        try:
            stat = os.stat(self.path)
            same = (stat.st_dev, stat.st_ino) == self._identity
        except FileNotFoundError:
            same = False
        if same:
            return False
        old, self._db = self._db, self._open()
        try:
            if self.owner is not None:
                self._carry_over(old, self.owner)
        except sqlite3.Error:
            pass  # best effort: what the session still holds is saved by its next writes
        finally:
            old.close()
        self._recreated = True
        return True

    def _carry_over(self, old: sqlite3.Connection, notebook: str) -> None:
        """Copy ``notebook``'s rows from the deleted file (still open through ``old``) into the
        new one: its chats go on whole, while the other notebooks' stay deleted."""
        old.execute("ATTACH DATABASE ? AS fresh", (str(self.path),))
        try:
            old.execute("BEGIN")
            for table, columns, key in _CARRIED:
                old.execute(
                    f"INSERT OR IGNORE INTO fresh.{table} ({columns}) "
                    f"SELECT {columns} FROM main.{table} WHERE {key} = ?",
                    (notebook,),
                )
            digests = sorted(
                {
                    ref
                    for (data,) in old.execute(
                        "SELECT data FROM main.turns WHERE notebook = ? AND data LIKE ?",
                        (notebook, f"%{_IMAGE_REF}%"),
                    )
                    for ref in re.findall(_IMAGE_REF + r"([0-9a-f]{64})", str(data))
                }
            )
            for batch in _batches(digests):
                old.execute(
                    "INSERT OR IGNORE INTO fresh.images (hash, mime, data) SELECT hash, mime, "
                    f"data FROM main.images WHERE hash IN ({_marks(batch)})",
                    tuple(batch),
                )
            old.execute("COMMIT")
        except BaseException:
            if old.in_transaction:
                old.execute("ROLLBACK")
            raise
        finally:
            old.execute("DETACH DATABASE fresh")

    def reopen_if_gone(self) -> bool:
        """Whether the file was re-created since the last call (now or by an earlier read), so
        that the session saves again what it holds."""
        with self._lock:
            self._check_file()
            recreated, self._recreated = self._recreated, False
            return recreated

    @contextmanager
    def _transaction(self, *, patient: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.

        A deferred transaction that reads and then writes fails at once with "database is
        locked" when another kernel writes meanwhile; ``BEGIN IMMEDIATE`` waits for the lock
        (up to the busy timeout) instead, and is tried again once after that. An impatient
        transaction (at ``%load_ext``, which must not hang on another kernel) waits briefly
        and tries once.
        """
        with self._lock:
            self._check_file()
            attempts = WRITE_ATTEMPTS if patient else 1
            if not patient:
                self._db.execute(f"PRAGMA busy_timeout = {int(IMPATIENT_SECONDS * 1000)}")
            try:
                for attempt in range(attempts):
                    try:
                        self._db.execute("BEGIN IMMEDIATE")
                        break
                    except sqlite3.OperationalError as err:
                        if attempt == attempts - 1 or not is_busy(err):
                            raise
                        time.sleep(0.05 * (attempt + 1))
            finally:
                if not patient:
                    self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Some errors (a full disk, an I/O error) have rolled back already; the cause,
                # not "no transaction is active", is what the user should read.
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            self._check_file()
            return query(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- notebooks: which id a kernel works under (see _identity)

    def notebook(self, notebook_id: str) -> NotebookRecord | None:
        row = self._read(
            lambda db: db.execute(
                "SELECT id, path, kernel, parent, created FROM notebooks WHERE id = ?",
                (notebook_id,),
            ).fetchone()
        )
        return None if row is None else NotebookRecord(*row)

    def notebook_of_kernel(self, kernel: str) -> str | None:
        """The id the kernel ``kernel`` last worked under (a restarted kernel keeps its id)."""
        row = self._read(
            lambda db: db.execute(
                "SELECT id FROM notebooks WHERE kernel = ? ORDER BY seen DESC LIMIT 1", (kernel,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def has_turns(self, notebook_id: str) -> bool:
        return bool(
            self._read(
                lambda db: db.execute(
                    "SELECT 1 FROM turns WHERE notebook = ? LIMIT 1", (notebook_id,)
                ).fetchone()
            )
        )

    def match(
        self, turn_ids: Iterable[str], cell_ids: Iterable[str] = (), notebook: str | None = None
    ) -> dict[str, int]:
        """Per notebook id, how many of its turns the given turn ids and cell ids point at
        (only ``notebook``'s, when given).

        A notebook file's outputs name turn ids and its cells carry cell ids; the notebook ids
        that hold those turns are the candidates for "which notebook is this". A turn copied
        into another notebook (see :meth:`fork`) keeps the id it came from as ``origin``.
        """
        turns, cells = sorted(set(turn_ids)), sorted(set(cell_ids))
        only = "" if notebook is None else " AND notebook = ?"
        extra = () if notebook is None else (notebook,)

        def query(db: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            seen: set[str] = set()
            for column, values in (("turn_id", turns), ("origin", turns), ("cell_id", cells)):
                for batch in _batches(values):
                    rows = db.execute(
                        f"SELECT turn_id, notebook FROM turns "
                        f"WHERE {column} IN ({_marks(batch)}){only}",
                        (*batch, *extra),
                    )
                    for turn_id, notebook_id in rows:
                        if turn_id not in seen:  # a row matched by its id and its cell: once
                            seen.add(turn_id)
                            counts[notebook_id] = counts.get(notebook_id, 0) + 1
            return counts

        return self._read(query)

    def notebooks_at(self, path: str) -> list[str]:
        """The ids last seen at ``path`` (usually one), newest first."""
        return self._read(
            lambda db: [
                str(row[0])
                for row in db.execute(
                    "SELECT id FROM notebooks WHERE path = ? ORDER BY seen DESC", (path,)
                )
            ]
        )

    def bind(
        self, notebook_id: str, *, path: str | None, kernel: str | None, parent: str | None = None
    ) -> None:
        """Record that ``notebook_id`` is now the notebook at ``path``, run by ``kernel``."""
        now = time.time()
        with self._transaction(patient=False) as db:
            if kernel is not None:  # a kernel works for one notebook at a time
                db.execute("UPDATE notebooks SET kernel = NULL WHERE kernel = ?", (kernel,))
            db.execute(
                "INSERT INTO notebooks (id, path, kernel, parent, created, seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "path = excluded.path, kernel = excluded.kernel, seen = excluded.seen",
                (notebook_id, path, kernel, parent, now, now),
            )

    def fork(self, source: str, target: str, only: Iterable[str] | None = None) -> int:
        """Copy the chats of ``source`` into ``target`` (a copied notebook starts with the
        original's chats, then diverges); returns the turns copied. With ``only``, just the
        turns with those ids (or copied from them): what the copy's file actually shows, not
        what the original said after the copy was made. Each copy gets a new turn id and
        remembers the one it came from as ``origin``."""
        wanted = None if only is None else sorted(set(only))
        with self._transaction(patient=False) as db:
            copied = 0
            chats: set[str] = set()
            selections = (
                [("", ())]
                if wanted is None
                else [
                    (f" AND (turn_id IN ({_marks(b)}) OR origin IN ({_marks(b)}))", (*b, *b))
                    for b in _batches(wanted)
                ]
            )
            for condition, values in selections:
                db.execute(
                    "INSERT INTO turns (turn_id, notebook, chat, position, data, cell_id, "
                    "origin, slim_tokens, image_tokens, images) SELECT "
                    "lower(hex(randomblob(16))), ?, chat, position, data, cell_id, "
                    "COALESCE(origin, turn_id), slim_tokens, image_tokens, images "
                    f"FROM turns WHERE notebook = ?{condition}",
                    (target, source, *values),
                )
            for chat, count in db.execute(
                "SELECT chat, COUNT(*) FROM turns WHERE notebook = ? GROUP BY chat", (target,)
            ).fetchall():
                chats.add(str(chat))
                copied += int(count)
            for chat in sorted(chats):
                db.execute(
                    "INSERT OR IGNORE INTO chats (notebook, chat, system) "
                    "SELECT ?, chat, system FROM chats WHERE notebook = ? AND chat = ?",
                    (target, source, chat),
                )
            return copied

    # -- reading chats

    def index(self, notebook: str) -> list[ChatIndex]:
        """Every chat of ``notebook`` as index entries only: no turn is parsed, so restoring a
        10,000-turn chat costs milliseconds. Rows without sizes (not turns) are skipped."""

        def query(db: sqlite3.Connection) -> list[ChatIndex]:
            chats = {
                str(name): ChatIndex(str(name), system if isinstance(system, str) else None, [])
                for name, system in db.execute(
                    "SELECT chat, system FROM chats WHERE notebook = ?", (notebook,)
                )
            }
            # Rows without integer sizes are not turns we wrote: counted, then left out.
            (bad,) = db.execute(
                "SELECT COUNT(*) FROM turns WHERE notebook = ? AND NOT (" + _SIZED + ")",
                (notebook,),
            ).fetchone()
            self.skipped += bad
            rows = db.execute(
                "SELECT chat, turn_id, cell_id, slim_tokens, image_tokens, images FROM turns "
                "WHERE notebook = ? AND " + _SIZED + " ORDER BY chat, position",
                (notebook,),
            ).fetchall()
            for chat, group in groupby(rows, key=itemgetter(0)):
                _, ids, cells, slim, extra, images = zip(*group, strict=True)
                index = chats.setdefault(str(chat), ChatIndex(str(chat), None, []))
                index.columns.extend((ids, cells, slim, extra, images))
            return list(chats.values())

        return self._read(query)

    def load_turns(self, turn_ids: Sequence[str]) -> dict[str, Turn]:
        """The turns with these ids, images restored; a row that is not a turn is skipped (and
        counted in ``skipped``)."""

        def query(db: sqlite3.Connection) -> dict[str, Turn]:
            found: dict[str, Turn] = {}
            images: dict[str, str] = {}
            for batch in _batches(list(turn_ids)):
                rows = db.execute(
                    f"SELECT turn_id, data FROM turns WHERE turn_id IN ({_marks(batch)})",
                    tuple(batch),
                ).fetchall()
                for turn_id, data in rows:
                    turn = _parse_turn(turn_id, data, lambda d: self._restore_images(db, d, images))
                    if turn is None:
                        self.skipped += 1
                    else:
                        found[turn.id] = turn
            return found

        return self._read(query)

    def load(self, notebook: str) -> dict[str, Conversation]:
        """Every chat of ``notebook`` with every turn loaded (exports and tests)."""
        chats: dict[str, Conversation] = {}
        for index in self.index(notebook):
            conversation = index.into(
                Conversation(index.name, index.system, loader=self.load_turns)
            )
            chats[index.name] = Conversation(index.name, index.system, conversation.turns)
        return chats

    def usage(self, notebook: str) -> list[tuple[str, int, int, float | None, int, int, int]]:
        """Rows of (model, prompt tokens, completion tokens, cost, requests, cached tokens,
        reasoning tokens) for ``notebook``."""
        return self._read(
            lambda db: [
                (*row[:5], _int(row[5]), _int(row[6]))
                for row in db.execute(
                    "SELECT model, prompt_tokens, completion_tokens, cost, requests, "
                    "cached_tokens, reasoning_tokens FROM usage WHERE notebook = ? ORDER BY model",
                    (notebook,),
                )
                if isinstance(row[0], str)
                and isinstance(row[1], int)
                and isinstance(row[2], int)
                and isinstance(row[4], int)
                and (row[3] is None or isinstance(row[3], (int, float)))
            ]
        )

    # -- writing

    def save_chat(self, notebook: str, chat: str, system: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO chats (notebook, chat, system) VALUES (?, ?, ?) "
                "ON CONFLICT (notebook, chat) DO UPDATE SET system = excluded.system",
                (notebook, chat, system),
            )

    def save_turn(
        self, notebook: str, turn: Turn, replaces: str | None = None, position: int | None = None
    ) -> None:
        """Persist ``turn``; when it ``replaces`` an earlier one, it takes that one's place.

        ``position`` puts it at a given place instead (re-saving a chat into a re-created
        store); otherwise it goes after the chat's last turn."""
        data = turn.to_dict()
        slim, extra, images = turn_sizes(turn)
        with self._transaction() as db:
            self._store_images(db, data)
            if replaces is not None:
                row = db.execute(
                    "SELECT position FROM turns WHERE turn_id = ? AND notebook = ?",
                    (replaces, notebook),
                ).fetchone()
                if row is not None:
                    position = row[0]
                    db.execute("DELETE FROM turns WHERE turn_id = ?", (replaces,))
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
                "INSERT OR REPLACE INTO turns (turn_id, notebook, chat, position, data, cell_id, "
                "slim_tokens, image_tokens, images) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn.id,
                    notebook,
                    turn.chat,
                    position,
                    utf8_safe(json.dumps(data, ensure_ascii=False)),
                    turn.cell_id,
                    slim,
                    extra,
                    images,
                ),
            )

    def add_usage(
        self,
        notebook: str,
        model: str,
        prompt: int,
        completion: int,
        cost: float | None,
        requests: int = 1,
        cached: int = 0,
        reasoning: int = 0,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO usage (notebook, model, prompt_tokens, completion_tokens, cost, "
                "requests, cached_tokens, reasoning_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (notebook, model) DO UPDATE SET "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "cost = CASE WHEN cost IS NULL AND excluded.cost IS NULL THEN NULL "
                "ELSE COALESCE(cost, 0) + COALESCE(excluded.cost, 0) END, "
                "requests = requests + excluded.requests, "
                "cached_tokens = cached_tokens + excluded.cached_tokens, "
                "reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens",
                (notebook, model, prompt, completion, cost, requests, cached, reasoning),
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
                for (data,) in db.execute(
                    "SELECT data FROM turns WHERE data LIKE ?", (f"%{_IMAGE_REF}%",)
                )
                for ref in re.findall(_IMAGE_REF + r"([0-9a-f]{64})", str(data))
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
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "image_url"
                        and isinstance(part.get("image_url"), Mapping)
                    ):
                        part["image_url"] = dict(part["image_url"])
                        yield part["image_url"]

    def _store_images(self, db: sqlite3.Connection, data: dict[str, Any]) -> None:
        for image in self._image_parts(data):
            match = _DATA_URL.match(str(image.get("url", "")))
            if not match:
                continue  # an http(s) URL is stored as it is
            try:
                # Strictly: a payload with characters outside standard base64 (URL-safe
                # base64, say) would otherwise lose them and come back as another image.
                raw = base64.b64decode("".join(match.group(2).split()), validate=True)
            except (binascii.Error, ValueError):
                continue  # not base64 after all: kept inline, as it came
            digest = hashlib.sha256(raw).hexdigest()
            db.execute(
                "INSERT OR IGNORE INTO images (hash, mime, data) VALUES (?, ?, ?)",
                (digest, match.group(1), raw),
            )
            image["url"] = _IMAGE_REF + digest

    def _restore_images(
        self, db: sqlite3.Connection, data: dict[str, Any], cache: dict[str, str]
    ) -> None:
        for image in self._image_parts(data):
            url = image.get("url", "")
            if not isinstance(url, str) or not url.startswith(_IMAGE_REF):
                continue
            digest = url[len(_IMAGE_REF) :]
            if digest not in cache:
                row = db.execute(
                    "SELECT mime, data FROM images WHERE hash = ?", (digest,)
                ).fetchone()
                cache[digest] = (
                    f"data:{row[0]};base64,{base64.b64encode(row[1]).decode()}"
                    if row and isinstance(row[1], bytes)
                    else url
                )
            image["url"] = cache[digest]
        # An image whose row is gone: a note in its place, never our internal reference
        # (which no API would take).
        for message in (data["user"], *data["replies"]):
            content = message.get("content")
            if isinstance(content, list):
                for index, part in enumerate(content):
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "image_url"
                        and isinstance(part.get("image_url"), Mapping)
                        and str(part["image_url"].get("url", "")).startswith(_IMAGE_REF)
                    ):
                        content[index] = {"type": "text", "text": LOST_IMAGE_NOTE}


#: What a stored image that can no longer be read becomes in its turn.
LOST_IMAGE_NOTE = "[an image was here; it could not be read back from the history store]"


def _parse_turn(
    turn_id: object, data: object, prepare: Callable[[dict[str, Any]], None] | None = None
) -> Turn | None:
    """A stored row as a turn, or ``None`` when it is not one (invalid JSON, wrong shape)."""
    try:
        payload = json.loads(data) if isinstance(data, (str, bytes)) else None
        if not isinstance(payload, dict):
            return None
        if prepare is not None:
            prepare(payload)
        return replace(Turn.from_dict(payload), id=str(turn_id))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def _sizes(turn: Turn) -> tuple[int, int, int]:
    try:
        return turn_sizes(turn)
    except (TypeError, ValueError, AttributeError):  # a parsed turn is checked; be sure
        return 0, 0, 0


def _int(value: object) -> int:
    """A stored count, or 0 when the row holds something else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_busy(err: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed because another connection holds the lock."""
    text = str(err).lower()
    return "locked" in text or "busy" in text
