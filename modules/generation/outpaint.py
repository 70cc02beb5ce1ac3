"""What A1111's two outpainting scripts share: how many pixels each side grows (the canvas is
rounded up to multiples of 64 and the extra split between the chosen sides), and, for
"Outpainting mk2", noise shaped like the picture to fill the new area before img2img (the
g-diffuser method: random noise given the picture's frequency spectrum, then its colour histogram).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DIRECTIONS = ("left", "right", "up", "down")


@dataclass(frozen=True)
class Expansion:
    left: int
    right: int
    up: int
    down: int
    width: int  # the new canvas
    height: int


def expansion(width: int, height: int, pixels: int, directions: Sequence[str]) -> Expansion:
    """A1111's rule: each chosen side asks for `pixels`; the canvas rounds up to 64 and the
    chosen sides share the result (left/up get their share, right/down the rest)."""
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad or not directions:
        raise ValueError(f"outpainting direction must be some of {list(DIRECTIONS)}, got {list(directions)}")
    if pixels <= 0:
        raise ValueError(f"pixels to expand must be positive, got {pixels}")
    left, right, up, down = (pixels if d in directions else 0 for d in DIRECTIONS)
    target_w = math.ceil((width + left + right) / 64) * 64
    target_h = math.ceil((height + up + down) / 64) * 64
    if left:
        left = left * (target_w - width) // (left + right)
    if right:
        right = target_w - width - left
    if up:
        up = up * (target_h - height) // (up + down)
    if down:
        down = target_h - height - up
    return Expansion(left, right, up, down, target_w, target_h)


def _fft(data: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT of each channel (H, W, C)."""
    shifted = np.fft.fftshift(data, axes=(0, 1))
    return np.fft.ifftshift(np.fft.fft2(shifted, axes=(0, 1), norm="ortho"), axes=(0, 1))


def _ifft(data: np.ndarray) -> np.ndarray:
    shifted = np.fft.fftshift(data, axes=(0, 1))
    return np.fft.ifftshift(np.fft.ifft2(shifted, axes=(0, 1), norm="ortho"), axes=(0, 1))


def _falloff_window(height: int, width: int) -> np.ndarray:
    """1 / ((x^2 + 1)(y^2 + 1)) over the centred frequency plane, aspect-corrected."""
    short = min(width, height)
    x = (np.arange(width) / width * 2.0 - 1.0) * (width / short)
    y = (np.arange(height) / height * 2.0 - 1.0) * (height / short)
    return 1.0 / ((y[:, None] ** 2 + 1.0) * (x[None, :] ** 2 + 1.0))


def _match_histogram(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per channel: give `values` (N, C) the distribution of `reference` (M, C) by rank."""
    out = np.empty_like(values)
    for c in range(values.shape[1]):
        ranks = np.argsort(np.argsort(values[:, c]))
        quantiles = ranks / max(1, len(ranks) - 1)
        ref = np.sort(reference[:, c])
        out[:, c] = np.interp(quantiles, np.linspace(0.0, 1.0, len(ref)), ref)
    return out


def matched_noise(
    image: np.ndarray, mask: np.ndarray, noise_q: float = 1.0, color_variation: float = 0.05
) -> np.ndarray:
    """`image` (H, W, 3) in [0, 1]; `mask` (H, W, 3), 1 where new content goes. Returns the image
    with the masked area filled by noise that has the picture's spectrum and colours. The noise
    comes from a fixed generator: the result depends on the picture only (the job seed decides
    the rest, as in A1111)."""
    grey_mask = mask.mean(axis=2)
    to_fill, reference = grey_mask > 1e-6, grey_mask < 1e-3
    windowed = image * (1.0 - mask)
    windowed = windowed / max(float(windowed.max()), 1e-6) + float(image.mean()) * mask
    src = _fft(windowed)
    src_dist = np.abs(src)
    src_phase = src / np.maximum(src_dist, 1e-12)

    rng = np.random.default_rng(0)
    noise = rng.random(image.shape)
    noise = noise * color_variation + (1.0 - color_variation) * noise.mean(axis=2, keepdims=True)
    noise = np.real(_ifft(_fft(noise) * _falloff_window(*image.shape[:2])[:, :, None]))
    shaped_fft = np.abs(_fft(noise)) ** 2 * src_dist**noise_q * src_phase
    shaped = np.real(_ifft(shaped_fft))
    shaped -= shaped.min()
    shaped /= max(float(shaped.max()), 1e-12)
    if to_fill.any() and reference.any():
        shaped[to_fill] = _match_histogram(shaped[to_fill], image[reference])
    return np.clip(image * (1.0 - mask) + shaped * mask, 0.0, 1.0)
