"""Face restoration (GFPGAN / CodeFormer), offered only when it can really run.

A face restorer needs two things: restoration weights that spandrel can load as a face model
(GFPGAN and RestoreFormer are in spandrel; CodeFormer only in spandrel_extra_arches, which is
not installed), and a face detector to find and crop the faces (A1111 uses facexlib's RetinaFace,
which is not installed either). This module lists the weight files it finds, says for each why
it cannot be used, and runs restoration only when a detector is supplied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from modules.postprocessing.upscalers import MODEL_SUFFIXES, UpscalerError, load_image_model

if TYPE_CHECKING:
    import spandrel

FACE_FAMILIES = ("GFPGAN", "CodeFormer")
NO_DETECTOR = "no face detector is available (A1111 uses facexlib's RetinaFace, which is not installed)"


class FaceRestorationUnavailable(RuntimeError):
    """Face restoration was asked for but nothing can run it; the message lists why."""


@dataclass(frozen=True)
class FaceBox:
    left: int
    top: int
    right: int
    bottom: int


class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[FaceBox]: ...


class FaceModel(Protocol):
    """What spandrel's face models offer: (1, 3, S, S) in [0, 1] -> the restored face."""

    def __call__(self, image: torch.Tensor, /) -> torch.Tensor: ...


@dataclass(frozen=True)
class UnusableFaceModel:
    family: str
    path: Path
    reason: str


class FaceRestorer:
    """Crops each detected face to a square, restores it at the model's size and pastes it back."""

    def __init__(self, name: str, model: FaceModel, detector: FaceDetector, face_size: int = 512) -> None:
        self.name, self.model, self.detector, self.face_size = name, model, detector, face_size

    def restore(self, image: Image.Image) -> Image.Image:
        result = image.convert("RGB")
        for box in self.detector.detect(result):
            result = self._restore_face(result, box)
        return result

    def _restore_face(self, image: Image.Image, box: FaceBox) -> Image.Image:
        side = max(box.right - box.left, box.bottom - box.top)
        cx, cy = (box.left + box.right) // 2, (box.top + box.bottom) // 2
        crop_box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
        face = image.crop(crop_box).resize((self.face_size, self.face_size), Image.Resampling.LANCZOS)
        x = torch.from_numpy(np.array(face)).permute(2, 0, 1).unsqueeze(0).float().div(255)
        with torch.inference_mode():
            y = self.model(x)[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        restored = Image.fromarray(y, "RGB").resize((side, side), Image.Resampling.LANCZOS)
        mask = Image.new("L", (side, side), 0)
        inset = max(1, side // 16)  # feather the paste so the face blends into the picture
        ImageDraw.Draw(mask).rectangle((inset, inset, side - inset - 1, side - inset - 1), fill=255)
        out = image.copy()
        out.paste(restored, crop_box[:2], mask.filter(ImageFilter.GaussianBlur(inset / 2)))
        return out


@dataclass
class FaceRestorers:
    """Runnable restorers by family, and the weight files found that cannot be used (with reasons)."""

    available: dict[str, FaceRestorer] = field(default_factory=dict)
    unusable: list[UnusableFaceModel] = field(default_factory=list)

    def names(self) -> list[str]:
        return list(self.available)

    def get(self, family: str) -> FaceRestorer:
        if family in self.available:
            return self.available[family]
        reasons = [f"{u.path.name}: {u.reason}" for u in self.unusable if u.family == family]
        detail = "; ".join(reasons) if reasons else "no model files found in its models folder"
        raise FaceRestorationUnavailable(f"{family} face restoration is not available: {detail}")


def _weight_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)


def scan_face_restorers(
    folders: dict[str, Path], detector: FaceDetector | None = None, device: torch.device | None = None
) -> FaceRestorers:
    """Find GFPGAN / CodeFormer weights in `folders` (family -> folder) and keep those that run.

    Without a detector no weights are loaded (they could not be used anyway).
    """
    result = FaceRestorers()
    for family in FACE_FAMILIES:
        folder = folders.get(family)
        for path in _weight_files(folder) if folder is not None else []:
            if family in result.available:
                break
            if detector is None:
                result.unusable.append(UnusableFaceModel(family, path, NO_DETECTOR))
                continue
            try:
                model = load_image_model(path, device or torch.device("cpu"), torch.float32)
            except UpscalerError as e:
                result.unusable.append(UnusableFaceModel(family, path, f"spandrel cannot load it ({e})"))
                continue
            if model.purpose != "FaceSR":
                reason = f"spandrel reads it as {model.architecture.name}, not a face model"
                result.unusable.append(UnusableFaceModel(family, path, reason))
                continue
            result.available[family] = FaceRestorer(family, model, detector, _face_size(model))
    return result


def _face_size(model: spandrel.ImageModelDescriptor) -> int:
    return max(512, model.size_requirements.minimum)


def face_restorer_folders(gfpgan_dir: Path, codeformer_dir: Path) -> dict[str, Path]:
    return {"GFPGAN": gfpgan_dir, "CodeFormer": codeformer_dir}


def api_entries(restorers: FaceRestorers, folders: dict[str, Path]) -> list[dict[str, str | None]]:
    """Rows of /sdapi/v1/face-restorers: only restorers that can run."""
    return [
        {"name": name, "cmd_dir": str(folders.get(name)) if name in folders else None} for name in restorers.names()
    ]
