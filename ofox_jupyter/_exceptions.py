"""The one exception tree of ofox_jupyter.

Every error we raise on purpose is an :class:`OfoxError`, so a caller (and the magics, which turn
these into one-line messages) can catch exactly what we mean and let real bugs through::

    OfoxError
     ├── ConfigError                  bad settings: key over plain http, malformed base URL
     ├── RequestValidationError       a request value out of range, caught before sending
     ├── APIError                     talking to the API went wrong
     │    ├── APIStatusError          the server answered with an error status
     │    │    ├── BadRequestError          400 (and other 4xx without their own class)
     │    │    ├── AuthenticationError      401
     │    │    ├── PermissionDeniedError    403
     │    │    ├── NotFoundError            404
     │    │    ├── RateLimitError           429
     │    │    └── ServerError              5xx
     │    ├── APIConnectionError      no usable answer: refused, reset, protocol error
     │    │    └── APITimeoutError          connect or first-byte timeout
     │    └── StreamError             broke after it began; ``.partial`` keeps what arrived
     ├── ToolError
     │    ├── UnknownToolError        the model called a function the user did not name
     │    └── ToolArgumentsError      the model's arguments are not valid JSON / do not fit
     └── ImageError                   cannot be sent: unknown type, corrupt, too large

Each error has a one-line ``str()`` and an optional ``hint`` for what the user can do about it.
HTTP status decides the :class:`APIStatusError` subclass, because real OfoxAI bodies vary: ``code``
may be a string or a number and ``type`` may be missing (see ofox-api.md §7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._streaming import Reply

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ImageError",
    "NotFoundError",
    "OfoxError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestValidationError",
    "ServerError",
    "StreamError",
    "ToolArgumentsError",
    "ToolError",
    "UnknownToolError",
]


class OfoxError(Exception):
    """Base of every error ofox_jupyter raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        """The message and the hint on one line, as the magics show it."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(OfoxError):
    """Settings that cannot work (a key over plain http to a remote host, a malformed URL)."""


class RequestValidationError(OfoxError):
    """A request value is out of the documented range; found before anything was sent."""


class APIError(OfoxError):
    """Something went wrong talking to the API."""

    #: Whether sending the request again is safe and may help, as the client judged it when it
    #: gave up (a 5xx, a failed connection: yes; a 4xx, a read error after the request went
    #: out: no); ``None`` when it was not judged (the error came after the response).
    retryable: bool | None = None


class APIStatusError(APIError):
    """The server answered with an error status.

    ``status`` is the HTTP status; ``type``, ``code`` and ``api_message`` come from the OfoxAI error
    body when it has them (``code`` may be a string or a number, ``type`` may be ``None``).
    """

    hint = "check the request options"

    def __init__(
        self,
        *,
        status: int,
        api_message: str,
        type: str | None = None,
        code: str | int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.code = code
        self.api_message = api_message
        self.request_id = request_id
        self.retry_after = retry_after
        label = error_label(type, code, status)
        if 200 <= status < 300:
            # Some upstreams answer 200 with an error object: say so, not a made-up status.
            text = "the API answered 200 with an error" + (f" ({label})" if label else "")
            text += f": {api_message}"
        else:
            text = f"HTTP {status}" + (f" {label}" if label else "") + f": {api_message}"
        super().__init__(text, hint=hint)


class BadRequestError(APIStatusError):
    """400, or another 4xx without a class of its own."""


class AuthenticationError(APIStatusError):
    """401: the key is missing or invalid."""

    hint = "set OFOX_API_KEY (or run %ofox login) with a valid key"


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or feature."""

    hint = "check the key's permissions in the OfoxAI console"


class NotFoundError(APIStatusError):
    """404: unknown model or resource."""

    hint = "list the available models with %ofox models"


class RateLimitError(APIStatusError):
    """429: too many requests; retried before it reaches you."""

    hint = "wait a moment and run the cell again"


class ServerError(APIStatusError):
    """5xx: the gateway or the upstream provider failed; retried before it reaches you."""

    hint = "try again, or add --fallback with another model"


class APIConnectionError(APIError):
    """No usable answer: connection refused or reset, or a protocol error before the reply."""

    hint = "check the network and OFOX_BASE_URL"


class APITimeoutError(APIConnectionError):
    """The server did not connect or send its first byte in time."""

    hint = "try again, or raise the timeout"


class StreamError(APIError):
    """The stream broke after it had begun.

    ``partial`` is the reply as far as it arrived (``partial.complete`` is ``False``); ``kind`` says
    what happened: ``"error_event"`` (the API sent an error mid-stream), ``"malformed"`` (a chunk
    that is not JSON), ``"disconnected"``, ``"timeout"`` (no chunk within the between-chunk
    timeout) or ``"incomplete"`` (the stream ended before a finish reason).
    """

    hint = "the partial reply was kept; run the cell again to retry"

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        partial: Reply,
        api_type: str | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.partial = partial
        self.api_type = api_type
        self.code = code


class ToolError(OfoxError):
    """A tool call could not be run as asked."""


class UnknownToolError(ToolError):
    """The model called a function that is not among the tools the user named."""


class ToolArgumentsError(ToolError):
    """The model's tool arguments are not valid JSON or do not fit the function."""


class ImageError(OfoxError):
    """An image that cannot be sent: unknown type, corrupt data, a decompression bomb, no file."""


def error_label(api_type: str | None, code: str | int | None, status: int | None = None) -> str:
    """``type code`` of an API error for a message; the code is left out when it only repeats
    the status (observed real bodies) or the type."""
    repeats = (api_type,) if status is None else (status, str(status), api_type)
    shown_code = None if code in repeats else code
    return " ".join(str(part) for part in (api_type, shown_code) if part)


def status_error_class(status: int) -> type[APIStatusError]:
    """The :class:`APIStatusError` subclass for an HTTP status."""
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status >= 500 or status < 400:
        return ServerError  # (an error object in a 2xx answer: the upstream failed)
    return BadRequestError
