"""Shared fixtures. Tests talk to the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from ofox_jupyter.emulator import Emulator

TEST_KEY = "sk-ofox-test-7f3a9c1e5b2d4f60a8e1"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real key or base URL."""
    monkeypatch.delenv("OFOX_API_KEY", raising=False)
    monkeypatch.delenv("OFOX_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """An emulator that requires TEST_KEY, shared by the session; cleared before each use."""
    from ofox_jupyter.emulator import Emulator

    with Emulator(api_key=TEST_KEY) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.clear()
    return emulator


def pytest_report_header() -> str:
    return f"ofox-jupyter tests; CI={os.environ.get('CI', '')}"
