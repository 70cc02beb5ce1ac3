"""Preparing a training folder (A1111's Train > Preprocess, later the Extras training scripts).

Per source image, in A1111's order: split oversized images into overlapping tiles of the target
aspect ratio; auto-sized crop (pick the largest, or the best-fitting, multiple-of-64 size between
the bounds whose aspect error is within the threshold, then centre-crop to it); otherwise resize
and centre-crop to width x height (unless the original size is kept); then save, with flipped
copies if asked. Each output gets a caption .txt: from the source's caption file, from the file
name (A1111's filewords rule), or both ("prepend"/"append" put the existing caption first/last).
Outputs are named `<index:05>-<sub>-<source stem>.png`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from modules.core.jobs import JobControl, JobInterrupted
from modules.train.dataset import CAPTION_SUFFIX, CaptionRules
from modules.train.errors import TrainingError
from modules.train.requests import PreprocessRequest, PreprocessResult


def crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height, then cut the centre (A1111 resize mode "Crop and resize")."""
    ratio, source_ratio = width / height, image.width / image.height
    if ratio > source_ratio:
        scaled_w, scaled_h = width, image.height * width // image.width
    else:
        scaled_w, scaled_h = image.width * height // image.height, height
    resized = image.resize((max(1, scaled_w), max(1, scaled_h)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, (width // 2 - scaled_w // 2, height // 2 - scaled_h // 2))
    return canvas


def center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """The largest centred box of the target aspect ratio, resized to width x height."""
    iw, ih = image.size
    if ih / height < iw / width:
        sw = width * ih / height
        box = ((iw - sw) / 2, 0.0, iw - (iw - sw) / 2, float(ih))
    else:
        sh = height * iw / width
        box = (0.0, (ih - sh) / 2, float(iw), ih - (ih - sh) / 2)
    return image.resize((width, height), Image.Resampling.LANCZOS, box)


def autosized_crop_size(
    size: tuple[int, int],
    *,
    mindim: int,
    maxdim: int,
    minarea: int,
    maxarea: int,
    objective: str = "Maximize area",
    threshold: float = 0.1,
) -> tuple[int, int] | None:
    """A1111's multicrop choice of output size (multiples of 64 from mindim), or None if none fits."""
    iw, ih = size

    def error(w: int, h: int) -> float:
        x = iw / ih / (w / h)
        return 1 - (x if x < 1 else 1 / x)

    candidates = [
        (w, h)
        for w in range(mindim, maxdim + 1, 64)
        for h in range(mindim, maxdim + 1, 64)
        if minarea <= w * h <= maxarea and error(w, h) <= threshold
    ]
    if not candidates:
        return None
    if objective == "Maximize area":
        return max(candidates, key=lambda wh: (wh[0] * wh[1], -error(*wh)))
    return max(candidates, key=lambda wh: (-error(*wh), wh[0] * wh[1]))


def split_oversized(
    image: Image.Image, width: int, height: int, *, threshold: float = 0.5, overlap: float = 0.2
) -> list[Image.Image] | None:
    """Tiles of width x height along the long side when the image is much longer than the target
    aspect (ratio below `threshold`); None when it is not oversized."""
    if image.height > image.width:
        ratio, transposed = (image.width * height) / (image.height * width), False
    else:
        ratio, transposed = (image.height * width) / (image.width * height), True
    if ratio >= 1.0 or ratio > threshold:
        return None
    from_w, from_h = (image.height, image.width) if transposed else (image.width, image.height)
    to_w, to_h = (height, width) if transposed else (width, height)
    long_side = from_h * to_w // from_w
    scaled = image.resize((long_side, to_w) if transposed else (to_w, long_side))
    count = max(2, math.ceil((long_side - to_h * overlap) / (to_h * (1.0 - overlap))))
    step = (long_side - to_h) / (count - 1)
    tiles = []
    for i in range(count):
        y = int(step * i)
        box = (y, 0, y + to_h, to_w) if transposed else (0, y, to_w, y + to_h)
        tiles.append(scaled.crop(box))
    return tiles


def flipped_copies(image: Image.Image, modes: Sequence[str]) -> list[Image.Image]:
    copies = []
    if "Horizontal" in modes:
        copies.append(ImageOps.mirror(image))
    if "Vertical" in modes:
        copies.append(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM))
    if "Both" in modes:
        copies.append(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return copies


def make_caption(action: str, existing: str | None, from_name: str) -> str:
    existing = (existing or "").strip()
    if action == "copy":
        return existing or from_name
    if action == "prepend" and existing:
        return f"{existing} {from_name}".strip()
    if action == "append" and existing:
        return f"{from_name} {existing}".strip()
    return from_name


def _shaped(image: Image.Image, req: PreprocessRequest) -> Iterator[Image.Image | None]:
    """The images one source turns into (None: no size fits the auto-crop bounds)."""
    parts = None
    if req.process_split:
        parts = split_oversized(
            image,
            req.process_width,
            req.process_height,
            threshold=req.process_split_threshold,
            overlap=req.process_overlap_ratio,
        )
    for part in parts or [image]:
        if req.process_multicrop:
            size = autosized_crop_size(
                part.size,
                mindim=req.process_multicrop_mindim,
                maxdim=req.process_multicrop_maxdim,
                minarea=req.process_multicrop_minarea,
                maxarea=req.process_multicrop_maxarea,
                objective=req.process_multicrop_objective,
                threshold=req.process_multicrop_threshold,
            )
            yield None if size is None else center_crop(part, *size)
        elif req.process_keep_original_size or parts is not None:
            yield part
        else:
            yield crop_and_resize(part, req.process_width, req.process_height)


def _check_folders(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_dir():
        raise TrainingError(f"source directory {src} doesn't exist")
    if src.resolve() == dst.resolve():
        raise TrainingError("source and destination directories must differ")
    if dst.exists() and not dst.is_dir():
        raise TrainingError(f"destination {dst} is a file")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise TrainingError(f"destination directory {dst} is not empty (allow overwriting to write into it)")


def preprocess_folder(
    req: PreprocessRequest, *, caption_rules: CaptionRules | None = None, control: JobControl | None = None
) -> PreprocessResult:
    src, dst = Path(req.process_src).expanduser(), Path(req.process_dst).expanduser()
    _check_folders(src, dst, req.overwrite)
    rules = caption_rules or CaptionRules()
    result = PreprocessResult()
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() != CAPTION_SUFFIX)
    dst.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        if control is not None and control.interrupted.is_set():
            raise JobInterrupted()
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            result.skipped.append(f"{path.name}: not an image ({exc})")
            continue
        caption_file = path.with_suffix(CAPTION_SUFFIX)
        existing = caption_file.read_text(encoding="utf-8", errors="replace") if caption_file.is_file() else None
        from_name = rules.filewords(path.name) if req.process_caption_from_filename else ""
        caption = make_caption(req.preprocess_txt_action, existing, from_name)
        outputs = []
        for shaped in _shaped(image, req):
            if shaped is None:
                result.skipped.append(f"{path.name}: no size within the auto-crop bounds and error threshold")
                continue
            outputs.append(shaped)
            if req.process_flip:
                outputs.extend(flipped_copies(shaped, req.flip_modes))
        for sub, output in enumerate(outputs):
            target = dst / f"{index:05}-{sub}-{path.stem}.png"
            output.save(target)
            result.written.append(target)
            if caption:
                text_file = target.with_suffix(CAPTION_SUFFIX)
                text_file.write_text(caption, encoding="utf-8")
                result.captions.append(text_file)
    return result
