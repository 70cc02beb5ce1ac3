"""Image metadata I/O: infotext in PNG/JPEG/WebP/GIF, reading it back, NovelAI, base64."""

from __future__ import annotations

import base64
import io
import json

import piexif
import pytest
from PIL import Image, PngImagePlugin

from modules.generation.image_io import (
    ImageDecodeError,
    decode_image_base64,
    embed_infotext,
    encode_image_base64,
    exif_user_comment,
    infotext_from_upload,
    read_info_from_image,
    save_image_with_geninfo,
)

INFOTEXT = 'a fox, "snow": day\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Ünïcode: ✓'


def reopen(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def rgba(size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGBA", size, (200, 100, 50, 128))


@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp", "gif"])
def test_infotext_survives_each_format(fmt: str) -> None:
    image = rgba() if fmt != "gif" else rgba().convert("P")
    reopened = reopen(embed_infotext(image, INFOTEXT, fmt))
    info = read_info_from_image(reopened)
    assert info.parameters == INFOTEXT
    assert "exif" not in info.items and "parameters" not in info.items


def test_jpeg_uses_unicode_exif_user_comment() -> None:
    reopened = reopen(embed_infotext(rgba(), INFOTEXT, "jpg"))
    assert reopened.mode == "RGB"  # RGBA converted for JPEG
    raw = piexif.load(reopened.info["exif"])["Exif"][piexif.ExifIFD.UserComment]
    assert raw.startswith(b"UNICODE\x00")
    assert raw[8:].decode("utf-16-be") == INFOTEXT


def test_png_keeps_other_text_chunks_and_lists_them(tmp_path) -> None:
    path = tmp_path / "x.png"
    save_image_with_geninfo(rgba(), path, INFOTEXT, existing_pnginfo={"extras": "upscaled 2x", "Author": "me"})
    info = read_info_from_image(Image.open(path))
    assert info.parameters == INFOTEXT
    assert info.items == {"extras": "upscaled 2x", "Author": "me"}


def test_enable_pnginfo_off_writes_nothing(tmp_path) -> None:
    for fmt in ("png", "jpg"):
        path = tmp_path / f"x.{fmt}"
        save_image_with_geninfo(rgba(), path, INFOTEXT, enable_pnginfo=False)
        assert read_info_from_image(Image.open(path)).parameters is None


def test_nonempty_exif_comment_wins_over_parameters() -> None:
    buffer = io.BytesIO()
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("parameters", "from png chunk")
    rgba().save(buffer, format="PNG", pnginfo=pnginfo, exif=exif_user_comment("from exif"))
    assert read_info_from_image(reopen(buffer.getvalue())).parameters == "from exif"

    buffer = io.BytesIO()
    rgba().save(buffer, format="PNG", pnginfo=pnginfo, exif=exif_user_comment(""))
    assert read_info_from_image(reopen(buffer.getvalue())).parameters == "from png chunk"


def test_user_comment_without_charset_prefix_falls_back_to_utf8() -> None:
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: "plain utf8 ✓".encode()}})
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="JPEG", exif=exif)
    assert read_info_from_image(reopen(buffer.getvalue())).parameters == "plain utf8 ✓"


def test_broken_exif_is_ignored() -> None:
    image = Image.new("RGB", (4, 4))
    image.info["exif"] = b"Exif\x00\x00garbage"
    image.info["parameters"] = "kept"
    assert read_info_from_image(image).parameters == "kept"


def novelai_png(comment: dict[str, object] | str) -> Image.Image:
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("Title", "AI generated image")
    pnginfo.add_text("Description", "masterpiece, 1girl, silver hair")
    pnginfo.add_text("Software", "NovelAI")
    pnginfo.add_text("Comment", comment if isinstance(comment, str) else json.dumps(comment))
    buffer = io.BytesIO()
    Image.new("RGB", (512, 768)).save(buffer, format="PNG", pnginfo=pnginfo)
    return reopen(buffer.getvalue())


def test_novelai_png_is_converted() -> None:
    comment = {
        "steps": 28,
        "sampler": "k_euler_ancestral",
        "seed": 1234,
        "strength": 0.7,
        "scale": 11.0,
        "uc": "lowres, bad anatomy",
    }
    info = read_info_from_image(novelai_png(comment))
    assert info.parameters == (
        "masterpiece, 1girl, silver hair\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 11.0, Seed: 1234, Size: 512x768, Clip skip: 2, ENSD: 31337"
    )
    assert info.items["Software"] == "NovelAI" and info.items["Title"] == "AI generated image"
    assert "Comment" in info.items and "Description" in info.items


def test_novelai_sampler_names() -> None:
    def sampler_of(name: str) -> str:
        comment = {"steps": 1, "sampler": name, "seed": 1, "scale": 5, "uc": ""}
        parameters = read_info_from_image(novelai_png(comment)).parameters
        assert parameters is not None
        return parameters.split("Sampler: ")[1].split(",")[0]

    assert sampler_of("k_dpmpp_2m") == "DPM++ 2M"
    assert sampler_of("ddim") == "DDIM"
    assert sampler_of("k_lms") == "LMS"
    assert sampler_of("nai_smea") == "Euler a"  # unknown -> Euler a


def test_broken_novelai_comment_leaves_parameters_unset() -> None:
    assert read_info_from_image(novelai_png("{not json")).parameters is None


def test_infotext_from_upload() -> None:
    assert infotext_from_upload(embed_infotext(rgba(), "from image", "png")) == "from image"
    assert infotext_from_upload(b"pasted text\nSteps: 1") == "pasted text\nSteps: 1"
    assert infotext_from_upload(b"x" * 20000) is None
    assert infotext_from_upload(b"\xff\xfe\x00bad") is None


# --- base64 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_base64_round_trip_keeps_infotext(fmt: str) -> None:
    encoded = encode_image_base64(rgba((9, 7)), fmt, INFOTEXT)
    image = decode_image_base64(encoded)
    assert image.size == (9, 7)
    assert read_info_from_image(image).parameters == INFOTEXT


def test_base64_uses_the_images_own_parameters() -> None:
    image = reopen(embed_infotext(rgba(), "own text", "png"))
    assert read_info_from_image(decode_image_base64(encode_image_base64(image))).parameters == "own text"


def test_base64_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="invalid image format 'bmp'"):
        encode_image_base64(rgba(), "bmp")


def test_data_uri_is_accepted() -> None:
    payload = encode_image_base64(Image.new("RGB", (5, 3), (1, 2, 3)), "png")
    image = decode_image_base64(f"data:image/png;base64,{payload}")
    assert image.size == (5, 3) and image.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "empty image data"),
        ("   ", "empty image data"),
        (base64.b64encode(b"definitely not an image").decode(), "invalid encoded image"),
        ("abc", "invalid base64"),
        ("data:image/png,rawbytes", "only base64 data URIs"),
        ("data:image/png;base64", "no ','"),
    ],
)
def test_garbage_gives_a_clear_error(data: str, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image_base64(data)


def test_oversized_image_is_refused_before_decoding() -> None:
    payload = encode_image_base64(Image.new("L", (300, 200)), "png")
    with pytest.raises(ImageDecodeError, match=r"too large: 300x200 = 60000 pixels, the limit is 50000"):
        decode_image_base64(payload, max_pixels=50_000)
    assert decode_image_base64(payload, max_pixels=60_000).size == (300, 200)


def test_truncated_image_is_an_error() -> None:
    data = embed_infotext(Image.new("RGB", (64, 64), (9, 9, 9)), None, "png")
    with pytest.raises(ImageDecodeError, match="invalid encoded image"):
        decode_image_base64(base64.b64encode(data[: len(data) // 2]).decode())


def test_decode_applies_exif_orientation_and_png_transparency() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20)).save(buffer, format="JPEG", exif=exif.tobytes())
    assert decode_image_base64(base64.b64encode(buffer.getvalue()).decode()).size == (20, 40)

    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    palette.putpixel((1, 1), 1)
    palette.putpixel((2, 2), 2)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=bytes([0, 128, 255]))  # per-entry alpha: read back as bytes
    assert decode_image_base64(base64.b64encode(buffer.getvalue()).decode()).mode == "RGBA"
