"""Client settings: where to send requests, with which key, how patiently.

Resolution order for each value: explicit argument, then environment (``OFOX_API_KEY``,
``OFOX_BASE_URL``), then the default. With no key and the default base URL, or with
``OFOX_BASE_URL=offline``, the client runs *offline* against the built-in emulator.

The key is held in a :class:`Secret`, whose repr and str never show it, so a settings object,
a client or a traceback's locals can be printed without leaking it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import unicodedata
import weakref
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "OFFLINE",
    "Secret",
    "Settings",
    "Timeouts",
    "check_api_key",
    "display_url",
    "is_loopback_host",
    "resolve_settings",
    "scrub",
    "scrubbed_line",
]

DEFAULT_BASE_URL = "https://api.ofox.ai/v1"
DEFAULT_MODEL = "openai/gpt-4o-mini"
#: The base-URL value that asks for the built-in emulator explicitly.
OFFLINE = "offline"


class Secret:
    """A string that refuses to be shown: repr, str and pickling never reveal it.

    Every live secret is also known to :func:`scrub`, which error paths and the httpx/httpcore
    log filter use to take it out of any text before it is shown or cut short.

    >>> Secret("sk-abc")
    Secret('********')
    """

    __slots__ = ("_value", "__weakref__")

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _LIVE.add(self)

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


#: Every secret still referenced somewhere (keys, passwords in base URLs).
_LIVE: weakref.WeakSet[Secret] = weakref.WeakSet()


def scrub(text: str) -> str:
    """``text`` without any live secret in it (longest first, so a key that contains another
    secret is still taken out whole). Call it before cutting text short: a secret that crosses
    the cut would otherwise keep its prefix."""
    if not isinstance(text, str):
        text = str(text)
    for secret in sorted(_LIVE, key=lambda s: -len(s.reveal())):
        text = secret.redact(text)
    return text


def scrubbed_line(text: str, limit: int) -> str:
    """A server's or an upstream's text as an error may show it: no live secret (taken out
    *before* the cut, so no prefix of one survives), on one line, at most ``limit``
    characters, marked when cut."""
    text = " ".join(scrub(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_api_key(key: str) -> str:
    """The key without surrounding whitespace, or a :class:`ConfigError` naming what is wrong
    with it — never the key, nor any part of it.

    API keys are printable ASCII. A line break inside one (pasted across two lines), a space, a
    zero-width space or any other non-ASCII character would otherwise fail deep in the HTTP
    library, with the header value, key and all, in the message.
    """
    key = key.strip()
    for position, char in enumerate(key, start=1):
        if " " < char < "\x7f":
            continue
        if char in "\r\n\x0b\x0c\x85\u2028\u2029":
            what = "a line break"
        elif char in " \t\xa0":
            what = "a space or tab"
        elif unicodedata.category(char) == "Cc":
            what = f"a control character (U+{ord(char):04X})"
        else:
            name = unicodedata.name(char, "unnamed")
            what = f"a non-ASCII character (U+{ord(char):04X} {name})"
        raise ConfigError(
            f"the API key contains {what} at position {position} of {len(key)}",
            hint="copy the key again from the OfoxAI console, on one line",
        )
    return key


def display_url(url: str) -> str:
    """``url`` as it may be shown: a user name and password in it become ``***``."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(a malformed URL)"


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
            timeouts = value
        else:
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"timeout must be seconds or a Timeouts, not {value!r}"[:200]
                ) from None
            timeouts = cls(seconds, seconds, seconds, seconds)
        for name in ("connect", "first_byte", "between_chunks", "write"):
            phase = getattr(timeouts, name)
            if not isinstance(phase, (int, float)) or not math.isfinite(phase) or phase <= 0:
                # A socket refuses these only when the first request goes out, with a traceback.
                raise ConfigError(
                    f"timeout {name} must be a positive number of seconds, not {phase!r}"
                )
        return timeouts


@dataclass(frozen=True)
class Settings:
    """Resolved client settings. ``base_url`` is ``OFFLINE`` until the emulator has started."""

    base_url: str
    api_key: Secret | None = field(default=None)
    offline: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_retries: int = 2
    #: A user name or password in the base URL, held so that :func:`scrub` knows them.
    url_secrets: tuple[Secret, ...] = ()

    @property
    def shown_url(self) -> str:
        """The base URL as messages and reprs show it (credentials hidden)."""
        return display_url(self.base_url)


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
    key = check_api_key(key) if key else None
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
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        credentials = tuple(Secret(v) for v in (parts.password, parts.username) if v)
        parts.port  # noqa: B018 - a port that is not a number raises here, not on the wire
        scheme = parts.scheme
    except ValueError:
        hostname, scheme, credentials = None, "", ()
    if scheme not in {"http", "https"} or not hostname:
        raise ConfigError(
            f"base URL {display_url(url)!r} is not an http(s) URL",
            hint="set OFOX_BASE_URL to e.g. https://api.ofox.ai/v1, or 'offline'",
        )
    if key and scheme == "http" and not is_loopback_host(hostname):
        raise ConfigError(
            f"refusing to send the API key over plain http to {hostname}",
            hint="use an https:// base URL",
        )
    return Settings(
        base_url=url,
        api_key=Secret(key) if key else None,
        offline=False,
        timeouts=timeouts,
        max_retries=max_retries,
        url_secrets=credentials,
    )
