"""A1111's `modules.upscaler` for extensions: UpscalerData (entries of shared.sd_upscalers) and
the Upscaler type of their `.scaler`. Extensions cannot register new upscaler classes here; the
upscalers are the app's (model files in models/ESRGAN, RealESRGAN, SwinIR, DAT...)."""

from __future__ import annotations

from modules.extension_host.compat_lists import UpscalerData
from modules.extension_host.compat_lists import UpscalerScaler as Upscaler

__all__ = ["Upscaler", "UpscalerData"]
