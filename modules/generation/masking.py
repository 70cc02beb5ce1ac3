"""Image and mask preparation for img2img/inpaint, with A1111's rules.

Resize modes, mask blur, "only masked" crop regions, masked-content fill, and the final
overlay that pastes generated pixels back so that everything outside the mask is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

RESAMPLE = Image.Resampling.LANCZOS


class MaskError(ValueError):
    """The mask does not fit the image (size) or is not an image."""


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111 resize modes: 0 just resize, 1 crop and resize, 2 resize and fill, 3 = 0 (latent later)."""
    if mode in (0, 3):
        return image.resize((width, height), RESAMPLE)
    ratio = width / height
    src_ratio = image.width / image.height
    if mode == 1:
        # scale so the image covers the target, then centre-crop
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
        resized = image.resize((src_w, src_h), RESAMPLE)
        canvas = Image.new("RGB", (width, height))
        canvas.paste(resized, (width // 2 - src_w // 2, height // 2 - src_h // 2))
        return canvas
    if mode == 2:
        # scale so the image fits inside, then fill the bands with stretched edges
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width
        resized = image.resize((src_w, src_h), RESAMPLE)
        canvas = Image.new("RGB", (width, height))
        canvas.paste(resized, (width // 2 - src_w // 2, height // 2 - src_h // 2))
        if ratio < src_ratio:
            fill = height // 2 - src_h // 2
            if fill > 0:
                canvas.paste(resized.resize((width, fill), box=(0, 0, width, 0)), (0, 0))
                canvas.paste(
                    resized.resize((width, fill), box=(0, resized.height, width, resized.height)),
                    (0, fill + src_h),
                )
        elif ratio > src_ratio:
            fill = width // 2 - src_w // 2
            if fill > 0:
                canvas.paste(resized.resize((fill, height), box=(0, 0, 0, height)), (0, 0))
                canvas.paste(
                    resized.resize((fill, height), box=(resized.width, 0, resized.width, height)),
                    (fill + src_w, 0),
                )
        return canvas
    raise ValueError(f"resize_mode must be 0..3, got {mode}")


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """Gaussian blur per axis, kernel as A1111 (2.5 sigma each side)."""
    arr = np.asarray(mask.convert("L"), dtype=np.float32)
    if blur_x > 0:
        arr = _blur_axis(arr, blur_x, axis=1)
    if blur_y > 0:
        arr = _blur_axis(arr, blur_y, axis=0)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")


def _blur_axis(arr: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    radius = int(2.5 * sigma + 0.5)
    xs = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(xs**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(arr, pad, mode="edge")
    return np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), axis, padded)


@dataclass(frozen=True)
class CropRegion:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


def crop_region(mask: Image.Image, padding: int) -> CropRegion | None:
    """Bounding box of the non-zero mask, grown by `padding` and clipped; None for an empty mask."""
    arr = np.asarray(mask.convert("L"))
    ys, xs = np.nonzero(arr)
    if len(xs) == 0:
        return None
    h, w = arr.shape
    return CropRegion(
        max(int(xs.min()) - padding, 0),
        max(int(ys.min()) - padding, 0),
        min(int(xs.max()) + 1 + padding, w),
        min(int(ys.max()) + 1 + padding, h),
    )


def expand_to_ratio(region: CropRegion, width: int, height: int, image_w: int, image_h: int) -> CropRegion:
    """Grow the region to the target aspect ratio (as A1111 does), staying inside the image."""
    left, top, right, bottom = region.box()
    ratio = width / height
    if region.width / region.height < ratio:
        want = int(region.height * ratio)
        grow = want - region.width
        left -= grow // 2
        right += grow - grow // 2
        if right > image_w:
            left -= right - image_w
            right = image_w
        if left < 0:
            right -= left
            left = 0
        right = min(right, image_w)
    else:
        want = int(region.width / ratio)
        grow = want - region.height
        top -= grow // 2
        bottom += grow - grow // 2
        if bottom > image_h:
            top -= bottom - image_h
            bottom = image_h
        if top < 0:
            bottom -= top
            top = 0
        bottom = min(bottom, image_h)
    return CropRegion(left, top, right, bottom)


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """'fill' masked content: replace the masked area with progressively blurred surrounding colours."""
    base = image.convert("RGB")
    result = Image.new("RGBA", base.size, (0, 0, 0, 0))
    keep = ImageOps.invert(mask.convert("L"))
    source = Image.new("RGBA", base.size)
    source.paste(base, mask=keep)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = source.filter(ImageFilter.GaussianBlur(radius)) if radius else source
        for _ in range(repeats):
            result.alpha_composite(blurred)
    filled = result.convert("RGB")
    out = base.copy()
    out.paste(filled, mask=mask.convert("L"))
    return out


def overlay_original(
    generated: Image.Image, original: Image.Image, mask_for_overlay: Image.Image, region: CropRegion | None
) -> Image.Image:
    """Paste the generated pixels into the original through the (blurred) mask.

    Pixels where the mask is 0 come from the original unchanged, as in A1111's apply_overlay.
    """
    base = original.convert("RGB")
    if region is not None:
        placed = base.copy()
        placed.paste(generated.resize((region.width, region.height), RESAMPLE), (region.left, region.top))
        generated = placed
    else:
        generated = generated.convert("RGB").resize(base.size, RESAMPLE)
    return Image.composite(generated.convert("RGB"), base, mask_for_overlay.convert("L"))


def check_mask(image: Image.Image, mask: Image.Image) -> None:
    if mask.size != image.size:
        raise MaskError(
            f"mask size {mask.width}x{mask.height} does not match the image size {image.width}x{image.height}"
        )


def mask_to_l(mask: Image.Image) -> Image.Image:
    """A1111 accepts RGBA masks drawn in the UI: alpha (or luminance) marks the area to repaint."""
    if mask.mode == "RGBA" and np.asarray(mask.getchannel("A")).min() < 255:
        alpha = mask.getchannel("A")
        return Image.fromarray(np.where(np.asarray(alpha) > 0, 255, 0).astype(np.uint8), "L")
    return mask.convert("L")
