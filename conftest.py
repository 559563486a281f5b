"""Session-wide isolation for the whole test run, notebooks included.

nbval starts its kernels from this process, and they inherit its environment, so the environment
is fixed here once, before anything is collected (the autouse fixtures in ``tests/conftest.py``
only reach the test functions): no real key or base URL — everything runs on the emulator, as the
committed notebook outputs were produced — and a fresh history database. Jupyter's and IPython's
directories go to a temporary place too, so that the developer's kernels, startup files and
history neither change what a notebook prints nor get written to.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: Removed for the session: they would send the tests to a real server, reuse a chat key or slow
#: the emulator down.
_UNSET = (
    "OFOX_API_KEY",
    "OFOX_BASE_URL",
    "JPY_SESSION_NAME",
    "OFOX_EMULATOR_DELAY",
    "OFOX_EMULATOR_RPM",
    "OFOX_EMULATOR_LATENCY",
)

#: The values before the session, restored when it ends.
_saved: dict[str, str | None] = {}


def _set(name: str, value: str | None) -> None:
    _saved.setdefault(name, os.environ.get(name))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def pytest_configure(config: pytest.Config) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="ofox-tests-"))
    # Removed at exit, not in pytest_unconfigure: IPython's own atexit hook (registered later,
    # so run earlier) still writes its history database under IPYTHONDIR.
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    for name in _UNSET:
        _set(name, None)
    _set("OFOX_HISTORY_PATH", str(scratch / "history.sqlite3"))
    for name, sub in (
        ("IPYTHONDIR", "ipython"),
        ("JUPYTER_CONFIG_DIR", "jupyter-config"),
        ("JUPYTER_DATA_DIR", "jupyter-data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
    ):
        (scratch / sub).mkdir()
        _set(name, str(scratch / sub))
    # nbval opens the sanitizer file relative to the working directory; anchor the path from
    # pyproject's addopts at the project root, so pytest also works when started elsewhere.
    sanitize = getattr(config.option, "nbval_sanitize_with", None)
    if sanitize and not Path(sanitize).is_absolute():
        config.option.nbval_sanitize_with = str(config.rootpath / sanitize)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved.clear()
