"""The emulator's enforced rate limit (``rpm``) and model latency (``latency``).

Pure tests drive :class:`RateWindow` and :class:`RateLimiter` with a fake clock (a hypothesis
property included); HTTP tests run real emulators on 127.0.0.1 and use httpx directly.  Timing
assertions are lower bounds only: a loaded machine may be slow, never fast.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest_emulator import user
from hypothesis import given
from hypothesis import strategies as st

import ofox_jupyter.emulator._ratelimit as ratelimit_module
from ofox_jupyter.emulator import Emulator, EmulatorState
from ofox_jupyter.emulator._ratelimit import Admission, RateLimiter, RateWindow
from ofox_jupyter.emulator._server import LATENCY_ENV, RPM_ENV, shared_latency, shared_rpm

GPT = "openai/gpt-4o"
BODY = {"model": GPT, "messages": [user("hello")]}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def chat(
    client: httpx.Client, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    return client.post("/chat/completions", json={**BODY, **extra}, headers=headers)


def limits(response: httpx.Response) -> tuple[str, str, str]:
    h = response.headers
    return (
        h["x-ratelimit-limit-requests"],
        h["x-ratelimit-remaining-requests"],
        h["x-ratelimit-reset-requests"],
    )


def assert_refused(response: httpx.Response, rpm: int) -> int:
    """Assert the exact OfoxAI 429 of an enforced limit; returns its retry-after seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    limit, remaining, reset = limits(response)
    assert (limit, remaining) == (str(rpm), "0")
    assert re.fullmatch(r"[1-9]\d*s", reset), reset
    seconds = int(reset[:-1])
    assert 1 <= seconds <= 60
    assert response.headers["retry-after"] == str(seconds)
    assert response.headers["x-request-id"]
    assert response.json() == {
        "error": {
            "message": f"Rate limit exceeded: {rpm} requests per minute; retry after {seconds}s",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
        }
    }
    return seconds


# --------------------------------------------------------------------------- RateWindow (pure)


def test_window_admits_up_to_the_limit_then_refuses_without_counting() -> None:
    window = RateWindow(3, 60.0)
    assert window.admit(0.0) == Admission(True, 3, 2, 60)
    assert window.admit(10.0) == Admission(True, 3, 1, 50)
    assert window.admit(20.0) == Admission(True, 3, 0, 40)
    assert window.admit(48.2) == Admission(False, 3, 0, 12)  # 11.8 s rounded up
    assert window.admit(59.9) == Admission(False, 3, 0, 1)  # 0.1 s: never below 1s
    # the refusals were not counted: at 60 the first request leaves and one more fits
    assert window.admit(60.0) == Admission(True, 3, 0, 10)
    assert window.admit(60.5) == Admission(False, 3, 0, 10)


def test_window_peek_and_count_modes() -> None:
    window = RateWindow(2, 10.0)
    assert window.peek(0.0) == Admission(True, 2, 2, 1)  # empty: nothing to wait for
    assert window.count(0.0).remaining == 1
    assert window.count(1.0).remaining == 0
    third = window.count(2.0)  # announce-only mode: counted and admitted past the limit
    assert (third.admitted, third.remaining, third.reset) == (True, 0, 8)
    assert window.peek(3.0) == Admission(False, 2, 0, 7)
    assert window.peek(12.0) == Admission(True, 2, 2, 1)
    assert window.is_empty(12.0)
    assert Admission(False, 2, 0, 7).headers() == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "7s",
    }


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (1, 0.0), (1, -1.0), (1, math.nan)])
def test_window_rejects_nonsense(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        RateWindow(limit, window)


@given(
    limit=st.integers(1, 5),
    window=st.integers(1, 30),
    gaps=st.lists(st.integers(0, 12), max_size=60),
)
def test_window_property(limit: int, window: int, gaps: list[int]) -> None:
    # Whole-number times and window keep the arithmetic exact, so the test's interval sums
    # cannot disagree with the limiter's own subtraction by a rounding error.
    times: list[int] = []
    for gap in gaps:
        times.append((times[-1] if times else 0) + gap)
    limiter = RateWindow(limit, float(window))
    admitted: list[int] = []
    for t in times:
        verdict = limiter.admit(float(t))
        recent = [a for a in admitted if t - window < a <= t]
        full = len(recent) >= limit
        assert verdict.admitted is not full  # refused exactly when the window is full
        if verdict.admitted:
            admitted.append(t)
            recent.append(t)
        assert verdict.remaining == limit - len(recent)
        oldest = min(recent, default=None)
        expected = 1 if oldest is None else max(1, math.ceil(window - (t - oldest)))
        assert verdict.reset == expected
    for start in admitted:  # any window-length interval holds at most `limit` admitted
        assert sum(start <= a < start + window for a in admitted) <= limit


# --------------------------------------------------------------------------- RateLimiter (pure)


def test_limiter_windows_are_per_bearer_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock)
    assert limiter.admit_chat("Bearer sk-a").admitted
    assert not limiter.admit_chat("Bearer sk-a").admitted
    assert limiter.admit_chat("bearer  sk-b ").admitted  # the scheme is case-insensitive
    assert limiter.admit_chat(None).admitted  # no key: the anonymous window
    assert not limiter.admit_chat("").admitted  # also anonymous
    assert not limiter.admit_chat("Bearer ").admitted  # an empty token is no key
    assert limiter.announce("Bearer sk-a") == Admission(False, 1, 0, 60)  # read, not counted
    assert limiter.announce("Bearer never-seen") == Admission(True, 1, 1, 1)
    clock.now = 60.0
    assert limiter.admit_chat("Bearer sk-a").admitted
    limiter.clear()
    assert limiter.admit_chat("Bearer sk-b").admitted


def test_limiter_keeps_no_token_and_a_bounded_number_of_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit_module, "_MAX_KEYS", 3)
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock)
    for n in range(10):
        clock.now = float(n)
        assert limiter.admit_chat(f"Bearer sk-secret-{n}").admitted
    assert len(limiter._windows) <= 3
    assert all(b"sk-secret" not in key for key in limiter._windows)
    assert "sk-secret" not in repr(vars(limiter))


def test_limiter_without_rpm_counts_everything_and_refuses_nothing() -> None:
    limiter = RateLimiter(None, 60.0, FakeClock())
    verdicts = [limiter.admit_chat("Bearer a") for _ in range(201)] + [limiter.announce(None)]
    assert all(v.admitted and v.limit == 200 for v in verdicts)
    assert [v.remaining for v in verdicts[:2]] == [199, 198]
    assert [v.remaining for v in verdicts[-3:]] == [0, 0, 0]


@pytest.mark.parametrize("rpm", [0, -1, True, 1.5])
def test_rpm_must_be_a_whole_number_of_at_least_one(rpm: Any) -> None:
    with pytest.raises(ValueError, match="rpm"):
        Emulator(rpm=rpm)


@pytest.mark.parametrize("latency", [-0.1, math.nan, math.inf])
def test_latency_must_be_finite_and_not_negative(latency: float) -> None:
    with pytest.raises(ValueError, match="latency"):
        Emulator(latency=latency)


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(rpm=3) as emulator:  # no required key: any token gets its own window
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "emu" in request.fixturenames:
        request.getfixturevalue("emu").clear()


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10) as client:
        yield client


def test_fourth_chat_in_a_minute_gets_the_ofoxai_429(emu: Emulator, http: httpx.Client) -> None:
    for remaining in ("2", "1", "0"):
        response = chat(http, headers=bearer("sk-one"))
        assert response.status_code == 200, response.text
        limit, left, reset = limits(response)
        assert (limit, left) == ("3", remaining)
        assert re.fullmatch(r"[1-9]\d*s", reset)
    assert_refused(chat(http, headers=bearer("sk-one")), 3)
    # a stream is refused the same way, as JSON, before any SSE byte
    assert_refused(chat(http, headers=bearer("sk-one"), stream=True), 3)
    # refused like a 401 or 413: nothing of it is kept
    assert len(emu.requests) == 3


def test_window_slides_and_reset_is_exact_over_http() -> None:
    clock = FakeClock()
    emulator = Emulator()
    # The state's clock is a test-only knob (not on Emulator or the CLI): swap it in before start.
    emulator._state = EmulatorState(rpm=3, clock=clock)
    with emulator, httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        for now in (0.0, 10.0, 20.0):
            clock.now = now
            assert chat(client).status_code == 200
        clock.now = 48.2
        refused = chat(client)
        assert assert_refused(refused, 3) == 12
        assert limits(refused) == ("3", "0", "12s")
        clock.now = 60.0  # the request at 0 has left the window
        admitted = chat(client)
        assert admitted.status_code == 200
        assert limits(admitted) == ("3", "0", "10s")


def test_keys_and_the_anonymous_caller_have_separate_windows(http: httpx.Client) -> None:
    callers: list[dict[str, str] | None] = [bearer("sk-a"), bearer("sk-b"), None]
    for _ in range(3):
        for headers in callers:
            assert chat(http, headers=headers).status_code == 200
    for headers in callers:
        assert_refused(chat(http, headers=headers), 3)


def test_models_requests_are_not_counted(http: httpx.Client) -> None:
    for _ in range(5):
        response = http.get("/models", headers=bearer("sk-m"))
        assert response.status_code == 200
        assert limits(response) == ("3", "3", "1s")
    for _ in range(3):
        assert chat(http, headers=bearer("sk-m")).status_code == 200
    assert_refused(chat(http, headers=bearer("sk-m")), 3)
    full = http.get("/models", headers=bearer("sk-m"))  # reads the full window, never refused
    assert full.status_code == 200
    assert limits(full)[:2] == ("3", "0")
    assert http.get(f"/models/{GPT}", headers=bearer("sk-m")).status_code == 200


def test_injected_429_names_the_enforced_limit(emu: Emulator, http: httpx.Client) -> None:
    emu.inject("429:2")
    response = chat(http)
    assert response.status_code == 429
    assert response.json()["error"]["message"] == (
        "Rate limit exceeded: 3 requests per minute; retry after 2s"
    )
    assert response.headers["retry-after"] == "2"


def test_a_wrong_key_gets_401_and_uses_no_window() -> None:
    with (
        Emulator(api_key="sk-right", rpm=1) as emulator,
        httpx.Client(base_url=emulator.base_url, timeout=10) as client,
    ):
        for _ in range(3):
            wrong = chat(client, headers=bearer("sk-wrong"))
            assert wrong.status_code == 401
            assert limits(wrong) == ("1", "1", "1s")
        assert chat(client, headers=bearer("sk-right")).status_code == 200
        assert_refused(chat(client, headers=bearer("sk-right")), 1)
        assert chat(client, headers=bearer("sk-wrong")).status_code == 401  # auth comes first


def test_without_rpm_nothing_is_ever_refused() -> None:
    with Emulator() as emulator, httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        responses = [chat(client, headers=bearer("sk-x")) for _ in range(205)]
    assert [r.status_code for r in responses] == [200] * 205
    assert {limits(r)[0] for r in responses} == {"200"}
    assert limits(responses[-1])[1] == "0"


def test_latency_delays_plain_and_streamed_answers() -> None:
    latency = 0.3
    with (
        Emulator(latency=latency) as emulator,
        httpx.Client(base_url=emulator.base_url, timeout=10) as client,
    ):
        started = time.monotonic()
        assert chat(client).status_code == 200
        assert time.monotonic() - started >= latency
        started = time.monotonic()
        with client.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as reply:
            headers_after = time.monotonic() - started  # the status line waited too
            assert reply.status_code == 200
            reply.read()
        assert headers_after >= latency


# --------------------------------------------------------------------------- CLI and environment


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rpm", "0"], "--rpm must be >= 1"),
        (["--latency", "-1"], "--latency must be a number of seconds >= 0"),
        (["--latency", "nan"], "--latency must be a number of seconds >= 0"),
    ],
)
def test_cli_refuses_bad_rpm_and_latency(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ofox_jupyter.emulator.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"python -m ofox_jupyter.emulator: error: {message}"
    assert "Traceback" not in err


def test_cli_enforces_rpm() -> None:
    command = [sys.executable, "-m", "ofox_jupyter.emulator", "--port", "0", "--delay", "0",
               "--rpm", "1", "--latency", "0.05"]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline()
            match = re.fullmatch(r"OfoxAI emulator listening on (http://\S+/v1)\n", line)
            assert match, line
            with httpx.Client(base_url=match[1], timeout=10) as client:
                assert chat(client).status_code == 200
                assert_refused(chat(client), 1)
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""


def test_environment_sets_the_shared_emulators_rpm_and_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(RPM_ENV, raising=False)
    monkeypatch.delenv(LATENCY_ENV, raising=False)
    assert (shared_rpm(), shared_latency()) == (None, 0.0)
    monkeypatch.setenv(RPM_ENV, " 30 ")
    monkeypatch.setenv(LATENCY_ENV, "0.25")
    assert (shared_rpm(), shared_latency()) == (30, 0.25)
    monkeypatch.setenv(RPM_ENV, "")
    assert shared_rpm() is None


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many"])
def test_environment_rpm_rejects_nonsense(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(RPM_ENV, value)
    message = f"OFOX_EMULATOR_RPM must be a whole number of requests per minute >= 1, not '{value}'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        shared_rpm()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "slow"])
def test_environment_latency_rejects_nonsense(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(LATENCY_ENV, value)
    message = f"OFOX_EMULATOR_LATENCY must be a number of seconds >= 0, not '{value}'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        shared_latency()
