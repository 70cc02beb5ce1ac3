"""End to end through the generation service, wired up the way docs/networks.md tells the engine to:
LoRA jobs and the base image, infotext hashes, an SD1 LoRA on SDXL, hypernetworks, embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modules.app.bootstrap import build_generation_service
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl
from modules.core.options import Options
from modules.core.shared_options import core_registry
from modules.generation.engine import GenerationService
from modules.generation.infotext import parse_generation_parameters
from modules.generation.processing import GenerationResult
from modules.generation.requests import Txt2ImgRequest
from modules.models.hashes import HashCache, addnet_hash_safetensors
from modules.models.manager import ModelManager
from modules.networks.activation import NetworkActivator
from modules.networks.options import NETWORK_OPTIONS
from modules.networks.testing import a1111_embedding, a1111_hypernetwork, save_safetensors, save_torch
from tests.fixtures_models import TinyModelFiles, link_into, models_home

TO_K = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"  # tiny SD1: [64, 32]


@dataclass
class Env:
    home: Any
    service: GenerationService
    activator: NetworkActivator

    def txt2img(self, prompt: str, **fields: Any) -> GenerationResult:
        fields.setdefault("override_settings", {"sd_model_checkpoint": "tiny-sd1"})
        request = Txt2ImgRequest(prompt=prompt, width=64, height=64, steps=2, sampler_name="Euler", seed=77, **fields)
        return self.service.txt2img(request, JobControl())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[Env]:
    home = models_home(tmp_path_factory.mktemp("networks-e2e"))
    for family in ("sd1", "sdxl"):
        link_into(home.ckpt_dir, tiny_models.checkpoint(family))
    registry = core_registry()
    registry.extend(NETWORK_OPTIONS)
    options = Options(registry, home.config_file)
    for key, value in (("sd_checkpoint_cache", 2), ("samples_save", False), ("grid_save", False)):
        options.set(key, value)
    hash_cache = HashCache(home.hash_cache_file)
    models = ModelManager(home, DevicePolicy.cpu(), hash_cache, cache_size=lambda: 2)
    models.refresh()
    service = build_generation_service(  # the engine as the composition root wires it
        models=models, options=options, paths=home, device=torch.device("cpu"), write_params_txt=False
    )
    activator = service.networks
    yield Env(home, service, activator)


def pixels(result: GenerationResult) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def base(env: Env) -> np.ndarray:
    """The plain image every test compares against (same prompt, seed and settings)."""
    return pixels(env.txt2img("a red circle"))


def lora_file(env: Env, name: str, scale: float = 1.0) -> Path:
    g = torch.Generator().manual_seed(len(name))
    state = {
        f"{TO_K}.lora_down.weight": torch.randn(4, 32, generator=g) * scale,
        f"{TO_K}.lora_up.weight": torch.randn(64, 4, generator=g) * scale,
        f"{TO_K}.alpha": torch.tensor(4.0),
    }
    return save_safetensors(env.home.lora_dir / f"{name}.safetensors", state)


def test_lora_jobs_and_the_base_image(env: Env, base: np.ndarray) -> None:
    path = lora_file(env, "strong", scale=3.0)
    zero = env.txt2img("<lora:strong:0> a red circle")
    applied = env.txt2img("a red circle <lora:strong:1>")
    after = env.txt2img("a red circle")
    assert np.array_equal(pixels(zero), base)
    assert not np.array_equal(pixels(applied), base)
    assert np.array_equal(pixels(after), base)
    params = parse_generation_parameters(applied.infotexts[0])
    assert params["Lora hashes"] == f"strong: {addnet_hash_safetensors(path)[:12]}"
    assert params["Prompt"] == "a red circle <lora:strong:1>"
    assert "networks" not in applied.p.comments
    assert "Lora hashes" not in parse_generation_parameters(after.infotexts[0])


def test_sd1_lora_on_sdxl_completes_with_a_warning(env: Env) -> None:
    lora_file(env, "sd1only")
    result = env.txt2img("a boat <lora:sd1only:1>", override_settings={"sd_model_checkpoint": "tiny-sdxl"})
    assert len(result.images) == 1
    assert "LoRA 'sd1only': none of its 1 layers fit this sdxl model; nothing applied" in result.p.comments["networks"]


def test_missing_lora_is_reported_and_changes_nothing(env: Env, base: np.ndarray) -> None:
    result = env.txt2img("a red circle <lora:does_not_exist:1>")
    assert result.p.comments["networks"] == "Failed to find networks: does_not_exist"
    assert np.array_equal(pixels(result), base)


def test_hypernetwork_strength_zero_and_one(env: Env, base: np.ndarray) -> None:
    def pair(width: int, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {
            "linear.0.weight": torch.randn(2 * width, width, generator=g),
            "linear.0.bias": torch.zeros(2 * width),
            "linear.2.weight": torch.randn(width, 2 * width, generator=g),
            "linear.2.bias": torch.zeros(width),
        }

    save_torch(env.home.hypernetwork_dir / "hn.pt", a1111_hypernetwork({32: (pair(32, 1), pair(32, 2))}))
    assert np.array_equal(pixels(env.txt2img("a red circle <hypernet:hn:0>")), base)
    assert not np.array_equal(pixels(env.txt2img("a red circle <hypernet:hn:1>")), base)


def test_embedding_by_file_name_in_prompt_and_negative_prompt(env: Env, base: np.ndarray) -> None:
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(5)) * 5
    save_torch(env.home.embeddings_dir / "shinyemb.pt", a1111_embedding(vectors))
    with_ti = pixels(env.txt2img("a red circle shinyemb"))
    assert not np.array_equal(with_ti, base)
    assert not np.array_equal(pixels(env.txt2img("a red circle", negative_prompt="shinyemb")), base)
    # the same vectors under another file name give the same image
    save_torch(env.home.embeddings_dir / "otheremb.pt", a1111_embedding(vectors))
    assert np.array_equal(pixels(env.txt2img("a red circle otheremb")), with_ti)
