"""What the batch tests share: a private cache, options that reach the test emulator with the
test key, the chat requests an emulator received, and an emulator whose rate window is a
second (so that a limit is reached within a test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY

from ofox_jupyter._batch_cache import BatchCache
from ofox_jupyter.emulator import Emulator, EmulatorState

__all__ = ["cache_fixture", "chats", "keyed", "short_window_emulator"]


@pytest.fixture(name="cache")
def cache_fixture(tmp_path: Path) -> BatchCache:
    return BatchCache(tmp_path / "batch-cache.sqlite3")


def keyed(emu: Emulator, **options: Any) -> dict[str, Any]:
    """Options that send to ``emu`` with the test key, no progress bar, no cost question."""
    return {
        "api_key": TEST_KEY,
        "base_url": emu.base_url,
        "progress": False,
        "confirm_cost": 0,
        **options,
    }


def chats(emu: Emulator) -> list[Any]:
    """The chat requests ``emu`` received (not its catalog's)."""
    return [r for r in emu.requests if r.path.endswith("/chat/completions")]


def short_window_emulator(rpm: int, latency: float) -> Emulator:
    """An emulator whose rate window is one second (a test-only knob of its state)."""
    emulator = Emulator(api_key=TEST_KEY)
    emulator._state = EmulatorState(api_key=TEST_KEY, rpm=rpm, rate_window=1.0, latency=latency)
    return emulator
