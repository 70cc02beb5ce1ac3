"""Upscalers for Extras and hires fix: None, Lanczos, Nearest, and model files spandrel understands.

A1111 rules kept (modules/upscaler.py): `upscale(image, scale)` aims at (w·scale, h·scale) rounded
down to a multiple of 8, runs the upscaler up to 3 times until the image is at least that big
(a 2x model reaches 8x in three passes), then resizes to the exact target with Lanczos. "None"
returns the image Lanczos-resized to the target (Extras skips "None" before getting here).
Model upscalers are named by their file stem; the known Real-ESRGAN files keep A1111's names.

Difference: images go to the models as RGB (spandrel's convention, also what ESRGAN/BasicSR
were trained on); A1111 flips them to BGR first.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from modules.core.paths import Paths
from modules.postprocessing.tiling import TileSettings, upscale_tiled

if TYPE_CHECKING:
    import spandrel

MODEL_SUFFIXES = (".pth", ".pt", ".safetensors")
UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "ScuNET")
MAX_PASSES = 3

# Real-ESRGAN release files and the names A1111 shows for them.
REALESRGAN_NAMES = {
    "realesr-general-x4v3": "R-ESRGAN General 4xV3",
    "realesr-general-wdn-x4v3": "R-ESRGAN General WDN 4xV3",
    "realesr-animevideov3": "R-ESRGAN AnimeVideo",
    "RealESRGAN_x4plus": "R-ESRGAN 4x+",
    "RealESRGAN_x4plus_anime_6B": "R-ESRGAN 4x+ Anime6B",
    "RealESRGAN_x2plus": "R-ESRGAN 2x+",
}


class UpscalerError(ValueError):
    """An upscaler that cannot be found, loaded or run; the message says why."""


@dataclass(frozen=True)
class UpscalerEntry:
    """One row of /sdapi/v1/upscalers."""

    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """A1111's destination size: width and height times scale, rounded down to multiples of 8."""
    if not scale > 0:
        raise UpscalerError(f"scale must be positive, got {scale}")
    size = int((width * scale) // 8 * 8), int((height * scale) // 8 * 8)
    if min(size) <= 0:
        raise UpscalerError(f"upscaling {width}x{height} by {scale} gives an empty image (sizes round down to 8)")
    return size


class Upscaler(ABC):
    """An upscaler as Extras, hires fix and the API see it."""

    name: str
    scale: float = 4.0
    model_path: Path | None = None
    model_name: str | None = None

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        """Upscale to A1111's target size for `scale` (see module docstring)."""
        dest = target_size(image.width, image.height, scale)
        for _ in range(MAX_PASSES):
            before = image.size
            image = self.upscale_once(image, scale)
            if image.size == before or (image.width >= dest[0] and image.height >= dest[1]):
                break
        if image.size != dest:
            image = image.resize(dest, resample=Image.Resampling.LANCZOS)
        return image

    @abstractmethod
    def upscale_once(self, image: Image.Image, scale: float) -> Image.Image:
        """One pass: a model applies its own factor, resamplers apply `scale`."""

    def entry(self) -> UpscalerEntry:
        path = str(self.model_path) if self.model_path else None
        return UpscalerEntry(self.name, self.model_name, path, None, self.scale)


class NoneUpscaler(Upscaler):
    name = "None"

    def upscale_once(self, image: Image.Image, scale: float) -> Image.Image:
        return image


class ResampleUpscaler(Upscaler):
    """Plain PIL resampling (A1111's "Lanczos" and "Nearest")."""

    def __init__(self, name: str, resample: Image.Resampling) -> None:
        self.name = name
        self.resample = resample

    def upscale_once(self, image: Image.Image, scale: float) -> Image.Image:
        size = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        return image.resize(size, resample=self.resample)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from .safetensors, or from a pickle through the weights-only loader (no code runs)."""
    if path.suffix.lower() == ".safetensors":
        return load_file(str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # boundary: any refusal or corruption becomes one clear message
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UpscalerError(f"{path.name} cannot be loaded safely as plain weights: {first_line}") from e
    if not isinstance(loaded, dict):
        raise UpscalerError(f"{path.name} does not contain a state dict")
    return loaded


def load_image_model(path: Path, device: torch.device, dtype: torch.dtype) -> spandrel.ImageModelDescriptor:
    """Load a model file with spandrel (architecture detected from the weights)."""
    import spandrel  # imported on first use: importing it takes seconds

    if not path.is_file():
        raise UpscalerError(f"model file not found: {path}")
    state = spandrel.canonicalize_state_dict(read_state_dict(path))
    try:
        model = spandrel.ModelLoader(device=device).load_from_state_dict(state)
    except spandrel.UnsupportedModelError as e:
        raise UpscalerError(f"{path.name}: spandrel does not recognise this model architecture") from e
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise UpscalerError(f"{path.name}: {model.architecture.name} is not an image-to-image model")
    if dtype != torch.float32:
        model = model.to(dtype)
    return model.eval()


TileSource = TileSettings | Callable[[], TileSettings]


class ModelUpscaler(Upscaler):
    """A model file run through spandrel, tiled; the model loads on first use."""

    def __init__(
        self, path: Path, family: str, tiles: TileSource, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> None:
        self.model_path = path
        self.model_name = family
        self.name = REALESRGAN_NAMES.get(path.stem, path.stem)
        self.scale = float(scale_from_name(path.stem) or 4)  # A1111 lists 4 until the file is read
        self.tiles, self.device, self.dtype = tiles, device, dtype
        self._model: spandrel.ImageModelDescriptor | None = None

    def load(self) -> spandrel.ImageModelDescriptor:
        if self._model is None:
            assert self.model_path is not None
            model = load_image_model(self.model_path, self.device, self.dtype)
            if model.purpose not in ("SR", "Restoration"):
                raise UpscalerError(f"{self.model_path.name}: a {model.purpose} model is not an upscaler")
            if model.input_channels != 3 or model.output_channels != 3:
                raise UpscalerError(f"{self.model_path.name}: needs RGB in and out, model has {model.input_channels}")
            self._model = model
            self.scale = float(model.scale)
        return self._model

    def unload(self) -> None:
        self._model = None

    def upscale_once(self, image: Image.Image, scale: float) -> Image.Image:
        model = self.load()
        pixels = np.asarray(image.convert("RGB"))
        tiles = self.tiles() if callable(self.tiles) else self.tiles
        result = upscale_tiled(pixels, model, scale=model.scale, tiles=tiles, device=self.device, dtype=self.dtype)
        return Image.fromarray(result, "RGB")


def scale_from_name(name: str) -> int | None:
    """The factor a file name announces ("4x-UltraSharp", "RealESRGAN_x2plus"), if any."""
    match = re.search(r"(?<![a-z0-9])(\d)x|x(\d)(?![0-9])", name, flags=re.IGNORECASE)
    return int(match.group(1) or match.group(2)) if match else None


def upscaler_dirs(paths: Paths) -> list[Path]:
    """A1111's model folders for upscalers (the --*-models-path flags apply)."""
    dirs = [paths.esrgan_dir, paths.realesrgan_dir, paths.swinir_dir]
    return dirs + [paths.models_dir / folder for folder in ("DAT", "HAT", "ScuNET")]


class UpscalerRegistry:
    """None, Lanczos, Nearest, then every model file found in the given folders (sorted by name).

    `tiles` may be a function: the app passes one reading ESRGAN_tile / ESRGAN_tile_overlap from
    the settings at each upscale, so a changed setting applies without a restart."""

    def __init__(
        self,
        model_dirs: Sequence[Path],
        tiles: TileSource | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model_dirs = [Path(d) for d in model_dirs]
        self.tiles = tiles or TileSettings()
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self._upscalers: list[Upscaler] = []
        self.refresh()

    def refresh(self) -> None:
        """Rescan the folders (models already loaded are dropped)."""
        builtins: list[Upscaler] = [
            NoneUpscaler(),
            ResampleUpscaler("Lanczos", Image.Resampling.LANCZOS),
            ResampleUpscaler("Nearest", Image.Resampling.NEAREST),
        ]
        found: list[Upscaler] = []
        taken = {u.name for u in builtins}
        for folder in self.model_dirs:
            files = sorted(folder.rglob("*")) if folder.is_dir() else []
            for path in (p for p in files if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES):
                upscaler = ModelUpscaler(path, folder.name, self.tiles, self.device, self.dtype)
                if upscaler.name in taken:  # same stem in two folders: keep both, tell them apart
                    upscaler.name = f"{upscaler.name} ({folder.name})"
                taken.add(upscaler.name)
                found.append(upscaler)
        self._upscalers = builtins + sorted(found, key=lambda u: u.name.lower())

    def all(self) -> list[Upscaler]:
        return list(self._upscalers)

    def names(self) -> list[str]:
        return [u.name for u in self._upscalers]

    def get(self, name: str) -> Upscaler:
        for upscaler in self._upscalers:
            if upscaler.name == name:
                return upscaler
        raise UpscalerError(f"could not find upscaler named {name!r} (available: {', '.join(self.names())})")

    def entries(self) -> list[UpscalerEntry]:
        return [u.entry() for u in self._upscalers]
