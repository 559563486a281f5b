"""Images for vision models: whatever the user has → a downscaled ``data:`` URL content part.

The only module that imports Pillow, and only when an image is actually sent. Accepted inputs:
a PIL image (any mode; EXIF orientation applied; palette, alpha and 16-bit handled), a matplotlib
figure, PNG/JPEG/GIF/WebP (or any Pillow-readable) bytes, a file path, an ``IPython.display.Image``,
anything with ``_repr_png_``/``_repr_jpeg_``, and an http(s) URL — which is sent as a URL and
never fetched by us (a URL is the model provider's to fetch; fetching it here would be hidden I/O).

Sizes follow what vision models can use (OpenAI's published tiling rule, which other providers
resemble): ``low`` fits a 512×512 box; ``high`` and ``auto`` fit 2048×2048 and then bring the
short side down to 768. Anything larger only costs upload time and tokens.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import ImageError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["DETAILS", "PreparedImage", "fit_size", "prepare_image"]

DETAILS = ("auto", "low", "high")
THUMBNAIL_SIDE = 160
JPEG_QUALITY = 85
_ORIENTATION = 0x0112  # the EXIF tag
#: More distinct colours than this (in a small sample) means a photo, not a plot.
_FLAT_COLOURS = 4096
#: How many of the most frequent colours must cover half the picture for it to count as flat.
_DOMINANT = 8
_URL = re.compile(r"^https?://\S+$", re.I)
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.I)
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to send: its content part, and a thumbnail to show what the model saw."""

    url: str  # a data: URL, or the user's http(s) URL as given
    detail: str | None
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    thumbnail: str | None = None  # a small data: URL for the cell; None for a remote URL
    source: str = ""

    @property
    def part(self) -> dict[str, Any]:
        image: dict[str, Any] = {"url": self.url}
        if self.detail is not None:
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()


def fit_size(width: int, height: int, detail: str | None) -> tuple[int, int]:
    """The size a vision model can use: a 512 box for ``low``; else ≤ 2048 long, ≤ 768 short."""
    scale = 1.0
    if detail == "low":
        scale = min(1.0, 512 / max(width, height))
    else:
        scale = min(1.0, 2048 / max(width, height))
        short = min(width, height) * scale
        if short > 768:
            scale *= 768 / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_image(obj: Any, detail: str | None = None, *, name: str = "") -> PreparedImage:
    """Turn ``obj`` into a :class:`PreparedImage`; every failure is one :class:`ImageError`."""
    if detail is not None and detail not in DETAILS:
        raise ImageError(f"--detail must be auto, low or high, not {detail!r}")
    label = name or type(obj).__name__
    if not isinstance(obj, str) and getattr(obj, "data", None) is None:
        remote = getattr(obj, "url", None)  # IPython.display.Image(url=...): still a URL
        if isinstance(remote, str) and _URL.match(remote.strip()):
            obj = remote
    if isinstance(obj, str) and _URL.match(obj.strip()):
        return PreparedImage(url=obj.strip(), detail=detail, source=f"{label}: {obj.strip()}")
    image, from_figure = _open(obj, label)
    return _encode(image, detail, label, prefer_png=from_figure)


# -- getting a PIL image out of whatever we were given


def _open(obj: Any, label: str) -> tuple[PILImage.Image, bool]:
    from PIL import Image

    if isinstance(obj, Image.Image):
        return _normalise(obj, label), False
    if _is_matplotlib_figure(obj):
        buffer = io.BytesIO()
        try:
            obj.savefig(buffer, format="png", dpi=obj.dpi, facecolor="white")
        except Exception as err:  # noqa: BLE001 - the user's figure: any failure is theirs
            raise ImageError(f"{label}: the figure could not be drawn ({_short(err)})") from None
        return _decode(buffer.getvalue(), label), True
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _decode(bytes(obj), label), False
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if isinstance(text, str) and _DATA_URL.match(text):
            return _decode(_base64(text.split(",", 1)[1], label), label), False
        try:
            path = Path(text).expanduser()
            found = path.is_file()
            data = path.read_bytes() if found else b""
        except (OSError, ValueError) as err:  # a NUL byte, a folder we may not read, …
            raise ImageError(f"{label}: cannot read {text!r} ({_short(err)})") from None
        if not found:
            shown = str(path) if len(str(path)) <= 120 and "\n" not in str(path) else _short(text)
            raise ImageError(f"{label}: no such file: {shown}", hint="check the path")
        return _decode(data, label), False
    rich = _rich_repr(obj, label)
    if rich is not None:
        return _decode(rich, label), False
    raise ImageError(
        f"{label}: cannot send a {type(obj).__name__} as an image",
        hint="use a PIL image, a matplotlib figure, bytes, a path, a URL, or 'last'",
    )


def _is_matplotlib_figure(obj: Any) -> bool:
    # Duck-typed so that sending a PIL image never imports matplotlib.
    return type(obj).__module__.startswith("matplotlib.") and hasattr(obj, "savefig")


def _rich_repr(obj: Any, label: str = "the image") -> bytes | None:
    """Bytes from ``IPython.display.Image`` or any object with ``_repr_png_``/``_repr_jpeg_``."""
    for method in ("_repr_png_", "_repr_jpeg_"):
        fn = getattr(obj, method, None)
        if fn is None or not callable(fn):
            continue
        try:
            data = fn()
        except Exception as err:  # noqa: BLE001 - the user's object: any failure is theirs
            raise ImageError(
                f"{label}: its {method}() failed ({_short(err)})", hint="display it to see why"
            ) from None
        if isinstance(data, tuple) and data:  # (data, metadata) is allowed by IPython
            data = data[0]
        if isinstance(data, str):
            data = _base64(data, label)
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
    return None


def _base64(text: str, label: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise ImageError(f"{label}: the image data is not valid base64") from None


def _short(what: BaseException | str) -> str:
    """An error (``Type: message``) or a value, on one line and at most 120 characters."""
    text = what if isinstance(what, str) else f"{type(what).__name__}: {what}"
    text = " ".join(repr(text)[1:-1].split()) if isinstance(what, str) else " ".join(text.split())
    return text if len(text) <= 120 else text[:119] + "…"


def _decode(data: bytes, label: str) -> PILImage.Image:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{label}: the image data is empty")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 89 M and 179 M pixels; we refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for free: ask for just enough pixels.
            if image.format == "JPEG":
                image.draft("RGB", _draft_size(image.size))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{label}: refusing an image this large (a decompression bomb?)",
            hint="downscale it first",
        ) from None
    except UnidentifiedImageError:
        kind = "corrupt image data" if data.startswith(_MAGIC) else "not an image"
        raise ImageError(f"{label}: {kind} (PNG, JPEG, GIF and WebP are supported)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{label}: corrupt image data ({err})") from None
    return _normalise(image, label)


def _draft_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = fit_size(*size, "high")
    return width, height


def _normalise(image: PILImage.Image, label: str) -> PILImage.Image:
    """Orientation and mode fixed: the result is RGB, RGBA or L, 8 bits."""
    from PIL import ImageOps

    if getattr(image, "is_animated", False):
        image.seek(0)  # an animated GIF/WebP: the first frame
    try:
        # Only photos carry an orientation tag; exif_transpose would copy every image otherwise.
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to refuse the picture
        pass
    mode = image.mode
    if mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB")  # opaque after all (most saved plots): smaller, faster PNG
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit or float greyscale: stretch its actual range to 0–255 rather than clip.
        low, high = image.getextrema()
        assert isinstance(low, (int, float)) and isinstance(high, (int, float))
        span = (high - low) or 1
        return image.point(lambda v: (v - low) * 255 / span).convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("LA", "PA", "RGBa", "La"):
        return image.convert("RGBA")
    if mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("L" if mode == "1" else "RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageError(f"{label}: unsupported image mode {mode}") from err


# -- downscale and encode


def _encode(
    image: PILImage.Image, detail: str | None, label: str, *, prefer_png: bool
) -> PreparedImage:
    from PIL import Image

    target = fit_size(image.width, image.height, detail)
    if target != image.size:
        # reducing_gap=1: a fast integer box reduce first, then Lanczos for the last step (4× faster
        # on a 12-megapixel photo, and no visible difference at the sizes we send).
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=1.0)
    # PNG keeps plots, text and line art crisp, and flat colours compress well; a photo in PNG is
    # five to ten times larger than a JPEG that looks the same, so photos go as JPEG.
    use_png = prefer_png or _is_flat(image)
    buffer = io.BytesIO()
    if use_png:
        # Level 1: plots still compress ~20:1, at half the time of the default level.
        image.save(buffer, format="PNG", compress_level=1)
        mime = "image/png"
    else:
        image = _flatten(image)
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False)
        mime = "image/jpeg"
    url = f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
    return PreparedImage(
        url=url,
        detail=detail,
        width=image.width,
        height=image.height,
        mime=mime,
        thumbnail=_thumbnail(image),
        source=label,
    )


def _is_flat(image: PILImage.Image) -> bool:
    """A plot, diagram or screenshot rather than a photo: a few colours cover most pixels.

    Counting distinct colours alone misreads grey photos (≤ 256 greys) as flat and anti-aliased
    plots (thousands of edge shades) as photos; what sets plots apart is that a handful of colours
    — the background, the lines — cover most of the picture.
    """
    sample = image.copy()
    sample.thumbnail((128, 128))
    colours = sample.getcolors(_FLAT_COLOURS)
    if colours is None:
        return False
    counts = sorted((count for count, _ in colours), reverse=True)
    return sum(counts[:_DOMINANT]) >= 0.5 * sum(counts)


def _flatten(image: PILImage.Image) -> PILImage.Image:
    """RGBA over a white page (transparent plot backgrounds look right), else unchanged."""
    from PIL import Image

    if image.mode != "RGBA":
        return image
    page = Image.new("RGB", image.size, "white")
    page.paste(image, mask=image.getchannel("A"))
    return page


def _thumbnail(image: PILImage.Image) -> str:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    small = _flatten(small)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
