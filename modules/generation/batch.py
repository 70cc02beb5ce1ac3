"""img2img "Batch" tab: every image of an input folder through img2img, results into an output folder.

A1111 rules: images are processed in name order; a mask folder supplies a mask with the same file
stem (any image extension) or, if it holds a single image, that mask for all; results are saved in
the output folder under the input's file name (numbered when a job makes several images).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from modules.core.jobs import JobControl
from modules.generation.engine import GenerationService
from modules.generation.image_io import save_image_with_geninfo
from modules.generation.requests import Img2ImgRequest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class BatchResult:
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> reason
    interrupted: bool = False


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"input folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _mask_for(image_path: Path, mask_dir: Path | None) -> Path | None:
    if mask_dir is None:
        return None
    masks = _images_in(mask_dir)
    if len(masks) == 1:
        return masks[0]
    return next((m for m in masks if m.stem == image_path.stem), None)


def img2img_folder(
    service: GenerationService,
    req: Img2ImgRequest,
    control: JobControl,
    input_dir: Path,
    output_dir: Path,
    *,
    mask_dir: Path | None = None,
    user: str | None = None,
) -> BatchResult:
    result = BatchResult()
    files = _images_in(input_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    request = req.model_copy(update={"do_not_save_samples": True, "do_not_save_grid": True})
    for index, path in enumerate(files):
        if control.interrupted.is_set():
            result.interrupted = True
            break
        control.textinfo = f"Batch {index + 1} of {len(files)}: {path.name}"
        try:
            image = Image.open(path)
            image.load()
            mask_path = _mask_for(path, mask_dir)
            mask = Image.open(mask_path) if mask_path is not None else None
        except (OSError, UnidentifiedImageError) as exc:
            result.skipped[path.name] = f"not a readable image: {exc}"
            continue
        done = service.img2img(request, control, user=user, init_images=[image], mask=mask)
        images = done.images[done.index_of_first_image :]
        texts = done.infotexts[done.index_of_first_image :]
        for n, (out, text) in enumerate(zip(images, texts, strict=True)):
            name = path.stem if len(images) == 1 else f"{path.stem}-{n}"
            target = _free_name(output_dir, name)
            save_image_with_geninfo(out, target, text, "png")
            result.written.append(target)
        if done.interrupted:
            result.interrupted = True
            break
    return result


def _free_name(folder: Path, stem: str) -> Path:
    """`stem.png`, or `stem-1.png`, `stem-2.png` ... : an existing file is never overwritten."""
    target = folder / f"{stem}.png"
    counter = 1
    while target.exists():
        target = folder / f"{stem}-{counter}.png"
        counter += 1
    return target
