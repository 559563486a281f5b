"""Images to vision models: every kind of input, checked by what the emulator says it received."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import pytest
from conftest import TEST_KEY
from PIL import Image

from ofox_jupyter import Client, ImageError
from ofox_jupyter._images import fit_size, prepare_image


@pytest.fixture
def client(emu):
    with Client(TEST_KEY, base_url=emu.base_url) as c:
        yield c


def seen(
    client: Client, *images, detail: str | None = None, model: str = "openai/gpt-4o"
) -> list[str]:
    """The emulator's description of each image it received."""
    text = client.chat("What do you see?", images=list(images), detail=detail, model=model).text
    return re.findall(r"^Image \d+: (.*)$", text, re.M)


def halves(size=(640, 480), left="red", right="blue", mode="RGB") -> Image.Image:
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def fake_photo(size: tuple[int, int]) -> Image.Image:
    """Smooth, colourful, no dominant colour: what a photo looks like to the encoder."""
    channels = [
        Image.effect_noise((size[0] // 100, size[1] // 100), sigma).resize(size, Image.BICUBIC)
        for sigma in (70, 80, 90)
    ]
    return Image.merge("RGB", channels)


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "size, detail, expected",
    [
        ((640, 480), None, (640, 480)),
        ((4000, 3000), "high", (1024, 768)),
        ((4000, 3000), "auto", (1024, 768)),
        ((3000, 1000), None, (2048, 683)),
        ((2000, 1000), "low", (512, 256)),
        ((100, 5000), None, (41, 2048)),
    ],
)
def test_fit_size(size, detail, expected):
    assert fit_size(*size, detail) == expected


def test_pil_image_described_as_sent(client):
    description = seen(client, halves())[0]
    assert description.startswith("640×480 RGB") and "red" in description and "blue" in description


def test_downscaled_before_sending(client, emu):
    photo = fake_photo((4000, 3000))
    assert seen(client, photo, detail="high")[0].startswith("1024×768 RGB")
    part = emu.requests[-1].body["messages"][-1]["content"][1]
    assert part["image_url"]["url"].startswith("data:image/jpeg;base64,")  # a photo: JPEG
    assert part["image_url"]["detail"] == "high"
    assert seen(client, halves((2000, 1000)), detail="low")[0].startswith("512×256 RGB")
    part = emu.requests[-1].body["messages"][-1]["content"][1]
    assert part["image_url"]["url"].startswith("data:image/png;base64,")  # flat colours: PNG


@pytest.mark.parametrize(
    "mode, described",
    [
        ("RGBA", "RGBA"),
        ("LA", "RGBA"),
        ("L", "L"),
        ("1", "L"),
        ("CMYK", "RGB"),
        ("I;16", "L"),
    ],
)
def test_modes(client, mode, described):
    if mode == "I;16":
        image = Image.new("I;16", (64, 32))
        image.putdata([i * 40 for i in range(64 * 32)])
    elif mode == "CMYK":
        image = Image.new("CMYK", (64, 32), (0, 255, 255, 0))  # red in CMYK
    else:
        image = Image.new(mode, (64, 32))
    assert seen(client, image)[0].startswith(f"64×32 {described}")


def test_palette_with_transparency(client):
    image = Image.new("P", (40, 20))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.info["transparency"] = 1
    assert seen(client, image)[0].startswith("40×20 RGBA")


def test_exif_orientation_is_applied(client):
    image = halves((60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    data = encoded(image, "JPEG", exif=exif.tobytes())
    assert seen(client, data)[0].startswith("40×60 RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_bytes_of_each_format(client, fmt):
    data = encoded(halves((80, 60)).convert("RGB"), fmt)
    assert seen(client, data)[0].startswith("80×60")


def test_paths_and_ipython_image_and_repr_png(client, tmp_path):
    from IPython.display import Image as IPythonImage

    png = encoded(halves((50, 40)), "PNG")
    path = tmp_path / "plot.png"
    path.write_bytes(png)

    class Diagram:
        def _repr_png_(self) -> bytes:
            return png

    for source in (str(path), path, IPythonImage(data=png), Diagram()):
        assert seen(client, source)[0].startswith("50×40 RGB"), source


def test_matplotlib_figure(client):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.plot([0, 1, 2, 3], [0, 1, 4, 9])
    description = seen(client, fig)[0]
    plt.close(fig)
    assert description.startswith("640×480 RGB") and "looks like a chart" in description


def test_url_is_sent_as_a_url_never_fetched(client, emu):
    url = "https://example.com/cat.png"
    assert seen(client, url) == [f"remote image at {url} (not fetched offline)."]
    assert emu.requests[-1].body["messages"][-1]["content"][1]["image_url"]["url"] == url


def test_several_images_keep_their_order(client):
    assert [d[:5] for d in seen(client, halves((10, 10)), halves((20, 10)))] == ["10×10", "20×10"]


def test_thumbnail_is_small():
    prepared = prepare_image(halves((1600, 1200)))
    thumb = Image.open(io.BytesIO(__import__("base64").b64decode(prepared.thumbnail.split(",")[1])))
    assert max(thumb.size) == 160 and prepared.width == 1024


def _bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims a huge size (correct CRC, tiny body)."""
    png = encoded(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


@pytest.mark.parametrize(
    "obj, fragment",
    [
        (42, "cannot send a int as an image"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "corrupt image data"),
        (b"hello, not an image", "not an image"),
        (b"", "empty"),
        ("/no/such/file.png", "no such file: /no/such/file.png"),
        (Path("/no/such/file.png"), "no such file"),
        ("data:image/png;base64,@@not base64@@", "not valid base64"),
        ("nul\x00byte.png", "no such file"),
    ],
)
def test_bad_input_is_one_clear_error(obj, fragment):
    with pytest.raises(ImageError, match=fragment) as info:
        prepare_image(obj, name="x")
    assert "\n" not in info.value.one_line()


def test_decompression_bomb_is_refused():
    with pytest.raises(ImageError, match="decompression bomb"):
        prepare_image(_bomb_png(20_000, 20_000))


def test_bad_detail():
    with pytest.raises(ImageError, match="--detail"):
        prepare_image(halves(), "ultra")


def test_text_only_model_refuses_images_with_400(client):
    from ofox_jupyter import BadRequestError

    with pytest.raises(BadRequestError, match="does not accept image input"):
        client.chat("see", images=[halves((10, 10))], model="deepseek/deepseek-v3.2")
