"""Tiny random Stable Diffusion models in the real single-file layout, for tests and demos.

Each family keeps its real block structure (SD1.5: 4 UNet levels, 4 VAE levels; SDXL: 3 UNet
levels, two text encoders of different widths; refiner: 4 levels, only the OpenCLIP-G encoder)
with widths 32..128 and one layer per level, so a file is ~30 MB (mostly the 49,408-token
embedding tables) and is written in well under a second. Weights are
random but deterministic (fixed seed). The full CLIP vocabulary (49,408 tokens) is kept so the
real tokenizer works with them.

    python -m tools.tiny_models OUT_DIR [--families sd1 sd2-v sdxl ...] [--seed 0]

writes tiny-<family>.safetensors for each family (plus tiny-sd2-v.yaml, the sibling config that
marks v-prediction, as A1111 expects) and tiny.vae.safetensors, a standalone VAE. Drop the
checkpoints into models/Stable-diffusion and the VAE into models/VAE (or leave it beside them:
*.vae.* files there are listed as VAEs, not checkpoints).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from modules.models.arch import ModelConfigs, shipped_configs, unet_heads
from modules.models.convert import vae_to_ldm
from modules.models.convert_text import canonical_to_openclip, from_model_keys
from modules.models.families import ModelFamily, is_refiner, is_sd2, is_sdxl
from modules.models.layout import text_slots
from modules.models.loader import assemble_pipeline, make_scheduler, save_single_file, tokenizers_for

DEFAULT_FAMILIES = (
    ModelFamily.SD1,
    ModelFamily.SD1_INPAINT,
    ModelFamily.SD2,
    ModelFamily.SD2_V,
    ModelFamily.SDXL,
    ModelFamily.SDXL_REFINER,
)
SD2_V_YAML = 'model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n'
SD2_EPS_YAML = "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    linear_start: 0.00085\n"

# text widths: CLIP-L stand-in 32, OpenCLIP stand-in 64 (SDXL needs two different widths)
_CLIP_WIDTH, _OPENCLIP_WIDTH, _POOLED_WIDTH, _TIME_ID_WIDTH = 32, 64, 48, 8


def tiny_configs(family: ModelFamily) -> ModelConfigs:
    """The family's shipped configs with tiny widths (heads follow the loader's family rules)."""
    configs = shipped_configs(family)
    for slot, text in zip(text_slots(family), configs.text_encoders, strict=True):
        width = _OPENCLIP_WIDTH if slot.layout == "openclip" else _CLIP_WIDTH
        text.update(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=1)
        if slot.with_projection:
            text["projection_dim"] = _POOLED_WIDTH
    unet = configs.unet
    if is_sdxl(family):
        channels = [32, 64, 128, 128] if is_refiner(family) else [32, 64, 128]
        unet["transformer_layers_per_block"] = 2 if is_refiner(family) else [1, 1, 2]
        unet["addition_time_embed_dim"] = _TIME_ID_WIDTH
        time_ids = 5 if is_refiner(family) else 6
        unet["projection_class_embeddings_input_dim"] = _POOLED_WIDTH + time_ids * _TIME_ID_WIDTH
    else:
        channels = [32, 64, 128, 128]
    unet["block_out_channels"] = channels
    unet["layers_per_block"] = 1  # the real 2 is covered by the full-size layout tests; 1 keeps loads fast
    unet["attention_head_dim"] = unet_heads(family, channels)
    unet["cross_attention_dim"] = sum(t["hidden_size"] for t in configs.text_encoders)
    unet["sample_size"] = 8
    configs.vae.update(block_out_channels=[32, 64, 128, 128], layers_per_block=1, sample_size=64)
    return configs


@dataclass
class TinyParts:
    """The components of a tiny model (same attribute names as a diffusers pipeline)."""

    family: ModelFamily
    configs: ModelConfigs
    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    scheduler: Any

    @property
    def text_encoders(self) -> list[Any]:
        return [e for e in (self.text_encoder, self.text_encoder_2) if e is not None]


def _text_encoder(config: dict[str, Any], with_projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(CLIPTextConfig(**{k: v for k, v in config.items() if not k.startswith("_")})).eval()


def tiny_parts(family: ModelFamily, seed: int = 0) -> TinyParts:
    """Random tiny components for `family` (deterministic for a given seed)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    configs = tiny_configs(family)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(configs.unet).eval()
    vae = AutoencoderKL.from_config(configs.vae).eval()
    encoders = [
        _text_encoder(cfg, slot.with_projection)
        for slot, cfg in zip(text_slots(family), configs.text_encoders, strict=True)
    ]
    first, second = (
        (None, encoders[0]) if is_refiner(family) else (encoders[0], encoders[1] if len(encoders) > 1 else None)
    )
    return TinyParts(family, configs, unet, vae, first, second, make_scheduler(configs.scheduler))


def tiny_pipeline(family: ModelFamily, tokenizer_cache: Path, seed: int = 0) -> Any:
    """A diffusers pipeline around tiny random components."""
    parts = tiny_parts(family, seed)
    return assemble_pipeline(
        family,
        unet=parts.unet,
        vae=parts.vae,
        text_encoders=parts.text_encoders,
        tokenizers=tokenizers_for(family, tokenizer_cache),
        scheduler=parts.scheduler,
    )


def _sd2_unused_layer(parts: TinyParts, seed: int) -> dict[str, torch.Tensor]:
    """SD2 files carry one more OpenCLIP layer than is used: make a random one (deterministic)."""
    config = copy.deepcopy(parts.configs.text_encoders[0])
    config["num_hidden_layers"] = 1
    torch.manual_seed(seed + 1000)
    layer = canonical_to_openclip(from_model_keys(_text_encoder(config, False).state_dict()))
    count = parts.configs.text_encoders[0]["num_hidden_layers"]
    prefix = text_slots(parts.family)[0].ldm_prefix
    return {
        f"{prefix}transformer.resblocks.{count}." + k.removeprefix("transformer.resblocks.0."): v
        for k, v in layer.items()
        if k.startswith("transformer.resblocks.0.")
    }


def write_tiny_checkpoint(
    out_dir: Path, family: ModelFamily, *, seed: int = 0, name: str | None = None, fmt: str = "safetensors"
) -> Path:
    """Write a tiny single-file checkpoint; returns its path. SD2-v also gets its sibling .yaml."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = tiny_parts(family, seed)
    extra = _sd2_unused_layer(parts, seed) if is_sd2(family) else None
    stem = name or f"tiny-{family.value}"
    path = save_single_file(parts, family, out_dir / f"{stem}.safetensors", extra=extra)
    if fmt == "ckpt":
        state = safetensors.torch.load_file(str(path))
        path.unlink()
        path = out_dir / f"{stem}.ckpt"
        torch.save({"state_dict": state, "global_step": 1}, path)
    elif fmt != "safetensors":
        raise ValueError(f"unknown format {fmt!r}: use safetensors or ckpt")
    if family == ModelFamily.SD2_V:
        path.with_suffix(".yaml").write_text(SD2_V_YAML, encoding="utf-8")
    return path


def write_tiny_vae(out_dir: Path, *, seed: int = 1, name: str = "tiny.vae.safetensors") -> Path:
    """A standalone VAE in A1111's layout (keys encoder.* / decoder.* without a prefix)."""
    from diffusers import AutoencoderKL

    config = tiny_configs(ModelFamily.SD1).vae
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_config(config)
    state = {k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), config).items()}
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(path))
    return path


def write_all(out_dir: Path, families: Sequence[ModelFamily] = DEFAULT_FAMILIES, *, seed: int = 0) -> dict[str, Path]:
    """All requested tiny checkpoints plus the tiny VAE; {family or "vae": path}."""
    written = {f.value: write_tiny_checkpoint(out_dir, f, seed=seed) for f in families}
    written["vae"] = write_tiny_vae(out_dir, seed=seed + 1)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tiny_models", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the files into (created if missing)")
    parser.add_argument(
        "--families",
        nargs="+",
        choices=[f.value for f in ModelFamily],
        default=[f.value for f in DEFAULT_FAMILIES],
        help="families to write (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    for key, path in write_all(args.out_dir, [ModelFamily(f) for f in args.families], seed=args.seed).items():
        print(f"{key:14s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "DEFAULT_FAMILIES",
    "TinyParts",
    "tiny_configs",
    "tiny_parts",
    "tiny_pipeline",
    "write_all",
    "write_tiny_checkpoint",
    "write_tiny_vae",
]
