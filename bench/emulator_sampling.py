"""The emulator's cost per generated token, with and without its word model.

A request without sampling parameters is answered as before (the prompt restated, then filler
words); one with ``temperature`` also gets a continuation drawn from the word model. Both are
measured two ways, per completion token, best of 5:

* **in the emulator** — its completion function alone (no HTTP, no client): where the word model
  does its work;
* **as a user sees it** — streamed requests through the client to the built-in emulator over
  HTTP on 127.0.0.1 (``OFOX_EMULATOR_DELAY=0``): what a cell waits for.

    python bench/emulator_sampling.py [--requests 200]

Target (issue 13): with sampling, the cost per token stays within 2x of the emulator without it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

os.environ["OFOX_EMULATOR_DELAY"] = "0"
os.environ.pop("OFOX_API_KEY", None)
os.environ.pop("OFOX_BASE_URL", None)

from ofox_jupyter import Client  # noqa: E402
from ofox_jupyter.emulator._conversation import analyse  # noqa: E402
from ofox_jupyter.emulator._model import complete  # noqa: E402

PROMPT = "Explain what a data frame is, and how to plot one. [emulator-words: 60]"


def best_per_token(run: Callable[[int], int], requests: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        tokens = sum(run(n) for n in range(requests))
        best = min(best, (time.perf_counter() - started) / tokens)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    base: dict[str, Any] = {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": PROMPT}],
    }

    def in_emulator(sampling: bool) -> Callable[[int], int]:
        def run(n: int) -> int:
            body = {**base, "temperature": 1.0, "seed": n} if sampling else base
            return complete(analyse(body), body, "openai/gpt-4o", reasoning=False).completion_tokens

        return run

    client = Client()

    def streamed(sampling: bool) -> Callable[[int], int]:
        def run(n: int) -> int:
            extra = {"temperature": 1.0, "seed": n} if sampling else {}
            with client.stream(PROMPT, model="openai/gpt-4o", **extra) as stream:
                usage = stream.reply.usage
            return usage.completion_tokens if usage else 1

        return run

    rows = []
    for name, make in (("in the emulator", in_emulator), ("streamed over HTTP", streamed)):
        plain = best_per_token(make(False), args.requests)
        sampled = best_per_token(make(True), args.requests)
        rows.append((name, plain, sampled))
    client.close()
    print(f"{'µs per completion token':<24}{'without':>10}{'with temperature':>18}{'ratio':>8}")
    for name, plain, sampled in rows:
        print(f"{name:<24}{plain * 1e6:>10.2f}{sampled * 1e6:>18.2f}{sampled / plain:>8.2f}")
    print("\ntarget: ratio ≤ 2 as a user sees it (streamed)")


if __name__ == "__main__":
    main()
