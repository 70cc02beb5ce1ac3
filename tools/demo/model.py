"""Architecture of the demo model: Stable Diffusion 1.x pieces with small widths.

The model is an SD1-family checkpoint in every respect the loader looks at (key layout, CLIP-L-style
text encoder under `cond_stage_model.transformer.`, 4 latent channels, 4 VAE levels = 8x
downsampling, the SD1 scaled-linear 1000-step schedule, eps prediction, VAE scaling 0.18215),
only narrower, so the loader derives its configs from the tensor shapes like any small SD1 model.
Widths are multiples of 32 (group norm) and of 8 (SD1's 8 attention heads); no level is only 32
wide: with SD1's 32 norm groups that makes every channel its own group (instance norm), which
erases flat colours, and the VAE then cannot reproduce a plain background. The text encoder is
64 wide (one 64-channel head, the loader's rule) and keeps the full CLIP vocabulary so the real
tokenizer works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from modules.models.arch import ModelConfigs, shipped_configs, unet_heads
from modules.models.builtin_checkpoints import DEMO_IMAGE_SIZE
from modules.models.families import ModelFamily

FAMILY = ModelFamily.SD1
IMAGE_SIZE = DEMO_IMAGE_SIZE  # 128: 16x16 latents: a small shape spans 4 cells (at 64 px, 2 cells: corners were lost)


@dataclass(frozen=True)
class DemoArchitecture:
    unet_channels: tuple[int, ...] = (64, 96, 128, 128)
    unet_layers: int = 1
    vae_channels: tuple[int, ...] = (64, 64, 64, 64)
    vae_layers: int = 1
    text_width: int = 64
    text_layers: int = 3
    text_ffn: int = 256


def demo_configs(arch: DemoArchitecture = DemoArchitecture()) -> ModelConfigs:
    """SD1's shipped configs with the demo widths (what the loader derives back from the file)."""
    configs = shipped_configs(FAMILY)
    text = configs.text_encoders[0]
    text.update(
        hidden_size=arch.text_width,
        intermediate_size=arch.text_ffn,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=max(1, arch.text_width // 64),
    )
    channels = list(arch.unet_channels)
    configs.unet.update(
        block_out_channels=channels,
        layers_per_block=arch.unet_layers,
        attention_head_dim=unet_heads(FAMILY, channels),
        cross_attention_dim=arch.text_width,
        sample_size=IMAGE_SIZE // 8,
    )
    configs.vae.update(
        block_out_channels=list(arch.vae_channels), layers_per_block=arch.vae_layers, sample_size=IMAGE_SIZE
    )
    return configs


@dataclass
class DemoParts:
    """Diffusers components; attribute names as on a pipeline so the loader's writer can save them."""

    configs: ModelConfigs
    unet: Any
    vae: Any
    text_encoder: Any
    scheduler: Any


def build_parts(configs: ModelConfigs, seed: int) -> DemoParts:
    """Freshly initialised components (deterministic for a seed)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(configs.unet)
    vae = AutoencoderKL.from_config(configs.vae)
    text_config = CLIPTextConfig(**{k: v for k, v in configs.text_encoders[0].items() if not k.startswith("_")})
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDPMScheduler.from_config(configs.scheduler)
    return DemoParts(configs, unet, vae, text_encoder, scheduler)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
