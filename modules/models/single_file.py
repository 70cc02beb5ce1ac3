"""Whole single-file checkpoints <-> per-component diffusers state dicts, for every family."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from modules.models.arch import ModelConfigs
from modules.models.convert import unet_from_ldm, unet_to_ldm, vae_from_ldm, vae_to_ldm
from modules.models.convert_text import (
    TEXT,
    canonical_to_openclip,
    count_layers,
    openclip_to_canonical,
)
from modules.models.errors import UnsupportedModel
from modules.models.layout import IGNORED_PREFIXES, UNET_PREFIX, VAE_PREFIX, TextSlot, text_slots

State = dict[str, torch.Tensor]


@dataclass
class ComponentWeights:
    """diffusers-layout weights of one checkpoint; text encoders in canonical CLIP keys (with `text_model.`)."""

    unet: State
    vae: State
    text_encoders: list[State]
    # keys of the file that no component uses (kept for diagnostics)
    unused_keys: list[str] = field(default_factory=list)


def _take(state: Mapping[str, torch.Tensor], prefix: str) -> State:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _text_from_ldm(state: Mapping[str, torch.Tensor], slot: TextSlot, config: Mapping[str, object]) -> State:
    part = _take(state, slot.ldm_prefix)
    if not part:
        raise UnsupportedModel(f"checkpoint lacks text encoder weights ({slot.ldm_prefix}*)")
    if slot.layout == "hf":
        return {k: v for k, v in part.items() if k.startswith(TEXT) and not k.endswith("position_ids")}
    keep = int(config["num_hidden_layers"])  # type: ignore[call-overload]
    return openclip_to_canonical(part, keep_layers=keep, with_projection=slot.with_projection)


def checkpoint_to_diffusers(state: Mapping[str, torch.Tensor], configs: ModelConfigs) -> ComponentWeights:
    """Split a single-file state dict (keys already normalised) into diffusers component weights."""
    slots = text_slots(configs.family)
    unet = _take(state, UNET_PREFIX)
    vae = _take(state, VAE_PREFIX)
    if not vae:
        raise UnsupportedModel("checkpoint lacks VAE weights (first_stage_model.*)")
    vae = {k: v for k, v in vae.items() if not k.startswith("loss.")}
    weights = ComponentWeights(
        unet=unet_from_ldm(unet, configs.unet),
        vae=vae_from_ldm(vae, configs.vae),
        text_encoders=[_text_from_ldm(state, s, c) for s, c in zip(slots, configs.text_encoders, strict=True)],
    )
    known = (UNET_PREFIX, VAE_PREFIX, *(s.ldm_prefix for s in slots))
    weights.unused_keys = [k for k in state if not k.startswith(known) and not k.startswith(IGNORED_PREFIXES)]
    return weights


def diffusers_to_checkpoint(
    weights: ComponentWeights,
    configs: ModelConfigs,
    *,
    extra: Mapping[str, torch.Tensor] | None = None,
) -> State:
    """Component weights -> one single-file state dict in the original layout of `configs.family`.

    SD2 files carry one more OpenCLIP layer than diffusers uses; pass it in `extra` (full keys,
    e.g. `cond_stage_model.model.transformer.resblocks.23.*`) or the last used layer is repeated
    there, which A1111 never reads either (it stops at the penultimate layer).
    """
    out: State = {UNET_PREFIX + k: v for k, v in unet_to_ldm(weights.unet, configs.unet).items()}
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(weights.vae, configs.vae).items()})
    for slot, text in zip(text_slots(configs.family), weights.text_encoders, strict=True):
        if slot.layout == "hf":
            out.update({slot.ldm_prefix + k: v for k, v in text.items()})
            continue
        converted = canonical_to_openclip(text)
        if slot.drop_last_layer:
            converted.update(_unused_last_layer(converted, slot, extra or {}))
        out.update({slot.ldm_prefix + k: v for k, v in converted.items()})
    return out


def _unused_last_layer(
    converted: Mapping[str, torch.Tensor], slot: TextSlot, extra: Mapping[str, torch.Tensor]
) -> State:
    layers = count_layers(converted.keys(), "transformer.resblocks.")
    given = {k[len(slot.ldm_prefix) :]: v for k, v in extra.items() if k.startswith(slot.ldm_prefix)}
    if given:
        return given
    last, new = f"transformer.resblocks.{layers - 1}.", f"transformer.resblocks.{layers}."
    return {new + k[len(last) :]: v.clone() for k, v in converted.items() if k.startswith(last)}
