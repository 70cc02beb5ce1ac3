"""Run an image-to-image model over overlapping tiles so large images fit in memory.

Tiles form a grid; where neighbours overlap, each tile's output is weighted by a linear ramp
over the overlap and the sum is normalised, so seams fade instead of cutting. Because the
weights are a product of a row ramp and a column ramp, rows of tiles can be blended into
horizontal strips first and strips blended vertically after: only one strip of tiles is ever
held in float, and finished rows go straight into the uint8 result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # (1, C, h, w) in [0, 1] -> (1, C, h*s, w*s)


@dataclass(frozen=True)
class TileSettings:
    """A1111's ESRGAN_tile / ESRGAN_tile_overlap: tile edge in input pixels (0 = no tiling)."""

    tile_size: int = 192
    overlap: int = 8

    def __post_init__(self) -> None:
        if self.tile_size < 0 or self.overlap < 0:
            raise ValueError("tile size and overlap must not be negative")
        if self.tile_size and self.overlap >= self.tile_size:
            raise ValueError(f"tile overlap ({self.overlap}) must be smaller than the tile size ({self.tile_size})")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), overlapping by at least `overlap`."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(length: int, ramp: int, before: bool, after: bool) -> torch.Tensor:
    """Per-pixel weights along one axis of a tile: ramps up/down where a neighbour overlaps."""
    weights = torch.ones(length)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        rising = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)
        if before:
            weights[:ramp] = rising
        if after:
            weights[length - ramp :] = torch.minimum(weights[length - ramp :], rising.flip(0))
    return weights


def _to_uint8(rows: torch.Tensor) -> np.ndarray:
    """(C, h, w) float in [0, 1] -> (h, w, C) uint8."""
    return rows.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


class _RowBlender:
    """Accumulates weighted horizontal strips and emits rows once no later strip can touch them."""

    def __init__(self, out: np.ndarray) -> None:
        self.out = out
        self.start = 0  # first output row still pending
        self.acc = torch.zeros(out.shape[2], 0, out.shape[1])
        self.weight = torch.zeros(0)

    def add(self, row: int, strip: torch.Tensor, weights: torch.Tensor) -> None:
        """Add `strip` (C, h, W) at output row `row`; strips must arrive top to bottom."""
        self._emit_until(row)
        missing = row + strip.shape[1] - (self.start + self.acc.shape[1])
        if missing > 0:
            self.acc = torch.cat([self.acc, torch.zeros(self.acc.shape[0], missing, self.acc.shape[2])], dim=1)
            self.weight = torch.cat([self.weight, torch.zeros(missing)])
        span = slice(row - self.start, row - self.start + strip.shape[1])
        self.acc[:, span].add_(strip * weights[None, :, None])
        self.weight[span].add_(weights)

    def _emit_until(self, row: int) -> None:
        done = row - self.start
        if done <= 0:
            return
        finished = self.acc[:, :done] / self.weight[:done][None, :, None]
        self.out[self.start : row] = _to_uint8(finished)
        self.acc, self.weight, self.start = self.acc[:, done:], self.weight[done:], row

    def finish(self) -> None:
        self._emit_until(self.start + self.acc.shape[1])


def upscale_tiled(
    image: np.ndarray,
    model: ModelFn,
    *,
    scale: int,
    tiles: TileSettings,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Apply `model` (integer `scale`) to an (H, W, C) uint8 image, tile by tile; returns uint8."""
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {image.dtype} {image.shape}")
    h, w, c = image.shape
    th, tw = (h, w) if tiles.tile_size == 0 else (min(tiles.tile_size, h), min(tiles.tile_size, w))
    ys, xs = tile_starts(h, th, tiles.overlap), tile_starts(w, tw, tiles.overlap)
    ramp = tiles.overlap * scale
    col_weights = [_ramp(tw * scale, ramp, i > 0, i < len(xs) - 1) for i in range(len(xs))]
    col_total = torch.zeros(w * scale)
    for x, wx in zip(xs, col_weights, strict=True):
        col_total[x * scale : (x + tw) * scale] += wx

    out = np.empty((h * scale, w * scale, c), dtype=np.uint8)
    blender = _RowBlender(out)
    with torch.inference_mode():
        for j, y in enumerate(ys):
            strip = torch.zeros(c, th * scale, w * scale)
            for x, wx in zip(xs, col_weights, strict=True):
                tile = _run_tile(model, image[y : y + th, x : x + tw], scale, device, dtype)
                strip[:, :, x * scale : (x + tw) * scale].add_(tile * wx)
            strip.div_(col_total)
            blender.add(y * scale, strip, _ramp(th * scale, ramp, j > 0, j < len(ys) - 1))
        blender.finish()
    return out


def _run_tile(
    model: ModelFn, tile: np.ndarray, scale: int, device: torch.device | None, dtype: torch.dtype
) -> torch.Tensor:
    x = torch.from_numpy(np.array(tile)).permute(2, 0, 1).unsqueeze(0)  # copy: PIL arrays are read-only
    x = x.to(device=device or torch.device("cpu"), dtype=dtype).div_(255)
    y = model(x)
    expected = (1, tile.shape[2], tile.shape[0] * scale, tile.shape[1] * scale)
    if tuple(y.shape) != expected:
        raise ValueError(f"model returned shape {tuple(y.shape)} for a tile, expected {expected} (scale {scale})")
    return y[0].to(device="cpu", dtype=torch.float32)
