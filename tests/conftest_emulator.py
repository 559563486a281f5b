"""Helpers shared by the emulator tests: an independent SSE splitter and in-memory images.

The SSE splitter here is deliberately tiny and strict (blank-line separated blocks, ``data:`` and
``event:`` fields, ``:`` comments) and shares no code with the package, so it checks the emulator's
bytes rather than agreeing with another decoder.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

KEY = "sk-test-emulator"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass(frozen=True)
class Block:
    """One blank-line-terminated SSE block: its comment, event name and data lines."""

    raw: str
    comment: str | None
    event: str | None
    data: str | None

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


def sse_blocks(text: str) -> list[Block]:
    """Split a complete SSE body into blocks; asserts the body ends with a blank line."""
    assert text.endswith("\n\n"), repr(text[-80:])
    blocks: list[Block] = []
    for raw in text[:-2].split("\n\n"):
        comment = event = data = None
        for line in raw.split("\n"):
            if line.startswith(":"):
                comment = line[1:].strip()
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        blocks.append(Block(raw=raw, comment=comment, event=event, data=data))
    return blocks


def data_chunks(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of every ``data:`` block except ``[DONE]``."""
    return [b.json() for b in sse_blocks(text) if b.data is not None and b.data != "[DONE]"]


def png_data_url(image: Image.Image, fmt: str = "PNG") -> str:
    """A ``data:image/...;base64,`` URL of ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/{fmt.lower()};base64,{encoded}"


def chart_like_image() -> Image.Image:
    """A white 640×480 image with black axes and a thin blue line, like a default plot."""
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(60, 420), (600, 420)], fill=(0, 0, 0), width=1)
    draw.line([(60, 40), (60, 420)], fill=(0, 0, 0), width=1)
    points = [(60 + x, 400 - int(300 * (x / 540) ** 2)) for x in range(0, 541, 10)]
    draw.line(points, fill=(31, 119, 180), width=2)
    return image


def user(content: Any) -> dict[str, Any]:
    """A user message."""
    return {"role": "user", "content": content}


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    """An ``image_url`` content part."""
    image: dict[str, Any] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}
