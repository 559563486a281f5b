"""The on-disk cache of batch replies: what makes an interrupted batch resumable.

One SQLite file beside the history store (``history.sqlite3`` → ``history.batch-cache.sqlite3``),
one row per answered request, keyed by a hash of what was sent: the endpoint, the model, the
messages (images included) and every parameter, but never the API key, which is in a header and
not in the body. Re-running a batch looks every item up first and sends only the missing ones.

A separate file rather than a table of the history: a batch writes thousands of rows in a few
minutes, which would bloat the history every notebook reads at start, and the cache can be
thrown away whole (``%ofox batch clear``) without touching a conversation.

Only complete replies are kept; a failed item is asked again on the next run. A row that does not
read back as a reply (damaged, or written by something else) counts as missing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["BatchCache", "cache_key", "default_cache_path"]

#: Changes when what a key covers changes, so old rows simply stop matching.
_KEY_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replies ("
    " key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)"
)
#: How long a write waits for another writer (another kernel's batch) before giving up.
_BUSY_MS = 500
_IN_QUERY = 500  # keys per SELECT … IN (…), below SQLite's variable limit


def default_cache_path() -> Path:
    """Beside the history store (``OFOX_HISTORY_PATH`` or Jupyter's data directory)."""
    from ._history import default_history_path

    history = default_history_path()
    return history.with_name(f"{history.stem}.batch-cache.sqlite3")


def cache_key(endpoint: str, body: Mapping[str, Any]) -> str:
    """The hash of one request: ``endpoint`` (the API's base URL, so replies of the offline
    emulator never answer for the real API) and the JSON ``body`` (no credentials in it)."""
    canonical = json.dumps(
        {"v": _KEY_VERSION, "endpoint": endpoint, "body": body},
        sort_keys=True,
        ensure_ascii=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class BatchCache:
    """Replies by key. Thread-safe (one lock); every method may raise ``sqlite3.Error`` or
    ``OSError``, which the batch turns into one notice and goes on without the cache."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=_BUSY_MS / 1000, check_same_thread=False, isolation_level=None
        )
        try:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            except sqlite3.OperationalError:
                pass  # a file system without shared memory: the default journal
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached records of those ``keys`` that have one."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(wanted), _IN_QUERY):
                part = wanted[start : start + _IN_QUERY]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, record FROM replies WHERE key IN ({marks})", part
                ).fetchall()
                for key, text in rows:
                    record = _record(text)
                    if record is not None:
                        found[key] = record
        return found

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, record, created) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM replies").fetchone()
        return int(count)

    def clear(self) -> int:
        """Forget every cached reply; returns how many there were."""
        with self._lock:
            count = self._db.execute("DELETE FROM replies").rowcount
            self._db.execute("VACUUM")
        return max(int(count), 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> BatchCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    return record
