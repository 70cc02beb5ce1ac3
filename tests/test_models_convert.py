"""Key conversion between diffusers and the single-file layout, checked against diffusers' own converter.

The tiny files are loaded by `diffusers.from_single_file` (given the tiny configs and the offline
tokenizer) and by our loader: every weight must be identical. Real-size layouts are checked
without weights (meta tensors): the configs we derive from the shapes of a full-size single file
rebuild exactly the shipped family configs, and our key mapping matches diffusers' for them.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from modules.models.arch import ModelConfigs, derive_configs, shipped_configs
from modules.models.families import ModelFamily
from modules.models.layout import UNET_PREFIX, VAE_PREFIX, text_slots
from modules.models.loader import _empty, load_single_file, text_encoders_of
from modules.models.single_file import ComponentWeights, checkpoint_to_diffusers, diffusers_to_checkpoint
from modules.models.tokenizer import tokenizer_dir
from tests.fixtures_models import TinyModelFiles
from tools.tiny_models import tiny_configs

PIPELINES = {
    ModelFamily.SD1: "StableDiffusionPipeline",
    ModelFamily.SD2: "StableDiffusionPipeline",
    ModelFamily.SDXL: "StableDiffusionXLPipeline",
    ModelFamily.SDXL_REFINER: "StableDiffusionXLImg2ImgPipeline",
}


def _config_folder(configs: ModelConfigs, folder: Path, tokenizer_cache: Path) -> Path:
    for relative, content in configs.as_files().items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content))
    for slot in text_slots(configs.family):
        shutil.copytree(
            tokenizer_dir(tokenizer_cache, slot.pad_token), folder / slot.subfolder.replace("text_encoder", "tokenizer")
        )
    return folder


@pytest.mark.parametrize("family", list(PIPELINES))
def test_tiny_files_load_like_diffusers_from_single_file(
    family: ModelFamily,
    tiny_models: TinyModelFiles,
    tokenizer_cache: Path,
    tmp_path: Path,
) -> None:
    import diffusers

    path = tiny_models.checkpoint(family)
    folder = _config_folder(tiny_configs(family), tmp_path / "config", tokenizer_cache)
    theirs = getattr(diffusers, PIPELINES[family]).from_single_file(
        str(path), config=str(folder), local_files_only=True
    )
    ours = load_single_file(path, tokenizer_cache=tokenizer_cache).pipe
    pairs = [
        (ours.unet, theirs.unet),
        (ours.vae, theirs.vae),
        *zip(text_encoders_of(ours), text_encoders_of(theirs), strict=True),
    ]
    assert len(pairs) == 2 + len(text_slots(family))
    for mine, reference in pairs:
        a, b = mine.state_dict(), reference.state_dict()
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert different == []


# --- full-size layouts, without weights ------------------------------------------------------------


def _meta_models(configs: ModelConfigs) -> tuple[Any, Any, list[Any]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet = _empty(lambda: UNet2DConditionModel.from_config(configs.unet))
    vae = _empty(lambda: AutoencoderKL.from_config(configs.vae))
    encoders = []
    for slot, cfg in zip(text_slots(configs.family), configs.text_encoders, strict=True):
        cls = CLIPTextModelWithProjection if slot.with_projection else CLIPTextModel
        text_config = CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
        encoders.append(_empty(partial(cls, text_config)))
    return unet, vae, encoders


def _meta_single_file(family: ModelFamily) -> tuple[dict[str, torch.Tensor], ModelConfigs]:
    from modules.models.convert_text import from_model_keys

    configs = shipped_configs(family)
    unet, vae, encoders = _meta_models(configs)
    weights = ComponentWeights(
        unet=dict(unet.state_dict()),
        vae=dict(vae.state_dict()),
        text_encoders=[from_model_keys(e.state_dict()) for e in encoders],
    )
    return diffusers_to_checkpoint(weights, configs), configs


def _effective(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """The full config a model ends up with (defaults filled in), minus bookkeeping keys."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    if kind == "text":
        full = CLIPTextConfig(**{k: v for k, v in config.items() if not k.startswith("_")}).to_dict()
    else:
        cls = UNet2DConditionModel if kind == "unet" else AutoencoderKL
        full = dict(_empty(lambda: cls.from_config(config)).config)
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in full.items()
        if not k.startswith("_") and k != "transformers_version"
    }


@pytest.mark.parametrize("family", list(ModelFamily))
def test_configs_derived_from_full_size_shapes_equal_the_shipped_ones(family: ModelFamily) -> None:
    state, shipped = _meta_single_file(family)
    derived = derive_configs({k: tuple(v.shape) for k, v in state.items()}, family)
    assert _effective(derived.unet, "unet") == _effective(shipped.unet, "unet")
    assert _effective(derived.vae, "vae") == _effective(shipped.vae, "vae")
    for mine, theirs in zip(derived.text_encoders, shipped.text_encoders, strict=True):
        assert _effective(mine, "text") == _effective(theirs, "text")


def test_full_size_key_counts_match_real_checkpoints() -> None:
    """Known sizes of A1111 files: SD1.5 has 686 UNet, 248 VAE and 196 text encoder tensors; SD2 24 text layers."""
    sd1, _ = _meta_single_file(ModelFamily.SD1)
    assert sum(k.startswith(UNET_PREFIX) for k in sd1) == 686
    assert sum(k.startswith(VAE_PREFIX) for k in sd1) == 248
    assert sum(k.startswith("cond_stage_model.transformer.text_model.") for k in sd1) == 196
    sd2, _ = _meta_single_file(ModelFamily.SD2)
    assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in sd2
    assert "cond_stage_model.model.transformer.resblocks.24.attn.in_proj_weight" not in sd2
    xl, _ = _meta_single_file(ModelFamily.SDXL)
    assert "conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_proj.bias" in xl
    assert xl["conditioner.embedders.1.model.text_projection"].shape == (1280, 1280)
    assert xl[UNET_PREFIX + "label_emb.0.0.weight"].shape == (1280, 2816)


@pytest.mark.parametrize("family", [ModelFamily.SD1, ModelFamily.SD2_V, ModelFamily.SDXL, ModelFamily.SDXL_REFINER])
def test_full_size_unet_and_vae_keys_match_diffusers_converter(family: ModelFamily) -> None:
    from diffusers.loaders import single_file_utils as reference

    state, configs = _meta_single_file(family)
    ours = checkpoint_to_diffusers(state, configs)
    theirs_unet = reference.convert_ldm_unet_checkpoint(state, configs.unet)
    theirs_vae = reference.convert_ldm_vae_checkpoint(state, configs.vae)
    assert {k: tuple(v.shape) for k, v in ours.unet.items()} == {k: tuple(v.shape) for k, v in theirs_unet.items()}
    assert {k: tuple(v.shape) for k, v in ours.vae.items()} == {k: tuple(v.shape) for k, v in theirs_vae.items()}
    # same source tensor for every renamed UNet key (the mapping, not just the shapes, agrees)
    assert all(ours.unet[k] is theirs_unet[k] for k in ours.unet)
