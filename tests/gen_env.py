"""A generation service over tiny fixture models, for generation and API tests."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.app.bootstrap import assemble_services, build_generation_service, build_model_manager, build_registry
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl
from modules.core.options import Options
from modules.generation.engine import GenerationService
from modules.generation.processing import GenerationResult
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.models.manager import ModelManager
from modules.services import Services
from tests.fixtures_models import TinyModelFiles, link_into, models_home

SD1 = "tiny-sd1"
SDXL = "tiny-sdxl"
SD1_INPAINT = "tiny-sd1-inpaint"
SDXL_REFINER = "tiny-sdxl-refiner"


@dataclass
class GenEnv:
    root: Path
    options: Options
    models: ModelManager
    service: GenerationService

    def txt2img(self, **fields: object) -> GenerationResult:
        fields.setdefault("width", 64)
        fields.setdefault("height", 64)
        fields.setdefault("steps", 3)
        fields.setdefault("sampler_name", "Euler a")
        fields.setdefault("override_settings", {"sd_model_checkpoint": SD1})
        return self.service.txt2img(Txt2ImgRequest(**fields), JobControl())

    def img2img(self, images: list[Image.Image], mask: Image.Image | None = None, **fields: object) -> GenerationResult:
        fields.setdefault("width", 64)
        fields.setdefault("height", 64)
        fields.setdefault("steps", 4)
        fields.setdefault("sampler_name", "Euler")
        fields.setdefault("override_settings", {"sd_model_checkpoint": SD1})
        req = Img2ImgRequest(**fields)
        return self.service.img2img(req, JobControl(), init_images=images, mask=mask)


def make_env(root: Path, tiny: TinyModelFiles, policy: DevicePolicy | None = None) -> GenEnv:
    """`policy`: e.g. a half-precision VAE on the CPU (tests of the NaN fallbacks); fp32 CPU by default."""
    paths = models_home(root)
    for family in ("sd1", "sdxl", "sd1-inpaint", "sdxl-refiner"):
        link_into(paths.ckpt_dir, tiny.checkpoint(family))
    options = Options(build_registry(), paths.config_file)
    options.set("sd_checkpoint_cache", 3)
    options.set("samples_save", False)
    options.set("grid_save", False)
    models = build_model_manager(paths, policy or DevicePolicy.cpu(), options, builtin=False)
    service = build_generation_service(models=models, options=options, paths=paths, device=torch.device("cpu"))
    return GenEnv(root, options, models, service)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> GenEnv:
    return make_env(tmp_path_factory.mktemp("gen"), tiny_models)


def env_services(env: GenEnv, args: argparse.Namespace) -> Services:
    """Services over the env's models and generation service (to bind an extension host to)."""
    return assemble_services(args, options=env.options, policy=DevicePolicy.cpu(), generation=env.service)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)
