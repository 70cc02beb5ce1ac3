"""A1111's `modules.images` for extensions: save_image (with on_before/after_image_saved),
image_grid, resize_image, read_info_from_image, split_grid/combine_grid (tiles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from modules.extension_host.facade import current
from modules.generation import image_io
from modules.generation.filename_pattern import FilenameContext, Sanitizer
from modules.generation.grid_legend import GridAnnotation, draw_grid_annotations, draw_prompt_matrix
from modules.generation.masking import resize_image as _resize_image
from modules.generation.saving import SavingOptions, next_sequence_number
from modules.generation.saving import image_grid as _image_grid
from modules.generation.saving import save_image as _save_image
from modules.generation.tile_grid import Grid, combine_grid, split_grid

__all__ = [
    "Grid",
    "GridAnnotation",
    "combine_grid",
    "draw_grid_annotations",
    "draw_prompt_matrix",
    "flatten",
    "get_next_sequence_number",
    "image_grid",
    "read_info_from_image",
    "resize_image",
    "sanitize_filename_part",
    "save_image",
    "split_grid",
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
    """Save like A1111; returns (file, txt file or None). on_before_image_saved callbacks see the
    planned file and may change the image, the infotext or the file name; on_image_saved gets the
    final file name."""
    host = current()
    settings = host.services.options.as_dict()
    options = SavingOptions.from_settings(settings, filenames_max_length=host.services.args.filenames_max_length)
    saved = _save_image(
        image,
        Path(path),
        basename,
        ctx=_context(p, seed, prompt),
        options=options,
        extension=extension,
        infotext=info,
        suffix=suffix,
        forced_filename=forced_filename,
        grid=grid,
        short_filename=short_filename,
        no_prompt=no_prompt,
        save_to_dirs=save_to_dirs,
        existing_pnginfo=existing_info,
        pnginfo_section_name=pnginfo_section_name,
        before_save=host.callbacks.before_image_saved,
        after_save=host.callbacks.image_saved,
        p=p,
    )
    return str(saved.path), str(saved.txt_path) if saved.txt_path else None


def image_grid(imgs: list[Image.Image], batch_size: int = 1, rows: int | None = None) -> Image.Image:
    """A1111's grid; on_image_grid callbacks may change the images, columns and rows first."""
    host = current()
    n_rows = int(host.services.options.get("n_rows"))
    return _image_grid(imgs, rows, n_rows=n_rows, batch_size=batch_size, on_grid=host.callbacks.image_grid)


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


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    """An RGB image: transparent parts painted with `bgcolor` (A1111)."""
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def sanitize_filename_part(text: str | None, replace_spaces: bool = True) -> str | None:
    """`text` made safe inside a file name (the app's --filenames-max-length rules)."""
    args = current().services.args
    sanitizer = Sanitizer(max_length=args.filenames_max_length, unix=bool(args.unix_filenames_sanitization))
    return sanitizer(text, replace_spaces)
