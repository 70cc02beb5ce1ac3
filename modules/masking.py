"""A1111's `modules.masking` for extensions: crop regions of masks and the 'fill' content."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from modules.generation.masking import CropRegion, crop_region, expand_to_ratio, fill_masked

__all__ = ["expand_crop_region", "fill", "get_crop_region", "get_crop_region_v2"]


def _as_image(mask: Any) -> Image.Image:
    return mask if isinstance(mask, Image.Image) else Image.fromarray(np.asarray(mask).astype(np.uint8))


def get_crop_region_v2(mask: Any, pad: int = 0) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) around the non-zero mask, grown by `pad`; None for an empty mask."""
    region = crop_region(_as_image(mask), pad)
    return region.box() if region is not None else None


def get_crop_region(mask: Any, pad: int = 0) -> tuple[int, int, int, int]:
    """As get_crop_region_v2, but an empty mask gives the whole image (A1111)."""
    image = _as_image(mask)
    return get_crop_region_v2(image, pad) or (0, 0, image.width, image.height)


def expand_crop_region(
    crop_region: tuple[int, int, int, int],
    processing_width: int,
    processing_height: int,
    image_width: int,
    image_height: int,
) -> tuple[int, int, int, int]:
    """Grow the region to the processing size's aspect ratio, inside the image."""
    region = expand_to_ratio(CropRegion(*crop_region), processing_width, processing_height, image_width, image_height)
    return region.box()


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    return fill_masked(image, mask)
