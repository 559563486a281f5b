"""Which notebook is this? The id a kernel files its chats under, and how it was found.

A path is not a notebook's identity: JupyterLab asks to rename ``Untitled.ipynb`` on its first
save, notebooks are moved and copied, and the kernel keeps the path it was started with
(``JPY_SESSION_NAME``) until it restarts. What does follow a notebook is its saved content: every
``%%ofox`` output carries ``metadata.ofox.turn_id``, and JupyterLab and Notebook 7 send each
cell's id with its execution, which the turn records. So at ``%load_ext`` the kernel reads its
notebook file and asks the store which notebook id holds those turns and cells:

* **found** → that id, whatever the file is called now (a rename or a move);
* found, but the same id is in use by **another live kernel**, or the file it was last seen at
  still exists and still holds those turns → this file is a **copy**: it gets a new id that
  starts with a copy of the original's chats, and the two diverge from here;
* **nothing** in the file (a new notebook, even at a path an old one had) → a new, empty id;
* the **same kernel** restarted (Jupyter keeps a kernel's id across restarts) → the id it had,
  even if the notebook was not saved in between.

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
            return Path(self.path).name
        if self.kind == "directory" and self.path:
            return f"directory {self.path}"
        if self.kind == "explicit":
            return f"history key {self.key!r}"
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
    if not path:
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
    if not path or os.path.abspath(path) == here or not os.path.isfile(path):
        return False
    evidence = read_evidence(path)
    return (
        bool(evidence) and store.match(evidence.turn_ids, evidence.cell_ids).get(notebook_id, 0) > 0
    )


def _choose(store: HistoryStore, scores: dict[str, int], context: Context) -> str:
    """The candidate a notebook file most likely is: most turns found; on a tie, the one last
    seen at this path, then one whose last file is gone (it moved here), then the oldest."""

    def rank(notebook_id: str) -> tuple[int, int, int, float]:
        record = store.notebook(notebook_id)
        path = record.path if record else _legacy_path(notebook_id)
        here = int(bool(path) and path == context.path)
        moved = int(bool(path) and not os.path.exists(str(path)))
        created = record.created if record else 0.0
        return scores[notebook_id], here, moved, -created

    return max(scores, key=rank)


def _legacy_path(notebook_id: str) -> str | None:
    """The first layout keyed chats by the notebook's path: such an id *is* a path."""
    return notebook_id if notebook_id.endswith(".ipynb") and os.path.isabs(notebook_id) else None


def resolve(store: HistoryStore | None, context: Context, claims: Path | None) -> Identity:
    """Decide the notebook id for ``context`` (see the module docstring), record it, claim it."""
    if context.kind == "explicit":
        return Identity(f"key:{context.key}", context, "explicit")
    if context.kind == "directory":
        return Identity(f"dir:{context.path}", context, "directory")
    if store is None:
        return Identity(new_id(), context, "memory")
    evidence = read_evidence(context.path) if context.kind == "notebook" else Evidence()
    scores = store.match(evidence.turn_ids, evidence.cell_ids) if evidence else {}
    bound = store.notebook_of_kernel(context.kernel) if context.kernel else None
    chosen: str | None = None
    how = "new"
    if bound is not None and (bound in scores or not scores or store.has_turns(bound)):
        chosen, how = bound, "kernel"  # the same kernel, restarted: the same notebook
    elif scores:
        chosen, how = _choose(store, scores, context), "restored"
    claim_dir = claims if context.kind == "notebook" else None
    if chosen is not None:
        free, lock = _claim(claim_dir, chosen)
        record = store.notebook(chosen)
        last_path = record.path if record else _legacy_path(chosen)
        copied = how == "restored" and _still_there(store, chosen, last_path, context.path or "")
        if free and not copied:
            _bind(store, chosen, context)
            moved = last_path if last_path and last_path != context.path else None
            return Identity(chosen, context, how, moved_from=moved, _claim=lock)
        # A copy: the original is open in another kernel, or still on disk where it was.
        if lock is not None:
            lock.close()
        copy = new_id()
        turns = store.fork(chosen, copy)
        _bind(store, copy, context, parent=chosen)
        _, lock = _claim(claim_dir, copy)
        return Identity(copy, context, "copy", copied_from=chosen, copied_turns=turns, _claim=lock)
    fresh = new_id()
    _bind(store, fresh, context)
    _, lock = _claim(claim_dir, fresh)
    return Identity(fresh, context, "new", _claim=lock)


def _bind(
    store: HistoryStore, notebook_id: str, context: Context, parent: str | None = None
) -> None:
    """Record where the id lives now. A store that can be read but not written (read-only,
    full) still restores the chats; the failure is reported at the first turn it cannot save."""
    try:
        store.bind(notebook_id, path=context.path, kernel=context.kernel, parent=parent)
    except (sqlite3.Error, OSError):
        pass
