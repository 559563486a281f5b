"""Reading and parsing a request body within limits: size, nesting depth, number of values.

The emulator serves anyone on loopback from inside the user's kernel, so a body is never trusted:

* :func:`read_body` refuses a declared ``Content-Length`` over the limit before reading a byte, and
  otherwise reads the body as a stream, giving up as soon as it passes the limit (chunked bodies
  have no length to check up front) → 413.  What was read is dropped; uvicorn discards the rest of
  the body as it arrives, so the connection stays usable and nothing accumulates.
* :func:`parse_json` turns the bytes into JSON → 400 when they are not JSON (``NaN`` and
  ``Infinity`` are not JSON either), nest deeper than :data:`MAX_DEPTH` arrays/objects, hold more
  than :data:`MAX_NODES` values, or contain a lone surrogate escape (``"\\ud800"``, which no UTF-8
  response could echo back).  Big bodies are parsed in a worker thread so that the event loop
  keeps serving other clients meanwhile.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from ._errors import invalid_request, request_too_large

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["MAX_DEPTH", "MAX_NODES", "parse_json", "read_body"]

#: Deepest nesting of arrays/objects accepted in a request body.
MAX_DEPTH = 64
#: Most JSON values (containers and scalars, keys not counted) accepted in a request body.
MAX_NODES = 200_000
_THREAD_ABOVE = 256 * 1024  # bytes; smaller bodies parse in well under a millisecond
_SURROGATE = re.compile("[\ud800-\udfff]")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or a 413 ``ApiError`` as soon as it is known to exceed ``limit`` bytes."""
    declared = (request.headers.get("content-length") or "").strip()
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise request_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise request_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep() -> Exception:
    return invalid_request(
        f"The request body is nested too deeply (more than {MAX_DEPTH} levels of arrays/objects)"
    )


def _check_text(text: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise invalid_request(
            "The request body contains a lone surrogate escape (\\ud800-\\udfff), "
            "which is not valid Unicode"
        )


def _check(value: Any) -> None:
    """Depth, size and Unicode checks of a parsed body, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 1
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise _too_deep()
        nodes += len(item)
        if nodes > MAX_NODES:
            raise invalid_request(
                f"The request body has too many values (more than {MAX_NODES:,} in all)"
            )
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)


def _parse(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, an integer with > 4300 digits
        raise invalid_request("The request body is not valid JSON") from None
    _check(value)
    return value


async def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``; a 400 ``ApiError`` when it is not JSON or breaks a limit."""
    if len(raw) > _THREAD_ABOVE:
        return await run_in_threadpool(_parse, raw)
    return _parse(raw)
