"""What ``%load_ext ofox_jupyter`` adds to a bare IPython start (target ≤ 60 ms).

Every run is a fresh interpreter, because what a user pays is the cold import (a second
``%load_ext`` in the same process costs nothing). Two kinds of run are interleaved, so that a busy
moment of the machine hits both alike:

* bare: ``InteractiveShell.instance()`` and nothing else;
* ext: the same, then ``%load_ext ofox_jupyter``.

"Added to start" is the difference of the whole processes' wall times (spawn to exit, as a user
waits for it); "load_ext call" is the call alone, timed inside the child after the shell exists.
Both are given as median and min over the runs. The child also reports which heavy modules got
imported: httpx, PIL, ipywidgets and matplotlib must not be (they come with the first request,
image or widget, not with the extension).

The runs are offline (``OFOX_API_KEY``/``OFOX_BASE_URL`` unset) with the history in a temporary
file, as a fresh user's first notebook would be.

With ``--compare-python PATH`` (an interpreter that has ``jupyter-ai-magics`` installed, e.g. a
venv made with ``pip install jupyter-ai-magics``) ``%load_ext jupyter_ai_magics`` is measured the
same way, against that interpreter's own bare start, and the ratio is printed.

    python bench/load_ext.py [--runs 15] [--compare-python /tmp/jai-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TARGET_MS = 60.0
#: Must not be imported by ``%load_ext ofox_jupyter`` (product.md, "Performance").
FORBIDDEN = ("httpx", "PIL", "ipywidgets", "matplotlib")
#: Reported for every extension, to show where a slow load goes.
HEAVY = FORBIDDEN + (
    "ipykernel",
    "jupyter_client",
    "zmq",
    "starlette",
    "uvicorn",
    "openai",
    "pydantic",
    "langchain",
    "numpy",
    "pandas",
)

# Runs in the child; prints one JSON line last (an extension may print its own lines first).
CHILD = f"""
import json, sys, time
started = time.perf_counter()
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
shell_ready = time.perf_counter()
if sys.argv[1]:
    ip.run_line_magic("load_ext", sys.argv[1])
loaded = time.perf_counter()
heavy = [name for name in {HEAVY!r} if name in sys.modules]
print(json.dumps({{"shell": shell_ready - started, "load_ext": loaded - shell_ready,
                  "heavy": heavy}}))
"""


@dataclass
class Runs:
    """Timings (seconds) of one kind of run."""

    wall: list[float] = field(default_factory=list)
    load_ext: list[float] = field(default_factory=list)
    heavy: list[str] = field(default_factory=list)


def run_once(python: str, extension: str, env: dict[str, str], cwd: str, runs: Runs) -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-c", CHILD, extension],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{python} failed to load {extension or 'IPython'}:\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    runs.wall.append(wall)
    runs.load_ext.append(report["load_ext"])
    runs.heavy = report["heavy"]


def measure(python: str, extension: str, count: int, env: dict[str, str]) -> tuple[Runs, Runs]:
    """``count`` interleaved bare and ext runs, after one unmeasured warm-up of each."""
    bare, ext = Runs(), Runs()
    with tempfile.TemporaryDirectory() as cwd:  # not the repo: nothing importable by accident
        run_once(python, "", env, cwd, Runs())  # warm-up: .pyc files and the OS page cache
        run_once(python, extension, env, cwd, Runs())
        for _ in range(count):
            run_once(python, "", env, cwd, bare)
            run_once(python, extension, env, cwd, ext)
    return bare, ext


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:6.0f} / {min(values) * 1e3:4.0f}"


def added(bare: Runs, ext: Runs) -> tuple[float, float]:
    """Median and min of the extension's runs minus those of the bare runs, in seconds."""
    return (
        statistics.median(ext.wall) - statistics.median(bare.wall),
        min(ext.wall) - min(bare.wall),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per kind")
    parser.add_argument(
        "--compare-python",
        metavar="PATH",
        help="an interpreter with jupyter-ai-magics installed, to measure it the same way",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("OFOX_") and name != "JPY_SESSION_NAME"
        }
        env["OFOX_HISTORY_PATH"] = str(Path(tmp) / "history.sqlite3")
        # An installed package has its bytecode compiled (pip does it), but an editable checkout
        # under PYTHONDONTWRITEBYTECODE=1 would be compiled from source on every start. Cache the
        # bytecode in a temporary tree instead (filled by the warm-up runs), outside the repo.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")

        columns = {"ofox_jupyter": measure(sys.executable, "ofox_jupyter", args.runs, env)}
        if args.compare_python:
            columns["jupyter_ai_magics"] = measure(
                args.compare_python, "jupyter_ai_magics", args.runs, env
            )

    names = list(columns)
    width = 22
    print(f"%load_ext cost, {args.runs} fresh interpreters per row; ms, median / min")
    print(f"{'':<26}" + "".join(f"{name:>{width}}" for name in names))
    rows: list[tuple[str, Callable[[Runs, Runs], str]]] = [
        ("bare IPython start", lambda b, e: ms(b.wall)),
        ("start + %load_ext", lambda b, e: ms(e.wall)),
        (
            "added to start",
            lambda b, e: f"{added(b, e)[0] * 1e3:6.0f} / {added(b, e)[1] * 1e3:4.0f}",
        ),
        ("load_ext call alone", lambda b, e: ms(e.load_ext)),
    ]
    for label, cell in rows:
        print(f"{label:<26}" + "".join(f"{cell(*columns[n]):>{width}}" for n in names))

    ours_added = added(*columns["ofox_jupyter"])[0]
    ours_call = statistics.median(columns["ofox_jupyter"][1].load_ext)
    verdict = "ok" if ours_added * 1e3 <= TARGET_MS else "OVER TARGET"
    print(
        f"\nofox_jupyter: added {ours_added * 1e3:.0f} ms, call {ours_call * 1e3:.0f} ms "
        f"(median) vs target ≤ {TARGET_MS:.0f} ms: {verdict}"
    )
    if "jupyter_ai_magics" in columns:
        theirs_added = added(*columns["jupyter_ai_magics"])[0]
        theirs_call = statistics.median(columns["jupyter_ai_magics"][1].load_ext)
        print(
            f"jupyter_ai_magics / ofox_jupyter: {theirs_added / ours_added:.0f}× added to start, "
            f"{theirs_call / ours_call:.0f}× the load_ext call"
        )

    print("\nheavy modules imported by the load (a sanity check, not a failure):")
    for name in names:
        heavy = columns[name][1].heavy
        print(f"  {name:<20} {', '.join(heavy) if heavy else '(none)'}")
    leaked = [m for m in columns["ofox_jupyter"][1].heavy if m in FORBIDDEN]
    if leaked:
        print(f"  WARNING: %load_ext ofox_jupyter imported {', '.join(leaked)}")
    else:
        print(f"  ok: ofox_jupyter imported none of {', '.join(FORBIDDEN)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
