"""Shared fixtures. Tests talk to the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from ofox_jupyter.emulator import Emulator

#: A fake key: distinctive, so that the secret tests can search every output for it.
TEST_KEY = "sk-ofox-FAKE-test-key-not-real-7f3a9c"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real key or base URL."""
    monkeypatch.delenv("OFOX_API_KEY", raising=False)
    monkeypatch.delenv("OFOX_BASE_URL", raising=False)
    # Nor the standing tools another test offered (@tool offers a function in chat "main").
    from ofox_jupyter import _tools

    monkeypatch.setattr(_tools, "_STANDING", {})


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


@pytest.fixture
def notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebook path for JPY_SESSION_NAME and a private history database."""
    path = tmp_path / "analysis.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    monkeypatch.setenv("OFOX_HISTORY_PATH", str(tmp_path / "history.sqlite3"))
    return path


@pytest.fixture
def ip(emu: Emulator, notebook: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """IPython with the extension loaded, talking to the test emulator with TEST_KEY."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("OFOX_API_KEY", TEST_KEY)
    monkeypatch.setenv("OFOX_BASE_URL", emu.base_url)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ofox_jupyter")
    magics = shell.magics_manager.registry["OfoxMagics"]
    magics.display_mode = "text"
    yield shell
    shell.run_line_magic("unload_ext", "ofox_jupyter")
    shell.config.pop("OfoxMagics", None)  # %config in one test must not reach the next
    for name in ("_ofox", "answer"):
        shell.user_ns.pop(name, None)


def save_notebook(shell: Any, path: Path | None = None) -> Path:
    """Write the notebook file as JupyterLab saves it: one cell per turn of every chat, with the
    cell's id and an output whose ``metadata.ofox`` names the turn (what ``_render.provenance``
    puts on every ``%%ofox`` reply). In-process tests call this before a simulated restart,
    because a kernel finds its chats through its saved notebook."""
    import json

    target = path or Path(os.environ["JPY_SESSION_NAME"])
    magics = shell.magics_manager.registry["OfoxMagics"]
    cells = []
    for conversation in magics.session.chats.values():
        for turn in conversation.turns:
            cells.append(
                {
                    "cell_type": "code",
                    "id": turn.cell_id or f"cell-{turn.id[:8]}",
                    "metadata": {},
                    "execution_count": 1,
                    "source": f"%%ofox --chat {conversation.name}\n{turn.user.text}",
                    "outputs": [
                        {
                            "output_type": "display_data",
                            "data": {"text/markdown": turn.text},
                            "metadata": {"ofox": {"chat": turn.chat, "turn_id": turn.id}},
                        }
                    ],
                }
            )
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    target.write_text(json.dumps(notebook), encoding="utf-8")
    return target


def restart(shell: Any, *, save: bool = True) -> None:
    """A kernel restart as the user makes one: save the notebook, then a fresh extension
    (unload and load: new session, store reopened, identity resolved from the saved file)."""
    if save:
        save_notebook(shell)
    shell.run_line_magic("unload_ext", "ofox_jupyter")
    shell.run_line_magic("load_ext", "ofox_jupyter")
    shell.magics_manager.registry["OfoxMagics"].display_mode = "text"
