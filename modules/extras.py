"""A1111's `modules.extras` for extensions: run_pnginfo (the PNG Info tab's reader)."""

from __future__ import annotations

import html

from PIL import Image

from modules.images import read_info_from_image

__all__ = ["run_pnginfo"]


def run_pnginfo(image: Image.Image | None) -> tuple[str, str | None, str]:
    """('', generation parameters, HTML of every text item), as the PNG Info tab returns."""
    if image is None:
        return "", "", ""
    geninfo, items = read_info_from_image(image)
    items = {**({"parameters": geninfo} if geninfo else {}), **items}
    info = "".join(
        f"<div><p><b>{html.escape(str(k))}</b></p><p>{html.escape(str(v))}</p></div>" for k, v in items.items() if v
    )
    return "", geninfo, info or "<div><p>Nothing found in the image.</p></div>"
