"""Textual-inversion embeddings stored in images, in A1111's two layouts.

1. A text chunk `sd-ti-embedding` (PNG tEXt, or WebP/other info) holding base64 of JSON in which
   tensors are written as {"TORCHTENSOR": nested lists}.
2. Data hidden in the pixels (A1111 textual_inversion/image_embedding.py), used when the chunk
   was lost: the same JSON, zlib-compressed (level 9), split into low and high nibbles. Each
   nibble stream is repeated (np.resize) to a length that is a multiple of 3h (h = image height)
   and shaped (h, -1, 3) into an RGB block. The block's high nibbles get a decorative dot pattern;
   its low nibbles are XORed with an LCG stream (a=1664525, c=1013904223, m=2^32, seed 0,
   value = state % 255, used & 0x0F). Layout: [low block][black column][picture][black column]
   [high block].
   Reading: crop black borders (a pixel with any channel 0 counts as black), keep low nibbles;
   black columns are those whose low nibbles are all zero; the data blocks lie left of the first
   and right of the last one; XOR back, join nibbles, decompress (the repeats after the zlib
   stream are ignored).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

TEXT_CHUNK = "sd-ti-embedding"
_TENSOR_KEY = "TORCHTENSOR"


def lcg_stream(count: int, seed: int = 0) -> np.ndarray:
    """The first `count` values of A1111's LCG (as uint8, each `state % 255`)."""
    out = np.empty(count, dtype=np.uint8)
    state = seed
    for i in range(count):
        state = (1664525 * state + 1013904223) % 4294967296
        out[i] = state % 255
    return out


def _xor_block(block: np.ndarray) -> np.ndarray:
    noise = lcg_stream(int(np.prod(block.shape))).reshape(block.shape)
    return np.bitwise_xor(block.astype(np.uint8), noise & 0x0F)


def _decode_tensors(value: Any) -> Any:
    if isinstance(value, dict):
        if _TENSOR_KEY in value:
            return torch.from_numpy(np.array(value[_TENSOR_KEY]))
        return {k: _decode_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_tensors(v) for v in value]
    return value


def _encode_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {_TENSOR_KEY: value.detach().cpu().numpy().tolist()}
    if isinstance(value, dict):
        return {k: _encode_tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_tensors(v) for v in value]
    return value


def embedding_from_text_chunk(text: str | bytes) -> dict[str, Any]:
    """The embedding dict in an `sd-ti-embedding` chunk (base64 JSON)."""
    data = json.loads(base64.b64decode(text))
    if not isinstance(data, dict):
        raise ValueError("sd-ti-embedding chunk does not hold a JSON object")
    decoded = _decode_tensors(data)
    assert isinstance(decoded, dict)
    return decoded


def embedding_to_text_chunk(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(_encode_tensors(data)).encode()).decode()


def _crop_black(pixels: np.ndarray) -> np.ndarray:
    mask = np.all(pixels > 0, axis=2)
    columns, rows = np.any(mask, axis=0), np.any(mask, axis=1)
    if not columns.any():
        return pixels[:0, :0]
    col_start, col_end = columns.argmax(), mask.shape[1] - columns[::-1].argmax()
    row_start, row_end = rows.argmax(), mask.shape[0] - rows[::-1].argmax()
    return pixels[row_start:row_end, col_start:col_end]


def embedding_from_pixels(image: Image.Image) -> dict[str, Any] | None:
    """The embedding hidden in an image's pixels, or None when the image holds none."""
    pixels = _crop_black(np.asarray(image.convert("RGB"), dtype=np.uint8)) & 0x0F
    black = np.where(pixels.sum(axis=(0, 2)) == 0)[0]
    if black.shape[0] < 2:
        return None
    low = _xor_block(pixels[:, : black.min(), :])
    high = _xor_block(pixels[:, black.max() + 1 :, :])
    if low.shape != high.shape or low.size == 0:
        return None
    packed = ((high << 4) | low).flatten().tobytes()
    try:
        raw = zlib.decompressobj().decompress(packed)
        data = json.loads(raw)
    except (zlib.error, ValueError):
        return None
    decoded = _decode_tensors(data)
    return decoded if isinstance(decoded, dict) else None


def embedding_from_image(image: Image.Image) -> dict[str, Any] | None:
    """An embedding stored in an image: the text chunk first, then hidden pixel data; None if neither."""
    text = getattr(image, "text", None) or {}
    chunk = text.get(TEXT_CHUNK) if isinstance(text, dict) else None
    if chunk is None:
        chunk = image.info.get(TEXT_CHUNK)
    if chunk is not None:
        return embedding_from_text_chunk(chunk)
    return embedding_from_pixels(image)


# --------------------------------------------------------------------------------------------
# writing (A1111's "save embedding as image"; tests build their files with it)


def _dot_pattern(block: np.ndarray, shades: np.ndarray) -> np.ndarray:
    """Decorate the high nibbles with A1111's grid of dots shaded by the embedding's values."""
    canvas = Image.new("RGB", (block.shape[1], block.shape[0]))
    draw = ImageDraw.Draw(canvas)
    index = 0
    for x in range(-6, canvas.size[0], 8):
        for row, y in enumerate(range(-6, canvas.size[1], 8)):
            offset = 4 if row % 2 == 0 else 0
            shade = int(shades[index % len(shades)])
            index += 1
            draw.ellipse((x + offset, y, x + 6 + offset, y + 6), fill=(shade, shade, shade))
    return block ^ (np.asarray(canvas, dtype=np.uint8) & 0xF0)


def _nibble_block(values: np.ndarray, height: int) -> np.ndarray:
    size = values.shape[0] + (height - values.shape[0] % height)
    size = size + (height * 3 - size % (height * 3))
    return np.resize(values, size).reshape((height, -1, 3))


def embed_in_pixels(image: Image.Image, data: dict[str, Any]) -> Image.Image:
    """A new image: `image` framed by the two data blocks (A1111's insert_image_data_embed layout)."""
    compressed = zlib.compress(json.dumps(_encode_tensors(data)).encode(), level=9)
    values = np.frombuffer(compressed, np.uint8)
    height = image.size[1]
    first = next(iter(data["string_to_param"].values())).detach().cpu().float().numpy().reshape(-1)[:1024]
    shades = (np.abs(first) / max(float(np.abs(first).max()), 1e-12) * 255).astype(np.uint8)
    low = _xor_block(_dot_pattern(_nibble_block(values & 0x0F, height), shades))
    high = _xor_block(_dot_pattern(_nibble_block(values >> 4, height), shades[::-1]))
    low_image, high_image = Image.fromarray(low, "RGB"), Image.fromarray(high, "RGB")
    width = image.size[0] + low_image.size[0] + high_image.size[0] + 2
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(low_image, (0, 0))
    canvas.paste(image.convert("RGB"), (low_image.size[0] + 1, 0))
    canvas.paste(high_image, (low_image.size[0] + 1 + image.size[0] + 1, 0))
    return canvas
