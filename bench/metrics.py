"""Image similarity for benchmarks: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def _as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over 8-bit RGB (inf when identical)."""
    mse = float(np.mean((_as_array(a) - _as_array(b)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean structural similarity over the RGB channels (1.0 when identical)."""
    x, y = _as_array(a), _as_array(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for ch in range(3):
        xc, yc = x[..., ch], y[..., ch]

        def blur(v: np.ndarray) -> np.ndarray:
            return gaussian_filter(v, sigma=1.5, truncate=3.5)  # 11x11 window

        mx, my = blur(xc), blur(yc)
        vx, vy, cov = blur(xc * xc) - mx * mx, blur(yc * yc) - my * my, blur(xc * yc) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(float(s.mean()))
    return float(np.mean(scores))


def max_abs_diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(_as_array(a) - _as_array(b)).max())
