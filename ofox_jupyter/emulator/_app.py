"""The starlette application: routes, auth, the chat pipeline, error bodies and common headers.

Routes: ``GET /v1/models`` and ``GET /v1/models/{id}`` (public), ``POST /v1/chat/completions``
(Bearer auth when the emulator has a key).  Every response, errors included, carries
``x-request-id`` and the ``x-ratelimit-*`` headers (``_ratelimit.py``: only chat requests count
against an enforced ``rpm``), and every error is an OfoxAI-shaped JSON body:
an exception nothing else expected is logged (``ofox_jupyter.emulator`` logger) and answered with
a JSON 500 by :class:`_CatchAll`.

The chat pipeline runs in this order: auth (401) → rate limit (429, only with ``rpm``) → body
size (413, ``_body.py``) → JSON, nesting and size of the JSON (400) → the request is recorded →
validation → unknown model (404) → not a chat model (400) → image to a text-only model (400) →
image decoding and markers → context length (400) → fault (header ``X-Ofox-Emulator-Fault``,
else ``[emulator-fault: …]``, else the injected queue) → ``provider.fallback`` when the primary is
retired or a 429/5xx fault hit it → ``latency`` → answer.  Nothing of a request that fails auth,
the rate limit or the size limit is kept (its body is not even read); the other routes record the
request without reading its body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _errors as errors
from ._body import parse_json, read_body
from ._catalog import (
    REASONING_MODELS,
    accepts_images,
    catalog,
    find_model,
    is_chat_model,
    is_retired,
)
from ._conversation import Conversation, analyse, has_images, parse_delay
from ._errors import ApiError
from ._faults import FaultSpec, parse_fault
from ._log import DELIBERATE_ABORT, logger
from ._model import complete
from ._state import EmulatorState, RecordedRequest
from ._stream import SSEResponse, StreamPlan, completion_body
from ._validate import validate_chat

__all__ = ["DELAY_HEADER", "FAULT_HEADER", "create_app"]

FAULT_HEADER = "x-ofox-emulator-fault"
DELAY_HEADER = "x-ofox-emulator-delay"


def _json_response(status: int, body: Any, headers: dict[str, str]) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status, headers, media_type="application/json")


def _status_fault(fault: FaultSpec, limit: int) -> ApiError:
    if fault.name == "401":
        return errors.invalid_api_key()
    if fault.name == "400":
        return errors.numeric_bad_request()
    if fault.name == "429":
        return errors.rate_limited(fault.seconds, limit)
    if fault.name == "500":
        return errors.internal_error()
    if fault.name == "502":
        return errors.upstream_error()
    return errors.service_unavailable()


def _request_id(state: EmulatorState) -> dict[str, str]:
    return {"x-request-id": f"req_emu_{state.next_id():08d}"}


def _common_headers(state: EmulatorState, authorization: str | None) -> dict[str, str]:
    """``x-request-id`` and the ``x-ratelimit-*`` headers of a response other than a chat
    verdict: without ``rpm`` this request is counted, as every request always was; with one, the
    caller's window is only read, so that ``GET /models`` never uses up a chat budget."""
    headers = _request_id(state)
    headers.update(state.limiter.announce(authorization).headers())
    return headers


class _Handlers:
    """The endpoints, bound to one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _record(self, request: Request, body: Any) -> None:
        self.state.record(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                headers={name.lower(): value for name, value in request.headers.items()},
                body=body if isinstance(body, dict) else None,
            )
        )

    def _begin(self, request: Request) -> dict[str, str]:
        """Record a request whose body is not needed (not read); the common headers."""
        self._record(request, None)
        return _common_headers(self.state, request.headers.get("authorization"))

    async def list_models(self, request: Request) -> Response:
        headers = self._begin(request)
        return _json_response(200, {"object": "list", "data": catalog()}, headers)

    async def get_model(self, request: Request) -> Response:
        headers = self._begin(request)
        model_id = str(request.path_params["model_id"])
        model = find_model(model_id)
        if model is None:
            error = errors.model_not_found(model_id)
            return _json_response(error.status, error.body, headers)
        return _json_response(200, model, headers)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        headers = self._begin(request)
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            error = ApiError(
                405,
                {
                    "error": {
                        "code": "method_not_allowed",
                        "message": f"Method {request.method} is not allowed on {request.url.path}",
                        "type": "invalid_request_error",
                    }
                },
            )
        else:
            error = errors.not_found(f"Unknown path {request.url.path}")
        return _json_response(error.status, error.body, headers)

    async def chat(self, request: Request) -> Response:
        headers = _request_id(self.state)
        try:
            headers.update(self._admit(request))  # before anything of the request is read or kept
            raw = await read_body(request, self.state.max_body_bytes)
            try:
                parsed = await parse_json(raw)
            except ApiError:
                self._record(request, None)
                raise
            self._record(request, parsed)
            return await self._chat(request, parsed, headers)
        except ApiError as error:
            return _json_response(error.status, error.body, {**headers, **error.headers})
        except ClientDisconnect:  # gone while sending the body: nobody reads this answer
            gone = errors.invalid_request("The client disconnected before the body was complete")
            return _json_response(gone.status, gone.body, headers)

    def _admit(self, request: Request) -> dict[str, str]:
        """Auth (401), then the rate limit (429); the ``x-ratelimit-*`` headers of this request.

        The limit is checked after auth so that a wrong key never gets (or uses up) a window,
        and before the body is read so that a refused request costs nothing and waits for no
        ``latency``: a client hammering a full window gets its 429 at once.
        """
        sent = request.headers.get("authorization")
        limiter = self.state.limiter
        key = self.state.api_key
        if key is not None and not hmac.compare_digest(
            (sent or "").encode(), f"Bearer {key}".encode()
        ):
            error = errors.invalid_api_key()
            error.headers = {**limiter.announce(sent).headers(), **error.headers}
            raise error
        admission = limiter.admit_chat(sent)
        if not admission.admitted:
            error = errors.rate_limited(admission.reset, admission.limit)
            error.headers = {**admission.headers(), **error.headers}
            raise error
        return admission.headers()

    async def _chat(self, request: Request, parsed: Any, headers: dict[str, str]) -> Response:
        body = validate_chat(parsed)
        model_id: str = body["model"]
        model = find_model(model_id)
        if model is None:
            raise errors.model_not_found(model_id)
        if not is_chat_model(model):
            raise errors.invalid_request(f"Model {model_id} is not a chat model")
        images = has_images(body["messages"])
        if images and not accepts_images(model):
            raise errors.unsupported_input(model_id, "image")
        conv = await run_in_threadpool(analyse, body) if images else analyse(body)
        if conv.prompt_tokens > model["context_length"]:
            raise errors.context_length_exceeded(
                model_id, model["context_length"], conv.prompt_tokens
            )

        delay = self.state.delay
        if DELAY_HEADER in request.headers:
            delay = parse_delay(request.headers[DELAY_HEADER], "X-Ofox-Emulator-Delay")
        elif conv.markers.delay is not None:
            delay = conv.markers.delay
        fault = self._fault(request, conv)
        if fault is not None and fault.name == "slow":
            await asyncio.sleep(fault.seconds)

        served = self._serve(model, fault, conv, body)
        if self.state.latency > 0:
            # A real model's time to first token, for benchmarks of many requests: waited by a
            # request that will be answered (not by one refused above), before any header goes out.
            await asyncio.sleep(self.state.latency)
        completion = complete(conv, body, served, reasoning=served in REASONING_MODELS)
        completion_id = f"chatcmpl-emu{self.state.next_id():012d}"
        created = int(time.time())
        if body.get("stream") is True:
            options = body.get("stream_options") or {}
            plan = StreamPlan(
                completion=completion,
                completion_id=completion_id,
                created=created,
                include_usage=options.get("include_usage") is True,
                delay=delay,
                fault=fault if fault is not None and fault.is_stream_only else None,
            )
            return SSEResponse(plan, headers)
        choices = body.get("n") or 1
        return _json_response(
            200, completion_body(completion, completion_id, created, choices), headers
        )

    def _fault(self, request: Request, conv: Conversation) -> FaultSpec | None:
        """The fault for this request, if any, once its ``*TIMES`` are taken into account."""
        if FAULT_HEADER in request.headers:
            text: str | None = request.headers[FAULT_HEADER]
        elif conv.markers.fault is not None:
            text = conv.markers.fault
        else:
            text = self.state.faults.take_injected()
        if text is None:
            return None
        try:
            fault = parse_fault(text)
        except ValueError as exc:
            raise errors.invalid_request(str(exc)) from None
        return fault if self.state.faults.fires(fault) else None

    def _serve(
        self,
        model: dict[str, Any],
        fault: FaultSpec | None,
        conv: Conversation,
        body: dict[str, Any],
    ) -> str:
        """The id of the model that answers; raise the primary's error if none can."""
        failure: ApiError | None = None
        if fault is not None and fault.is_status:
            failure = _status_fault(fault, self.state.limiter.limit)
        elif is_retired(model):
            failure = errors.model_retired(model["id"])
        if failure is None:
            return str(model["id"])
        if failure.fallback_trigger:
            provider = body.get("provider") or {}
            images = has_images(conv.messages)
            for candidate_id in provider.get("fallback") or []:
                candidate = find_model(candidate_id)
                if (
                    candidate is not None
                    and is_chat_model(candidate)
                    and not is_retired(candidate)
                    and (accepts_images(candidate) or not images)
                    and conv.prompt_tokens <= candidate["context_length"]
                ):
                    return str(candidate["id"])
        raise failure


class _CatchAll:
    """ASGI middleware: an exception no handler expected is logged and becomes a JSON 500.

    Without it starlette would answer ``Internal Server Error`` in plain text and uvicorn would
    print the traceback.  When the response has already started (a stream), the connection is
    closed instead, so that the client sees a broken response rather than a short complete one.
    """

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception(
                "unexpected error while answering %s %s", scope.get("method"), scope.get("path")
            )
            if started:
                DELIBERATE_ABORT.set(True)  # logged above; uvicorn need not report it again
                return
            error = errors.internal_error()
            sent = Headers(scope=scope).get("authorization")
            response = _json_response(error.status, error.body, _common_headers(self.state, sent))
            await response(scope, receive, send)


def create_app(state: EmulatorState) -> Starlette:
    """The ASGI application of one emulator, serving ``state``."""
    handlers = _Handlers(state)
    routes = [
        Route("/v1/models", handlers.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", handlers.get_model, methods=["GET"]),
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_CatchAll, state=state)],
        exception_handlers={HTTPException: handlers.http_error},
    )
