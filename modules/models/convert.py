"""Key mapping between diffusers models and the original single-file (LDM/SGM) layout: UNet, VAE.

Each map is built from the diffusers config (levels, layers per block, which levels have
attention) as {diffusers module path: LDM module path}. A key is renamed by its longest mapped
module prefix; the rest of the key is identical in both layouts. The same map, inverted, reads
checkpoints, so one table serves loading, saving and the checkpoint merger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from modules.models.errors import UnsupportedModel

PrefixMap = dict[str, str]

_UNET_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_RESNET = (
    ("norm1", "norm1"),
    ("conv1", "conv1"),
    ("norm2", "norm2"),
    ("conv2", "conv2"),
    ("conv_shortcut", "nin_shortcut"),
)
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _add_block(table: PrefixMap, diffusers: str, ldm: str, parts: tuple[tuple[str, str], ...]) -> None:
    for ours, theirs in parts:
        table[f"{diffusers}.{ours}"] = f"{ldm}.{theirs}"


def _layers_per_block(config: Mapping[str, Any]) -> int:
    value = config["layers_per_block"]
    if not isinstance(value, int):
        raise UnsupportedModel(f"per-level layers_per_block {value!r} has no single-file layout")
    return value


def unet_prefix_map(config: Mapping[str, Any]) -> PrefixMap:
    """diffusers UNet2DConditionModel module paths -> LDM `model.diffusion_model.` paths."""
    levels = len(config["block_out_channels"])
    per_level = _layers_per_block(config)
    down_attention = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    up_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    table: PrefixMap = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    index = 1
    for level in range(levels):
        for layer in range(per_level):
            _add_block(table, f"down_blocks.{level}.resnets.{layer}", f"input_blocks.{index}.0", _UNET_RESNET)
            if down_attention[level]:
                table[f"down_blocks.{level}.attentions.{layer}"] = f"input_blocks.{index}.1"
            index += 1
        if level < levels - 1:
            table[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    _add_block(table, "mid_block.resnets.0", "middle_block.0", _UNET_RESNET)
    table["mid_block.attentions.0"] = "middle_block.1"
    _add_block(table, "mid_block.resnets.1", "middle_block.2", _UNET_RESNET)
    index = 0
    for level in range(levels):
        for layer in range(per_level + 1):
            _add_block(table, f"up_blocks.{level}.resnets.{layer}", f"output_blocks.{index}.0", _UNET_RESNET)
            if up_attention[level]:
                table[f"up_blocks.{level}.attentions.{layer}"] = f"output_blocks.{index}.1"
            if level < levels - 1 and layer == per_level:
                slot = 2 if up_attention[level] else 1
                table[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{index}.{slot}.conv"
            index += 1
    return table


def vae_prefix_map(config: Mapping[str, Any]) -> PrefixMap:
    """diffusers AutoencoderKL module paths -> LDM `first_stage_model.` paths."""
    levels = len(config["block_out_channels"])
    per_level = _layers_per_block(config)
    table: PrefixMap = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for side in ("encoder", "decoder"):
        table[f"{side}.conv_in"] = f"{side}.conv_in"
        table[f"{side}.conv_out"] = f"{side}.conv_out"
        table[f"{side}.conv_norm_out"] = f"{side}.norm_out"
        _add_block(table, f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", _VAE_RESNET)
        _add_block(table, f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", _VAE_RESNET)
        _add_block(table, f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", _VAE_ATTENTION)
    for level in range(levels):
        for layer in range(per_level):
            _add_block(
                table,
                f"encoder.down_blocks.{level}.resnets.{layer}",
                f"encoder.down.{level}.block.{layer}",
                _VAE_RESNET,
            )
        if level < levels - 1:
            table[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = f"encoder.down.{level}.downsample.conv"
    for level in range(levels):
        ldm_level = levels - 1 - level  # LDM numbers decoder levels from the bottom
        for layer in range(per_level + 1):
            _add_block(
                table,
                f"decoder.up_blocks.{level}.resnets.{layer}",
                f"decoder.up.{ldm_level}.block.{layer}",
                _VAE_RESNET,
            )
        if level < levels - 1:
            table[f"decoder.up_blocks.{level}.upsamplers.0.conv"] = f"decoder.up.{ldm_level}.upsample.conv"
    return table


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        mapped = table.get(".".join(parts[:cut]))
        if mapped is not None:
            return ".".join([mapped, *parts[cut:]])
    return None


def _convert(state: Mapping[str, torch.Tensor], table: Mapping[str, str], what: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new_key = _rename(key, table)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise UnsupportedModel(f"{what}: {len(unknown)} keys do not fit the expected layout, e.g. {unknown[:3]}")
    return out


def _is_vae_attention_weight(ldm_key: str) -> bool:
    return ".mid.attn_1." in ldm_key and ldm_key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight"))


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers UNet state dict -> LDM keys (without the `model.diffusion_model.` prefix)."""
    return _convert(state, unet_prefix_map(config), "UNet")


def unet_from_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """LDM UNet keys (prefix removed) -> diffusers UNet state dict."""
    inverse = {v: k for k, v in unet_prefix_map(config).items()}
    return _convert(state, inverse, "UNet")


def vae_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL state dict -> LDM keys (without `first_stage_model.`)."""
    out = _convert(state, vae_prefix_map(config), "VAE")
    # LDM's VAE attention uses 1x1 convolutions where diffusers uses linear layers
    return {k: (v[:, :, None, None] if _is_vae_attention_weight(k) and v.ndim == 2 else v) for k, v in out.items()}


def vae_from_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """LDM VAE keys (prefix removed) -> diffusers AutoencoderKL state dict."""
    squeezed = {
        k: (v.reshape(v.shape[:2]) if _is_vae_attention_weight(k) and v.ndim > 2 else v) for k, v in state.items()
    }
    inverse = {v: k for k, v in vae_prefix_map(config).items()}
    return _convert(squeezed, inverse, "VAE")
