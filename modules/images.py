"""A1111's `modules.images` for extensions: save_image (with on_before/after_image_saved),
image_grid, resize_image, read_info_from_image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from modules.extensions.callbacks import ImageSaveParams
from modules.extensions.facade import current
from modules.generation import image_io
from modules.generation.filename_pattern import FilenameContext
from modules.generation.grid_legend import GridAnnotation, draw_grid_annotations, draw_prompt_matrix
from modules.generation.masking import resize_image as _resize_image
from modules.generation.saving import SavingOptions, next_sequence_number
from modules.generation.saving import image_grid as _image_grid
from modules.generation.saving import save_image as _save_image

__all__ = [
    "GridAnnotation",
    "draw_grid_annotations",
    "draw_prompt_matrix",
    "get_next_sequence_number",
    "image_grid",
    "read_info_from_image",
    "resize_image",
    "save_image",
]


def _context(p: Any, seed: Any, prompt: Any) -> FilenameContext:
    if p is None:
        return FilenameContext(seed=seed, prompt=prompt)
    return FilenameContext(
        seed=seed,
        prompt=prompt,
        main_prompt=getattr(p, "main_prompt", None) or getattr(p, "prompt", None),
        negative_prompt=getattr(p, "negative_prompt", None),
        all_seeds=list(getattr(p, "all_seeds", []) or []),
        batch_size=getattr(p, "batch_size", None),
        n_iter=getattr(p, "n_iter", None),
        steps=getattr(p, "steps", None),
        cfg_scale=getattr(p, "cfg_scale", None),
        sampler_name=getattr(p, "sampler_name", None),
        scheduler=getattr(p, "scheduler", None),
        denoising_strength=getattr(p, "denoising_strength", None),
        model_hash=getattr(p, "sd_model_hash", None),
        model_name=getattr(p, "sd_model_name", None),
        styles=getattr(p, "styles", None),
        job_timestamp=getattr(p, "job_timestamp", None),
        user=getattr(p, "user", None),
    )


def save_image(
    image: Image.Image,
    path: str,
    basename: str,
    seed: Any = None,
    prompt: str | None = None,
    extension: str = "png",
    info: str | None = None,
    short_filename: bool = False,
    no_prompt: bool = False,
    grid: bool = False,
    pnginfo_section_name: str = "parameters",
    p: Any = None,
    existing_info: dict[str, Any] | None = None,
    forced_filename: str | None = None,
    suffix: str = "",
    save_to_dirs: bool | None = None,
) -> tuple[str, str | None]:
    """Save like A1111; returns (file, txt file or None). Callbacks see and may change the image
    and infotext before saving (`params.filename` is the target folder: the name is chosen
    atomically while saving) and get the final file name after."""
    host = current()
    settings = host.services.options.as_dict()
    options = SavingOptions.from_settings(settings, filenames_max_length=host.services.args.filenames_max_length)
    pnginfo = dict(existing_info or {})
    if info is not None:
        pnginfo[pnginfo_section_name] = info
    params = ImageSaveParams(image, p, str(path), pnginfo)
    host.callbacks.before_image_saved(params)
    saved = _save_image(
        params.image,
        Path(path),
        basename,
        ctx=_context(p, seed, prompt),
        options=options,
        extension=extension,
        infotext=params.pnginfo.get(pnginfo_section_name),
        suffix=suffix,
        forced_filename=forced_filename,
        grid=grid,
        short_filename=short_filename,
        no_prompt=no_prompt,
        save_to_dirs=save_to_dirs,
        existing_pnginfo={k: v for k, v in params.pnginfo.items() if k != pnginfo_section_name},
        pnginfo_section_name=pnginfo_section_name,
    )
    params.filename = str(saved.path)
    host.callbacks.image_saved(params)
    return str(saved.path), str(saved.txt_path) if saved.txt_path else None


def image_grid(imgs: list[Image.Image], batch_size: int = 1, rows: int | None = None) -> Image.Image:
    n_rows = int(current().services.options.get("n_rows"))
    return _image_grid(imgs, rows, n_rows=n_rows, batch_size=batch_size)


def resize_image(
    resize_mode: int, im: Image.Image, width: int, height: int, upscaler_name: str | None = None
) -> Image.Image:
    """A1111's resize modes 0-2 (plain resampling; upscaler_name is not used here)."""
    return _resize_image(resize_mode, im, width, height)


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    info = image_io.read_info_from_image(image)
    return info.parameters, dict(info.items)


def get_next_sequence_number(path: str, basename: str) -> int:
    return next_sequence_number(Path(path), basename)
