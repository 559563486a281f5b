"""uvicorn in a background thread: a ``Server`` that reports when it listens and logs quietly.

Imported only when an emulator starts (it imports uvicorn).  uvicorn gets no logging config of its
own (``log_config=None``, warnings only, no access log), and whatever it or asyncio logs on the
server thread is routed into the emulator's quiet logger (``_log.py``), so nothing reaches the
notebook's stderr.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.applications import Starlette

from ._log import install_redirect, mark_server_thread

__all__ = ["ThreadServer", "quiet_config"]


class ThreadServer(uvicorn.Server):
    """A uvicorn server that sets :attr:`ready` once listening and never touches signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        mark_server_thread()  # this thread's uvicorn/asyncio records go to the emulator's logger
        super().run(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def quiet_config(app: Starlette) -> uvicorn.Config:
    """A uvicorn config for the emulator: h11, no lifespan, no access log, warnings only."""
    install_redirect()
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
