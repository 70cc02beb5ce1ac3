"""Image metadata I/O: writing the infotext into PNG/JPEG/WebP/GIF/AVIF, reading it back, base64.

A1111 1.10 storage (images.save_image_with_geninfo / read_info_from_image, api.encode_pil_to_base64):
- PNG: tEXt chunk `parameters` (other text chunks kept).
- JPEG / WebP / AVIF: EXIF UserComment = piexif UserComment.dump(text, encoding="unicode").
- GIF: the `comment` extension.
Reading: `parameters`, overridden by a non-empty EXIF UserComment; GIF comment; NovelAI PNGs
(Software == "NovelAI") converted from their Description + Comment JSON.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import piexif
import piexif.helper
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

log = logging.getLogger(__name__)

EXIF_FORMATS = ("jpg", "jpeg", "webp", "avif")
DEFAULT_MAX_DECODE_PIXELS = 16384 * 8192

# image.info keys that are not metadata a user wrote (A1111 IGNORED_INFO_KEYS).
IGNORED_INFO_KEYS = frozenset(
    {
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "dpi",
        "exif",
        "loop",
        "background",
        "timestamp",
        "duration",
        "progressive",
        "progression",
        "icc_profile",
        "chromaticity",
        "photoshop",
    }
)


def _sampler_aliases() -> Mapping[str, str]:
    # A1111 samplers_map: lower-case name and aliases -> sampler name (used for NovelAI images).
    samplers: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("DPM++ 2M", ("k_dpmpp_2m",)),
        ("DPM++ SDE", ("k_dpmpp_sde",)),
        ("DPM++ 2M SDE", ("k_dpmpp_2m_sde",)),
        ("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",)),
        ("DPM++ 2S a", ("k_dpmpp_2s_a",)),
        ("DPM++ 3M SDE", ("k_dpmpp_3m_sde",)),
        ("Euler a", ("k_euler_a", "k_euler_ancestral")),
        ("Euler", ("k_euler",)),
        ("LMS", ("k_lms",)),
        ("Heun", ("k_heun",)),
        ("DPM2", ("k_dpm_2",)),
        ("DPM2 a", ("k_dpm_2_a",)),
        ("DPM fast", ("k_dpm_fast",)),
        ("DPM adaptive", ("k_dpm_ad",)),
        ("Restart", ("restart",)),
        ("DDIM", ("ddim",)),
        ("DDIM CFG++", ("ddim_cfgpp",)),
        ("PLMS", ("plms",)),
        ("UniPC", ("unipc",)),
        ("LCM", ("k_lcm",)),
    )
    table: dict[str, str] = {}
    for name, aliases in samplers:
        table[name.lower()] = name
        for alias in aliases:
            table[alias.lower()] = name
    return MappingProxyType(table)


SAMPLER_ALIASES: Mapping[str, str] = _sampler_aliases()


class ImageDecodeError(ValueError):
    """Base64/bytes that are not a usable image; the message says why."""


@dataclass
class ImageInfo:
    """Metadata read from an image: the infotext (if any) and the other info items."""

    parameters: str | None
    items: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def normalize_format(fmt: str) -> str:
    """'.PNG' -> 'png'; the extension-style name used throughout (jpg and jpeg both kept)."""
    name = fmt.lower().lstrip(".")
    if not name:
        raise ValueError("empty image format")
    return name


def pil_format(fmt: str) -> str:
    """Pillow's format name for an extension ('jpg' -> 'JPEG'); ValueError for unknown ones."""
    name = normalize_format(fmt)
    registered = Image.registered_extensions()
    if f".{name}" not in registered:
        raise ValueError(f"unsupported image format {fmt!r}")
    return registered[f".{name}"]


def exif_user_comment(text: str) -> bytes:
    """EXIF block holding only UserComment = text (A1111's encoding: 'UNICODE\\0' + UTF-16)."""
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(text, encoding="unicode")}})


def _for_lossy_format(image: Image.Image, fmt: str) -> Image.Image:
    if image.mode == "I;16":  # 16-bit grey: scale to 8 bits as A1111 does
        return image.point(lambda p: p * 0.0038910505836576).convert("RGB" if fmt == "webp" else "L")
    if image.mode == "RGBA":  # A1111 drops alpha for JPEG and WebP alike
        return image.convert("RGB")
    if fmt in ("jpg", "jpeg") and image.mode not in ("RGB", "L", "CMYK"):
        return image.convert("RGB")  # P, LA, I, F...: JPEG cannot store them
    return image


def write_image_with_geninfo(
    image: Image.Image,
    target: str | Path | IO[bytes],
    infotext: str | None,
    fmt: str,
    *,
    quality: int = 80,
    webp_lossless: bool = False,
    enable_pnginfo: bool = True,
    existing_pnginfo: Mapping[str, Any] | None = None,
    pnginfo_section_name: str = "parameters",
) -> None:
    """Encode `image` as `fmt` into a path or binary file object with the infotext embedded."""
    name = normalize_format(fmt)
    pil_name = pil_format(name)
    if name == "png":
        pnginfo = None
        if enable_pnginfo:
            chunks = dict(existing_pnginfo or {})
            if infotext is not None:
                chunks[pnginfo_section_name] = infotext
            pnginfo = PngImagePlugin.PngInfo()
            for key, value in chunks.items():
                pnginfo.add_text(str(key), str(value))
        image.save(target, format=pil_name, pnginfo=pnginfo)
    elif name in EXIF_FORMATS:
        kwargs: dict[str, Any] = {"quality": quality}
        if name == "webp":
            kwargs["lossless"] = webp_lossless
        if enable_pnginfo and infotext is not None:
            kwargs["exif"] = exif_user_comment(infotext)
        _for_lossy_format(image, name).save(target, format=pil_name, **kwargs)
    elif name == "gif":
        extra = {"comment": infotext} if enable_pnginfo and infotext is not None else {}
        image.save(target, format=pil_name, **extra)
    else:
        image.save(target, format=pil_name, quality=quality)


def save_image_with_geninfo(
    image: Image.Image,
    path: str | Path,
    infotext: str | None,
    fmt: str | None = None,
    quality: int = 80,
    existing_pnginfo: Mapping[str, Any] | None = None,
    *,
    webp_lossless: bool = False,
    enable_pnginfo: bool = True,
    pnginfo_section_name: str = "parameters",
) -> None:
    """Save to `path` (format from `fmt`, else from the path's extension) with the infotext embedded."""
    fmt = fmt or Path(path).suffix
    write_image_with_geninfo(
        image,
        path,
        infotext,
        fmt,
        quality=quality,
        webp_lossless=webp_lossless,
        enable_pnginfo=enable_pnginfo,
        existing_pnginfo=existing_pnginfo,
        pnginfo_section_name=pnginfo_section_name,
    )


def embed_infotext(
    image: Image.Image, infotext: str | None, fmt: str = "png", *, quality: int = 80, webp_lossless: bool = False
) -> bytes:
    """The encoded file bytes of `image` with the infotext embedded (PNG keeps str info chunks)."""
    buffer = io.BytesIO()
    existing = _text_chunks(image) if normalize_format(fmt) == "png" else None
    write_image_with_geninfo(
        image, buffer, infotext, fmt, quality=quality, webp_lossless=webp_lossless, existing_pnginfo=existing
    )
    return buffer.getvalue()


def _text_chunks(image: Image.Image) -> dict[str, str]:
    return {k: v for k, v in (image.info or {}).items() if isinstance(k, str) and isinstance(v, str)}


def encode_image_base64(image: Image.Image, fmt: str = "png", infotext: str | None = None, *, quality: int = 80) -> str:
    """Base64 of the encoded image, as A1111's API returns images (encode_pil_to_base64).

    The infotext defaults to the image's own `parameters` text. JPEG/WebP always carry a
    UserComment (empty when there is no infotext), like A1111.
    """
    name = normalize_format(fmt)
    if name not in ("png", "jpg", "jpeg", "webp"):
        raise ValueError(f"invalid image format {fmt!r} for the API: use png, jpg, jpeg or webp")
    text = infotext if infotext is not None else (image.info or {}).get("parameters")
    if name != "png":
        text = text or ""
        if image.mode == "P":
            image = image.convert("RGB")
    data = embed_infotext(image, text, name, quality=quality)
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _exif_user_comment(exif_data: Any) -> str:
    try:
        exif = piexif.load(exif_data)
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error):
        return ""  # unreadable EXIF: treated as absent, as A1111 does
    raw = (exif or {}).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
    try:
        return str(piexif.helper.UserComment.load(raw))
    except ValueError:
        return raw.decode("utf8", errors="ignore") if isinstance(raw, bytes) else str(raw)


def novelai_infotext(items: Mapping[str, Any], width: int, height: int, sampler_aliases: Mapping[str, str]) -> str:
    """A1111 infotext for a NovelAI PNG (Description + Comment JSON); ValueError/KeyError if malformed."""
    info = json.loads(items["Comment"])
    sampler = sampler_aliases.get(info["sampler"], "Euler a")
    return (
        f"{items['Description']}\n"
        f"Negative prompt: {info['uc']}\n"
        f"Steps: {info['steps']}, Sampler: {sampler}, CFG scale: {info['scale']}, Seed: {info['seed']}, "
        f"Size: {width}x{height}, Clip skip: 2, ENSD: 31337"
    )


def read_info_from_image(image: Image.Image, sampler_aliases: Mapping[str, str] | None = None) -> ImageInfo:
    """The infotext and the other metadata items of an opened image (A1111 read_info_from_image).

    Bytes-valued items are decoded as UTF-8 so the result can go straight into JSON.
    """
    items: dict[str, Any] = {k: v for k, v in (image.info or {}).items() if isinstance(k, str)}
    parameters = items.pop("parameters", None)

    if "exif" in items:
        comment = _exif_user_comment(items["exif"])
        if comment:
            parameters = comment
    elif "comment" in items:  # GIF
        raw = items["comment"]
        parameters = raw.decode("utf8", errors="ignore") if isinstance(raw, bytes) else str(raw)

    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)

    if items.get("Software") == "NovelAI":
        try:
            parameters = novelai_infotext(items, image.width, image.height, sampler_aliases or SAMPLER_ALIASES)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("could not read NovelAI generation parameters: %s", exc)

    items = {k: (v.decode("utf8", errors="ignore") if isinstance(v, bytes) else v) for k, v in items.items()}
    return ImageInfo(parameters=parameters, items=items)


def infotext_from_upload(data: bytes, max_text_length: int = 10000) -> str | None:
    """Infotext from a dropped file: an image's metadata, else short UTF-8 text (A1111 image_data)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return read_info_from_image(image).parameters
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        pass
    try:
        text = data.decode("utf8")
    except UnicodeDecodeError:
        return None
    return text if len(text) < max_text_length else None


def strip_data_uri(data: str) -> str:
    """'data:image/png;base64,AAAA' -> 'AAAA' (other strings unchanged)."""
    data = data.strip()
    if data.startswith("data:"):
        header, sep, payload = data.partition(",")
        if not sep:
            raise ImageDecodeError("invalid data URI: no ',' after the header")
        if ";base64" not in header:
            raise ImageDecodeError("invalid data URI: only base64 data URIs are accepted")
        return payload
    return data


def decode_image_base64(data: str, *, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> Image.Image:
    """Open a base64 image (plain or data: URI), refusing non-images and more than `max_pixels`.

    Like A1111's images.read: EXIF orientation applied; palette/RGB PNGs with a transparency
    chunk become RGBA.
    """
    payload = strip_data_uri(data)
    if not payload:
        raise ImageDecodeError("empty image data")
    try:
        raw = base64.b64decode(payload)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"invalid base64 image data: {exc}") from exc
    return decode_image_bytes(raw, max_pixels=max_pixels)


def decode_image_bytes(raw: bytes, *, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> Image.Image:
    """Open encoded image bytes with the same checks as `decode_image_base64`."""
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageDecodeError(
                f"image too large: {width}x{height} = {width * height} pixels, the limit is {max_pixels}"
            )
        image.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageDecodeError(f"invalid encoded image: not a readable image file ({exc})") from exc
    return _fix_image(image)


def _fix_image(image: Image.Image) -> Image.Image:
    fixed = ImageOps.exif_transpose(image) or image
    if fixed.mode in ("RGB", "P") and isinstance(fixed.info.get("transparency"), bytes):
        fixed = fixed.convert("RGBA")
    return fixed
