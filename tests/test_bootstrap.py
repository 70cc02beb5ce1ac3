"""The composition root (modules/app/bootstrap.py) builds each shared service once: the API, the
UI and the generation engine get the same upscaler registry, face restorers, network catalogue
and script-hooks slot, and the API's upscalers follow the ESRGAN tile settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.api.routes import build_api_context
from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.generation.hooks import ScriptHooks
from modules.postprocessing import TileSettings, UpscalerRegistry
from modules.server import build_authenticator
from modules.services import Services
from tests.test_upscalers import fixture_image, tiny_esrgan

pytestmark = pytest.mark.unit


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    esrgan = tmp_path / "models" / "ESRGAN"
    esrgan.mkdir(parents=True)
    save_file(tiny_esrgan(), str(esrgan / "tiny-4x.safetensors"))
    built = build_services(parse_args(["--data-dir", str(tmp_path)]), policy=DevicePolicy.cpu())
    yield built
    built.jobs.shutdown(timeout=5)


def test_one_instance_of_each_shared_service(services: Services) -> None:
    api = build_api_context(services, build_authenticator(services))
    assert api.upscalers is services.upscalers
    assert services.faces is services.generation.faces
    assert services.networks is services.generation.networks.catalogue
    assert services.training.ctx.generation is services.generation
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.training = services.training  # type: ignore[misc]


def test_api_upscaler_follows_the_tile_settings(services: Services) -> None:
    image = fixture_image(48, 40)
    api = build_api_context(services, build_authenticator(services))
    folder = [services.paths.esrgan_dir]
    for tile, overlap in ((0, 0), (16, 4)):
        services.options.set("ESRGAN_tile", tile)
        services.options.set("ESRGAN_tile_overlap", overlap)
        got = np.asarray(api.upscalers.get("tiny-4x").upscale(image, 4))
        want = np.asarray(UpscalerRegistry(folder, TileSettings(tile, overlap)).get("tiny-4x").upscale(image, 4))
        assert np.array_equal(got, want), f"tile {tile}/{overlap}"
    whole = UpscalerRegistry(folder, TileSettings(0, 0)).get("tiny-4x").upscale(image, 4)
    assert not np.array_equal(np.asarray(whole), got)  # the tiles made a difference: the setting was used


def test_extension_hooks_attach_to_the_engine_through_the_slot(services: Services) -> None:
    assert type(services.generation.hooks) is ScriptHooks  # no-op until an extension host attaches

    class Marker(ScriptHooks):
        pass

    marker = Marker()
    services.script_hooks.attach(marker)
    assert services.generation.hooks is marker
    services.script_hooks.detach()
    assert type(services.generation.hooks) is ScriptHooks
    assert torch.device("cpu") == services.policy.device
