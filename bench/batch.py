"""One prompt over 2,000 items at a gateway's rate limit: ``ofox_jupyter.batch`` side by side
with a plain ``asyncio.gather`` over the openai SDK's ``AsyncOpenAI`` and with a sequential loop.

The emulator runs in its own process (``ofox-emulator --rpm 1200 --latency 1``): it enforces
1,200 requests per rolling minute per API key, answers each request after a second (a short
reply's time to first token), and sends OfoxAI's ``x-ratelimit-*`` headers and 429s. Each
contender uses its own key, so each starts with an empty minute. Printed, for each:

* **rpm reached**: items answered per minute of wall-clock time (target for ours: ≥ 95 % of
  the limit);
* **429s**: requests the gateway refused, and their share of all requests sent (target ≤ 1 %);
* **failed**: items with no answer in the end;
* **CPU ms / item**: this process's CPU time (the emulator's is not counted) per item.

Then the same batch again, from the cache (target: under a second). The sequential loop is run
on ``--sequential`` items (default 60) and its time for all items extrapolated: one request at
a time, it never meets the limit, it just takes the latency times the items.

    python bench/batch.py                  # 2,000 items (~4 minutes)
    python bench/batch.py --items 500 --rpm 600 --latency 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PROMPT = "Label the sentiment of review {item}: positive, negative or mixed."


def start_emulator(rpm: int, latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ofox_jupyter.emulator", "--port", "0", "--delay", "0"]
        + ["--rpm", str(rpm), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1].strip()


class Counter:
    """Counts the statuses of every HTTP response a client receives (retries included)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    async def __call__(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)


def ours(url: str, items: list[str], cache_dir: Path) -> dict[str, Any]:
    import ofox_jupyter
    from ofox_jupyter._batch_cache import BatchCache

    options: dict[str, Any] = {
        "api_key": "sk-bench-ours",
        "base_url": url,
        "progress": False,
        "confirm_cost": 0,
    }
    with BatchCache(cache_dir / "cache.sqlite3") as cache:
        cpu, started = time.process_time(), time.perf_counter()
        result = ofox_jupyter.batch(PROMPT, items, cache=cache, **options)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        again_started = time.perf_counter()
        again = ofox_jupyter.batch(PROMPT, items, cache=cache, **options)
        again_seconds = time.perf_counter() - again_started
    assert again.from_cache == result.done, (again.from_cache, result.done)
    return {
        "seconds": seconds,
        "answered": result.done,
        "sent": result.sent,
        "refused": result.rate_limited,
        "cpu": cpu,
        "again": again_seconds,
    }


def openai_gather(url: str, items: list[str]) -> dict[str, Any]:
    from openai import AsyncOpenAI

    counter = Counter()

    async def run() -> list[Any]:
        http = httpx.AsyncClient(event_hooks={"response": [counter]}, timeout=600)
        client = AsyncOpenAI(base_url=url, api_key="sk-bench-openai", http_client=http)
        try:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="openai/gpt-4o-mini",
                        messages=[{"role": "user", "content": PROMPT.format(item=item)}],
                    )
                    for item in items
                ),
                return_exceptions=True,
            )
        finally:
            await client.close()

    cpu, started = time.process_time(), time.perf_counter()
    answers = asyncio.run(run())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    failed = sum(isinstance(a, BaseException) for a in answers)
    return {
        "seconds": seconds,
        "answered": len(items) - failed,
        "sent": len(counter.statuses),
        "refused": counter.statuses.count(429),
        "cpu": cpu,
    }


def sequential(url: str, items: list[str], sample: int) -> dict[str, Any]:
    from ofox_jupyter import Client

    with Client(api_key="sk-bench-loop", base_url=url) as client:
        cpu, started = time.process_time(), time.perf_counter()
        for item in items[:sample]:
            client.chat(PROMPT.format(item=item))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    scale = len(items) / sample
    return {  # one request at a time, far below the limit: nothing is refused
        "seconds": seconds * scale,
        "answered": len(items),
        "sent": len(items),
        "refused": 0,
        "cpu": cpu * scale,
        "note": f"(timed on {sample}, extrapolated)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=1200)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per request")
    parser.add_argument("--sequential", type=int, default=60, help="items the loop is timed on")
    args = parser.parse_args()
    items = [f"#{n}" for n in range(args.items)]
    os.environ.pop("OFOX_API_KEY", None)
    process, url = start_emulator(args.rpm, args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["OFOX_HISTORY_PATH"] = str(Path(tmp) / "history.sqlite3")
            rows = {
                "ofox_jupyter.batch": ours(url, items, Path(tmp)),
                "asyncio.gather(AsyncOpenAI)": openai_gather(url, items),
                "sequential loop": sequential(url, items, min(args.sequential, args.items)),
            }
    finally:
        process.terminate()
        process.wait(10)

    print(
        f"{args.items:,} items, limit {args.rpm:,} requests/min, {args.latency:g} s per request\n"
    )
    print(
        f"{'':<30}{'seconds':>9}{'rpm reached':>13}{'answered':>10}{'429s':>14}{'CPU ms/item':>13}"
    )
    for name, row in rows.items():
        rpm = row["answered"] / row["seconds"] * 60
        share = row["refused"] / row["sent"] if row["sent"] else 0.0
        refused = f"{row['refused']:,} ({share:.1%})"
        print(
            f"{name:<30}{row['seconds']:>9.1f}{rpm:>8,.0f} ({rpm / args.rpm:>3.0%})"
            f"{row['answered']:>10,}{refused:>14}{row['cpu'] / args.items * 1e3:>13.2f}"
            + (f"  {row['note']}" if "note" in row else "")
        )
    mine = rows["ofox_jupyter.batch"]
    print(f"\nthe same batch again, from the cache: {mine['again']:.2f} s")
    share = mine["refused"] / mine["sent"]
    reached = mine["answered"] / mine["seconds"] * 60 / args.rpm
    verdict = reached >= 0.95 and share <= 0.01 and mine["again"] < 1.0
    print(
        "targets (≥ 95 % of the limit, ≤ 1 % answered 429, cache re-run < 1 s): "
        + ("met" if verdict else "NOT MET")
    )


if __name__ == "__main__":
    main()
