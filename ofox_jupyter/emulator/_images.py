"""What the emulator "sees" in an ``image_url`` part: size, mode, main colours, chart or not.

A ``data:image/...;base64,`` URL is decoded with Pillow (imported lazily; only this module uses it).
An http(s) URL is never fetched: it is described as a remote image.  Anything else is an error.

Colour heuristic (deterministic, documented so replies are predictable):

* the image is composited over white (transparent pixels count as white), converted to RGB and
  box-downscaled to at most 64 px on its long side;
* each pixel is mapped to the nearest (Euclidean RGB) of eleven named colours: white, black, grey,
  red, orange, yellow, green, blue, purple, pink, brown;
* the description lists up to three colours with a share of at least 5 %, most frequent first
  (ties in the palette order above);
* "looks like a chart" when at least 40 % of the 64-px pixels are near-white (every channel
  ≥ 225), at most six named colours have a share of at least 1 %, and there is some ink: at least
  0.1 % of the pixels of a ≤ 512-px box-downscaled copy have a channel below 225 (so a blank page
  is not a chart, while a thin plotted line on white is).

Prompt-token cost follows OpenAI's published rule: ``detail`` low costs 85; otherwise the image is
fitted into 2048×2048, its short side scaled down to 768, and it costs 85 + 170 per 512-px tile.
A remote image, whose size is unknown offline, is costed as 1024×1024.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageDecodeError", "ImageInfo", "describe_image_url", "image_tokens"]

PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("white", (255, 255, 255)),
    ("black", (0, 0, 0)),
    ("grey", (128, 128, 128)),
    ("red", (220, 30, 30)),
    ("orange", (255, 140, 0)),
    ("yellow", (240, 220, 30)),
    ("green", (40, 160, 40)),
    ("blue", (30, 100, 220)),
    ("purple", (140, 80, 190)),
    ("pink", (240, 130, 190)),
    ("brown", (140, 85, 60)),
)
_NEAR_WHITE = 225
_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


class ImageDecodeError(ValueError):
    """The image part's URL could not be turned into an image."""


@dataclass(frozen=True)
class ImageInfo:
    """One received image: its ``description`` (no "Image N:" prefix) and prompt ``tokens``."""

    description: str
    tokens: int
    width: int | None = None
    height: int | None = None
    mode: str | None = None


def image_tokens(width: int, height: int, detail: str) -> int:
    """Prompt tokens for one image of ``width``×``height`` at ``detail`` (OpenAI's tile rule)."""
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return 85 + 170 * max(1, tiles)


def describe_image_url(url: str, detail: str = "auto", *, describe: bool = True) -> ImageInfo:
    """Describe the image behind ``url``; raise :class:`ImageDecodeError` if it is unusable.

    With ``describe=False`` only the header is read (size and token cost, empty description),
    which is all the emulator needs for images of earlier turns.
    """
    if url.startswith(("http://", "https://")):
        return ImageInfo(
            description=f"remote image at {url} (not fetched offline)",
            tokens=image_tokens(1024, 1024, detail),
        )
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match["params"].lower():
        raise ImageDecodeError("not a base64 data URL or an http(s) URL")
    try:
        data = base64.b64decode("".join(match["data"].split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageDecodeError("invalid base64 data") from None
    return _describe_bytes(data, detail, describe)


def _describe_bytes(data: bytes, detail: str, describe: bool) -> ImageInfo:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            mode = image.mode
            if not describe:
                return ImageInfo("", image_tokens(width, height, detail), width, height, mode)
            if image.format == "JPEG":
                image.draft("RGB", (512, 512))  # decode a reduced JPEG: we only need colours
            image.load()
            rgb = _flatten(image)
    except Exception as exc:  # Pillow raises many types for corrupt or unknown data
        raise ImageDecodeError(str(exc) or type(exc).__name__) from None
    colours = _colour_shares(rgb)
    main = [name for name, share in colours if share >= 0.05][:3]
    text = f"{width}×{height} {mode}, mostly {_join(main)}"
    if _looks_like_chart(rgb, colours):
        text += "; looks like a chart"
    return ImageInfo(
        description=text,
        tokens=image_tokens(width, height, detail),
        width=width,
        height=height,
        mode=mode,
    )


def _flatten(image: PILImage.Image) -> PILImage.Image:
    """RGB copy of ``image`` with any transparency composited over white."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "F"):
        return image.convert("L").convert("RGB")
    return image.convert("RGB")


def _downscale(image: PILImage.Image, box: int) -> PILImage.Image:
    from PIL import Image

    width, height = image.size
    scale = min(1.0, box / max(width, height))
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def _nearest(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    best_name, best_distance = PALETTE[0][0], math.inf
    for name, (pr, pg, pb) in PALETTE:
        distance = (r - pr) ** 2 + (g - pg) ** 2 + (b - pb) ** 2
        if distance < best_distance:
            best_name, best_distance = name, distance
    return best_name


def _colour_shares(rgb: PILImage.Image) -> list[tuple[str, float]]:
    """Named colours with their pixel shares in the 64-px copy, most frequent first."""
    small = _downscale(rgb, 64)
    total = small.size[0] * small.size[1]
    counts = dict.fromkeys((name for name, _ in PALETTE), 0)
    for count, colour in small.getcolors(maxcolors=total + 1) or []:
        assert isinstance(colour, tuple)
        counts[_nearest((colour[0], colour[1], colour[2]))] += count
    order = {name: i for i, (name, _) in enumerate(PALETTE)}
    ranked = sorted(counts.items(), key=lambda item: (-item[1], order[item[0]]))
    return [(name, count / total) for name, count in ranked if count]


def _looks_like_chart(rgb: PILImage.Image, colours: list[tuple[str, float]]) -> bool:
    small = _downscale(rgb, 64)
    near_white = _share_below(small, _NEAR_WHITE, invert=True)
    if near_white < 0.40:
        return False
    if sum(1 for _, share in colours if share >= 0.01) > 6:
        return False
    return _share_below(_downscale(rgb, 512), _NEAR_WHITE) >= 0.001


def _share_below(rgb: PILImage.Image, threshold: int, *, invert: bool = False) -> float:
    """Share of pixels whose darkest channel is below ``threshold`` (or not, with ``invert``)."""
    from PIL import ImageChops

    red, green, blue = rgb.split()
    darkest = ImageChops.darker(ImageChops.darker(red, green), blue)
    histogram = darkest.histogram()
    total = sum(histogram)
    below = sum(histogram[:threshold])
    return (total - below) / total if invert else below / total


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
