"""One prompt over many items: :func:`batch` (and :func:`abatch`), what ``%%ofox --map`` runs.

A batch is prepared in the caller's thread (templates filled, images encoded, every request
looked up in the cache, the catalog's prices read, the cost estimated and, above
``confirm_cost``, confirmed), then sent from an event loop: :func:`abatch` uses the caller's,
:func:`batch` runs one in a worker thread so that a notebook (whose own loop is busy running
the cell) and a script both work, and Ctrl-C (a kernel interrupt) reaches the caller's thread,
which stops the worker within a tenth of a second and returns what was answered.

Requests go out at the pace of :class:`._ratelimit.RateLimiter`, which reads every response's
``x-ratelimit-*`` headers (an httpx response hook puts each one in the sending task's context).
A 429 re-queues the item (the limiter waits and slows down); a 5xx or a network failure is
retried as the client would (``max_retries``, backoff); anything else is that item's one-line
error while the rest go on. Every answered item is written to the cache at once, so an
interrupted batch resumes from where it stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

from ._batch_plan import PreparedBatch
from ._batch_results import BatchPlan, BatchResult
from ._batch_send import TICK, send
from ._exceptions import OfoxError

__all__ = ["abatch", "batch"]


def _run_in_thread(job: PreparedBatch) -> BatchResult:
    """Send from a worker thread's own event loop; Ctrl-C here stops it and keeps the rest."""
    outcome: list[BaseException | BatchResult] = []
    finished = threading.Event()

    def work() -> None:
        try:
            outcome.append(asyncio.run(send(job, keep_on_cancel=True)))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(err)
        finally:
            finished.set()

    # The cell's context goes with it: ipykernel finds the cell its outputs belong to there.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(work,), name="ofox-batch", daemon=True)
    worker.start()
    # An Event, not Thread.join: after a join interrupted by Ctrl-C, the next join returned at
    # once (seen on Python 3.11), and the batch went on after its result was returned.
    try:
        while not finished.wait(TICK):
            pass
    except KeyboardInterrupt:
        job.stop.set()
        while not finished.wait(TICK):
            pass
    result = outcome[0] if outcome else job.result
    if isinstance(result, BaseException):
        raise result
    return result


_DOC = """

    ``prompt`` is a template: ``{item}`` is the item, ``{item.field}`` / ``{item[key]}`` a field
    of a dict, a DataFrame row or an object. Items may be strings, dicts, rows (a DataFrame or a
    Series as ``items``), PIL images, matplotlib figures, ``pathlib.Path`` image files; an image
    item is attached to its prompt (``images=``: one image or list per item, to attach others).

    ``json=True`` (JSON mode) or ``schema={...}`` parses each reply into ``.value``;
    ``concurrency``: requests under way at most (``"auto"``: 100, paced by the rate limit);
    ``rpm``: our share of the requests-per-minute limit (default: what the gateway announces);
    ``cache=False``: send everything, keep nothing; ``dry_run=True``: return the
    :class:`BatchPlan` (requests, estimated cost) and send nothing; ``confirm_cost``: above this
    estimate (USD, default 1.00; 0 never asks) ask first; ``progress=False``: no progress bar.
    Any other keyword (``temperature``, ``max_tokens``, ``seed``, …) goes into every request.
    """


#: What a batch passes on to every request (the rest of build_chat_body's are its own).
_REQUEST_OPTIONS = frozenset(
    {
        "temperature",
        "max_tokens",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "stop",
        "seed",
        "tool_choice",
        "response_format",
        "provider",
        "n",
        "user",
        "extra_body",
    }
)
_BATCH_OPTIONS = frozenset(
    {"model", "system", "system_prompt", "images", "detail", "concurrency", "rpm", "cache"}
    | {"json", "schema", "progress", "confirm_cost", "dry_run", "ask"}
    | {"api_key", "base_url", "timeout", "max_retries"}
)


def _batch(
    prompt: str, items: Any, options: dict[str, Any]
) -> tuple[PreparedBatch, bool, Callable[[str], str] | None]:
    unknown = sorted(set(options) - _BATCH_OPTIONS - _REQUEST_OPTIONS)
    if unknown:
        known = ", ".join(sorted(_BATCH_OPTIONS - {"ask", "system_prompt"}))
        raise OfoxError(
            f"batch() has no option {unknown[0]!r}"
            + (" (a batch sends its own messages, never streamed)" if unknown[0] in _OWN else ""),
            hint=f"its own: {known}; and any request field such as temperature or max_tokens",
        )
    dry_run = bool(options.pop("dry_run", False))
    ask = options.pop("ask", input)
    settings: dict[str, Any] = {
        k: options.pop(k) for k in ("api_key", "base_url", "timeout") if k in options
    }
    settings["max_retries"] = options.pop("max_retries", 2)
    named = ("model", "system_prompt", "images", "detail", "concurrency", "rpm", "cache")
    kwargs = {k: options.pop(k) for k in named if k in options}
    kwargs["json_mode"] = bool(options.pop("json", False))
    kwargs["schema"] = options.pop("schema", None)
    kwargs["progress"] = bool(options.pop("progress", True))
    kwargs["confirm_cost"] = options.pop("confirm_cost", None)
    if "system" in options:
        kwargs["system_prompt"] = options.pop("system")
    return (
        PreparedBatch(prompt, items, client_settings=settings, params=options, **kwargs),
        dry_run,
        ask,
    )


_OWN = frozenset({"messages", "stream", "stream_options", "tools", "include_usage"})


def batch(prompt: str, items: Any, **options: Any) -> BatchResult | BatchPlan:
    """Ask ``prompt`` once per item, at the gateway's rate limit; the results in input order
    (a :class:`BatchResult`), answered items cached on disk so a re-run sends only what is
    missing. Ctrl-C stops it and returns what was answered (``.interrupted``)."""
    job, dry_run, ask = _batch(prompt, items, dict(options))
    try:
        plan = job.prepare()
        if dry_run:
            return plan
        job.confirm(ask)
        return _run_in_thread(job)
    finally:
        job.close()


async def abatch(prompt: str, items: Any, **options: Any) -> BatchResult | BatchPlan:
    """:func:`batch` on the caller's event loop (cancelling it keeps the answered items in the
    cache)."""
    job, dry_run, ask = _batch(prompt, items, dict(options))
    try:
        plan = await asyncio.to_thread(job.prepare)
        if dry_run:
            return plan
        job.confirm(ask)
        return await send(job, keep_on_cancel=False)
    finally:
        job.close()


batch.__doc__ = (batch.__doc__ or "") + _DOC
abatch.__doc__ = (abatch.__doc__ or "") + _DOC
