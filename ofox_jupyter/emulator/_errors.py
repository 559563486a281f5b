"""OfoxAI-shaped error bodies, and the exception that carries one to the HTTP layer.

Every failure the emulator reports is an :class:`ApiError` holding the HTTP status, the JSON body
exactly as the real API writes it (``{"error": {"code", "message", "type"}}``, see ofox-api.md §7)
and any extra response headers.  The factories below are the only place these bodies are spelled
out, so the shapes stay consistent across validation, catalog checks and injected faults.
"""

from __future__ import annotations

from typing import Any

from ._ratelimit import RATE_LIMIT

__all__ = [
    "ApiError",
    "context_length_exceeded",
    "format_seconds",
    "internal_error",
    "invalid_api_key",
    "invalid_request",
    "model_not_found",
    "model_retired",
    "not_found",
    "numeric_bad_request",
    "rate_limited",
    "request_too_large",
    "service_unavailable",
    "unsupported_input",
    "upstream_error",
]


class ApiError(Exception):
    """An error response: HTTP ``status``, JSON ``body`` and extra ``headers``."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def fallback_trigger(self) -> bool:
        """Whether ``provider.fallback`` may answer instead (429 and 5xx, never 401/4xx)."""
        return self.status == 429 or self.status >= 500


def _error(status: int, code: str | int, message: str, type_: str | None) -> ApiError:
    error: dict[str, Any] = {"code": code, "message": message}
    if type_ is not None:
        error["type"] = type_
    return ApiError(status, {"error": error})


def invalid_request(message: str, code: str = "invalid_request_error") -> ApiError:
    """400 ``invalid_request_error`` (bad parameters)."""
    return _error(400, code, message, "invalid_request_error")


def numeric_bad_request() -> ApiError:
    """400 in the shape seen from the real API: ``code`` is the number 400 (ofox-api.md §7)."""
    return ApiError(
        400,
        {
            "error": {
                "message": "unknown provider type: bogus [ofox.ai]",
                "type": "invalid_request_error",
                "code": 400,
            }
        },
    )


def request_too_large(limit: int) -> ApiError:
    """413 for a body over the emulator's size limit.

    OfoxAI documents no 413; the body keeps the documented shape with ``invalid_request_error``.
    """
    return _error(
        413,
        "request_too_large",
        f"The request body is larger than the limit of {limit} bytes",
        "invalid_request_error",
    )


def invalid_api_key() -> ApiError:
    """401 ``authentication_error`` — the message never repeats the key that was sent."""
    message = "The provided API Key is invalid."
    return _error(401, "invalid_api_key", message, "authentication_error")


def not_found(message: str) -> ApiError:
    """404 for an unknown path or method."""
    return _error(404, "not_found", message, "not_found_error")


def model_not_found(model: str) -> ApiError:
    """404 for an unknown model id."""
    return _error(404, "model_not_found", f"Model '{model}' does not exist", "not_found_error")


def unsupported_input(model: str, kind: str) -> ApiError:
    """400 for an input modality the model does not accept (e.g. an image to a text-only model)."""
    return invalid_request(f"Model {model} does not accept {kind} input", "unsupported_input")


def context_length_exceeded(model: str, limit: int, tokens: int) -> ApiError:
    """400 when the estimated prompt does not fit the model's context window."""
    return invalid_request(
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages. (model {model})",
        "context_length_exceeded",
    )


def model_retired(model: str) -> ApiError:
    """503 for a retired model; a fallback trigger."""
    return _error(
        503, "model_unavailable", f"Model {model} is unavailable (retired)", "service_unavailable"
    )


def format_seconds(seconds: float) -> str:
    """``1.0`` → ``"1"``, ``0.5`` → ``"0.5"`` (the number part of a duration string)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def rate_limited(seconds: float, limit: int = RATE_LIMIT) -> ApiError:
    """429 with remaining 0, a reset duration and, for whole seconds, ``retry-after``.

    Used both for an enforced limit (``limit`` is the emulator's rpm) and an injected fault.
    """
    text = format_seconds(seconds)
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{text}s",
    }
    if float(seconds).is_integer():
        headers["retry-after"] = text
    error = _error(
        429,
        "rate_limit_exceeded",
        f"Rate limit exceeded: {limit} requests per minute; retry after {text}s",
        "rate_limit_error",
    )
    error.headers.update(headers)
    return error


def internal_error() -> ApiError:
    """500 ``internal_error``."""
    return _error(
        500,
        "internal_error",
        "The server had an error while processing your request.",
        "internal_error",
    )


def upstream_error() -> ApiError:
    """502 as in the docs' short example: code ``upstream_error``, no ``type`` key."""
    return _error(502, "upstream_error", "Upstream provider returned an error [ofox.ai]", None)


def service_unavailable() -> ApiError:
    """503 ``service_unavailable``."""
    return _error(
        503,
        "service_unavailable",
        "The service is temporarily unavailable, please retry.",
        "service_unavailable",
    )
