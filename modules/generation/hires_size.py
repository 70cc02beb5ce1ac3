"""The sizes hires fix works at, computed once: the request limits check them and txt2img makes them.

A1111's rules: `hr_resize_x`/`hr_resize_y` win over `hr_scale`; with one of them given the other
follows the aspect ratio; with both given the image is upscaled to cover the box, keeping the
aspect ratio, then cropped to it. Sizes are multiples of 8 (the latent grid).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SIDE = 64


@dataclass(frozen=True)
class HiresSize:
    upscale_w: int  # what the first pass is upscaled to (covers the box in the crop case)
    upscale_h: int
    final_w: int  # the image the second pass makes
    final_h: int

    @property
    def crops(self) -> bool:
        return (self.upscale_w, self.upscale_h) != (self.final_w, self.final_h)


def _floor8(value: int) -> int:
    return value - value % 8


def hires_size(width: int, height: int, hr_scale: float, hr_resize_x: int, hr_resize_y: int) -> HiresSize:
    """The upscale and final sizes for a first pass of `width` x `height`."""
    if hr_resize_x == 0 and hr_resize_y == 0:
        w, h = _floor8(int(width * hr_scale)), _floor8(int(height * hr_scale))
        return HiresSize(w, h, w, h)
    if hr_resize_y == 0:
        w, h = hr_resize_x, hr_resize_x * height // width
    elif hr_resize_x == 0:
        w, h = hr_resize_y * width // height, hr_resize_y
    else:
        if width / height < hr_resize_x / hr_resize_y:  # cover the box, keep the aspect ratio, crop
            w, h = hr_resize_x, hr_resize_x * height // width
        else:
            w, h = hr_resize_y * width // height, hr_resize_y
        return HiresSize(_floor8(w), _floor8(h), _floor8(hr_resize_x), _floor8(hr_resize_y))
    w, h = _floor8(w), _floor8(h)
    return HiresSize(w, h, w, h)


def checked_hires_size(width: int, height: int, hr_scale: float, hr_resize_x: int, hr_resize_y: int) -> HiresSize:
    """hires_size, refusing sizes the latent grid cannot hold (a clear error before any work)."""
    size = hires_size(width, height, hr_scale, hr_resize_x, hr_resize_y)
    if min(size.upscale_w, size.upscale_h, size.final_w, size.final_h) < MIN_SIDE:
        raise ValueError(
            f"hires fix target {size.final_w}x{size.final_h} is too small (at least {MIN_SIDE}x{MIN_SIDE}): "
            "raise hr_scale or the resize size"
        )
    return size
