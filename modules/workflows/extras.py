"""What every Extras request passes before it is queued, from the API or the Extras tab."""

from __future__ import annotations

from PIL import Image

from modules.access.policy import AccessPolicy
from modules.postprocessing import ExtrasParams


def check_extras_size(access: AccessPolicy, image: Image.Image, params: ExtrasParams) -> None:
    """Refuse an upscale whose result would be over the per-image limit (api_max_pixels_per_image)."""
    if params.upscaler_1 == "None":
        return
    if params.resize_mode == 1:
        w, h = params.upscaling_resize_w, params.upscaling_resize_h
        scale = max(w / image.width, h / image.height)
        access.check_upscale(image.width, image.height, scale, (w, h) if params.upscaling_crop else None)
    else:
        access.check_upscale(image.width, image.height, params.upscaling_resize, None)
