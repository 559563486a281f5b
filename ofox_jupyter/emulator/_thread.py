"""uvicorn in a background thread: a ``Server`` that reports when it listens and logs quietly.

Imported only when an emulator starts (it imports uvicorn).
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from starlette.applications import Starlette

from ._stream import DELIBERATE_ABORT

__all__ = ["ThreadServer", "quiet_config"]


class ThreadServer(uvicorn.Server):
    """A uvicorn server that sets :attr:`ready` once listening and never touches signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class _DeliberateAbortFilter(logging.Filter):
    """Drops uvicorn's error line for a ``disconnect`` fault's abort, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not DELIBERATE_ABORT.get()


def quiet_config(app: Starlette) -> uvicorn.Config:
    """A uvicorn config for the emulator: h11, no lifespan, no access log, warnings only."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DeliberateAbortFilter) for f in logger.filters):
        logger.addFilter(_DeliberateAbortFilter())
    return uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        ws="none",
        loop="asyncio",
        server_header=False,
    )
