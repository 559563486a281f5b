"""Command line: ``python -m ofox_jupyter.emulator`` (also the ``ofox-emulator`` script).

Starts an emulator, prints ``OfoxAI emulator listening on http://HOST:PORT/v1`` and serves until
Ctrl-C (or SIGTERM).  The emulator's warnings and errors (``ofox_jupyter.emulator`` logger) go to
stderr, prefixed ``ofox-emulator:``.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
from types import FrameType

from ._server import Emulator
from ._state import DEFAULT_MAX_BODY_BYTES

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ofox_jupyter.emulator",
        description="Serve an offline emulator of the OfoxAI chat API on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port, 0 = free (default 8765)")
    parser.add_argument("--api-key", default=None, help="require this Bearer key for chat")
    parser.add_argument(
        "--delay", type=float, default=0.02, help="seconds between streamed chunks (default 0.02)"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest request body accepted, larger gets 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )
    parser.add_argument(
        "--rpm",
        type=int,
        default=None,
        metavar="N",
        help="enforce N chat requests per minute per API key, then 429 (default: announce 200)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to wait before each chat answer, like time to first token (default 0)",
    )
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.delay < 0:
        _parser().error("--delay must be >= 0")
    if args.max_body_bytes < 1:
        _parser().error("--max-body-bytes must be >= 1")
    if args.rpm is not None and args.rpm < 1:
        _parser().error("--rpm must be >= 1")
    if not (math.isfinite(args.latency) and args.latency >= 0):
        _parser().error("--latency must be a number of seconds >= 0")
    emulator = Emulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        delay=args.delay,
        max_body_bytes=args.max_body_bytes,
        rpm=args.rpm,
        latency=args.latency,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("ofox-emulator: %(levelname)s %(message)s"))
    log = logging.getLogger("ofox_jupyter.emulator")
    log.addHandler(handler)
    try:
        return _serve(emulator, args.host, args.port)
    finally:
        log.removeHandler(handler)


def _serve(emulator: Emulator, host: str, port: int) -> int:
    try:
        emulator.start()
    except (OSError, RuntimeError) as exc:
        print(f"ofox-emulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _terminate)
    print(f"OfoxAI emulator listening on {emulator.base_url}", flush=True)
    try:
        while emulator.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
