"""Align a face to the FFHQ template, and paste a restored face back (GFPGAN's pipeline, with PIL).

Points use pixel-centre coordinates (pixel (0, 0) is the point (0, 0)), as the detector's
landmarks and OpenCV do; PIL's affine warps use pixel-corner coordinates, so the matrices are
shifted by half a pixel before PIL sees them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# The 5 FFHQ landmarks (eyes, nose, mouth corners) in a 512x512 aligned face, as facexlib uses.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
BORDER_RGB = (132, 133, 135)  # facexlib fills outside the image with this grey (BGR 135, 133, 132)

Matrix = np.ndarray  # 2x3 affine matrix mapping image points to face points


def face_template(face_size: int) -> np.ndarray:
    return FFHQ_TEMPLATE_512 * (face_size / 512.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> Matrix:
    """Least-squares rotation + uniform scale + translation taking `src` points onto `dst`.

    Solves x' = a*x - b*y + tx, y' = b*x + a*y + ty for (a, b, tx, ty).
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    n = len(src)
    rows = np.zeros((2 * n, 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def box_transform(left: float, top: float, right: float, bottom: float, face_size: int) -> Matrix:
    """For a detector without landmarks: map the square around the box's centre onto the face."""
    side = max(right - left, bottom - top, 1)
    scale = face_size / side
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return np.array([[scale, 0, face_size / 2 - cx * scale], [0, scale, face_size / 2 - cy * scale]])


def invert(matrix: Matrix) -> Matrix:
    full = np.vstack([matrix, [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def _pil_coefficients(out_to_in: Matrix) -> tuple[float, ...]:
    """PIL's AFFINE data for a centre-coordinate matrix mapping output points to input points."""
    m = out_to_in
    shift = m[:, :2] @ np.array([-0.5, -0.5]) + m[:, 2] + 0.5
    return (m[0, 0], m[0, 1], shift[0], m[1, 0], m[1, 1], shift[1])


def warp(image: Image.Image, matrix: Matrix, size: tuple[int, int], fill: int | tuple[int, ...]) -> Image.Image:
    """`image` moved by `matrix` (input point -> output point) onto a canvas of `size`."""
    coefficients = _pil_coefficients(invert(matrix))
    return image.transform(size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR, fillcolor=fill)


def align_face(image: Image.Image, matrix: Matrix, face_size: int) -> Image.Image:
    return warp(image.convert("RGB"), matrix, (face_size, face_size), BORDER_RGB)


def _region(matrix: Matrix, face_size: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of the image the face square covers (plus a pixel of margin), or None if outside."""
    corners = np.array([[0, 0, 1], [face_size, 0, 1], [0, face_size, 1], [face_size, face_size, 1]], float)
    points = corners @ invert(matrix).T
    left, top = np.floor(points.min(axis=0)).astype(int) - 1
    right, bottom = np.ceil(points.max(axis=0)).astype(int) + 1
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    return (left, top, right, bottom) if right > left and bottom > top else None


def soft_mask(matrix: Matrix, face_size: int, region: tuple[int, int, int, int]) -> np.ndarray:
    """GFPGAN's paste mask over `region`: the warped face square, eroded, then feathered."""
    left, top, right, bottom = region
    local = matrix @ np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], float)  # region point -> face point
    square = Image.new("L", (face_size, face_size), 255)
    mask = warp(square, invert(local), (right - left, bottom - top), 0)
    mask = mask.filter(ImageFilter.MinFilter(3))  # trims the blurry edge of the warped square
    edge = int(np.sqrt(np.asarray(mask, dtype=np.float64).sum() / 255)) // 20
    if edge > 0:
        sigma = 0.3 * (edge - 1) + 0.8  # OpenCV's sigma for GFPGAN's (2 * edge + 1) blur kernel
        mask = mask.filter(ImageFilter.MinFilter(2 * edge + 1)).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(mask, dtype=np.float32)[:, :, None] / 255.0


def paste_face(image: Image.Image, face: Image.Image, matrix: Matrix) -> Image.Image:
    """`image` with `face` (the aligned crop, possibly restored) warped back and blended in."""
    image = image.convert("RGB")
    face_size = face.width
    region = _region(matrix, face_size, image.width, image.height)
    if region is None:
        return image
    left, top, right, bottom = region
    local = matrix @ np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], float)
    back = warp(face.convert("RGB"), invert(local), (right - left, bottom - top), (0, 0, 0))
    alpha = soft_mask(matrix, face_size, region)
    base = np.asarray(image.crop(region), dtype=np.float32)
    blended = alpha * np.asarray(back, dtype=np.float32) + (1 - alpha) * base
    out = image.copy()
    out.paste(Image.fromarray(np.clip(blended.round(), 0, 255).astype(np.uint8), "RGB"), (left, top))
    return out
