"""Running the emulator: :class:`Emulator` (uvicorn in a daemon thread) and :func:`shared_emulator`.

uvicorn and starlette are imported in :meth:`Emulator.start`, not at import time, so that importing
this module (which the client does for its offline default) stays cheap.

``OFOX_EMULATOR_DELAY`` (seconds between streamed chunks, default 0) slows the shared emulator
down so that streaming can be watched, e.g. by ``ofox-jupyter demo``.  ``OFOX_EMULATOR_RPM``
(chat requests per key per minute, default: none enforced) and ``OFOX_EMULATOR_LATENCY`` (seconds
before each chat answer, default 0) make it behave like a busy gateway, for batches and benchmarks
run in a kernel that has no key.
"""

from __future__ import annotations

import atexit
import math
import os
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from ._state import DEFAULT_MAX_BODY_BYTES, RECORD_LIMIT, EmulatorState, RecordedRequest

if TYPE_CHECKING:
    from ._thread import ThreadServer

__all__ = [
    "DELAY_ENV",
    "LATENCY_ENV",
    "RPM_ENV",
    "Emulator",
    "shared_delay",
    "shared_emulator",
    "shared_latency",
    "shared_rpm",
]

#: Environment variable: seconds between streamed chunks of the shared (offline default) emulator.
DELAY_ENV = "OFOX_EMULATOR_DELAY"
#: Environment variable: chat requests per key per minute the shared emulator enforces.
RPM_ENV = "OFOX_EMULATOR_RPM"
#: Environment variable: seconds the shared emulator waits before each chat answer.
LATENCY_ENV = "OFOX_EMULATOR_LATENCY"

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class Emulator:
    """An offline OfoxAI-compatible chat server on loopback, for tests and the offline default.

    Usage::

        with Emulator(api_key="sk-test") as emu:
            client = openai.OpenAI(base_url=emu.base_url, api_key="sk-test")
            emu.inject("429:1")          # the next chat request gets a 429
            ...
            emu.requests[-1].body        # what the client sent

    **Parameters:**

    * **host** - interface to listen on (default ``127.0.0.1``).
    * **port** - TCP port; ``0`` picks a free one (see :attr:`port` after :meth:`start`).
    * **api_key** - when set, chat requests need ``Authorization: Bearer <api_key>``.
    * **delay** - seconds between streamed chunks (a request can override it).
    * **rpm** - enforce this many chat requests per minute per API key (the Bearer token;
      requests without one share a window).  The next one gets OfoxAI's 429
      (``rate_limit_exceeded``, ``retry-after``) and is not counted.  ``GET /models`` does not
      count.  ``None`` (default): announce 200 in the headers, refuse nothing.
    * **latency** - seconds to wait before answering a chat request (before the first byte of a
      stream), like a model's time to first token; a refused request does not wait.
    * **max_body_bytes** - largest request body accepted (default 8 MiB); a larger one gets a 413
      without being read into memory.
    * **max_recorded** - how many requests :attr:`requests` keeps, the most recent (default 1,000).

    The server logs through the ``ofox_jupyter.emulator`` logger only, which prints nothing unless
    logging is configured; uvicorn's and asyncio's records from its thread are routed there too.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        delay: float = 0.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_recorded: int = RECORD_LIMIT,
        rpm: int | None = None,
        latency: float = 0.0,
    ) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        # EmulatorState checks rpm (whole number >= 1 or None) and latency (finite, >= 0).
        self._host = host
        self._port = port
        self._state = EmulatorState(
            api_key=api_key,
            delay=delay,
            max_body_bytes=max_body_bytes,
            record_limit=max_recorded,
            rpm=rpm,
            latency=latency,
        )
        self._lock = threading.Lock()
        self._server: ThreadServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        status = "running" if self.running else "stopped"
        return f"<Emulator {self.base_url} {status}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Start serving and block until the socket listens; returns ``self``."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            from ._app import create_app
            from ._thread import ThreadServer, quiet_config

            sock = _bind(self._host, self._port)
            self._port = sock.getsockname()[1]
            server = ThreadServer(quiet_config(create_app(self._state)))
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"ofox-emulator-{self._port}",
                daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + _START_TIMEOUT
            while not server.ready.wait(0.002):
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    thread.join(_STOP_TIMEOUT)
                    sock.close()
                    raise RuntimeError(f"the OfoxAI emulator failed to start on {self.base_url}")
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Shut down (finishing open responses) and join the server thread; idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():  # a response that never ends: stop waiting for it
            server.force_exit = True
            thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def host(self) -> str:
        """The interface the emulator listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port (the real one once started, also when created with ``port=0``)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far (a snapshot), oldest first: at most the last
        ``max_recorded`` (1,000 by default); older ones are forgotten.

        A chat request is recorded only once its key is accepted, it is within ``rpm`` and its
        body fits ``max_body_bytes``; a 401, a 429 from ``rpm`` or a 413 leaves no trace.
        """
        return self._state.requests

    # ------------------------------------------------------------------ test helpers

    def inject(self, spec: str, times: int = 1) -> None:
        """Give the next ``times`` chat requests the fault ``spec`` (``ValueError`` if invalid).

        Header and marker faults take precedence; an injected fault is used up only by a chat
        request that gets as far as the fault step (valid, known model, fits the context).
        """
        self._state.faults.inject(spec, times)

    def clear(self) -> None:
        """Forget recorded requests, injected faults, fault counters and the rate window."""
        self._state.clear()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, whichever ``host`` resolves to)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


_shared: Emulator | None = None
_shared_lock = threading.Lock()
_atexit_registered = False


def shared_delay() -> float:
    """Seconds between chunks for the shared emulator, from ``OFOX_EMULATOR_DELAY`` (default 0).

    Raises ``ValueError`` naming the variable when it is not a finite number ≥ 0: a typo should
    be reported, not silently turned into "no delay".
    """
    return _seconds_from_env(DELAY_ENV)


def shared_latency() -> float:
    """Seconds before each chat answer of the shared emulator, from ``OFOX_EMULATOR_LATENCY``
    (default 0); ``ValueError`` naming the variable when it is not a finite number ≥ 0."""
    return _seconds_from_env(LATENCY_ENV)


def shared_rpm() -> int | None:
    """Chat requests per key per minute the shared emulator enforces, from ``OFOX_EMULATOR_RPM``
    (unset or empty: none); ``ValueError`` naming the variable when it is not a whole number ≥ 1."""
    raw = os.environ.get(RPM_ENV, "").strip()
    if not raw:
        return None
    try:
        rpm = int(raw)
    except ValueError:
        rpm = 0
    if rpm < 1:
        raise ValueError(
            f"{RPM_ENV} must be a whole number of requests per minute >= 1, not {raw!r}"
        )
    return rpm


def _seconds_from_env(name: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {raw!r}")
    return seconds


def shared_emulator() -> Emulator:
    """The process-wide emulator (no key), started on first use; stopped at exit.

    Its delay between streamed chunks, rate limit and latency are read from
    ``OFOX_EMULATOR_DELAY``, ``OFOX_EMULATOR_RPM`` and ``OFOX_EMULATOR_LATENCY`` when it starts.
    """
    global _shared, _atexit_registered
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = Emulator(
                delay=shared_delay(), rpm=shared_rpm(), latency=shared_latency()
            ).start()
            if not _atexit_registered:
                atexit.register(_stop_shared)
                _atexit_registered = True
        return _shared


def _stop_shared() -> None:
    with _shared_lock:
        emulator = _shared
    if emulator is not None:
        emulator.stop()
