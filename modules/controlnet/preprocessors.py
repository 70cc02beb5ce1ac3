"""ControlNet preprocessors ("modules" in sd-webui-controlnet's words): image -> control image.

The ones without weights run here in numpy/scipy. The ones built on annotator networks (openpose,
depth, ...) are listed with the file they need under `models/ControlNet-annotators`; without it
they answer `MissingAnnotator`, naming the file. Nothing is ever downloaded.
Names, slider meanings and defaults follow the extension (threshold_a / threshold_b).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


class PreprocessorError(ValueError):
    """Unknown preprocessor or bad input (a user error: HTTP 422 / a UI message)."""


class MissingAnnotator(PreprocessorError):
    """A weight-based preprocessor whose annotator file is not in models/ControlNet-annotators."""


@dataclass(frozen=True)
class Slider:
    label: str
    value: float
    minimum: float
    maximum: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    run: Callable[[np.ndarray, float, float], np.ndarray] | None  # (HxWx3 uint8, a, b) -> HxWx3 uint8
    control_type: str  # the extension's control type tab ("Canny", "Scribble/Sketch", ...)
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    annotator: str | None = None  # relative file under models/ControlNet-annotators (weight-based)


# --- weightless ----------------------------------------------------------------------------------


def _grey(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _rgb(channel: np.ndarray) -> np.ndarray:
    value = np.clip(channel, 0, 255).astype(np.uint8)
    return np.repeat(value[..., None], 3, axis=2)


def canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges: Gaussian blur, Sobel gradients, non-maximum suppression, hysteresis."""
    grey = ndimage.gaussian_filter(_grey(image), 1.0)
    gx, gy = ndimage.sobel(grey, axis=1), ndimage.sobel(grey, axis=0)
    magnitude = np.hypot(gx, gy)  # raw Sobel units, as OpenCV (whose thresholds the sliders use)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = ((angle + 22.5) // 45).astype(int) % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    padded = np.pad(magnitude, 1)
    keep = np.zeros_like(magnitude, dtype=bool)
    h, w = magnitude.shape
    for s, (dy, dx) in offsets.items():
        ahead = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = padded[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        keep |= (sector == s) & (magnitude >= ahead) & (magnitude >= behind)
    thin = np.where(keep, magnitude, 0.0)
    strong, weak = thin >= max(low, high), thin >= min(low, high)
    labels, count = ndimage.label(weak, structure=np.ones((3, 3)))
    if count == 0:
        return _rgb(np.zeros_like(grey))
    connected = np.zeros(count + 1, dtype=bool)
    connected[np.unique(labels[strong])] = True
    connected[0] = False
    return _rgb(np.where(connected[labels], 255, 0))


def invert(image: np.ndarray, _a: float, _b: float) -> np.ndarray:
    return 255 - image


def threshold(image: np.ndarray, level: float, _b: float) -> np.ndarray:
    return _rgb(np.where(_grey(image) > level, 255, 0))


def scribble_xdog(image: np.ndarray, level: float, _b: float) -> np.ndarray:
    """Difference of Gaussians: lines where the image is darker than its surroundings."""
    grey = _grey(image)
    dog = ndimage.gaussian_filter(grey, 0.5) - ndimage.gaussian_filter(grey, 5.0)
    return _rgb(np.where(-dog > level, 255, 0))


def lineart_standard(image: np.ndarray, _a: float, _b: float) -> np.ndarray:
    """Lines from a drawing (dark lines on a light background) as light lines on black."""
    x = image.astype(np.float32)
    blurred = np.stack([ndimage.gaussian_filter(x[..., c], 6.0) for c in range(3)], axis=2)
    intensity = np.clip((blurred - x).min(axis=2), 0, 255)
    visible = intensity[intensity > 8]
    scale = max(float(np.median(visible)) if visible.size else 16.0, 16.0)
    return _rgb(intensity / scale * 127.0)


def tile_resample(image: np.ndarray, rate: float, _b: float) -> np.ndarray:
    """The image reduced by `rate` (tile models add the detail back)."""
    if rate <= 1.0:
        return image
    pil = Image.fromarray(image)
    small = pil.resize((max(1, int(pil.width / rate)), max(1, int(pil.height / rate))), Image.Resampling.BICUBIC)
    return np.asarray(small.resize(pil.size, Image.Resampling.BICUBIC))


def blur_gaussian(image: np.ndarray, sigma: float, _b: float) -> np.ndarray:
    x = image.astype(np.float32)
    return np.stack([ndimage.gaussian_filter(x[..., c], sigma) for c in range(3)], axis=2).clip(0, 255).astype(np.uint8)


def recolor_luminance(image: np.ndarray, gamma: float, _b: float) -> np.ndarray:
    return _rgb(255.0 * (_grey(image) / 255.0) ** gamma)


def color_grid(image: np.ndarray, _a: float, _b: float) -> np.ndarray:
    pil = Image.fromarray(image)
    small = pil.resize((max(1, pil.width // 64), max(1, pil.height // 64)), Image.Resampling.BICUBIC)
    return np.asarray(small.resize(pil.size, Image.Resampling.NEAREST))


def _none(image: np.ndarray, _a: float, _b: float) -> np.ndarray:
    return image


_WEIGHTLESS = (
    Preprocessor("none", _none, "All"),
    Preprocessor("canny", canny, "Canny", Slider("Low Threshold", 100, 1, 255), Slider("High Threshold", 200, 1, 255)),
    Preprocessor("invert (from white bg & black line)", invert, "Scribble/Sketch"),
    Preprocessor("threshold", threshold, "Scribble/Sketch", Slider("Binarization Threshold", 127, 0, 255)),
    Preprocessor("scribble_xdog", scribble_xdog, "Scribble/Sketch", Slider("XDoG Threshold", 32, 1, 64)),
    Preprocessor("lineart_standard (from white bg & black line)", lineart_standard, "Lineart"),
    Preprocessor("tile_resample", tile_resample, "Tile/Blur", Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01)),
    Preprocessor("blur_gaussian", blur_gaussian, "Tile/Blur", Slider("Sigma", 9.0, 0.01, 64.0, 0.01)),
    Preprocessor("recolor_luminance", recolor_luminance, "Recolor", Slider("Gamma Correction", 1.0, 0.1, 2.0, 0.001)),
    Preprocessor("t2ia_color_grid", color_grid, "T2I-Adapter"),
)

# weight-based: the file sd-webui-controlnet's annotator uses, relative to models/ControlNet-annotators
_WEIGHTED = (
    Preprocessor("openpose", None, "OpenPose", annotator="openpose/body_pose_model.pth"),
    Preprocessor("openpose_full", None, "OpenPose", annotator="openpose/body_pose_model.pth"),
    Preprocessor("openpose_hand", None, "OpenPose", annotator="openpose/hand_pose_model.pth"),
    Preprocessor("openpose_face", None, "OpenPose", annotator="openpose/facenet.pth"),
    Preprocessor("depth_midas", None, "Depth", annotator="midas/dpt_hybrid-midas-501f0c75.pt"),
    Preprocessor("depth_leres", None, "Depth", annotator="leres/res101.pth"),
    Preprocessor("depth_zoe", None, "Depth", annotator="zoedepth/ZoeD_M12_N.pt"),
    Preprocessor("normal_bae", None, "NormalMap", annotator="normal_bae/scannet.pt"),
    Preprocessor("lineart_realistic", None, "Lineart", annotator="lineart/sk_model.pth"),
    Preprocessor("lineart_coarse", None, "Lineart", annotator="lineart/sk_model2.pth"),
    Preprocessor("lineart_anime", None, "Lineart", annotator="lineart_anime/netG.pth"),
    Preprocessor("softedge_hed", None, "SoftEdge", annotator="hed/ControlNetHED.pth"),
    Preprocessor("softedge_pidinet", None, "SoftEdge", annotator="pidinet/table5_pidinet.pth"),
    Preprocessor("scribble_hed", None, "Scribble/Sketch", annotator="hed/ControlNetHED.pth"),
    Preprocessor("scribble_pidinet", None, "Scribble/Sketch", annotator="pidinet/table5_pidinet.pth"),
    Preprocessor("mlsd", None, "MLSD", annotator="mlsd/mlsd_large_512_fp32.pth"),
    Preprocessor("seg_ofade20k", None, "Segmentation", annotator="oneformer/250_16_swin_l_oneformer_ade20k_160k.pth"),
)
PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in (*_WEIGHTLESS, *_WEIGHTED)}
ALIASES = {"invert": "invert (from white bg & black line)", "lineart_standard": "lineart_standard (from white bg & black line)",
           "tile": "tile_resample", "blur": "blur_gaussian", "scribble": "scribble_xdog", "None": "none"}  # fmt: skip
CONTROL_TYPES = ("All", "Canny", "Scribble/Sketch", "Lineart", "SoftEdge", "OpenPose", "Depth", "NormalMap",
                 "MLSD", "Segmentation", "Tile/Blur", "Recolor", "T2I-Adapter")  # fmt: skip


def find(name: str) -> Preprocessor:
    key = ALIASES.get(name, name)
    found = PREPROCESSORS.get(key) or PREPROCESSORS.get(key.lower())
    if found is None:
        raise PreprocessorError(f"unknown ControlNet preprocessor {name!r}; known: {', '.join(PREPROCESSORS)}")
    return found


def run_preprocessor(
    name: str,
    image: Image.Image,
    *,
    resolution: int = 512,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    annotators_dir: Path | None = None,
) -> Image.Image:
    """The control image made by preprocessor `name` from `image` (at `resolution` on the short side)."""
    pre = find(name)
    if pre.run is None:
        assert pre.annotator is not None
        where = (annotators_dir or Path("models/ControlNet-annotators")) / pre.annotator
        if not where.is_file():
            raise MissingAnnotator(
                f"the {pre.name} preprocessor needs its annotator weights: place {pre.annotator} in "
                f"{where.parent.parent} (file {where}); nothing is downloaded"
            )
        raise MissingAnnotator(
            f"the {pre.name} preprocessor's network is not built in yet; use a weightless preprocessor "
            f"or give an already processed control image with preprocessor 'none'"
        )
    rgb = image.convert("RGB")
    if pre.name != "none" and resolution > 0 and min(rgb.size) != resolution:
        scale = resolution / min(rgb.size)
        rgb = rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.LANCZOS
        )
    a = (
        threshold_a
        if threshold_a is not None and threshold_a >= 0
        else (pre.threshold_a.value if pre.threshold_a else 0.0)
    )
    b = (
        threshold_b
        if threshold_b is not None and threshold_b >= 0
        else (pre.threshold_b.value if pre.threshold_b else 0.0)
    )
    return Image.fromarray(np.ascontiguousarray(pre.run(np.asarray(rgb), float(a), float(b))).astype(np.uint8), "RGB")
