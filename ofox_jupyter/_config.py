"""Client settings: where to send requests, with which key, how patiently.

Resolution order for each value: explicit argument, then environment (``OFOX_API_KEY``,
``OFOX_BASE_URL``), then the default. With no key and the default base URL, or with
``OFOX_BASE_URL=offline``, the client runs *offline* against the built-in emulator.

The key is held in a :class:`Secret`, whose repr and str never show it, so a settings object,
a client or a traceback's locals can be printed without leaking it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "OFFLINE",
    "Secret",
    "Settings",
    "Timeouts",
    "is_loopback_host",
    "resolve_settings",
]

DEFAULT_BASE_URL = "https://api.ofox.ai/v1"
DEFAULT_MODEL = "openai/gpt-4o-mini"
#: The base-URL value that asks for the built-in emulator explicitly.
OFFLINE = "offline"


class Secret:
    """A string that refuses to be shown: repr, str and pickling never reveal it.

    >>> Secret("sk-abc")
    Secret('********')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it goes on the wire."""
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the secret replaced by ``********``."""
        return text.replace(self._value, "********") if self._value else text

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for each phase of a request.

    ``first_byte`` is long because a model may think for a while before answering;
    ``between_chunks`` bounds a stalled stream once tokens have started to arrive.
    """

    connect: float = 10.0
    first_byte: float = 120.0
    between_chunks: float = 60.0
    write: float = 30.0

    @classmethod
    def coerce(cls, value: Timeouts | float | None) -> Timeouts:
        """Accept a :class:`Timeouts`, one number for every phase, or ``None`` for defaults."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        seconds = float(value)
        return cls(connect=seconds, first_byte=seconds, between_chunks=seconds, write=seconds)


@dataclass(frozen=True)
class Settings:
    """Resolved client settings. ``base_url`` is ``OFFLINE`` until the emulator has started."""

    base_url: str
    api_key: Secret | None = field(default=None)
    offline: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_retries: int = 2


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_settings(
    api_key: str | None = None,
    base_url: str | None = None,
    *,
    timeout: Timeouts | float | None = None,
    max_retries: int = 2,
) -> Settings:
    """Settings from the arguments, then the environment, then the defaults."""
    key = api_key if api_key is not None else os.environ.get("OFOX_API_KEY")
    key = key.strip() if key else None
    url = (base_url or os.environ.get("OFOX_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    if max_retries < 0:
        raise ConfigError(f"max_retries must be 0 or more, not {max_retries}")
    timeouts = Timeouts.coerce(timeout)
    if url.lower() == OFFLINE or (not key and url == DEFAULT_BASE_URL):
        # No key for the real gateway: talk to the emulator rather than fail with a 401.
        return Settings(
            base_url=OFFLINE,
            api_key=None,
            offline=True,
            timeouts=timeouts,
            max_retries=max_retries,
        )
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(
            f"base URL {url!r} is not an http(s) URL",
            hint="set OFOX_BASE_URL to e.g. https://api.ofox.ai/v1, or 'offline'",
        )
    if key and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"refusing to send the API key over plain http to {parts.hostname}",
            hint="use an https:// base URL",
        )
    return Settings(
        base_url=url,
        api_key=Secret(key) if key else None,
        offline=False,
        timeouts=timeouts,
        max_retries=max_retries,
    )
