"""How the history costs grow with the chat: 100, 1,000 and 10,000 turns side by side.

Targets (product.md, "Performance"): adding a turn to a 1,000-turn chat, persisted, ≤ 5 ms; one
more cell at 10,000 turns ≤ 1.5× its cost at 100 turns; restore at 10,000 turns ≤ 50 ms (and, for
this benchmark, ≤ 10 MB). For each size a store is pre-filled once with realistic turns (a user
message of ~200 characters and a reply of ~1,000, unique per turn, with cell ids), and every
measurement runs in a fresh interpreter on its own copy of that store:

* **add a turn, persisted**: ``HistoryStore.save_turn`` of one more turn (~300 characters asked,
  ~1.5 KB answered) into the chat on disk, median over many; each added row is deleted again
  (untimed, through a second connection) so that the chat keeps exactly N turns;
* **one more cell, kernel CPU**: a real ``InteractiveShell`` with ``%load_ext ofox_jupyter``
  (``display_mode = "text"``, ``history_key = "bench"``, ``max_context_tokens = 8000``) runs
  ``%%ofox`` cells against an emulator in a *separate process* (``python -m
  ofox_jupyter.emulator``), so the figure is this process's CPU (``time.process_time``, all
  threads) per cell: building the request from the history, the client, the renderer and saving
  the turn, without the server's work. The budget makes what is sent the same at every size
  (the number of turns sent is printed from the emulator's own count). The part of it spent in
  ``Conversation.request_messages`` (choosing the window) is shown apart, and the kernel's
  resident memory after its cells too;
* **%load_ext restore**: ``%load_ext ofox_jupyter`` with the key set beforehand, the package
  already imported, and the session forced (``magics.session``): the wall time (median over fresh
  interpreters) and, in one more interpreter under ``tracemalloc``, the peak and retained Python
  allocations; the resident-memory growth (VmRSS) of the timed runs includes SQLite's own cache,
  which tracemalloc does not see.

The sizes take turns, in rounds with a rotated order, so that a busy moment of the machine hits
them alike; each figure pools its rounds.

    python bench/history.py [--quick] [--sizes 100,1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

NOTEBOOK = "key:bench"  # the id an explicit history_key of "bench" files chats under
KEY = "bench"
CHAT = "main"
MODEL = "openai/gpt-4o-mini"
CONTEXT_TOKENS = 8000
PROMPT = "one more question"

TARGET_SAVE_MS = 5.0  # at 1,000 turns
TARGET_CELL_RATIO = 1.5  # 10,000 turns vs 100
TARGET_RESTORE_MS = 50.0  # at 10,000 turns
TARGET_RESTORE_MB = 10.0  # at 10,000 turns

# Modules a restore may use, imported before the timed %load_ext so that it measures the restore.
PRELOAD = (
    "sqlite3",
    "IPython.core.magics.extension",  # IPython's %load_ext itself, imported at its first use
    "ofox_jupyter",
    "ofox_jupyter._magics",
    "ofox_jupyter._history",
    "ofox_jupyter._session",
    "ofox_jupyter._identity",
    "ofox_jupyter._conversation",
)

_WORDS = (
    "the model returns a frame with columns for each sensor and the index is a timestamp so we "
    "resample it to hourly means then plot the rolling average against the raw values while the "
    "outliers are clipped at three standard deviations and the gaps filled forward before any "
    "fit is attempted because the regression needs a regular grid of observations per station "
    "which is why the loader checks the schema first and raises a clear error otherwise"
).split()


# -- realistic turns


def _text(rng: random.Random, label: str, chars: int) -> str:
    words = [label]
    length = len(label)
    while length < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars].rstrip() + "."


def make_turn(number: int, rng: random.Random, *, question: int = 200, answer: int = 1000) -> Any:
    """Turn ``number`` of the chat: unique text of about ``question`` and ``answer`` characters."""
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import assistant, user
    from ofox_jupyter._streaming import Usage

    asked = _text(rng, f"Question {number}:", int(question * rng.uniform(0.9, 1.1)))
    answered = _text(rng, f"Answer {number}:", int(answer * rng.uniform(0.9, 1.1)))
    prompt_tokens = 20 + number * 3  # plausible, never read by the measurements
    completion_tokens = len(answered) // 4
    return Turn(
        id=rng.getrandbits(128).to_bytes(16, "big").hex(),
        chat=CHAT,
        user=user(asked),
        replies=(assistant(answered),),
        cell_id=f"cell-{rng.getrandbits(64):016x}",
        model=MODEL,
        served_model=MODEL,
        usage=Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
        cost=1e-6 * (prompt_tokens + 4 * completion_tokens),
        finish_reason="stop",
        status="complete",
        created=1.7e9 + number * 60.0,
    )


_INSERT = (
    "INSERT INTO turns (turn_id, notebook, chat, position, data, cell_id, slim_tokens, "
    "image_tokens, images) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "turn_id, notebook, chat, position, data, cell_id, slim_tokens, image_tokens, images"


def _row(turn: Any, position: int) -> tuple[Any, ...]:
    """The ``turns`` row ``HistoryStore.save_turn`` writes for ``turn`` (a text-only turn)."""
    from ofox_jupyter._conversation import turn_sizes

    slim, extra, images = turn_sizes(turn)
    data = json.dumps(turn.to_dict(), ensure_ascii=False)
    return (turn.id, NOTEBOOK, turn.chat, position, data, turn.cell_id, slim, extra, images)


def build_store(path: Path, size: int) -> None:
    """A store holding one chat of ``size`` turns under ``NOTEBOOK``.

    The first turns go through ``save_turn``; their rows must equal what :func:`_row` makes, and
    then the rest are inserted the same way in one transaction (seconds instead of minutes). The
    result is checked by reading it back with the store itself.
    """
    import sqlite3

    from ofox_jupyter._history import HistoryStore

    rng = random.Random(size)
    turns = [make_turn(n, rng) for n in range(size)]
    real = min(3, size)
    store = HistoryStore(path)
    for turn in turns[:real]:
        store.save_turn(NOTEBOOK, turn)
    store.close()

    db = sqlite3.connect(path, isolation_level=None)
    try:
        saved = db.execute(f"SELECT {_COLUMNS} FROM turns ORDER BY position").fetchall()
        mimic = [_row(t, p) for p, t in enumerate(turns[:real])]
        if saved != mimic:
            raise SystemExit("the pre-filled rows differ from what save_turn writes; fix _row()")
        db.execute("BEGIN IMMEDIATE")
        db.executemany(_INSERT, (_row(t, p) for p, t in enumerate(turns) if p >= real))
        db.execute("COMMIT")
    finally:
        db.close()

    store = HistoryStore(path)
    try:
        (index,) = store.index(NOTEBOOK)
        if list(index.columns[0]) != [t.id for t in turns]:
            raise SystemExit(f"the pre-filled store of {size} turns does not read back in order")
        sample = [turns[0], turns[size // 2], turns[-1]]
        if store.load_turns([t.id for t in sample]) != {t.id: t for t in sample}:
            raise SystemExit(f"the pre-filled store of {size} turns does not load back equal")
        if store.skipped:
            raise SystemExit(f"the pre-filled store of {size} turns has unreadable rows")
    finally:
        store.close()
    if Path(f"{path}-wal").exists() and Path(f"{path}-wal").stat().st_size:
        raise SystemExit("the store's write-ahead log was not checkpointed on close")


# -- the children (one fresh interpreter per measurement)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_save(store_path: str, size: int, reps: int) -> dict[str, Any]:
    import sqlite3

    from ofox_jupyter._history import HistoryStore

    store = HistoryStore(store_path)
    (index,) = store.index(NOTEBOOK)
    assert len(index) == size, (len(index), size)
    rng = random.Random(f"more-{size}")  # not the pre-filled turns (seeds are abs()ed)
    warm = 20
    turns = [make_turn(size + k, rng, question=300, answer=1500) for k in range(warm + reps)]
    other = sqlite3.connect(store_path, isolation_level=None, timeout=5.0)
    times: list[float] = []
    positions: set[int] = set()
    for number, turn in enumerate(turns):
        started = time.perf_counter()
        store.save_turn(NOTEBOOK, turn)
        elapsed = time.perf_counter() - started
        if number >= warm:
            times.append(elapsed)
        (position,) = other.execute(
            "SELECT position FROM turns WHERE turn_id = ?", (turn.id,)
        ).fetchone()
        positions.add(position)
        other.execute("DELETE FROM turns WHERE turn_id = ?", (turn.id,))
    other.close()
    assert positions == {size}, positions  # each went after the N turns, as the next one would
    (index,) = store.index(NOTEBOOK)
    assert len(index) == size, (len(index), size)
    store.close()
    return {
        "ms": [t * 1e3 for t in times],
        "bytes": len(json.dumps(turns[0].to_dict(), ensure_ascii=False).encode()),
    }


def _new_shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.config.OfoxMagics.history_key = KEY  # before %load_ext: the key decides what is restored
    return shell


def child_cell(store_path: str, size: int, cells: int) -> dict[str, Any]:
    import contextlib
    import io

    from ofox_jupyter._conversation import Conversation

    # The one step whose work could grow with the chat: choosing and loading the window to send.
    # Timed apart (process time, as the whole cell) so that a growth shows where it comes from.
    window_cpu: list[float] = []
    choose = Conversation.request_messages

    def timed_choose(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return choose(self, *args, **kwargs)
        finally:
            window_cpu.append(time.process_time() - started)

    Conversation.request_messages = timed_choose  # type: ignore[method-assign]

    shell = _new_shell()
    with contextlib.redirect_stdout(io.StringIO()) as loaded:
        shell.run_line_magic("load_ext", "ofox_jupyter")
    assert f"restored {size} turns" in loaded.getvalue(), loaded.getvalue()
    shell.run_line_magic("config", "OfoxMagics.display_mode = 'text'")
    shell.run_line_magic("config", f"OfoxMagics.max_context_tokens = {CONTEXT_TOKENS}")
    magics = shell.magics_manager.registry["OfoxMagics"]
    session = magics.session
    chat = session.chats[CHAT]
    assert len(chat) == size and session.notebook == NOTEBOOK
    assert isinstance(chat, Conversation)
    assert os.path.samefile(session.store.path, store_path)

    warm = 3
    window_cpu.clear()
    cpu: list[float] = []
    wall: list[float] = []
    sent: list[int] = []
    left_out: list[int] = []
    prompt_tokens: list[int] = []
    serials: list[int] = []
    for number in range(warm + cells):
        with contextlib.redirect_stdout(io.StringIO()) as shown:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            shell.run_cell_magic("ofox", "", PROMPT)
            cpu_end, wall_end = time.process_time(), time.perf_counter()
        exchange = shell.user_ns["_ofox"]
        reply = exchange.reply
        assert exchange.status == "complete" and exchange.error is None, exchange
        assert not reply.offline, "answered by the built-in emulator, not the separate process"
        match = re.fullmatch(r"chatcmpl-emu(\d+)", reply.id or "")
        assert match, reply.id
        assert PROMPT in reply.text and reply.text[-40:] in shown.getvalue()
        turn_match = re.search(r"· turn (\d+)\*", reply.text)
        assert turn_match, reply.text[:200]
        if number >= warm:
            cpu.append(cpu_end - cpu_start)
            wall.append(wall_end - wall_start)
            serials.append(int(match.group(1)))
            sent.append(int(turn_match.group(1)) - 1)  # the emulator counts user messages
            left_out.append(exchange.omitted_turns)
            prompt_tokens.append(reply.usage.prompt_tokens)
    rss = _rss_mb()
    assert len(window_cpu) == warm + cells, len(window_cpu)
    assert len(chat) == size + warm + cells, (len(chat), size + warm + cells)
    (index,) = session.store.index(NOTEBOOK)
    assert len(index) == size + warm + cells
    assert serials == sorted(set(serials))
    # The emulator ran elsewhere: its server (uvicorn) was never imported here.
    assert "uvicorn" not in sys.modules
    return {
        "cpu_ms": [t * 1e3 for t in cpu],
        "wall_ms": [t * 1e3 for t in wall],
        "window_ms": [t * 1e3 for t in window_cpu[warm:]],
        "rss_mb": rss,
        "sent": sent,
        "left_out": left_out,
        "prompt_tokens": prompt_tokens,
        "serials": serials,
    }


def child_restore(store_path: str, size: int, traced: bool) -> dict[str, Any]:
    import contextlib
    import gc
    import importlib
    import io
    import tracemalloc

    for name in PRELOAD:
        importlib.import_module(name)
    shell = _new_shell()
    gc.collect()
    before = set(sys.modules)
    rss_before = _rss_mb()
    if traced:
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        started = time.perf_counter()
        shell.run_line_magic("load_ext", "ofox_jupyter")
        magics = shell.magics_manager.registry["OfoxMagics"]
        session = magics.session
        elapsed = time.perf_counter() - started
    peak = retained = float("nan")
    if traced:
        _, peak_bytes = tracemalloc.get_traced_memory()
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak, retained = (peak_bytes - base) / 2**20, (current - base) / 2**20
    rss_after = _rss_mb()
    turns = len(session.chats[CHAT]) if CHAT in session.chats else 0
    assert turns == size, (turns, size)
    assert f"restored {size} turns" in shown.getvalue(), shown.getvalue()
    return {
        "ms": elapsed * 1e3,
        "peak_mb": peak,
        "retained_mb": retained,
        "rss_growth_mb": rss_after - rss_before,
        "turns": turns,
        "imported": sorted(set(sys.modules) - before),
    }


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "save": lambda store, size, n: child_save(store, size, n),
    "cell": lambda store, size, n: child_cell(store, size, n),
    "restore": lambda store, size, n: child_restore(store, size, bool(n)),
}


# -- the orchestra


def run_child(kind: str, store: Path, size: int, number: int, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(store), str(size), str(number)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {kind} run at {size} turns failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def on_copy(
    kind: str, template: Path, work: Path, size: int, number: int, env: dict[str, str]
) -> Any:
    """One child run on a fresh copy of the pre-filled store (OFOX_HISTORY_PATH points there)."""
    store = work / f"{kind}-{size}" / "history.sqlite3"
    if store.parent.exists():
        shutil.rmtree(store.parent)
    store.parent.mkdir(parents=True)
    shutil.copyfile(template, store)
    return run_child(kind, store, size, number, dict(env, OFOX_HISTORY_PATH=str(store)))


class EmulatorProcess:
    """``python -m ofox_jupyter.emulator`` on a free port, with a key, no pacing delay."""

    def __init__(self, env: dict[str, str]) -> None:
        self.key = "sk-bench-" + os.urandom(8).hex()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ofox_jupyter.emulator", "--port", "0", "--delay", "0"]
            + ["--api-key", self.key],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on (http://\S+/v1)", line)
        if not found:
            self.stop()
            raise SystemExit(f"the emulator did not start: {line!r}")
        self.base_url = found.group(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _pool(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [value for run in runs for value in run[key]]


def summarise(
    saves: list[dict[str, Any]],
    cells: list[dict[str, Any]],
    restores: list[dict[str, Any]],
    traced: dict[str, Any],
) -> dict[str, Any]:
    """The figures of one size, from all its runs."""
    save_ms, cpu_ms = _pool(saves, "ms"), _pool(cells, "cpu_ms")
    return {
        "save": {
            "median_ms": statistics.median(save_ms),
            "p90_ms": statistics.quantiles(save_ms, n=10)[-1],
            "bytes": saves[0]["bytes"],
            "count": len(save_ms),
        },
        "cell": {
            "cpu_ms": statistics.median(cpu_ms),
            "round_cpu_ms": [statistics.median(c["cpu_ms"]) for c in cells],
            "wall_ms": statistics.median(_pool(cells, "wall_ms")),
            "window_ms": statistics.median(_pool(cells, "window_ms")),
            "rss_mb": statistics.median(c["rss_mb"] for c in cells),
            "sent": statistics.median(_pool(cells, "sent")),
            "left_out": statistics.median(_pool(cells, "left_out")),
            "prompt_tokens": statistics.median(_pool(cells, "prompt_tokens")),
            "count": len(cpu_ms),
            "rounds": len(cells),
        },
        "restore": {
            "ms": statistics.median(r["ms"] for r in restores),
            "min_ms": min(r["ms"] for r in restores),
            "rss_growth_mb": statistics.median(r["rss_growth_mb"] for r in restores),
            "peak_mb": traced["peak_mb"],
            "retained_mb": traced["retained_mb"],
            "turns": traced["turns"],
            "count": len(restores),
            "imported": sorted({m for r in restores for m in r["imported"]}),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", default="100,1000,10000", help="chat lengths, comma-separated")
    parser.add_argument(
        "--child", nargs=4, metavar=("KIND", "STORE", "SIZE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        kind, store, size, number = args.child
        print(json.dumps(CHILDREN[kind](store, int(size), int(number))))
        return 0

    began = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    # Per round: every size once, in a rotated order, so that a busy moment of the machine hits
    # all sizes alike; the figures pool the rounds.
    rounds, saves, cells, restores = (2, 30, 8, 2) if args.quick else (5, 60, 20, 2)

    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("OFOX_") and name != "JPY_SESSION_NAME"
        }
        env["IPYTHONDIR"] = str(work / "ipython")  # IPython's own history stays out of ~
        env["JUPYTER_DATA_DIR"] = str(work / "jupyter")

        built: dict[int, float] = {}
        templates: dict[int, Path] = {}
        for size in sizes:
            templates[size] = work / f"template-{size}" / "history.sqlite3"
            templates[size].parent.mkdir()
            started = time.perf_counter()
            build_store(templates[size], size)
            built[size] = time.perf_counter() - started

        emulator = EmulatorProcess(env)
        try:
            cell_env = dict(env, OFOX_BASE_URL=emulator.base_url, OFOX_API_KEY=emulator.key)
            last_serial = 0
            runs: dict[int, dict[str, list[Any]]] = {
                size: {"save": [], "cell": [], "restore": []} for size in sizes
            }
            for number in range(rounds):
                for size in sizes[number % len(sizes) :] + sizes[: number % len(sizes)]:
                    template, run = templates[size], runs[size]
                    run["save"].append(on_copy("save", template, work, size, saves, env))
                    cell = on_copy("cell", template, work, size, cells, cell_env)
                    assert cell["serials"][0] > last_serial, "the emulator process did not answer"
                    last_serial = cell["serials"][-1]
                    run["cell"].append(cell)
                    run["restore"] += [
                        on_copy("restore", template, work, size, 0, env) for _ in range(restores)
                    ]
            for size in sizes:
                run = runs[size]
                traced = on_copy("restore", templates[size], work, size, 1, env)
                results[size] = summarise(run["save"], run["cell"], run["restore"], traced)
                results[size]["build_s"] = built[size]
        finally:
            emulator.stop()
    elapsed = time.perf_counter() - began

    first, last = sizes[0], sizes[-1]
    rows: list[tuple[str, Callable[[dict[str, Any]], Any], str, str, bool]] = [
        # label, value, format (empty: the value is text), target, ratio shown
        (
            "add a turn, persisted, ms",
            lambda r: r["save"]["median_ms"],
            "{:.2f}",
            "≤ 5 at 1,000",
            True,
        ),
        ("  p90, ms", lambda r: r["save"]["p90_ms"], "{:.2f}", "", True),
        (
            "one more cell, kernel CPU, ms",
            lambda r: r["cell"]["cpu_ms"],
            "{:.1f}",
            f"≤ {TARGET_CELL_RATIO}× of 100",
            True,
        ),
        (
            "  spread of round medians, ms",
            lambda r: "{:.1f}–{:.1f}".format(
                min(r["cell"]["round_cpu_ms"]), max(r["cell"]["round_cpu_ms"])
            ),
            "",
            "",
            False,
        ),
        (
            "  of which request_messages, ms",
            lambda r: r["cell"]["window_ms"],
            "{:.2f}",
            "",
            True,
        ),
        ("  wall per cell, ms", lambda r: r["cell"]["wall_ms"], "{:.1f}", "", True),
        ("  turns sent per request", lambda r: r["cell"]["sent"], "{:.0f}", "same", True),
        ("  turns left out per request", lambda r: r["cell"]["left_out"], "{:,.0f}", "", False),
        ("  prompt tokens sent", lambda r: r["cell"]["prompt_tokens"], "{:,.0f}", "same", True),
        ("  kernel RSS after cells, MB", lambda r: r["cell"]["rss_mb"], "{:.1f}", "", True),
        ("%load_ext restore, ms", lambda r: r["restore"]["ms"], "{:.1f}", "≤ 50 at 10,000", True),
        ("  min, ms", lambda r: r["restore"]["min_ms"], "{:.1f}", "", True),
        (
            "  tracemalloc peak, MB",
            lambda r: r["restore"]["peak_mb"],
            "{:.2f}",
            "≤ 10 at 10,000",
            True,
        ),
        ("  tracemalloc retained, MB", lambda r: r["restore"]["retained_mb"], "{:.2f}", "", True),
        ("  RSS growth, MB", lambda r: r["restore"]["rss_growth_mb"], "{:.1f}", "", True),
        ("  turns restored", lambda r: r["restore"]["turns"], "{:,.0f}", "= N", False),
    ]
    width = 14
    heads = [f"{size:,} turns" for size in sizes]
    ratio_head = f"{last:,}/{first:,}"
    mode = "quick" if args.quick else "full"
    print(f"History costs by chat length ({mode}: medians; N turns already in the chat)\n")
    print(f"{'':<32}" + "".join(f"{h:>{width}}" for h in heads) + f"{ratio_head:>{width}}   target")
    for label, value, fmt, target, with_ratio in rows:
        values = [value(results[s]) for s in sizes]
        cells_text = "".join(f"{fmt.format(v) if fmt else v:>{width}}" for v in values)
        ratio = f"{values[-1] / values[0]:.2f}×" if with_ratio and values[0] else ""
        print(f"{label:<32}{cells_text}{ratio:>{width}}   {target}")

    verdicts = []
    if 1000 in results:
        save = results[1000]["save"]["median_ms"]
        verdicts.append(
            f"add a turn at 1,000: {save:.2f} ms (≤ {TARGET_SAVE_MS:.0f})"
            + _ok(save <= TARGET_SAVE_MS)
        )
    cell_ratio = results[last]["cell"]["cpu_ms"] / results[first]["cell"]["cpu_ms"]
    verdicts.append(
        f"one more cell, {last:,} vs {first:,}: {cell_ratio:.2f}× (≤ {TARGET_CELL_RATIO})"
        + _ok(cell_ratio <= TARGET_CELL_RATIO)
    )
    if 10000 in results:
        restore = results[10000]["restore"]
        verdicts.append(
            f"restore at 10,000: {restore['ms']:.1f} ms (≤ {TARGET_RESTORE_MS:.0f})"
            + _ok(restore["ms"] <= TARGET_RESTORE_MS)
        )
        verdicts.append(
            f"restore at 10,000: {restore['peak_mb']:.2f} MB peak (≤ {TARGET_RESTORE_MB:.0f})"
            + _ok(restore["peak_mb"] <= TARGET_RESTORE_MB)
        )
    print("\n" + "\n".join(verdicts))

    sample = results[first]
    imported = sorted({m for s in sizes for m in results[s]["restore"]["imported"]})
    method = (
        "Method: every figure comes from a fresh interpreter on its own copy of a pre-filled "
        "store (turns of ~200 + ~1,000 characters, unique, with cell ids; built in "
        + ", ".join(f"{results[s]['build_s']:.1f} s" for s in sizes)
        + "). "
        f"Add a turn: save_turn of a {sample['save']['bytes']:,}-byte turn, median of "
        f"{sample['save']['count']}, the row removed again after each. One more cell: "
        f"%%ofox against `python -m ofox_jupyter.emulator` in a separate process (its CPU is not "
        f"counted), time.process_time() of the kernel process around run_cell_magic, median of "
        f"{sample['cell']['count']} cells ({sample['cell']['rounds']} kernels of "
        f"{cells} after 3 warm-up ones); max_context_tokens = {CONTEXT_TOKENS:,} so the same "
        f"turns are sent at every size (counted by the emulator). Restore: wall time of "
        f"%load_ext + magics.session with the package imported beforehand, median of "
        f"{sample['restore']['count']} interpreters; tracemalloc in one more. The sizes take "
        f"turns in {rounds} rounds, so a busy moment of the machine hits them alike. "
        f"Modules first imported by the timed restore: {', '.join(imported) or 'none'}. "
        f"Took {elapsed:.0f} s."
    )
    print("\n" + textwrap.fill(method, width=100))
    return 0


def _ok(good: bool) -> str:
    return ": ok" if good else ": OVER TARGET"


if __name__ == "__main__":
    raise SystemExit(main())
