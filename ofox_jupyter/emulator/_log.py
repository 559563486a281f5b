"""Logging of the emulator: one quiet logger, and the server's own records routed into it.

The emulator usually runs inside the user's Jupyter kernel, where whatever reaches stderr is
printed into the notebook, and Python prints a record that finds no handler to stderr
(``logging.lastResort``).  So:

* the emulator logs through :data:`logger` (``ofox_jupyter.emulator``), which has a
  ``NullHandler``: silent unless the user configures logging (``logging.basicConfig()`` or a
  handler on that logger), in which case its records show up like any library's;
* records that uvicorn (``uvicorn.error``, ``uvicorn.access``) and asyncio (``asyncio``) emit on an
  emulator's server thread are re-logged through :data:`logger` and dropped from their own loggers
  (records from other threads, e.g. the user's own uvicorn, are left alone).  asyncio's
  ``socket.send() raised exception.`` (a write to a connection that is already lost) is re-logged
  at DEBUG; the emulator stops writing when a client goes away, so it should not occur at all;
* :data:`DELIBERATE_ABORT` marks a response the emulator ends on purpose (a ``disconnect`` fault,
  or an unexpected error already logged mid-response): uvicorn's "returned without completing
  response" line for it is dropped.
"""

from __future__ import annotations

import contextvars
import logging
import threading

__all__ = [
    "DELIBERATE_ABORT",
    "in_server_thread",
    "install_redirect",
    "logger",
    "mark_server_thread",
]

#: The emulator's logger; quiet by default (``NullHandler``).
logger = logging.getLogger("ofox_jupyter.emulator")
logger.addHandler(logging.NullHandler())

#: Set while the emulator ends a response on purpose, so uvicorn's error line for it is dropped.
DELIBERATE_ABORT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ofox_emulator_deliberate_abort", default=False
)

_REDIRECTED = ("uvicorn.error", "uvicorn.access", "asyncio")
_SEND_AFTER_LOSS = "socket.send() raised exception."
_local = threading.local()


def mark_server_thread() -> None:
    """Mark the calling thread as an emulator's server thread (its event loop runs here)."""
    _local.server = True


def in_server_thread() -> bool:
    """Whether the calling thread is an emulator's server thread."""
    return bool(getattr(_local, "server", False))


class _Redirect(logging.Filter):
    """Re-logs a server thread's uvicorn/asyncio record through :data:`logger`; drops it there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not in_server_thread():
            return True
        if DELIBERATE_ABORT.get():
            return False
        level = logging.DEBUG if record.msg == _SEND_AFTER_LOSS else record.levelno
        if logger.isEnabledFor(level):
            logger.log(level, "%s: %s", record.name, record.getMessage(), exc_info=record.exc_info)
        return False


def install_redirect() -> None:
    """Put the redirecting filter on uvicorn's and asyncio's loggers (once per process)."""
    for name in _REDIRECTED:
        target = logging.getLogger(name)
        if not any(isinstance(f, _Redirect) for f in target.filters):
            target.addFilter(_Redirect())
