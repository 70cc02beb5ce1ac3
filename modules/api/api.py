"""A1111's `modules.api.api` for extensions: the base64 image helpers its routes use.

A1111's `Api` class (which registers every /sdapi/v1 route) is not offered: our routes live in
modules/api/routes*.py; extensions add routes with on_app_started(demo, app).
"""

from __future__ import annotations

import base64
import io

from fastapi import HTTPException
from PIL import Image

from modules.generation.image_io import decode_image_base64

__all__ = ["decode_base64_to_image", "encode_pil_to_base64"]


def decode_base64_to_image(encoding: str) -> Image.Image:
    """A base64 image (plain or data: URI); HTTP 500 with the reason otherwise (A1111)."""
    try:
        return decode_image_base64(encoding)
    except ValueError as e:
        raise HTTPException(status_code=500, detail=f"Invalid encoded image: {e}") from e


def encode_pil_to_base64(image: Image.Image) -> bytes:
    """PNG bytes of the image, base64-encoded (A1111 returns bytes, not str)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue())
