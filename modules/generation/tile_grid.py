"""A1111's image tiles for img2img scripts (SD upscale, Poor man's outpainting) and extensions
(`images.split_grid` / `images.combine_grid`): cut an image into tiles of a fixed size that overlap
by at least `overlap` pixels, run each tile through img2img, and join them again with a linear fade
across each overlap so no seam shows.

`Grid.tiles` keeps A1111's shape, which scripts index directly: a list of rows `[y, h, row]`,
each row a list of `[x, w, tile_image]`; a script replaces `tile[2]` with the processed tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class Grid:
    tiles: list[list[Any]] = field(default_factory=list)
    tile_w: int = 512
    tile_h: int = 512
    image_w: int = 512
    image_h: int = 512
    overlap: int = 64


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread tile offsets covering [0, length); the last tile ends at `length`."""
    count = max(1, math.ceil((length - overlap) / max(1, tile - overlap)))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [min(int(i * step), max(0, length - tile)) for i in range(count)]


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 8) -> Grid:
    grid = Grid([], tile_w, tile_h, image.width, image.height, overlap)
    for y in _starts(image.height, tile_h, overlap):
        row = [[x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))] for x in _starts(image.width, tile_w, overlap)]
        grid.tiles.append([y, tile_h, row])
    return grid


def _fade(length: int, overlap: int, axis: int) -> np.ndarray:
    """Weights rising linearly over the first `overlap` pixels along `axis` (0 = rows, 1 = columns)."""
    ramp = np.ones(length, dtype=np.float32)
    if overlap > 0:
        ramp[:overlap] = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    return ramp[:, None, None] if axis == 0 else ramp[None, :, None]


def _paste(canvas: np.ndarray, part: np.ndarray, at: int, overlap: int, axis: int) -> None:
    """Put `part` at offset `at` along `axis`, fading into what is already there over `overlap`."""
    length = part.shape[axis]
    target = canvas[at : at + length] if axis == 0 else canvas[:, at : at + length]
    weight = _fade(length, overlap if at > 0 else 0, axis)
    target[...] = part * weight + target * (1 - weight)


def combine_grid(grid: Grid) -> Image.Image:
    canvas = np.zeros((grid.image_h, grid.image_w, 3), dtype=np.float32)
    previous_y_end = 0
    for y, h, row in grid.tiles:
        strip = np.zeros((h, grid.image_w, 3), dtype=np.float32)
        previous_x_end = 0
        for x, _w, tile in row:
            pixels = np.asarray(tile.convert("RGB"), dtype=np.float32)[:h, : grid.image_w - x]
            _paste(strip, pixels, x, max(0, previous_x_end - x), axis=1)
            previous_x_end = x + pixels.shape[1]
        _paste(canvas, strip[: grid.image_h - y], y, max(0, previous_y_end - y), axis=0)
        previous_y_end = y + h
    return Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")
