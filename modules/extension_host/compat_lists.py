"""A1111's lists of models as extensions read them: shared.sd_upscalers, shared.face_restorers,
shared.hypernetworks, and the objects in them (UpscalerData, FaceRestoration).

They are views built from the app's registries (Services.upscalers, .faces, .networks) when
read, so they follow the model folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from modules.postprocessing.upscalers import Upscaler, UpscalerRegistry
    from modules.services import Services


class UpscalerScaler:
    """A1111's `Upscaler` object (`UpscalerData.scaler`): `upscale(img, scale, selected_model)`."""

    def __init__(self, upscaler: Upscaler):
        self._upscaler = upscaler
        self.name = upscaler.name
        self.scale = upscaler.scale

    def upscale(self, img: Image.Image, scale: float, selected_model: Any = None) -> Image.Image:
        return self._upscaler.upscale(img, scale)

    def do_upscale(self, img: Image.Image, selected_model: Any = None) -> Image.Image:
        return self._upscaler.upscale_once(img, self.scale)


class UpscalerData:
    """One entry of `shared.sd_upscalers` (A1111: name, data_path, scale, scaler, model_path)."""

    def __init__(self, upscaler: Upscaler):
        self.name = upscaler.name
        self.data_path = str(upscaler.model_path) if upscaler.model_path else None
        self.local_data_path = self.data_path
        self.model_path = self.data_path
        self.model_name = upscaler.model_name
        self.scale = upscaler.scale
        self.scaler = UpscalerScaler(upscaler)
        self.model = None

    def __repr__(self) -> str:
        return f"<UpscalerData {self.name}>"


class FaceRestorerView:
    """One entry of `shared.face_restorers` (A1111's FaceRestoration: name(), restore(np_image))."""

    def __init__(self, services: Services, family: str):
        self._services = services
        self._family = family

    def name(self) -> str:
        return self._family

    def restore(self, np_image: Any) -> Any:
        import numpy as np

        faces = self._services.faces
        image = Image.fromarray(np.asarray(np_image).astype("uint8"))
        return np.array(faces.restore(image, self._family))


def sd_upscalers(registry: UpscalerRegistry) -> list[UpscalerData]:
    return [UpscalerData(u) for u in registry.all()]


def face_restorers(services: Services) -> list[FaceRestorerView]:
    return [FaceRestorerView(services, name) for name in services.faces.restorers().names()]


def hypernetworks(services: Services) -> dict[str, str]:
    """A1111's `shared.hypernetworks`: name -> file path."""
    return {h.name: str(h.path) for h in services.networks.hypernetworks()}


def default_dir(services: Services, flag: str) -> str | None:
    """A1111 fills these flags with the default folder when not given on the command line."""
    paths = services.paths
    folders: dict[str, Path] = {
        "ckpt_dir": paths.ckpt_dir,
        "vae_dir": paths.vae_dir,
        "embeddings_dir": paths.embeddings_dir,
        "hypernetwork_dir": paths.hypernetwork_dir,
        "lora_dir": paths.lora_dir,
        "lyco_dir": paths.lyco_dir,
        "lyco_dir_backcompat": paths.lyco_dir,
        "data_dir": paths.data_dir,
        "models_dir": paths.models_dir,
        "esrgan_models_path": paths.esrgan_dir,
        "realesrgan_models_path": paths.realesrgan_dir,
        "swinir_models_path": paths.swinir_dir,
        "gfpgan_models_path": paths.gfpgan_dir,
        "codeformer_models_path": paths.codeformer_dir,
        "ui_settings_file": paths.config_file,
        "ui_config_file": paths.ui_config_file,
    }
    folder = folders.get(flag)
    return str(folder) if folder is not None else None
