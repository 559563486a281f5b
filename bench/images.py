"""Image to data URL: time and size for a 4000×3000 photo and a 640×480 figure.

Each case is printed beside the floor: a plain Pillow ``save()`` of the same image (what any
pipeline pays at least to encode it). The photo is synthetic but photo-like — smooth colour
gradients plus sensor-like noise, no dominant colour — since no real photo ships with the repo;
it is measured both as an in-memory PIL image and as the JPEG file a camera would give.

    python bench/images.py [--repeat 5]

Targets (product.md): photo ≤ 250 ms and ≤ 1.5 MB; figure ≤ 30 ms.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from ofox_jupyter._images import prepare_image


def photo(width: int = 4000, height: int = 3000) -> Image.Image:
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    base = np.concatenate(
        [x * 200 + y * 40, y * 180 + 20 * np.sin(x * 30), (1 - x) * 150 + y * 80], axis=2
    )
    noisy = base + rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    return Image.fromarray(noisy.clip(0, 255).astype("uint8"))


def figure_image() -> tuple[Any, Image.Image]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    xs = np.linspace(0, 10, 200)
    ax.plot(xs, np.sin(xs), label="sin")
    ax.plot(xs, np.cos(xs), label="cos")
    ax.set_title("A typical notebook plot")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    return fig, image


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up: first-call imports and plugin registration
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000, result


def plain_save(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    big = photo()
    jpeg_file = plain_save(big, "JPEG")
    fig, fig_image = figure_image()
    cases = [
        (
            "4000×3000 photo, PIL image",
            lambda: prepare_image(big, "high"),
            lambda: plain_save(big, "JPEG"),
            250,
            1.5,
        ),
        (
            "4000×3000 photo, JPEG file bytes",
            lambda: prepare_image(jpeg_file, "high"),
            lambda: plain_save(big, "JPEG"),
            250,
            1.5,
        ),
        (
            "640×480 figure, rendered image",
            lambda: prepare_image(fig_image),
            lambda: plain_save(fig_image, "PNG"),
            30,
            None,
        ),
        (
            "640×480 figure, Figure object",
            lambda: prepare_image(fig),
            lambda: plain_save(fig_image, "PNG"),
            None,
            None,
        ),
    ]
    print(f"best of {args.repeat} runs")
    print(f"{'case':<36} {'ours':>9} {'floor':>9} {'sent':>14} {'data URL':>10}  target")
    for name, ours, floor, target_ms, target_mb in cases:
        ours_ms, prepared = best(ours, args.repeat)
        floor_ms, _ = best(floor, args.repeat)
        size_mb = len(prepared.url) / 1e6
        target = []
        if target_ms is not None:
            target.append(f"≤ {target_ms} ms {'ok' if ours_ms <= target_ms else 'MISSED'}")
        if target_mb is not None:
            target.append(f"≤ {target_mb} MB {'ok' if size_mb <= target_mb else 'MISSED'}")
        sent = f"{prepared.width}×{prepared.height} {prepared.mime.split('/')[1]}"
        print(
            f"{name:<36} {ours_ms:7.1f}ms {floor_ms:7.1f}ms {sent:>14} {size_mb:8.3f}MB  "
            f"{', '.join(target) or '—'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
