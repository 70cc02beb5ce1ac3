"""Training datasets: a folder of images with optional caption .txt files -> latents and prompts.

A1111's rules (textual_inversion/dataset.py): every file directly in the folder that opens as an
image is used; its caption is `<stem>.txt` next to it, else the file name without leading
numbers/dashes (optionally reduced to the words matching `dataset_filename_word_regex`, joined by
`dataset_filename_join_string`). Images are resized to width x height, or with "variable size"
kept as they are and batched by size ("buckets"). The latent of an image is sampled once at load
("once"), is the distribution's mean ("deterministic") or is sampled anew each time it is used
("random"). With "use weight", the PNG alpha channel weights the loss.

Our checks before anything is encoded or written: a missing or empty folder, a folder without
images, a file with an image extension that does not open, and a caption file that cannot be read
as UTF-8 are errors naming the files; other files that are not images are skipped and reported.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from modules.core.jobs import JobControl, JobInterrupted
from modules.train.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif"})
CAPTION_SUFFIX = ".txt"
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
_NUMBERS_AT_START = re.compile(r"^[-\d]+\s*")
_LISTED = 8  # how many problem files an error message names


@dataclass(frozen=True)
class CaptionRules:
    """How a caption is made from a file name when the image has no .txt file."""

    word_regex: str = ""
    join_string: str = " "

    def filewords(self, filename: str) -> str:
        text = _NUMBERS_AT_START.sub("", Path(filename).stem)
        if self.word_regex:
            try:
                words = re.findall(self.word_regex, text)
            except re.error as exc:
                raise DatasetError(f"filename word regex {self.word_regex!r} is invalid: {exc}") from None
            text = (self.join_string or "").join(w if isinstance(w, str) else "".join(w) for w in words)
        return text


@dataclass(frozen=True)
class TextRules:
    """Prompt text for an image: a random template line, [name] and [filewords] filled in."""

    lines: tuple[str, ...]
    placeholder: str
    shuffle_tags: bool = False
    tag_drop_out: float = 0.0

    @property
    def varies(self) -> bool:
        """With shuffling or dropout a new text is made each time an image is used; else once."""
        return self.shuffle_tags or self.tag_drop_out != 0

    def create(self, filewords: str, rng: random.Random) -> str:
        text = rng.choice(self.lines)
        tags = filewords.split(",")
        if self.tag_drop_out != 0:
            tags = [tag for tag in tags if rng.random() > self.tag_drop_out]
        if self.shuffle_tags:
            rng.shuffle(tags)
        text = text.replace("[filewords]", ",".join(tags))
        return text.replace("[name]", self.placeholder)


# --------------------------------------------------------------------------------------------
# scanning (no model needed): every check that can fail happens here


@dataclass(frozen=True)
class DatasetImage:
    path: Path
    filewords: str
    size: tuple[int, int]


@dataclass
class DatasetScan:
    root: Path
    images: list[DatasetImage]
    skipped: list[Path] = field(default_factory=list)  # files that are neither images nor captions

    @property
    def warnings(self) -> list[str]:
        if not self.skipped:
            return []
        names = ", ".join(p.name for p in self.skipped[:_LISTED])
        more = f" and {len(self.skipped) - _LISTED} more" if len(self.skipped) > _LISTED else ""
        return [f"{len(self.skipped)} file(s) in the dataset folder are not images and were skipped: {names}{more}"]


def _listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_LISTED])
    return shown + (f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def scan_dataset(root: str | Path, rules: CaptionRules) -> DatasetScan:
    """Check the folder and read every caption; DatasetError names all problems at once."""
    if not str(root).strip():
        raise DatasetError("no dataset directory given")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"dataset directory {folder} doesn't exist")
    files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name)
    if not files:
        raise DatasetError(f"dataset directory {folder} is empty")
    images: list[DatasetImage] = []
    skipped: list[Path] = []
    bad_images: list[str] = []
    bad_captions: list[str] = []
    for path in files:
        if path.suffix.lower() == CAPTION_SUFFIX or path.name.startswith(".") or path.name.lower() in IGNORED_FILES:
            continue
        size, problem = _probe_image(path)
        if size is None:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                bad_images.append(f"{path.name} ({problem})")
            else:
                skipped.append(path)
            continue
        caption, caption_problem = _read_caption(path, rules)
        if caption_problem:
            bad_captions.append(caption_problem)
            continue
        images.append(DatasetImage(path, caption, size))
    problems = []
    if bad_images:
        problems.append(f"{len(bad_images)} image file(s) cannot be read: {_listing(bad_images)}")
    if bad_captions:
        problems.append(f"{len(bad_captions)} caption file(s) cannot be read: {_listing(bad_captions)}")
    if problems:
        raise DatasetError(f"dataset {folder}: " + ". ".join(problems))
    if not images:
        names = _listing([p.name for p in skipped])
        raise DatasetError(f"no images found in {folder}: {len(skipped)} file(s), none of them an image ({names})")
    return DatasetScan(folder, images, skipped)


def _probe_image(path: Path) -> tuple[tuple[int, int] | None, str]:
    try:
        with Image.open(path) as image:
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return (oriented.width, oriented.height), ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _read_caption(image_path: Path, rules: CaptionRules) -> tuple[str, str]:
    caption = image_path.with_suffix(CAPTION_SUFFIX)
    if not caption.exists():
        return rules.filewords(image_path.name), ""
    try:
        return caption.read_text(encoding="utf-8").strip(), ""
    except UnicodeDecodeError as exc:
        return "", f"{caption.name} (not UTF-8 text: {exc.reason} at byte {exc.start})"
    except OSError as exc:
        return "", f"{caption.name} ({exc.strerror or exc})"


# --------------------------------------------------------------------------------------------
# encoding


@dataclass(frozen=True)
class DatasetSpec:
    width: int = 512
    height: int = 512
    varsize: bool = False
    latent_sampling_method: str = "once"
    use_weight: bool = False
    batch_size: int = 1
    gradient_step: int = 1


@dataclass
class DatasetEntry:
    index: int
    path: Path
    filewords: str
    size: tuple[int, int]  # pixels trained on (w, h)
    latent: torch.Tensor  # [C, h, w] scaled latent: the fixed sample, or the mean for "random"
    latent_std: torch.Tensor | None = None  # "random": scaled std, a new sample each use
    weight: torch.Tensor | None = None  # [C, h, w] loss weights (alpha channel), mean 1
    text: str | None = None  # the prompt when texts do not vary


@dataclass
class Batch:
    indices: list[int]
    latents: torch.Tensor  # [B, C, h, w]
    texts: list[str]
    weights: torch.Tensor | None
    size: tuple[int, int]  # pixels (w, h)


@dataclass
class TrainingDataset:
    entries: list[DatasetEntry]
    text_rules: TextRules
    batch_size: int
    gradient_step: int
    latent_sampling_method: str
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def groups(self) -> list[list[int]]:
        by_size: dict[tuple[int, int], list[int]] = {}
        for entry in self.entries:
            by_size.setdefault(entry.size, []).append(entry.index)
        return list(by_size.values())

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self) // self.batch_size // self.gradient_step)

    @property
    def batches_used_per_epoch(self) -> int:
        """Batches of an epoch that complete an optimizer step (A1111's drop_last for accumulation)."""
        count = len(self) // self.batch_size
        return count - count % self.gradient_step

    def epoch(self, rng: random.Random) -> list[list[int]]:
        """One epoch of batches, each from one size group (A1111 GroupedBatchSampler)."""
        size, total = self.batch_size, len(self)
        groups = [list(g) for g in self.groups]
        n_batches = total // size
        expected = [len(g) / total * n_batches * size for g in groups]
        n_random = n_batches - sum(int(e) // size for e in expected)
        weights = [e % size / n_random / size if n_random > 0 else 0.0 for e in expected]
        for group in groups:
            rng.shuffle(group)
        batches = [g[i * size : (i + 1) * size] for g in groups for i in range(len(g) // size)]
        for _ in range(n_random):
            group = rng.choices(groups, weights)[0] if sum(weights) > 0 else rng.choice(groups)
            batches.append(rng.choices(group, k=size))
        rng.shuffle(batches)
        return batches

    def batch(self, indices: Sequence[int], rng: random.Random, generator: torch.Generator) -> Batch:
        entries = [self.entries[i] for i in indices]
        latents = []
        for entry in entries:
            if entry.latent_std is None:
                latents.append(entry.latent)
            else:
                noise = torch.randn(entry.latent.shape, generator=generator)
                latents.append(entry.latent + entry.latent_std * noise)
        texts = [
            entry.text if entry.text is not None else self.text_rules.create(entry.filewords, rng) for entry in entries
        ]
        weights = None
        if all(entry.weight is not None for entry in entries):
            weights = torch.stack([entry.weight for entry in entries if entry.weight is not None])
        return Batch(list(indices), torch.stack(latents), texts, weights, entries[0].size)


def vae_scale_factor(vae: Any) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def prepare_image(path: Path, spec: DatasetSpec, multiple: int) -> tuple[Image.Image, Image.Image | None]:
    """RGB image at the training size (or its own size cut to a multiple of the VAE factor),
    and its alpha channel when loss weights are wanted."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    alpha = image.getchannel("A") if spec.use_weight and "A" in image.getbands() else None
    rgb = image.convert("RGB")
    if spec.varsize:
        w, h = rgb.width - rgb.width % multiple, rgb.height - rgb.height % multiple
        if w < multiple or h < multiple:
            raise DatasetError(
                f"{path.name} is {rgb.width}x{rgb.height}; images need at least {multiple} pixels a side"
            )
        box = ((rgb.width - w) // 2, (rgb.height - h) // 2, (rgb.width - w) // 2 + w, (rgb.height - h) // 2 + h)
        rgb = rgb.crop(box)
        alpha = alpha.crop(box) if alpha is not None else None
    else:
        rgb = rgb.resize((spec.width, spec.height), Image.Resampling.BICUBIC)
        alpha = alpha.resize((spec.width, spec.height), Image.Resampling.BICUBIC) if alpha is not None else None
    return rgb, alpha


def _loss_weight(alpha: Image.Image | None, latent_shape: torch.Size) -> torch.Tensor:
    """Alpha resized to the latent, shifted to a minimum of 0 and scaled to a mean of 1."""
    channels, height, width = latent_shape
    if alpha is None:
        return torch.ones(channels, height, width)
    small = np.asarray(alpha.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    weight = torch.from_numpy(small.copy())
    weight = weight - weight.min()
    mean = float(weight.mean())
    if mean <= 0:  # a uniform alpha channel weights every pixel alike
        return torch.ones(channels, height, width)
    return (weight / mean).expand(channels, height, width).clone()


def encode_dataset(
    scan: DatasetScan,
    spec: DatasetSpec,
    vae: Any,
    text_rules: TextRules,
    *,
    rng: random.Random,
    generator: torch.Generator,
    control: JobControl | None = None,
) -> TrainingDataset:
    """Encode every image with the VAE (once, at load) into a TrainingDataset."""
    param = next(vae.parameters())
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    multiple = vae_scale_factor(vae)
    entries: list[DatasetEntry] = []
    for index, item in enumerate(scan.images):
        if control is not None and control.interrupted.is_set():
            raise JobInterrupted()
        rgb, alpha = prepare_image(item.path, spec, multiple)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            dist = vae.encode(pixels.to(param.device, param.dtype)).latent_dist
            mean = ((dist.mean.float() - shift) * scale)[0].cpu().clone()
            std = (dist.std.float() * scale)[0].cpu().clone()
        entry = DatasetEntry(index, item.path, item.filewords, rgb.size, mean)
        if spec.latent_sampling_method == "once":
            entry.latent = mean + std * torch.randn(mean.shape, generator=generator)
        elif spec.latent_sampling_method == "random":
            entry.latent_std = std
        if spec.use_weight:
            entry.weight = _loss_weight(alpha, mean.shape)
        if not text_rules.varies:
            entry.text = text_rules.create(item.filewords, rng)
        entries.append(entry)
    batch_size = min(spec.batch_size, len(entries))
    gradient_step = min(spec.gradient_step, len(entries) // batch_size)
    warnings = list(scan.warnings)
    if batch_size != spec.batch_size:
        warnings.append(f"batch size lowered to {batch_size}: the dataset has only {len(entries)} images")
    if gradient_step != spec.gradient_step:
        warnings.append(f"gradient accumulation lowered to {gradient_step} steps to fit the dataset")
    return TrainingDataset(entries, text_rules, batch_size, gradient_step, spec.latent_sampling_method, warnings)
