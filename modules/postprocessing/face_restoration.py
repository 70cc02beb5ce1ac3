"""Face restoration (GFPGAN; CodeFormer listed with the reason it cannot run), as A1111 does it.

A restorer needs a face detector and face restoration weights. The detector is facexlib's
RetinaFace, rebuilt in face_detect.py, reading `detection_Resnet50_Final.pth` from models/GFPGAN
(A1111's place) or models/Codeformer. Each face's 5 landmarks are aligned to the FFHQ template
(face_align.py), the aligned face goes through the model (spandrel's GFPGAN, fed [-1, 1] as
A1111 does), and the result is warped back and blended in with a feathered mask.

CodeFormer's architecture is only in spandrel_extra_arches (non-commercial licences, not
installed), so CodeFormer weights are listed as unusable with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from modules.models.errors import ModelError
from modules.postprocessing.face_align import align_face, box_transform, face_template, paste_face, similarity_transform
from modules.postprocessing.face_detect import DETECTOR_FILENAME, FaceBox, find_detector, load_retinaface
from modules.postprocessing.upscalers import MODEL_SUFFIXES, UpscalerError, load_image_model, read_state_dict

__all__ = [
    "FACE_FAMILIES",
    "FaceBox",
    "FaceDetector",
    "FaceModel",
    "FaceRestorationUnavailable",
    "FaceRestorer",
    "FaceRestorers",
    "UnusableFaceModel",
    "api_entries",
    "face_restorer_folders",
    "restore_faces",
    "scan_face_restorers",
]

FACE_FAMILIES = ("GFPGAN", "CodeFormer")
NO_DETECTOR = "no face detector"
# facexlib keeps its own weights next to the restorers' (A1111: models/GFPGAN); they are not restorers.
FACEXLIB_PREFIXES = ("detection_", "parsing_")
GFPGAN_FACE_SIZE = 512
SPANDREL_FACE_ARCHS = frozenset({"GFPGAN", "RestoreFormer"})  # spandrel's FaceSR architectures
CODEFORMER_UNSUPPORTED = (
    "CodeFormer's architecture is only in the spandrel_extra_arches package, which is not installed "
    "(its architectures carry non-commercial licences)"
)


class FaceRestorationUnavailable(RuntimeError):
    """Face restoration was asked for but nothing can run it; the message lists why."""


class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[FaceBox]: ...


class FaceModel(Protocol):
    """A restorer for one aligned face: (1, 3, S, S) RGB in [0, 1] -> the restored face, same range."""

    def __call__(self, image: torch.Tensor, /) -> torch.Tensor: ...


@dataclass(frozen=True)
class UnusableFaceModel:
    family: str
    path: Path
    reason: str


class FaceRestorer:
    """Aligns each detected face to the FFHQ template, restores it, and pastes it back."""

    def __init__(self, name: str, model: FaceModel, detector: FaceDetector, face_size: int = 512) -> None:
        self.name, self.model, self.detector, self.face_size = name, model, detector, face_size

    def restore(self, image: Image.Image) -> Image.Image:
        result = image.convert("RGB")
        for box in self.detector.detect(result):
            result = self._restore_face(result, box)
        return result

    def _matrix(self, box: FaceBox) -> np.ndarray:
        if box.landmarks is not None and len(box.landmarks) == 5:
            return similarity_transform(np.array(box.landmarks), face_template(self.face_size))
        return box_transform(box.left, box.top, box.right, box.bottom, self.face_size)

    def _restore_face(self, image: Image.Image, box: FaceBox) -> Image.Image:
        matrix = self._matrix(box)
        face = align_face(image, matrix, self.face_size)
        x = torch.from_numpy(np.array(face)).permute(2, 0, 1).unsqueeze(0).float().div(255)
        with torch.inference_mode():
            y = self.model(x)[0].float().clamp(0, 1).mul(255).round().to(torch.uint8)
        restored = Image.fromarray(y.permute(1, 2, 0).cpu().numpy(), "RGB")
        return paste_face(image, restored, matrix)


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


def restore_faces(image: Image.Image, restorers: FaceRestorers | None, model_name: str | None) -> Image.Image:
    """A1111's "Restore faces" for generated images: `model_name` is the face_restoration_model setting.

    An empty name picks the first restorer that can run. Raises FaceRestorationUnavailable (with
    the reasons) rather than returning the image untouched, so a user is never misled.
    """
    if restorers is None:
        raise FaceRestorationUnavailable("face restoration is not available: no face restorers configured")
    if not model_name:
        if not restorers.available:
            raise FaceRestorationUnavailable(f"face restoration is not available: {describe_unusable(restorers)}")
        model_name = restorers.names()[0]
    return restorers.get(model_name).restore(image)


def describe_unusable(restorers: FaceRestorers) -> str:
    reasons = [f"{u.family} {u.path.name}: {u.reason}" for u in restorers.unusable]
    return "; ".join(reasons) if reasons else "no GFPGAN or CodeFormer model files found"


def _weight_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES and not p.name.startswith(FACEXLIB_PREFIXES)
    )


def _load_detector(
    folders: dict[str, Path], device: torch.device | None, safe: bool
) -> tuple[FaceDetector | None, str]:
    """The RetinaFace detector from the restorers' folders, or None and why not."""
    searched = [folders[f] for f in FACE_FAMILIES if f in folders]
    path = find_detector(searched)
    if path is None:
        where = " or ".join(str(f) for f in searched) or "the GFPGAN models folder"
        return None, f"{NO_DETECTOR}: put facexlib's {DETECTOR_FILENAME} (RetinaFace) in {where}"
    try:
        return load_retinaface(path, device, safe=safe), ""
    except ModelError as e:
        return None, f"{NO_DETECTOR}: {e}"


class _LazyGFPGAN:
    """GFPGAN weights, built on first use (building the 86M-parameter network takes seconds).

    spandrel's descriptor call passes [0, 1] straight through; GFPGAN works in [-1, 1] and A1111
    calls the network itself with return_rgb=False, so this does the same.
    """

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path, self.device = path, device
        self.net: torch.nn.Module | None = None

    def __call__(self, x: torch.Tensor, /) -> torch.Tensor:
        if self.net is None:
            self.net = load_image_model(self.path, self.device, torch.float32).model
        out = self.net(x.to(self.device) * 2 - 1, return_rgb=False)[0]
        return (out.float().clamp(-1, 1) + 1) / 2


def _architecture(path: Path) -> tuple[str, str]:
    """(id, name) of the spandrel architecture the weights in `path` match, without building it."""
    import spandrel  # imported on first use: importing it takes seconds

    state = spandrel.canonicalize_state_dict(read_state_dict(path))
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        if support.detect(state):
            return str(support.architecture.id), support.architecture.name
    raise UpscalerError(f"{path.name}: spandrel does not recognise this model architecture")


def _load_restorer(family: str, path: Path, detector: FaceDetector, device: torch.device) -> FaceRestorer | str:
    """A restorer for `path` (its network is built on first use), or the reason it cannot be used."""
    if family == "CodeFormer":
        return CODEFORMER_UNSUPPORTED
    try:
        arch_id, arch_name = _architecture(path)
    except (UpscalerError, ModelError) as e:
        return f"spandrel cannot load it ({e})"
    if arch_id in SPANDREL_FACE_ARCHS - {"GFPGAN"}:
        return f"spandrel reads it as {arch_name}, not GFPGAN"
    if arch_id != "GFPGAN":
        return f"spandrel reads it as {arch_name}, not a face model"
    return FaceRestorer(family, _LazyGFPGAN(path, device), detector, GFPGAN_FACE_SIZE)


def scan_face_restorers(
    folders: dict[str, Path],
    detector: FaceDetector | None = None,
    device: torch.device | None = None,
    *,
    safe: bool = True,
) -> FaceRestorers:
    """Find GFPGAN / CodeFormer weights in `folders` (family -> folder) and keep those that run.

    Without a `detector`, facexlib's RetinaFace weights are looked for in the same folders; if
    they are missing or refused, no restoration weights are loaded and each file says why.
    """
    result = FaceRestorers()
    files = {family: _weight_files(folders[family]) if family in folders else [] for family in FACE_FAMILIES}
    problem = ""
    if detector is None and any(files.values()):
        detector, problem = _load_detector(folders, device, safe)
    for family in FACE_FAMILIES:
        for path in files[family]:
            if family in result.available:
                break
            loaded = problem if detector is None else _load_restorer(family, path, detector, device or _cpu())
            if isinstance(loaded, FaceRestorer):
                result.available[family] = loaded
            else:
                result.unusable.append(UnusableFaceModel(family, path, loaded))
    return result


def _cpu() -> torch.device:
    return torch.device("cpu")


def face_restorer_folders(gfpgan_dir: Path, codeformer_dir: Path) -> dict[str, Path]:
    return {"GFPGAN": gfpgan_dir, "CodeFormer": codeformer_dir}


def api_entries(restorers: FaceRestorers, folders: dict[str, Path]) -> list[dict[str, str | None]]:
    """Rows of /sdapi/v1/face-restorers: only restorers that can run."""
    return [
        {"name": name, "cmd_dir": str(folders.get(name)) if name in folders else None} for name in restorers.names()
    ]
