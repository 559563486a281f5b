"""Command line: ``python -m ofox_jupyter.emulator`` (also the ``ofox-emulator`` script).

Starts an emulator, prints ``OfoxAI emulator listening on http://HOST:PORT/v1`` and serves until
Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from ._server import Emulator

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
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.delay < 0:
        _parser().error("--delay must be >= 0")
    emulator = Emulator(host=args.host, port=args.port, api_key=args.api_key, delay=args.delay)
    try:
        emulator.start()
    except (OSError, RuntimeError) as exc:
        print(f"ofox-emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
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
