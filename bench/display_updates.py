"""Live display of a streamed ``%%ofox`` reply at any length, measured in a real kernel.

A real ipykernel (offline: the built-in emulator runs inside it) streams structured Markdown
replies (``[emulator-prose: N]``: paragraphs, headings, lists, tables; ``[emulator-code: N]``:
fenced code blocks between sentences) through the ``%%ofox`` renderer at about 100 and 500
chunks a second, and this process reads every iopub message of the cell as a frontend would.
For each reply it prints, for ours and for "update the whole reply on every chunk" (chatlab's
way) side by side:

* **longest gap** between visible updates while the reply streams (from the first text shown to
  the final render; a frozen block and the new output after it, sent together, are one update);
  target ≤ 0.5 s;
* **updates/s**: the most visible updates in any one-second window; target ≤ 15;
* **bytes / reply**: the MIME payloads of every display message of the cell (live outputs,
  status lines, updates, the final render with its footer), in UTF-8 bytes, over the reply's;
  target ≤ 3.

The whole-reply figures are *computed* from the chunks the emulator sent (the sum of every
prefix, the chunk rate, the chunk interval), not sent: at 600k characters that would be tens of
gigabytes. They are what that approach asks of the kernel and the browser, if both kept up.

It also prints the time from the first text reaching the renderer to its display update being
handed to the kernel's iopub socket, and to this process receiving it (target ≤ 50 ms).

    python bench/display_updates.py            # 1k, 10k, 100k characters (~5 minutes)
    python bench/display_updates.py --full     # also 600k (~35 minutes)
    python bench/display_updates.py --size 10000 --rate 500 --kind prose   # one run
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import queue
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

TIMEOUT = 3600.0  # seconds for one cell: 600k characters at 100 chunks/s take ~15 minutes
MAGICS = "get_ipython().magics_manager.registry['OfoxMagics']"
LIVE_KEY = "ofox_live"  # ofox_jupyter._display.LIVE_KEY (not imported: the kernel runs it)
#: Characters per word of the emulator's structured documents (to aim at a size).
CHARS_PER_WORD = {"prose": 6.6, "code": 10.1}
#: [emulator-delay: S] that gives about this many chunks a second (asyncio's sleep overshoots).
DELAY_FOR_RATE = {100: 0.0093, 500: 0.0019}

# Runs in the kernel after the streamed cell: the renderer's timestamps (monotonic), the offset
# that turns them into wall-clock time, and the chunks as the emulator split them.
PROBE = f"""
import json as _json, time as _time
from ofox_jupyter.emulator._model import split_pieces as _split
_live = {MAGICS}.last_live
print(_json.dumps({{
    "first_text_at": _live.first_text_at,
    "first_shown_at": _live.first_shown_at,
    "last_text_at": _live.last_text_at,
    "wall_minus_monotonic": _time.time() - _time.monotonic(),
    "reply_bytes": len(_ofox.text.encode()),
    "reply_chars": len(_ofox.text),
    "chunk_bytes": [len(p.encode()) for p in _split(_ofox.text)],
    "status": _ofox.status,
}}))
"""


@dataclass
class Message:
    """One iopub message and when this process received it (wall clock)."""

    raw: dict[str, Any]
    received: float

    @property
    def type(self) -> str:
        return str(self.raw["msg_type"])

    @property
    def sent(self) -> float:
        """When the kernel published it (its header date)."""
        return float(self.raw["header"]["date"].timestamp())

    @property
    def data(self) -> dict[str, str]:
        return dict(self.raw["content"].get("data", {}))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.raw["content"].get("metadata", {}))


def execute(kc: BlockingKernelClient, code: str) -> list[Message]:
    """Run ``code`` and return its iopub messages, until the kernel is idle again."""
    msg_id = kc.execute(code, store_history=False)
    messages: list[Message] = []
    while True:
        try:
            raw = kc.get_iopub_msg(timeout=TIMEOUT)
        except queue.Empty:
            raise SystemExit(f"the kernel did not finish within {TIMEOUT:.0f} s") from None
        received = time.time()
        if raw["parent_header"].get("msg_id") != msg_id:
            continue
        message = Message(raw, received)
        if message.type == "error":
            raise SystemExit(f"{raw['content']['ename']}: {raw['content']['evalue']}")
        messages.append(message)
        if message.type == "status" and raw["content"]["execution_state"] == "idle":
            return messages


def stdout_of(messages: list[Message]) -> str:
    return "".join(m.raw["content"]["text"] for m in messages if m.type == "stream")


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` (sorted) that fall in any half-open window of ``window`` seconds."""
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def moments(times: list[float], together: float = 0.01) -> list[float]:
    """``times`` (sorted) with those sent within ``together`` of the previous one merged."""
    merged: list[float] = []
    for t in times:
        if not merged or t - merged[-1] > together:
            merged.append(t)
    return merged


def measure(kc: BlockingKernelClient, kind: str, size: int, rate: int, run: int) -> dict[str, Any]:
    words = max(1, round(size / CHARS_PER_WORD[kind]))
    code = (
        f"%%ofox --chat bench-{run}\n"
        f"Go. [emulator-{kind}: {words}] [emulator-delay: {DELAY_FOR_RATE[rate]:g}]"
    )
    messages = execute(kc, code)
    probe = json.loads(stdout_of(execute(kc, PROBE)))
    if probe["status"] != "complete":
        raise SystemExit(f"the stream ended {probe['status']}")

    displays = [m for m in messages if m.type in ("display_data", "update_display_data")]
    texts = [m for m in displays if m.type == "update_display_data" and LIVE_KEY in m.metadata]
    finals = [m for m in displays if m.type == "display_data" and "ofox" in m.metadata]
    shown = moments(sorted([m.sent for m in texts] + [finals[-1].sent]))
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    payload = sum(len(v.encode()) for m in displays for v in m.data.values())

    chunks: list[int] = probe["chunk_bytes"]
    streaming = probe["last_text_at"] - probe["first_text_at"]
    chunk_rate = (len(chunks) - 1) / streaming if streaming > 0 else float("inf")
    prefix = whole = 0
    for n in chunks:  # the whole reply so far, on every chunk
        prefix += n
        whole += prefix
    first_text_wall = probe["first_text_at"] + probe["wall_minus_monotonic"]
    first_text = texts[0] if texts else finals[-1]
    return {
        "kind": kind,
        "chars": probe["reply_chars"],
        "rate": chunk_rate,
        "gap": max(gaps, default=0.0),
        "per_second": max_in_window(shown[:-1]),
        "bytes": payload / probe["reply_bytes"],
        "outputs": len({m.raw["content"]["transient"]["display_id"] for m in texts}),
        "whole_gap": 1 / chunk_rate,
        "whole_per_second": chunk_rate,
        "whole_bytes": (whole + probe["reply_bytes"]) / probe["reply_bytes"],
        "first_kernel_ms": (probe["first_shown_at"] - probe["first_text_at"]) * 1e3,
        "first_here_ms": (first_text.received - first_text_wall) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also 600k characters (~35 min)")
    parser.add_argument("--size", type=int, action="append", help="reply characters (repeatable)")
    parser.add_argument("--rate", type=int, action="append", choices=sorted(DELAY_FOR_RATE))
    parser.add_argument("--kind", action="append", choices=sorted(CHARS_PER_WORD))
    args = parser.parse_args(argv)
    sizes = args.size or ([1_000, 10_000, 100_000] + ([600_000] if args.full else []))
    rates = args.rate or [100, 500]
    kinds = args.kind or ["prose", "code"]

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("OFOX_") and name != "JPY_SESSION_NAME"
        }
        env["OFOX_HISTORY_PATH"] = str(Path(tmp) / "history.sqlite3")
        # The kernel's stderr goes to a file (its start-up warnings would break up the table),
        # shown if the run fails.
        log_path = Path(tmp) / "kernel.log"
        with log_path.open("w") as log:
            km: KernelManager
            km, kc = start_new_kernel(
                kernel_name="python3", env=env, startup_timeout=60, stderr=log
            )
            try:
                execute(kc, "%load_ext ofox_jupyter")
                # The first exchange starts the emulator and fetches the catalog: not measured.
                execute(kc, "%%ofox --chat warm-up\nwarm up")
                results = []
                print(header(), flush=True)
                for size in sizes:
                    for rate in rates:
                        for kind in kinds:
                            result = measure(kc, kind, size, rate, len(results))
                            results.append(result)
                            print(row(result), flush=True)
            except BaseException:
                print(f"kernel stderr:\n{log_path.read_text()}")
                raise
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=False)

    over = [
        f"{r['kind']} {r['chars']:,} @ {r['rate']:.0f}/s: {what}"
        for r in results
        for what, bad in (
            (f"gap {r['gap']:.2f} s", r["gap"] > 0.5),
            (f"{r['per_second']} updates/s", r["per_second"] > 15),
            (f"bytes {r['bytes']:.2f}×", r["bytes"] > 3),
            (f"first token {r['first_kernel_ms']:.1f} ms", r["first_kernel_ms"] > 50),
        )
        if bad
    ]
    print("\nall within target" if not over else "\nOVER TARGET: " + "; ".join(over))
    return 0


def header() -> str:
    return (
        f"{'':<26}{'──── ours ────':>34}   {'── whole reply every chunk ──':>32}\n"
        f"{'reply':<14}{'chunks/s':>10}  {'gap s':>7}{'upd/s':>7}{'bytes×':>8}{'outputs':>9}"
        f"   {'gap s':>7}{'upd/s':>8}{'bytes×':>11}   {'first token ms':>15}"
    )


def row(r: dict[str, Any]) -> str:
    reply = f"{r['kind']} {r['chars'] / 1000:,.0f}k"
    return (
        f"{reply:<14}{r['rate']:>10,.0f}  {r['gap']:>7.2f}{r['per_second']:>7}{r['bytes']:>8.2f}"
        f"{r['outputs']:>9}   {r['whole_gap']:>7.3f}{r['whole_per_second']:>8,.0f}"
        f"{r['whole_bytes']:>11,.0f}   {r['first_kernel_ms']:>7.1f} /{r['first_here_ms']:>6.1f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
