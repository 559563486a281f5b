"""A batch before anything is sent: options checked, templates filled, images encoded, every
request looked up in the cache, the catalog's prices read, the cost estimated and, above
``confirm_cost``, confirmed (:class:`PreparedBatch`). Runs in the caller's thread, where
``input()`` can ask and a bad option is one line at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._batch_items import FIELD_BUDGET, check_template, fill, has_fields, is_image, items_of
from ._batch_results import BatchPlan, BatchResult, ItemResult, from_record
from ._budget import DEFAULT_REPLY_TOKENS
from ._config import DEFAULT_MODEL, resolve_settings, scrub
from ._conversation import estimate_tokens
from ._exceptions import OfoxError
from ._messages import Message, system, user
from ._ratelimit import RateLimiter
from ._request import build_chat_body

if TYPE_CHECKING:
    from ._batch_cache import BatchCache
    from ._catalog import ModelInfo

__all__ = ["AUTO_CONCURRENCY", "DEFAULT_CONFIRM_COST", "PreparedBatch"]

#: How a value cut to its budget ends (``_context.bounded``).
_CUT = "… (truncated, "
#: A batch that could cost more than this (USD) asks before it sends (``confirm_cost``).
DEFAULT_CONFIRM_COST = 1.0
#: Requests under way at once with ``concurrency="auto"`` (the pace is the limiter's): httpx's
#: default pool, and enough for 1,200 requests a minute of replies that take 5 s.
AUTO_CONCURRENCY = 100


@dataclass
class _Job:
    position: int
    messages: list[Message]
    key: str
    prompt_tokens: int
    attempts: int = 0
    rate_limited: int = 0
    sent_at: float = 0.0


class PreparedBatch:
    """One batch: checked at construction, then :meth:`prepare` and :meth:`confirm`; sent by
    :func:`._batch_send.send`."""

    def __init__(
        self,
        prompt: str,
        items: Any,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        images: Any = None,
        detail: str | None = None,
        json_mode: bool = False,
        schema: Mapping[str, Any] | None = None,
        concurrency: int | str = "auto",
        rpm: float | None = None,
        cache: bool | BatchCache = True,
        progress: bool = True,
        confirm_cost: float | None = None,
        client_settings: Mapping[str, Any] | None = None,
        model_info: Callable[[str], ModelInfo | None] | None = None,
        params: Mapping[str, Any] | None = None,
        transport: Any = None,
    ) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise OfoxError("the prompt is empty", hint="e.g. batch('Label: {item}', items)")
        self.client_settings = dict(client_settings or {})
        # Every client setting checked now (one line), not when the first request goes out;
        # and the key is live from here on, so scrub() takes it out of prompts and errors.
        try:
            self.settings = resolve_settings(
                self.client_settings.get("api_key"),
                self.client_settings.get("base_url"),
                timeout=self.client_settings.get("timeout"),
                max_retries=_whole(self.client_settings.get("max_retries", 2), "max_retries"),
            )
        except (TypeError, ValueError) as err:
            raise OfoxError(f"client settings: {err}"[:300]) from None
        check_template(prompt)
        self.prompt = prompt
        self.items = items_of(items)
        self.model = model or DEFAULT_MODEL
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise OfoxError(f"system must be text, not a {type(system_prompt).__name__}")
        self.system_prompt = scrub(system_prompt) if system_prompt else None
        self.detail = detail
        self.images = _per_item_images(images, len(self.items.values))
        if concurrency == "auto":
            self.concurrency = AUTO_CONCURRENCY
        elif isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency > 0:
            self.concurrency = concurrency
        else:
            raise OfoxError(
                f'concurrency must be "auto" or a whole number ≥ 1, not {concurrency!r}'
            )
        if rpm is not None and (not isinstance(rpm, (int, float)) or isinstance(rpm, bool)):
            raise OfoxError(f"rpm must be a number of requests a minute, not {rpm!r}"[:200])
        try:
            self.limiter = RateLimiter(rpm=rpm, max_in_flight=self.concurrency)
        except ValueError as err:
            raise OfoxError(str(err)) from None
        self.params = dict(params or {})
        response_format = _response_format(json_mode, schema)
        if response_format is not None:
            self.params["response_format"] = response_format
        self.expect_json = "response_format" in self.params
        try:  # every request's options checked once, on a body with a stand-in prompt
            build_chat_body(model=self.model, messages=[user("-")], stream=False, **self.params)
        except (TypeError, ValueError) as err:
            if isinstance(err, OfoxError):
                raise
            raise OfoxError(f"request options: {err}"[:300]) from None
        from ._batch_cache import BatchCache

        if not isinstance(cache, (bool, BatchCache)):
            raise OfoxError(f"cache must be True, False or a BatchCache, not {cache!r}"[:200])
        self.cache_option = cache
        self.progress = progress
        if confirm_cost is not None and not (
            isinstance(confirm_cost, (int, float))
            and not isinstance(confirm_cost, bool)
            and math.isfinite(confirm_cost)
            and confirm_cost >= 0
        ):
            raise OfoxError(f"confirm_cost must be USD ≥ 0, not {confirm_cost!r}"[:200])
        self.confirm_cost = DEFAULT_CONFIRM_COST if confirm_cost is None else confirm_cost
        #: How the batch's client reaches the API (the magic's record/replay tape), if not httpx's.
        self.transport = transport
        self._model_info = model_info
        self.info: ModelInfo | None = None
        self.jobs: list[_Job] = []
        #: Items whose request is the same as an earlier item's: answered by its answer.
        self.same_as: dict[int, list[int]] = {}
        self.cut = 0  # items with a field cut to FIELD_BUDGET
        self.cache: BatchCache | None = None
        self._opened: BatchCache | None = None  # the cache this batch opened (and closes)
        self.result = BatchResult(
            [ItemResult(i) for i in range(len(self.items.values))],
            model=self.model,
            kind=self.items.kind,
            index=self.items.index,
            name=self.items.name,
        )
        self.plan: BatchPlan | None = None
        self.stop = threading.Event()  # set from another thread: stop sending, keep the rest
        self.show_summary = True  # a line after the progress bar (the magic shows a table)
        self.rich: bool | None = None  # the widget bar or text (None: the widget in a kernel)

    # -- before anything is sent

    def prepare(self) -> BatchPlan:
        """Fill every prompt, encode every image, look every request up in the cache, price
        what is left. A template that fails for every item is one error; for some, those
        items fail and the rest go on."""
        # The settings (held by self: their key is live, so scrub() takes it out of every
        # prompt, as %%ofox --vars does) say where the requests go, for the cache keys.
        endpoint = "offline" if self.settings.offline else self.settings.shown_url
        self.cache = self._open_cache()
        self.result.caching = self.cache is not None
        failures: list[tuple[int, str]] = []
        for position, item in enumerate(self.items.values):
            try:
                job = self._job(position, item, endpoint)
            except OfoxError as err:
                failures.append((position, err.one_line()))
                continue
            self.jobs.append(job)
        if failures and not self.jobs:
            raise OfoxError(failures[0][1])
        for position, message in failures:
            self.result[position] = ItemResult(position, "failed", error=message)
        if self.cut:
            self.result.notices.append(
                f"{self.cut:,} item{'s' * (self.cut != 1)} had a field over "
                f"{FIELD_BUDGET:,} characters: cut there (its prompt says how much more)"
            )
        if self.items.index is not None and not self.items.index.is_unique:
            self.result.notices.append(
                "the input's index has repeated labels: join the results by position "
                "(pd.concat([frame, result.to_frame()], axis=1)), not by label"
            )
        self._merge_duplicates()
        self._answer_from_cache()
        self.info = self._lookup_model() if self.jobs else None
        self.plan = self._estimate()
        return self.plan

    def close(self) -> None:
        """Close the cache this batch opened (one passed in stays open)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    def _merge_duplicates(self) -> None:
        """One request for items whose requests are the same (a repeated item, or a template
        without a field over text items): the others get its answer, nothing sent for them."""
        first: dict[str, _Job] = {}
        kept = []
        for job in self.jobs:
            earlier = first.setdefault(job.key, job)
            if earlier is job:
                kept.append(job)
            else:
                self.same_as.setdefault(earlier.position, []).append(job.position)
        if len(kept) == 1 < len(self.jobs) and not has_fields(self.prompt):
            self.result.notices.append(
                "the prompt has no {item}: every item got the same request, sent once"
            )
        self.jobs = kept

    def copy_to_duplicates(self, position: int) -> None:
        """Give the items that asked what ``position`` asked its answer (nothing was sent)."""
        answered = self.result[position]
        for other in self.same_as.get(position, ()):
            self.result[other] = replace(
                answered, position=other, cost=0.0 if answered.ok else None, same_as=position
            )

    def _open_cache(self) -> BatchCache | None:
        if self.cache_option is False:
            return None
        from ._batch_cache import BatchCache

        if not isinstance(self.cache_option, bool):
            return self.cache_option
        try:
            self._opened = BatchCache()
            return self._opened
        except Exception as err:  # noqa: BLE001 - sqlite3.Error, OSError: go on without it
            path = _cache_path()
            self.result.notices.append(
                f"no batch cache: {path} could not be used ({type(err).__name__}: {err}); "
                "%ofox batch clear starts it afresh"[:300]
            )
            return None

    def _job(self, position: int, item: Any, endpoint: str) -> _Job:
        text = scrub(fill(self.prompt, item, position))
        if _CUT in text and _CUT not in self.prompt:
            self.cut += 1
        if self.expect_json and "json" not in text.lower():
            text += "\n\n(Reply in JSON.)"  # OpenAI-family models refuse JSON mode otherwise
        parts = []
        if self.images is not None or is_image(item):
            from ._images import prepare_image

            for image in self.images[position] if self.images is not None else [item]:
                parts.append(prepare_image(image, self.detail, name=f"item {position}").part)
        messages = [system(self.system_prompt)] if self.system_prompt else []
        messages.append(user(text, images=parts))
        body = build_chat_body(model=self.model, messages=messages, stream=False, **self.params)
        from ._batch_cache import cache_key

        tokens = sum(estimate_tokens(m) for m in messages)
        return _Job(position, messages, cache_key(endpoint, body), tokens)

    def _answer_from_cache(self) -> None:
        if self.cache is None:
            return
        try:
            found = self.cache.get_many(job.key for job in self.jobs)
        except Exception as err:  # noqa: BLE001 - a damaged cache: send everything
            self.result.notices.append(f"the batch cache could not be read ({err})"[:200])
            return
        waiting = []
        for job in self.jobs:
            record = found.get(job.key)
            item = from_record(job.position, record, self.expect_json) if record else None
            if item is None or not item.ok:  # a row that does not read back: asked again
                waiting.append(job)
            else:
                self.result[job.position] = item
                self.copy_to_duplicates(job.position)
        self.jobs = waiting

    def _lookup_model(self) -> ModelInfo | None:
        if self._model_info is not None:
            return self._model_info(self.model)
        from ._client import Client

        try:
            with Client(**self.client_settings) as client:
                return next((m for m in client.models() if m.id == self.model), None)
        except OfoxError as err:
            self.result.notices.append(f"no prices: the catalog could not be read ({err})"[:200])
            return None

    def _estimate(self) -> BatchPlan:
        prompt_tokens = sum(job.prompt_tokens for job in self.jobs)
        reply_tokens = self.params.get("max_tokens") or DEFAULT_REPLY_TOKENS
        info = self.info
        priced = info is not None and info.prompt_price is not None
        priced = priced and info is not None and info.completion_price is not None
        prompt_cost = max_cost = None
        if not self.jobs:
            prompt_cost = max_cost = 0.0  # nothing to send costs nothing, priced or not
        elif priced and info is not None:
            prompt_cost = prompt_tokens * (info.prompt_price or 0.0)
            max_cost = prompt_cost + len(self.jobs) * reply_tokens * (info.completion_price or 0.0)
        return BatchPlan(
            items=len(self.result),
            requests=len(self.jobs),
            cached=self.result.from_cache,
            model=self.model,
            prompt_tokens=prompt_tokens,
            reply_tokens=int(reply_tokens),
            prompt_cost=prompt_cost,
            max_cost=max_cost,
        )

    def confirm(self, ask: Callable[[str], str] | None) -> None:
        """Above ``confirm_cost`` (0: never ask), ask ``ask`` first (``None``: no one to ask,
        so refuse with a hint)."""
        plan = self.plan
        if plan is None or not plan.requests or self.confirm_cost <= 0:
            return
        if plan.max_cost is not None and plan.max_cost <= self.confirm_cost:
            return
        from ._budget import format_usd

        worry = (
            f"this batch could cost up to {format_usd(plan.max_cost)}"
            if plan.max_cost is not None
            else f"the cost of this batch is unknown ({self.model} has no price in the catalog)"
        )
        hint = f"raise confirm_cost (now {format_usd(self.confirm_cost)}), or dry_run=True first"
        if ask is None:
            raise OfoxError(f"{worry}: not sent", hint=hint)
        try:
            answer = ask(f"{plan.summary()}. Send {plan.requests:,} requests? [y/N] ")
        except (EOFError, OSError, RuntimeError) as err:  # no stdin (nbclient, a pipe)
            raise OfoxError(f"{worry}, and there is no one to ask ({err})", hint=hint) from None
        if answer.strip().lower() not in ("y", "yes"):
            raise OfoxError("batch not sent", hint=hint)


def _cache_path() -> str:
    from ._batch_cache import default_cache_path

    try:
        return str(default_cache_path())
    except Exception:  # noqa: BLE001 - only for a message
        return "the batch cache"


def _whole(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return value


def _response_format(json_mode: bool, schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if json_mode and schema is not None:
        raise OfoxError("use json=True or schema=…, not both")
    if json_mode:
        return {"type": "json_object"}
    if schema is None:
        return None
    if not isinstance(schema, Mapping):
        raise OfoxError(f"schema must be a JSON-schema dict, not a {type(schema).__name__}")
    return {"type": "json_schema", "json_schema": {"name": "item", "schema": dict(schema)}}


def _per_item_images(images: Any, count: int) -> list[list[Any]] | None:
    """``images``: ``None`` (items that are images are sent as images), or a list parallel to
    the items, each entry an image or a list of images."""
    if images is None:
        return None
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise OfoxError(
            "images must be a list with one image (or list of images) per item",
            hint="or leave it out: items that are images are sent as images",
        )
    if len(images) != count:
        raise OfoxError(f"images has {len(images):,} entries for {count:,} items")
    return [list(x) if isinstance(x, (list, tuple)) else [x] for x in images]
