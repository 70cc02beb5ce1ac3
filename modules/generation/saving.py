"""Saving outputs as A1111 1.10 does: folders, numbered names, embedded infotext, grids.

Path: `<outdir>/<directories_filename_pattern>/<NNNNN>-<samples_filename_pattern>.<ext>`
(grids `grid-NNNN`). The number is the largest existing one + 1. Unlike A1111 (which can
overwrite when several jobs save at once), a name is reserved atomically before writing:
the image is written to a hidden temp file first, numbers are picked under a lock file in the
folder, and the temp file is hard-linked to the final name (atomic, fails if the name exists;
filesystems without hard links: O_EXCL reservation + rename). An existing file is never replaced.

Extensions: `before_save` gets A1111's ImageSaveParams with the planned path and may change the
image, the pnginfo or the path (the image then goes exactly there, or next to it with "-1" when
that name is taken); `after_save` gets the same object with the path written.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from modules.core.options import atomic_write_text
from modules.generation.filename_pattern import FilenameContext, FilenameGenerator, Sanitizer
from modules.generation.hooks import ImageGridLoopParams, ImageSaveParams
from modules.generation.image_io import normalize_format, write_image_with_geninfo

LOCK_NAME = ".saving.lock"
JPEG_MAX_SIDE = 65535
WEBP_MAX_SIDE = 16383
DEFAULT_NAME_MAX_BYTES = 255


class SaveError(OSError):
    """An image could not be saved (no free name, folder lock not obtained)."""


@dataclass(frozen=True)
class SavingOptions:
    """The saving settings, filled by the caller from options (and two command-line flags)."""

    samples_format: str = "png"
    samples_filename_pattern: str = ""
    save_images_add_number: bool = True
    save_to_dirs: bool = True
    grid_save_to_dirs: bool = True
    directories_filename_pattern: str = "[date]"
    directories_max_prompt_words: int = 8
    jpeg_quality: int = 80
    webp_lossless: bool = False
    enable_pnginfo: bool = True
    save_txt: bool = False
    grid_extended_filename: bool = False
    filenames_max_length: int = 128  # --filenames-max-length
    unix_filenames_sanitization: bool = False  # --unix-filenames-sanitization

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        *,
        filenames_max_length: int = 128,
        unix_filenames_sanitization: bool = False,
    ) -> SavingOptions:
        defaults = cls()
        values = {
            name: settings.get(name, getattr(defaults, name))
            for name in cls.__dataclass_fields__
            if name not in ("filenames_max_length", "unix_filenames_sanitization")
        }
        return cls(
            **values, filenames_max_length=filenames_max_length, unix_filenames_sanitization=unix_filenames_sanitization
        )

    @property
    def sanitizer(self) -> Sanitizer:
        return Sanitizer(max_length=self.filenames_max_length, unix=self.unix_filenames_sanitization)


@dataclass(frozen=True)
class SavedImage:
    """Where an image went, and its .txt when save_txt wrote one."""

    path: Path
    txt_path: Path | None = None


def next_sequence_number(directory: Path, basename: str = "") -> int:
    """Largest number found at the start of file names (after `basename-`) + 1; 0 when none."""
    prefix = f"{basename}-" if basename else ""
    result = -1
    if not directory.is_dir():
        return 0
    for name in os.listdir(directory):
        if not name.startswith(prefix):
            continue
        first = os.path.splitext(name[len(prefix) :])[0].split("-")[0]
        with contextlib.suppress(ValueError):
            result = max(int(first), result)
    return result + 1


def fallback_extension(image: Image.Image, extension: str) -> str:
    """JPEG above 65535 px or WebP above 16383 px a side cannot be written: use PNG."""
    ext = normalize_format(extension)
    biggest = max(image.width, image.height)
    if (ext in ("jpg", "jpeg") and biggest > JPEG_MAX_SIDE) or (ext == "webp" and biggest > WEBP_MAX_SIDE):
        return "png"
    return ext


def safe_subdirectory(name: str) -> Path:
    """A relative folder from a directory pattern, without '..', absolute parts or empty parts."""
    parts = [p for p in name.replace("\\", "/").split("/") if p.strip() not in ("", ".", "..")]
    return Path(*parts) if parts else Path()


def save_image(
    image: Image.Image,
    outdir: str | Path,
    basename: str = "",
    *,
    ctx: FilenameContext,
    options: SavingOptions,
    extension: str | None = None,
    infotext: str | None = None,
    suffix: str = "",
    forced_filename: str | None = None,
    grid: bool = False,
    short_filename: bool = False,
    no_prompt: bool = False,
    save_to_dirs: bool | None = None,
    existing_pnginfo: Mapping[str, Any] | None = None,
    pnginfo_section_name: str = "parameters",
    before_save: Callable[[ImageSaveParams], None] | None = None,
    after_save: Callable[[ImageSaveParams], None] | None = None,
    p: Any = None,
) -> SavedImage:
    """Save one image the A1111 way (images.save_image) and return where it went.

    `basename` prefixes the number ("grid" -> grid-0003); `short_filename` (or ctx.seed None)
    drops the filename pattern; `no_prompt` keeps the image out of sub-folders (extras).
    `before_save`/`after_save`: on_before_image_saved / on_image_saved (`p` goes into the params).
    """
    ext = fallback_extension(image, extension or options.samples_format)
    namegen = FilenameGenerator(
        ctx, image, max_prompt_words=options.directories_max_prompt_words, sanitize=options.sanitizer
    )
    directory = Path(outdir)
    if save_to_dirs is None:
        save_to_dirs = (grid and options.grid_save_to_dirs) or (not grid and options.save_to_dirs and not no_prompt)
    if save_to_dirs:
        dirname = namegen.apply(options.directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /")
        directory = directory / safe_subdirectory(dirname)
    directory.mkdir(parents=True, exist_ok=True)
    short = short_filename or ctx.seed is None
    pnginfo = dict(existing_pnginfo or {})
    if infotext is not None:
        pnginfo[pnginfo_section_name] = infotext
    params = ImageSaveParams(image, p, "", pnginfo)
    chosen: Path | None = None
    if before_save is not None:
        planned = _planned_path(directory, basename, ext, namegen, options, short, suffix, forced_filename)
        params.filename = str(planned)
        before_save(params)
        if params.filename != str(planned):
            chosen = Path(params.filename)
            directory, ext = chosen.parent, normalize_format(chosen.suffix.lstrip(".") or ext)
            directory.mkdir(parents=True, exist_ok=True)
        infotext = params.pnginfo.get(pnginfo_section_name)
    extra_info = {k: v for k, v in params.pnginfo.items() if k != pnginfo_section_name}

    tmp = _write_temp(params.image, directory, ext, infotext, options, extra_info, pnginfo_section_name)
    try:
        if chosen is not None:
            path = _claim_plain_name(tmp, directory, chosen.stem, ext)
        elif forced_filename is not None:
            path = _claim_plain_name(tmp, directory, _no_separators(forced_filename), ext)
        else:
            path = _claim_pattern_name(tmp, directory, basename, ext, namegen, options, short, suffix)
    finally:
        tmp.unlink(missing_ok=True)

    txt_path = None
    if options.save_txt and infotext is not None:
        txt_path = path.with_suffix(".txt")
        atomic_write_text(txt_path, f"{infotext}\n")
    if after_save is not None:
        params.filename = str(path)
        after_save(params)
    return SavedImage(path=path, txt_path=txt_path)


def _no_separators(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_")


def _decoration(namegen: FilenameGenerator, options: SavingOptions, short: bool, suffix: str) -> tuple[str, bool]:
    """(the name part after the number, whether a number is added)."""
    if short:
        pattern = ""
    elif options.save_to_dirs:
        pattern = options.samples_filename_pattern or "[seed]"
    else:
        pattern = options.samples_filename_pattern or "[seed]-[prompt_spaces]"
    decoration = _no_separators(namegen.apply(pattern) + suffix)
    return decoration, options.save_images_add_number or decoration == ""


def _numbered_name(number: int, basename: str, decoration: str, ext: str, limit: int) -> str:
    prefix = f"{number:05}" if basename == "" else f"{basename}-{number:04}"
    return _fit_name(prefix, f"-{decoration}" if decoration else "", f".{ext}", limit)


def _planned_path(
    directory: Path,
    basename: str,
    ext: str,
    namegen: FilenameGenerator,
    options: SavingOptions,
    short: bool,
    suffix: str,
    forced_filename: str | None,
) -> Path:
    """The name the image will most likely get (shown to on_before_image_saved, as A1111 does)."""
    limit = _name_max_bytes(directory)
    if forced_filename is not None:
        return directory / _fit_name("", _no_separators(forced_filename), f".{ext}", limit)
    decoration, add_number = _decoration(namegen, options, short, suffix)
    if not add_number:
        return directory / _fit_name("", decoration, f".{ext}", limit)
    return directory / _numbered_name(next_sequence_number(directory, basename), basename, decoration, ext, limit)


def _claim_pattern_name(
    tmp: Path,
    directory: Path,
    basename: str,
    ext: str,
    namegen: FilenameGenerator,
    options: SavingOptions,
    short: bool,
    suffix: str,
) -> Path:
    decoration, add_number = _decoration(namegen, options, short, suffix)
    if not add_number:
        return _claim_plain_name(tmp, directory, decoration, ext)
    limit = _name_max_bytes(directory)
    with _directory_lock(directory):
        start = next_sequence_number(directory, basename)
        for number in range(start, start + 10000):
            path = directory / _numbered_name(number, basename, decoration, ext, limit)
            if _claim(tmp, path):
                return path
    raise SaveError(f"no free file name for {basename or 'image'} in {directory}")


def _claim_plain_name(tmp: Path, directory: Path, stem: str, ext: str) -> Path:
    limit = _name_max_bytes(directory)
    for attempt in range(10000):
        tail = f"-{attempt}.{ext}" if attempt else f".{ext}"
        path = directory / _fit_name("", stem, tail, limit)
        if _claim(tmp, path):
            return path
    raise SaveError(f"no free file name for {stem!r} in {directory}")


def _claim(tmp: Path, path: Path) -> bool:
    """Give the finished temp file the name `path` unless that name exists (never overwrites)."""
    try:
        os.link(tmp, path)  # atomic, fails if `path` exists, and `path` appears complete
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this filesystem: reserve the name, then rename over it
        if not _reserve(path):
            return False
        os.replace(tmp, path)
        return True


def _reserve(path: Path) -> bool:
    """Create `path` empty if it does not exist yet; False when it does (someone else's)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _fit_name(prefix: str, middle: str, tail: str, limit: int) -> str:
    """prefix + middle + tail, with `middle` cut so the name fits `limit` bytes (UTF-8)."""
    budget = limit - len(prefix.encode()) - len(tail.encode())
    cut = middle.encode()[: max(0, budget)].decode("utf8", errors="ignore")
    return f"{prefix}{cut}{tail}"


def _name_max_bytes(directory: Path) -> int:
    if hasattr(os, "statvfs"):
        with contextlib.suppress(OSError):
            return int(os.statvfs(directory).f_namemax)
    return DEFAULT_NAME_MAX_BYTES


@contextlib.contextmanager
def _directory_lock(directory: Path, timeout: float = 30.0, stale_after: float = 60.0) -> Iterator[None]:
    """Cross-thread, cross-process lock on a folder's numbering (an O_EXCL lock file)."""
    lock = directory / LOCK_NAME
    deadline = time.monotonic() + timeout
    while not _reserve(lock):
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > stale_after:  # left by a crashed process
                lock.unlink(missing_ok=True)
                continue
        if time.monotonic() > deadline:
            raise SaveError(f"could not lock {directory} for saving (remove {lock} if no save is running)")
        time.sleep(0.002)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _write_temp(
    image: Image.Image,
    directory: Path,
    ext: str,
    infotext: str | None,
    options: SavingOptions,
    existing_pnginfo: Mapping[str, Any] | None,
    pnginfo_section_name: str,
) -> Path:
    # Hidden temp file in the target folder (same filesystem, so link/rename work).
    fd, tmp_name = tempfile.mkstemp(prefix=".saving-", suffix=f".{ext}.tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write_image_with_geninfo(
                image,
                handle,
                infotext,
                ext,
                quality=options.jpeg_quality,
                webp_lossless=options.webp_lossless,
                enable_pnginfo=options.enable_pnginfo,
                existing_pnginfo=existing_pnginfo,
                pnginfo_section_name=pnginfo_section_name,
            )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_params_txt(path: str | Path, infotext: str) -> None:
    """params.txt (last infotext, read by the paste button when the prompt is empty); atomic."""
    atomic_write_text(Path(path), infotext)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def grid_rows(count: int, *, n_rows: int = -1, batch_size: int = 1, prevent_empty_spots: bool = False) -> int:
    """Row count for `count` images (A1111 image_grid): n_rows > 0 as is, 0 = batch size,
    -1 = round(sqrt(count)) or, with prevent_empty_spots, the largest divisor <= sqrt(count)."""
    if count < 1:
        raise ValueError("a grid needs at least one image")
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = batch_size
    elif prevent_empty_spots:
        rows = math.isqrt(count)
        while count % rows != 0:
            rows -= 1
    else:
        rows = round(math.sqrt(count))
    return max(1, min(rows, count))


def image_grid(
    images: Sequence[Image.Image],
    rows: int | None = None,
    *,
    n_rows: int = -1,
    batch_size: int = 1,
    prevent_empty_spots: bool = False,
    on_grid: Callable[[ImageGridLoopParams], None] | None = None,
) -> Image.Image:
    """Images laid out left to right, top to bottom in cells of the first image's size (black RGB).

    `on_grid` (on_image_grid) may change the images, columns and rows before drawing."""
    if not images:
        raise ValueError("a grid needs at least one image")
    if rows is None:
        rows = grid_rows(len(images), n_rows=n_rows, batch_size=batch_size, prevent_empty_spots=prevent_empty_spots)
    rows = max(1, min(rows, len(images)))
    params = ImageGridLoopParams(list(images), -(-len(images) // rows), rows)
    if on_grid is not None:
        on_grid(params)
    cols, rows = max(1, int(params.cols)), max(1, int(params.rows))
    width, height = params.imgs[0].size
    grid = Image.new("RGB", size=(cols * width, rows * height), color="black")
    for i, img in enumerate(params.imgs):
        grid.paste(img, box=(i % cols * width, i // cols * height))
    return grid
