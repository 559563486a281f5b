"""An offline emulator of the OfoxAI chat API: the offline default of ofox-jupyter and its test bed.

A real HTTP server on loopback (starlette served by uvicorn in a daemon thread) that speaks the
OfoxAI/OpenAI wire protocol: ``GET /v1/models``, ``GET /v1/models/{id}`` and
``POST /v1/chat/completions`` streamed (SSE) or not, with a deterministic "model", OfoxAI error
bodies, ``x-ratelimit-*`` headers (a rate limit enforced per key on request: ``rpm``), a model
latency for benchmarks (``latency``) and per-request fault injection.

Usage::

    from ofox_jupyter.emulator import Emulator

    with Emulator(api_key="sk-test") as emu:
        print(emu.base_url)            # http://127.0.0.1:<port>/v1
        emu.inject("500*1#retry")      # the next chat request fails once with a 500

or from a shell: ``python -m ofox_jupyter.emulator --port 8765``.

Importing this package is cheap: the server, starlette, uvicorn and Pillow are imported on first
use (PEP 562 ``__getattr__``) or when an emulator starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._catalog import catalog
    from ._faults import FaultSpec, parse_fault
    from ._server import Emulator, shared_emulator
    from ._state import EmulatorState, RecordedRequest

__all__ = [
    "Emulator",
    "EmulatorState",
    "FaultSpec",
    "RecordedRequest",
    "catalog",
    "create_app",
    "parse_fault",
    "shared_emulator",
]

_WHERE = {
    "Emulator": "._server",
    "EmulatorState": "._state",
    "FaultSpec": "._faults",
    "RecordedRequest": "._state",
    "catalog": "._catalog",
    "create_app": "._app",
    "parse_fault": "._faults",
    "shared_emulator": "._server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
