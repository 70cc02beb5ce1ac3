"""A1111's `modules.img2img` for extensions: `process_batch` (img2img over a folder of images).

`img2img(...)` (the Gradio handler with ~40 positional UI values) is the UI's, not offered here;
extensions run img2img with `processing.StableDiffusionProcessingImg2Img` + `process_images`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from modules.generation.batch import IMAGE_SUFFIXES
from modules.images import save_image

__all__ = ["process_batch"]


def _images(folder: str) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"input folder {folder} does not exist")
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def process_batch(
    p: Any,
    input_dir: str,
    output_dir: str,
    inpaint_mask_dir: str,
    args: Any,
    to_scale: bool = False,
    scale_by: float = 1.0,
    use_png_info: bool = False,
    png_info_props: Any = None,
    png_info_dir: Any = None,
) -> Any:
    """Run `p` once per image of `input_dir` (with the same-named mask of `inpaint_mask_dir`, or
    its only mask) and save the results to `output_dir` (or p's usual folder when empty)."""
    from modules.processing import process_images

    files = _images(input_dir)
    masks = _images(inpaint_mask_dir) if inpaint_mask_dir else []
    processed = None
    for path in files:
        try:
            image = Image.open(path)
            image.load()
        except (OSError, UnidentifiedImageError):
            continue
        p.init_images = [image] * int(getattr(p, "batch_size", 1) or 1)
        if to_scale:
            p.width = int(image.width * scale_by)
            p.height = int(image.height * scale_by)
        mask = next((m for m in masks if m.stem == path.stem), masks[0] if len(masks) == 1 else None)
        if mask is not None:
            p.image_mask = Image.open(mask)
        processed = process_images(p)
        if output_dir:
            for n, out in enumerate(processed.images):
                name = path.stem if len(processed.images) == 1 else f"{path.stem}-{n}"
                save_image(out, output_dir, "", forced_filename=name, info=processed.infotext(p, n), p=p)
    return processed
