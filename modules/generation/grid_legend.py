"""Legends around image grids (A1111's images.GridAnnotation / draw_grid_annotations /
draw_prompt_matrix): column titles on top, row titles on the left, optional margins between
cells. Used by the built-in X/Y/Z plot and Prompt matrix scripts and offered to extensions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

ACTIVE_COLOR = (0, 0, 0)
INACTIVE_COLOR = (153, 153, 153)
BACKGROUND = (255, 255, 255)


@dataclass
class GridAnnotation:
    """One line of a legend; inactive ones are drawn grey and struck through (prompt matrix)."""

    text: str = ""
    is_active: bool = True


@lru_cache(maxsize=16)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ValueError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_size(font: Any, text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _wrap(text: str, font: Any, max_width: int) -> list[str]:
    """Split `text` into lines no wider than `max_width` (a single long word stays whole)."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_size(font, candidate)[0] > max_width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


@dataclass
class _Block:
    lines: list[tuple[str, bool]]
    width: int
    height: int


def _layout(annotations: Sequence[GridAnnotation], font: Any, max_width: int, spacing: int) -> _Block:
    lines = [(line, a.is_active) for a in annotations for line in _wrap(a.text, font, max_width)]
    line_height = _text_size(font, "Ag")[1]
    if not any(text for text, _ in lines):
        return _Block(lines, 0, 0)
    width = max(_text_size(font, text)[0] for text, _ in lines)
    return _Block(lines, width, len(lines) * (line_height + spacing))


def _draw_block(draw: ImageDraw.ImageDraw, block: _Block, center_x: float, top: float, font: Any, spacing: int) -> None:
    line_height = _text_size(font, "Ag")[1]
    y = top
    for text, active in block.lines:
        if text:
            w, _ = _text_size(font, text)
            x = center_x - w / 2
            color = ACTIVE_COLOR if active else INACTIVE_COLOR
            draw.text((x, y), text, font=font, fill=color)
            if not active:
                mid = y + line_height * 0.6
                draw.line((x, mid, x + w, mid), fill=color, width=max(1, line_height // 12))
        y += line_height + spacing


def draw_grid_annotations(
    im: Image.Image,
    width: int,
    height: int,
    hor_texts: Sequence[Sequence[GridAnnotation]],
    ver_texts: Sequence[Sequence[GridAnnotation]],
    margin: int = 0,
) -> Image.Image:
    """A new image: `im` (a grid of `width`x`height` cells) with one legend per column above it,
    one per row left of it, and `margin` pixels between cells."""
    cols, rows = max(1, im.width // width), max(1, im.height // height)
    if len(hor_texts) != cols or len(ver_texts) != rows:
        raise ValueError(
            f"grid legend: {len(hor_texts)} column and {len(ver_texts)} row titles for a {cols}x{rows} grid"
        )
    font = _font(max(8, (width + height) // 25))
    spacing = max(2, font.size // 2 if hasattr(font, "size") else 4)
    hor = [_layout(texts, font, width, spacing) for texts in hor_texts]
    ver = [_layout(texts, font, width, spacing) for texts in ver_texts]
    pad_top = max(b.height for b in hor) + spacing * 2 if any(b.height for b in hor) else 0
    pad_left = max(b.width for b in ver) + spacing * 4 if any(b.width for b in ver) else 0
    out = Image.new(
        "RGB", (im.width + pad_left + margin * (cols - 1), im.height + pad_top + margin * (rows - 1)), BACKGROUND
    )
    for row in range(rows):
        for col in range(cols):
            cell = im.crop((width * col, height * row, width * (col + 1), height * (row + 1)))
            out.paste(cell, (pad_left + (width + margin) * col, pad_top + (height + margin) * row))
    draw = ImageDraw.Draw(out)
    for col, block in enumerate(hor):
        center = pad_left + (width + margin) * col + width / 2
        _draw_block(draw, block, center, (pad_top - block.height) / 2, font, spacing)
    for row, block in enumerate(ver):
        top = pad_top + (height + margin) * row + (height - block.height) / 2
        _draw_block(draw, block, pad_left / 2, top, font, spacing)
    return out


def prompt_matrix_annotations(
    prompts: Sequence[str],
) -> tuple[list[list[GridAnnotation]], list[list[GridAnnotation]]]:
    """Column and row legends of a prompt matrix over the optional parts `prompts`: the first half
    of the parts varies along the columns, the rest along the rows (bit i of the image index)."""
    boundary = (len(prompts) + 1) // 2
    horizontal, vertical = list(prompts[:boundary]), list(prompts[boundary:])
    hor = [
        [GridAnnotation(text, pos & (1 << i) != 0) for i, text in enumerate(horizontal)]
        for pos in range(1 << len(horizontal))
    ]
    ver = [
        [GridAnnotation(text, pos & (1 << i) != 0) for i, text in enumerate(vertical)]
        for pos in range(1 << len(vertical))
    ]
    return hor, ver


def draw_prompt_matrix(
    im: Image.Image, width: int, height: int, all_prompts: Sequence[str], margin: int = 0
) -> Image.Image:
    """A1111's signature: `all_prompts[0]` is the always-present part, the rest the optional ones."""
    hor, ver = prompt_matrix_annotations(list(all_prompts[1:]))
    return draw_grid_annotations(im, width, height, hor, ver, margin)
