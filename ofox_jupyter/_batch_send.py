"""Sending a prepared batch: requests at the pace of :class:`._ratelimit.RateLimiter`, which
reads every response's ``x-ratelimit-*`` headers (an httpx response hook puts each one in the
sending task's context). A 429 re-queues the item (the limiter waits and slows down); a 5xx or a
failed connection is retried as the client would (``max_retries``, backoff); anything else is
that item's one-line error while the rest go on. Every answered item is written to the cache at
once, so an interrupted batch resumes from where it stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._batch_plan import PreparedBatch, _Job
from ._batch_results import BatchResult, ItemResult, from_record, record_of
from ._config import scrub
from ._exceptions import APIError, APIStatusError, OfoxError
from ._request import RetryPolicy

if TYPE_CHECKING:
    import httpx

    from ._client import AsyncClient

__all__ = ["MAX_RATE_LIMITED", "send"]

#: 429s one item may get before it is recorded as failed (each waits what the gateway says).
MAX_RATE_LIMITED = 8
#: How often the dispatcher looks up from waiting (a stop request is seen within this).
TICK = 0.1
#: The answer (status and headers) to the request of the task that reads it.
_ANSWER: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ofox_batch_answer", default=None
)


async def send(batch: PreparedBatch, *, keep_on_cancel: bool) -> BatchResult:
    """Send what ``batch`` did not find in the cache; its result, filled in. Cancelled: the
    answered items are kept (and cached); ``keep_on_cancel`` returns them rather than raise."""
    return await _Sending(batch).send(keep_on_cancel=keep_on_cancel)


class _Sending:
    def __init__(self, batch: PreparedBatch) -> None:
        self.batch = batch
        self.retry = RetryPolicy()

    async def send(self, *, keep_on_cancel: bool) -> BatchResult:
        from ._batch_progress import Progress
        from ._client import AsyncClient

        started = time.monotonic()
        progress: Progress | None = None
        client: AsyncClient | None = None
        try:
            client = AsyncClient(
                **self.batch.client_settings,
                transport=self.batch.transport,
                event_hooks={"response": [_remember]},
                max_connections=max(self.batch.concurrency, 1),
            )
            # Retries are the batch's: a 429'd item is re-queued (the limiter waits and slows
            # down), others wait as the client would; the client itself must not also wait.
            self.retry = replace(client._core.retry, retry_rate_limited=False)
            client._core.retry = replace(self.retry, max_retries=0)
            if self.batch.jobs:
                progress = Progress(
                    self.batch.result,
                    enabled=self.batch.progress,
                    summary=self.batch.show_summary,
                    rich=self.batch.rich,
                )
            await self._dispatch(client, progress)
            reason = self.batch.result.stopped_because
            if reason:
                for position, item in enumerate(self.batch.result):
                    if item.status == "not run":
                        self.batch.result[position] = ItemResult(position, "failed", error=reason)
        except asyncio.CancelledError:
            self.batch.result.interrupted = True
            if not keep_on_cancel:
                raise
        finally:
            self.batch.result.seconds = time.monotonic() - started
            self.batch.result.rate_limited = self.batch.limiter.rate_limited
            if client is not None:
                await client.aclose()
            if progress is not None:
                progress.close()
        return self.batch.result

    async def _dispatch(self, client: AsyncClient, progress: Any) -> None:
        pending = deque(self.batch.jobs)
        retries: list[tuple[float, int, _Job]] = []  # (ready at, position, job), a heap
        running: dict[asyncio.Task[tuple[Any, dict[str, Any]]], _Job] = {}
        try:
            while pending or retries or running:
                if self.batch.result.stopped_because:
                    break  # the gateway refused the key: every other request would fail too
                if self.batch.stop.is_set():
                    self.batch.result.interrupted = True
                    break
                now = time.monotonic()
                if retries and retries[0][0] <= now:
                    pending.appendleft(heapq.heappop(retries)[2])
                wait = self.batch.limiter.wait(now) if pending else math.inf
                if pending and wait <= 0:
                    job = pending.popleft()
                    job.sent_at = now
                    self.batch.limiter.sent(now)
                    self.batch.result.sent += 1
                    running[asyncio.ensure_future(self._ask(client, job))] = job
                    continue
                if retries:
                    wait = min(wait, retries[0][0] - now)
                timeout = min(max(wait, 0.0), TICK)
                if running:
                    done, _ = await asyncio.wait(
                        running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    done = set()
                    await asyncio.sleep(timeout)
                for task in done:
                    job = running.pop(task)
                    outcome, answer = task.result()
                    again = self._settle(job, outcome, answer)
                    if again is not None:
                        heapq.heappush(retries, (again, job.position, job))
                        continue
                    self.batch.copy_to_duplicates(job.position)
                    if progress is not None:
                        for position in (job.position, *self.batch.same_as.get(job.position, ())):
                            progress.update(self.batch.result[position])
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _ask(self, client: AsyncClient, job: _Job) -> tuple[Any, dict[str, Any]]:
        answer: dict[str, Any] = {}
        _ANSWER.set(answer)  # this task's own context: the response hook fills it
        try:
            return await client.chat(
                job.messages, model=self.batch.model, **self.batch.params
            ), answer
        except OfoxError as err:
            return err, answer
        except Exception as err:  # noqa: BLE001 - one item's surprise must not end the batch
            message = f"unexpected {type(err).__name__}: {err}"[:300]
            return OfoxError(scrub(message), hint="please report it"), answer

    def _settle(self, job: _Job, outcome: Any, answer: dict[str, Any]) -> float | None:
        """Record what came back; the time to send ``job`` again, if it is to be retried."""
        now = time.monotonic()
        status = answer.get("status")
        headers = answer.get("headers") or {}
        self.batch.limiter.answered(now, job.sent_at, status, headers)
        if not isinstance(outcome, OfoxError):
            self._answered(job, outcome)
            return None
        if isinstance(outcome, APIStatusError):
            self.batch.result.unbilled += 1  # refused: no completion to pay for
            if outcome.status in (401, 403):
                self.batch.result.stopped_because = outcome.one_line()
        if isinstance(outcome, APIStatusError) and outcome.status == 429:
            job.rate_limited += 1
            if job.rate_limited <= MAX_RATE_LIMITED:
                return now  # the limiter decides when
        elif _retryable(outcome):
            delay = self.retry.delay(job.attempts, headers)
            job.attempts += 1
            if delay is not None:
                return now + delay
        self.batch.result[job.position] = ItemResult(
            job.position, "failed", error=outcome.one_line()
        )
        return None

    def _answered(self, job: _Job, reply: Any) -> None:
        info, usage = self.batch.info, reply.usage
        record = record_of(reply, info.cost(usage) if info and usage is not None else None)
        item = from_record(job.position, record, self.batch.expect_json, cached=False)
        self.batch.result[job.position] = item
        if self.batch.cache is not None and item.ok:
            try:
                self.batch.cache.put(job.key, record)
            except Exception as err:  # noqa: BLE001 - disk full, locked: the batch goes on
                # Once is enough: a locked file would hold up every answer by its timeout.
                self.batch.cache = None
                self.batch.result.caching = False
                self.batch.result.notices.append(
                    f"not cached from item {job.position} on ({type(err).__name__}: {err})"[:200]
                )


async def _remember(response: httpx.Response) -> None:
    answer = _ANSWER.get()
    if answer is not None:
        answer["status"] = response.status_code
        answer["headers"] = response.headers


def _retryable(error: OfoxError) -> bool:
    """As the client judged it: a 5xx or a failed connection, yes; a read error after the
    request went out (the model may have answered: it could be paid twice), a 4xx, no."""
    return isinstance(error, APIError) and error.retryable is True
