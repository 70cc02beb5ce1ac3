"""Extras backend: upscalers (built-in resamplers and spandrel model files, tiled), face restoration."""

from modules.postprocessing.extras import ExtrasParams, ExtrasResult, run_extras
from modules.postprocessing.face_restoration import FaceRestorationUnavailable, FaceRestorers, scan_face_restorers
from modules.postprocessing.tiling import TileSettings
from modules.postprocessing.upscalers import Upscaler, UpscalerEntry, UpscalerError, UpscalerRegistry, upscaler_dirs

__all__ = [
    "ExtrasParams",
    "ExtrasResult",
    "FaceRestorationUnavailable",
    "FaceRestorers",
    "TileSettings",
    "Upscaler",
    "UpscalerEntry",
    "UpscalerError",
    "UpscalerRegistry",
    "run_extras",
    "scan_face_restorers",
    "upscaler_dirs",
]
