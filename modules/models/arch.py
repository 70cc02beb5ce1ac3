"""Diffusers configs for a checkpoint: the shipped family config, adjusted to the file's shapes.

Real checkpoints match the shipped configs (modules/models/configs/<family>/, copied from the
public diffusers repos: runwayml v1-5, stabilityai 2-1(-base), sdxl-base/refiner-1.0). Smaller
models (test fixtures, distilled models) differ in widths and depths; those numbers are read from
the state-dict shapes and override the family config. Head counts cannot be read from shapes,
so they follow the family rule:
- SD1 UNet: 8 heads per attention block (diffusers' `attention_head_dim: 8`).
- SD2 / SDXL UNet: heads of 64 channels, at least one head per block.
- CLIP text encoders: heads of 64 channels, at least one.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.models.convert_text import count_layers
from modules.models.errors import UnsupportedModel
from modules.models.families import ModelFamily, is_refiner, is_sd2, is_sdxl
from modules.models.layout import UNET_PREFIX, VAE_PREFIX, TextSlot, text_slots

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
Shapes = Mapping[str, Sequence[int]]
HEAD_CHANNELS = 64
SD1_HEADS = 8


@dataclass
class ModelConfigs:
    """Everything needed to build one family's diffusers components (plain JSON dicts)."""

    family: ModelFamily
    model_index: dict[str, Any]
    scheduler: dict[str, Any]
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: list[dict[str, Any]] = field(default_factory=list)

    def as_files(self) -> dict[str, dict[str, Any]]:
        """relative path -> JSON content, the layout of a diffusers model folder."""
        files = {
            "model_index.json": self.model_index,
            "scheduler/scheduler_config.json": self.scheduler,
            "unet/config.json": self.unet,
            "vae/config.json": self.vae,
        }
        for slot, config in zip(text_slots(self.family), self.text_encoders, strict=True):
            files[f"{slot.subfolder}/config.json"] = config
        return files


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_configs(family: ModelFamily) -> ModelConfigs:
    """The family's full-size configs as shipped in the repo (fresh copies: callers may edit them)."""
    folder = CONFIGS_DIR / family.value
    return ModelConfigs(
        family=family,
        model_index=_read(folder / "model_index.json"),
        scheduler=_read(folder / "scheduler" / "scheduler_config.json"),
        unet=_read(folder / "unet" / "config.json"),
        vae=_read(folder / "vae" / "config.json"),
        text_encoders=[_read(folder / slot.subfolder / "config.json") for slot in text_slots(family)],
    )


def derive_configs(shapes: Shapes, family: ModelFamily) -> ModelConfigs:
    """Shipped configs of `family`, with architecture numbers taken from a single file's shapes."""
    configs = shipped_configs(family)
    configs.text_encoders = [
        derive_text_config(shapes, slot, base)
        for slot, base in zip(text_slots(family), configs.text_encoders, strict=True)
    ]
    pooled = configs.text_encoders[-1].get("projection_dim") if is_sdxl(family) else None
    configs.unet = derive_unet_config(shapes, family, configs.unet, pooled)
    configs.vae = derive_vae_config(shapes, VAE_PREFIX, configs.vae)
    return configs


# --- UNet ---------------------------------------------------------------------------------------


def _indices(keys: Sequence[str], pattern: str) -> dict[int, set[int]]:
    """For keys like `<block>.<i>.1.transformer_blocks.<k>.`: {i: {k, ...}}."""
    found: dict[int, set[int]] = {}
    regex = re.compile(pattern)
    for key in keys:
        match = regex.match(key)
        if match:
            found.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return found


def _shape(shapes: Shapes, key: str) -> Sequence[int]:
    try:
        return shapes[key]
    except KeyError:
        raise UnsupportedModel(f"checkpoint lacks {key!r}: not a Stable Diffusion UNet layout") from None


def unet_heads(family: ModelFamily, block_out_channels: Sequence[int]) -> int | list[int]:
    if is_sd2(family) or is_sdxl(family):
        return [max(1, c // HEAD_CHANNELS) for c in block_out_channels]
    for channels in block_out_channels:
        if channels % SD1_HEADS:
            raise UnsupportedModel(f"SD1 UNet width {channels} is not divisible by {SD1_HEADS} heads")
    return SD1_HEADS


def _walk_input_blocks(shapes: Shapes, p: str, depths: Mapping[int, set[int]]) -> list[list[tuple[int, bool, int]]]:
    """Per level: (resnet out channels, has attention, transformer depth) for each input block."""
    levels: list[list[tuple[int, bool, int]]] = [[]]
    index = 1
    while True:
        if f"{p}input_blocks.{index}.0.op.weight" in shapes:
            levels.append([])
        elif f"{p}input_blocks.{index}.0.out_layers.3.weight" in shapes:
            out = _shape(shapes, f"{p}input_blocks.{index}.0.out_layers.3.weight")[0]
            depth = len(depths.get(index, ()))
            levels[-1].append((out, depth > 0, depth))
        else:
            break
        index += 1
    return levels


def derive_unet_config(
    shapes: Shapes, family: ModelFamily, base: Mapping[str, Any], pooled_dim: int | None = None
) -> dict[str, Any]:
    p = UNET_PREFIX
    keys = [k for k in shapes if k.startswith(p)]
    conv_in = _shape(shapes, p + "input_blocks.0.0.weight")
    in_depths = _indices(keys, re.escape(p) + r"input_blocks\.(\d+)\.1\.transformer_blocks\.(\d+)\.")
    out_depths = _indices(keys, re.escape(p) + r"output_blocks\.(\d+)\.1\.transformer_blocks\.(\d+)\.")
    mid_depth = count_layers(keys, p + "middle_block.1.transformer_blocks.")
    levels = _walk_input_blocks(shapes, p, in_depths)
    per_level = {len(level) for level in levels}
    if len(per_level) != 1 or 0 in per_level:
        raise UnsupportedModel(f"UNet levels with different numbers of blocks ({sorted(per_level)}) are not supported")
    layers = per_level.pop()
    channels = [level[0][0] for level in levels]
    down_attention = [level[0][1] for level in levels]
    down_depths = [level[0][2] for level in levels]
    up_attention = [bool(out_depths.get(level * (layers + 1))) for level in range(len(levels))]
    if mid_depth == 0:
        raise UnsupportedModel("UNet without a middle attention block is not a Stable Diffusion layout")
    depths = _transformer_depths(down_attention, down_depths, mid_depth)
    config = dict(copy.deepcopy(dict(base)))
    config.update(
        in_channels=int(conv_in[1]),
        out_channels=int(_shape(shapes, p + "out.2.weight")[0]),
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in down_attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in up_attention],
        cross_attention_dim=int(_cross_attention_dim(shapes, keys)),
        use_linear_projection=len(_shape(shapes, _first_proj_in(keys))) == 2,
        attention_head_dim=unet_heads(family, channels),
        transformer_layers_per_block=depths,
    )
    if config["block_out_channels"] == list(base["block_out_channels"]):
        config["attention_head_dim"] = copy.deepcopy(base["attention_head_dim"])
    time_dim = int(_shape(shapes, p + "time_embed.0.weight")[0])
    if time_dim != 4 * channels[0]:
        config["time_embedding_dim"] = time_dim
    if is_sdxl(family):
        _add_sdxl_embedding(config, shapes, family, base, pooled_dim)
    return config


def _transformer_depths(attention: list[bool], depths: list[int], mid_depth: int) -> int | list[int]:
    """diffusers reads depth per down level and uses the last entry for the middle block.

    One number when every attention level and the middle block share it (levels without
    attention ignore theirs), else a list with 1 for those levels.
    """
    if attention[-1] and depths[-1] != mid_depth:
        raise UnsupportedModel("UNet middle block depth differs from its last level's depth")
    if all(d == mid_depth for a, d in zip(attention, depths, strict=True) if a):
        return mid_depth
    values = [d if a else 1 for a, d in zip(attention, depths, strict=True)]
    values[-1] = mid_depth
    return values


def _first_proj_in(keys: Sequence[str]) -> str:
    for key in keys:
        if key.endswith(".proj_in.weight"):
            return key
    raise UnsupportedModel("UNet has no attention blocks (no proj_in)")


def _cross_attention_dim(shapes: Shapes, keys: Sequence[str]) -> int:
    for key in keys:
        if key.endswith("attn2.to_k.weight"):
            return int(shapes[key][1])
    raise UnsupportedModel("UNet has no cross-attention (attn2) layers")


def _add_sdxl_embedding(
    config: dict[str, Any], shapes: Shapes, family: ModelFamily, base: Mapping[str, Any], pooled_dim: int | None
) -> None:
    adm = int(_shape(shapes, UNET_PREFIX + "label_emb.0.0.weight")[1])
    config["projection_class_embeddings_input_dim"] = adm
    if adm == base["projection_class_embeddings_input_dim"] or pooled_dim is None:
        return
    # adm = pooled text embedding + N sinusoidal time ids (6 for base: sizes/crop; 5 for the refiner: + aesthetic)
    count = 5 if is_refiner(family) else 6
    if (adm - pooled_dim) % count or adm <= pooled_dim:
        raise UnsupportedModel(f"SDXL added-condition width {adm} does not fit a pooled width of {pooled_dim}")
    config["addition_time_embed_dim"] = (adm - pooled_dim) // count


# --- VAE ---------------------------------------------------------------------------------------


def derive_vae_config(shapes: Shapes, prefix: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKL config from LDM VAE keys under `prefix` ("first_stage_model." or "")."""
    p = prefix
    keys = [k for k in shapes if k.startswith(p + "encoder.down.")]
    levels = count_layers(keys, p + "encoder.down.")
    if levels == 0:
        raise UnsupportedModel("checkpoint lacks VAE weights (no first_stage_model.encoder.down.*)")
    channels = [int(_shape(shapes, f"{p}encoder.down.{i}.block.0.conv2.weight")[0]) for i in range(levels)]
    layers = count_layers(keys, p + "encoder.down.0.block.")
    config = dict(copy.deepcopy(dict(base)))
    config.update(
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        in_channels=int(_shape(shapes, p + "encoder.conv_in.weight")[1]),
        out_channels=int(_shape(shapes, p + "decoder.conv_out.weight")[0]),
        latent_channels=int(_shape(shapes, p + "decoder.conv_in.weight")[1]),
    )
    return config


# --- text encoders -------------------------------------------------------------------------------


def derive_text_config(shapes: Shapes, slot: TextSlot, base: Mapping[str, Any]) -> dict[str, Any]:
    p = slot.ldm_prefix
    config = dict(copy.deepcopy(dict(base)))
    if slot.layout == "hf":
        token = _shape(shapes, p + "text_model.embeddings.token_embedding.weight")
        positions = _shape(shapes, p + "text_model.embeddings.position_embedding.weight")
        layers = count_layers(shapes.keys(), p + "text_model.encoder.layers.")
        inner = _shape(shapes, p + "text_model.encoder.layers.0.mlp.fc1.weight")[0]
        projection = shapes.get(p + "text_projection.weight")
        projection_dim = projection[0] if projection is not None else None
    else:
        token = _shape(shapes, p + "token_embedding.weight")
        positions = _shape(shapes, p + "positional_embedding")
        layers = count_layers(shapes.keys(), p + "transformer.resblocks.") - (1 if slot.drop_last_layer else 0)
        inner = _shape(shapes, p + "transformer.resblocks.0.mlp.c_fc.weight")[0]
        projection = shapes.get(p + "text_projection")
        projection_dim = projection[1] if (projection is not None and slot.with_projection) else None
    if layers < 1:
        raise UnsupportedModel(f"text encoder under {p!r} has no layers")
    hidden = int(token[1])
    config.update(
        vocab_size=int(token[0]),
        hidden_size=hidden,
        max_position_embeddings=int(positions[0]),
        num_hidden_layers=layers,
        intermediate_size=int(inner),
    )
    if hidden != base["hidden_size"]:
        config["num_attention_heads"] = max(1, hidden // HEAD_CHANNELS)
    if projection_dim is not None:
        config["projection_dim"] = int(projection_dim)
    return config
