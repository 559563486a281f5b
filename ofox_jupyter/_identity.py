"""Which notebook is this? The id a kernel files its chats under, and how it was found.

A path is not a notebook's identity: JupyterLab asks to rename ``Untitled.ipynb`` on its first
save, notebooks are moved and copied, and the kernel keeps the path it was started with
(``JPY_SESSION_NAME``) until it restarts. What does follow a notebook is its saved content: every
``%%ofox`` output carries ``metadata.ofox.turn_id``, and JupyterLab and Notebook 7 send each
cell's id with its execution, which the turn records. So at ``%load_ext`` the kernel reads its
notebook file and decides, in this order:

* the **same kernel** restarted (Jupyter keeps a kernel's id across restarts) → the id it had,
  even if the notebook was not saved in between;
* an id last seen at **this path** whose turns the file still shows (by its outputs, or by its
  cell ids once the outputs were cleared) → that id;
* an id whose turns the file's **outputs** show (the file came from elsewhere) → that id if its
  notebook moved here; but if the same id is in use by another live kernel, or the file it was
  last seen at still exists and still holds those turns, this file is a **copy**: it gets a new
  id that starts with a copy of just the turns the file shows, and the two diverge from here;
* **nothing** (a new notebook, even at a path an old one had) → a new, empty id.

Cell ids alone never bring another file's chats (notebooks made from one template share them).

Terminal IPython has no notebook: its chats belong to the working directory, and
``OfoxMagics.history_key`` names a key explicitly anywhere. A kernel with neither a notebook nor a
directory of its own (nbclient, ``jupyter console``) keeps its chats per kernel.

"Another live kernel" is told by an advisory lock (``flock``) that a kernel holds on its id for
as long as it runs; the operating system drops it when the process ends, however it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._history import HistoryStore

__all__ = ["Context", "Evidence", "Identity", "detect_context", "read_evidence", "resolve"]

#: Notebook files larger than this are not read for identity (a notebook of many big images);
#: such a notebook is recognised by its kernel only.
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Context:
    """Where this kernel runs: what is known before looking into the store.

    ``kind`` is ``notebook`` (a notebook file: ``path``), ``directory`` (terminal IPython:
    ``path`` is the working directory), ``kernel`` (a kernel with no notebook: nbclient, a
    console) or ``explicit`` (``OfoxMagics.history_key``: ``key``).
    """

    kind: str
    path: str | None = None
    kernel: str | None = None
    key: str | None = None

    @property
    def label(self) -> str:
        """How the notices name this place."""
        if self.kind == "notebook" and self.path:
            return storable(Path(self.path).name)
        if self.kind == "directory" and self.path:
            return f"directory {storable(self.path)}"
        if self.kind == "explicit":
            return f"history key {storable(repr(self.key))}"
        return "this kernel"


@dataclass(frozen=True)
class Evidence:
    """What a saved notebook says about its chats: turn ids (outputs) and cell ids (cells)."""

    turn_ids: frozenset[str] = frozenset()
    cell_ids: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.turn_ids or self.cell_ids)


@dataclass
class Identity:
    """The notebook id chats are filed under, and how it was decided."""

    id: str
    context: Context
    #: new | restored (by the saved notebook) | kernel (a restarted kernel) | copy | directory
    #: | explicit | memory (no store)
    how: str
    copied_from: str | None = None
    copied_turns: int = 0
    #: The file this id was last seen at, when that was another one (a rename or a move).
    moved_from: str | None = None
    #: Something the user should hear about how the id was found (one line), or None.
    note: str | None = None
    _claim: IO[bytes] | None = field(default=None, repr=False)

    def release(self) -> None:
        """Let another kernel take this id (the extension is unloaded)."""
        if self._claim is not None:
            self._claim.close()
            self._claim = None


def kernel_id() -> str | None:
    """The running kernel's id (its connection file's name), which survives a restart."""
    # Only ask ipykernel when it is already running this process: importing it just to find out
    # would cost terminal IPython ~160 ms (zmq, jupyter_client) at every %load_ext.
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    app = getattr(kernelapp, "IPKernelApp", None)
    if app is None or not app.initialized():
        return None
    try:
        connection = app.instance().connection_file
    except Exception:  # noqa: BLE001 - an unusual kernel set-up: no kernel id, nothing worse
        return None
    return Path(connection).stem if isinstance(connection, str) and connection else None


def detect_context(user_ns: Mapping[str, Any] | None, history_key: str = "") -> Context:
    """Where this kernel runs: an explicit key, a notebook file, a kernel, or a directory.

    Jupyter Server tells kernels their notebook in ``JPY_SESSION_NAME`` (the absolute path at
    kernel start); VS Code puts the file in ``__vsc_ipynb_file__``.
    """
    kernel = kernel_id()
    if history_key:
        return Context("explicit", key=history_key, kernel=kernel)
    path = os.environ.get("JPY_SESSION_NAME")
    vscode = (user_ns or {}).get("__vsc_ipynb_file__")
    if not path and isinstance(vscode, str) and vscode:
        path = vscode
    if path:
        return Context("notebook", path=os.path.abspath(path), kernel=kernel)
    if kernel is not None:
        return Context("kernel", kernel=kernel)
    try:
        return Context("directory", path=os.path.realpath(os.getcwd()))
    except OSError:  # the working directory was deleted
        return Context("kernel")


def read_evidence(path: str | os.PathLike[str] | None) -> Evidence:
    """The turn ids and cell ids a saved notebook holds; empty when it cannot be read.

    The file is the user's and untrusted in shape: anything that is not the expected type is
    ignored, never raised.
    """
    if not path or not _is_file(os.fspath(path)):
        return Evidence()
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_NOTEBOOK_BYTES + 1)
        if len(raw) > MAX_NOTEBOOK_BYTES:
            return Evidence()
        notebook = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return Evidence()
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return Evidence()
    turn_ids: set[str] = set()
    cell_ids: set[str] = set()
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        if isinstance(cell.get("id"), str) and cell["id"]:
            cell_ids.add(cell["id"])
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else ():
            metadata = output.get("metadata") if isinstance(output, dict) else None
            ofox = metadata.get("ofox") if isinstance(metadata, dict) else None
            turn = ofox.get("turn_id") if isinstance(ofox, dict) else None
            if isinstance(turn, str) and turn:
                turn_ids.add(turn)
    return Evidence(frozenset(turn_ids), frozenset(cell_ids))


def new_id() -> str:
    return "nb:" + os.urandom(16).hex()


def _claim(claims: Path | None, notebook_id: str) -> tuple[bool, IO[bytes] | None]:
    """Try to hold ``notebook_id`` for this process: (free?, the lock to keep)."""
    if claims is None:
        return True, None
    try:
        import fcntl
    except ImportError:  # Windows: no flock; copies are told apart by their files only
        return True, None
    name = hashlib.sha256(notebook_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    try:
        claims.mkdir(parents=True, exist_ok=True)
        handle = open(claims / f"{name}.lock", "ab")  # noqa: SIM115 - held while the kernel runs
    except OSError:
        return True, None  # cannot tell: take it
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False, None
    except OSError:
        return True, handle
    return True, handle


def _still_there(store: HistoryStore, notebook_id: str, path: str | None, here: str) -> bool:
    """Whether the file ``notebook_id`` was last seen at is another file that still holds it."""
    if not path or path == here or not _is_file(path):
        return False
    evidence = read_evidence(path)
    return bool(evidence.turn_ids) and bool(store.match(evidence.turn_ids, (), notebook_id))


def _is_file(path: str) -> bool:
    """A regular file (not a FIFO that would block a read, nor a folder)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _choose(store: HistoryStore, scores: dict[str, int], context: Context) -> str:
    """The notebook whose turns a file's outputs show most; on a tie, one whose last file is
    gone (it moved here), then the youngest (a copy of a copy comes from the nearer copy)."""

    def rank(notebook_id: str) -> tuple[int, int, float]:
        record = store.notebook(notebook_id)
        path = record.path if record else _legacy_path(notebook_id)
        moved = int(bool(path) and not os.path.exists(str(path)))
        created = record.created if record else 0.0
        return scores[notebook_id], moved, created

    return max(scores, key=rank)


def _legacy_path(notebook_id: str) -> str | None:
    """The first layout keyed chats by the notebook's path: such an id *is* a path."""
    return notebook_id if notebook_id.endswith(".ipynb") and os.path.isabs(notebook_id) else None


def storable(text: str) -> str:
    """``text`` as SQLite can store it: a path that is not valid UTF-8 (its bytes decoded by
    Python as lone surrogates) gets those bytes written as ``\\xNN``, the same way every time."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def resolve(store: HistoryStore | None, context: Context, claims: Path | None) -> Identity:
    """Decide the notebook id for ``context`` (see the module docstring), record it, claim it.

    In order: the id this very kernel had before a restart; an id last seen at this path whose
    turns the file still shows (by its outputs, or by its cell ids after outputs were cleared);
    the id whose turns the file's outputs show most — adopted if it moved here, copied (just
    the turns the file shows) if its original is still elsewhere or open in another kernel;
    else a new id.
    """
    if context.kind == "explicit":
        return Identity(storable(f"key:{context.key}"), context, "explicit")
    if context.kind == "directory":
        return Identity(storable(f"dir:{context.path}"), context, "directory")
    if store is None:
        return Identity(new_id(), context, "memory")
    here = storable(context.path) if context.path else ""
    evidence = read_evidence(context.path) if context.kind == "notebook" else Evidence()
    scores = store.match(evidence.turn_ids) if evidence.turn_ids else {}
    bound = store.notebook_of_kernel(context.kernel) if context.kernel else None
    own = [
        i
        for i in (store.notebooks_at(here) if here else ())
        if scores.get(i) or (evidence.cell_ids and store.match((), evidence.cell_ids, i))
    ]
    claim_dir = claims if context.kind == "notebook" else None
    if bound is not None or own:
        # The same kernel restarted, or this file's own chats: nothing to decide.
        chosen = bound if bound is not None else own[0]
        how = "kernel" if bound is not None else "restored"
        free, lock = _claim(claim_dir, chosen)
        if free:
            return _adopt(store, chosen, how, context, here, lock)
    elif scores:
        chosen, how = _choose(store, scores, context), "restored"
        free, lock = _claim(claim_dir, chosen)
        record = store.notebook(chosen)
        last_path = record.path if record else _legacy_path(chosen)
        if free and not _still_there(store, chosen, last_path, here):
            return _adopt(store, chosen, how, context, here, lock)
    else:
        fresh = new_id()
        _bind(store, fresh, context)
        _, lock = _claim(claim_dir, fresh)
        return Identity(fresh, context, "new", _claim=lock)
    # A copy: the original is open in another kernel, or still on disk where it was.
    if lock is not None:
        lock.close()
    copy = new_id()
    try:
        turns = store.fork(chosen, copy, only=evidence.turn_ids if scores else None)
    except (sqlite3.Error, OSError) as err:
        # Another kernel holds the store: the copy starts empty rather than hang or fail.
        _bind(store, copy, context)
        _, lock = _claim(claim_dir, copy)
        note = f"could not copy the original's chats ({err}); this copy starts empty"
        return Identity(copy, context, "new", note=note, _claim=lock)
    _bind(store, copy, context, parent=chosen)
    _, lock = _claim(claim_dir, copy)
    return Identity(copy, context, "copy", copied_from=chosen, copied_turns=turns, _claim=lock)


def _adopt(
    store: HistoryStore,
    chosen: str,
    how: str,
    context: Context,
    here: str,
    lock: IO[bytes] | None,
) -> Identity:
    record = store.notebook(chosen)
    last_path = record.path if record else _legacy_path(chosen)
    _bind(store, chosen, context)
    moved = last_path if last_path and here and last_path != here else None
    return Identity(chosen, context, how, moved_from=moved, _claim=lock)


def _bind(
    store: HistoryStore, notebook_id: str, context: Context, parent: str | None = None
) -> None:
    """Record where the id lives now. A store that can be read but not written (read-only,
    full) still restores the chats; the failure is reported at the first turn it cannot save."""
    try:
        path = storable(context.path) if context.path else None
        store.bind(notebook_id, path=path, kernel=context.kernel, parent=parent)
    except (sqlite3.Error, OSError):
        pass
