"""Network layer names -> the modules of one loaded model (diffusers UNet, transformers CLIP encoders).

Files name the layer they change in several ways; all of them are registered for every module:
- kohya, diffusers module names: `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`
  (SD1/SD2 LoRAs from sd-scripts): the diffusers name with "." -> "_".
- kohya, original LDM/SGM names: `lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q` (SDXL
  LoRAs; some SD1 ones): the single-file name from modules.models.convert's prefix table.
- text encoders: `lora_te_text_model_encoder_layers_0_self_attn_q_proj` (SD1/SD2; `lora_te1_` is
  accepted too, as A1111 does), SDXL `lora_te1_` (CLIP-L) and `lora_te2_` (OpenCLIP-G).
- dotted (diffusers / PEFT): `unet.down_blocks.0...to_q`, `text_encoder.text_model.encoder...`,
  `text_encoder_2....`, bare diffusers names (PEFT's `base_model.model.` removed), and
  `diffusion_model.<ldm name>`.
Looking names up in a table built from the model's own modules avoids parsing the ambiguous
underscore form and fits any UNet depth (tiny test models included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from modules.models.convert import unet_prefix_map
from modules.models.families import ModelFamily, is_refiner, is_sdxl

PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm, torch.nn.GroupNorm)
UNET = "unet"


class NetworkModel(Protocol):
    """What the networks code needs from a loaded model (modules.models.manager.LoadedModel fits)."""

    family: ModelFamily

    @property
    def unet(self) -> Any: ...

    @property
    def text_encoders(self) -> list[Any]: ...

    @property
    def tokenizers(self) -> list[Any]: ...


@dataclass(frozen=True)
class LayerTarget:
    component: str  # "unet" | "text_encoder" | "text_encoder_2"
    name: str  # module name inside the component
    module: torch.nn.Module

    @property
    def is_text_encoder(self) -> bool:
        return self.component != UNET


@dataclass(frozen=True)
class _TextSlot:
    component: str
    kohya_prefixes: tuple[str, ...]
    dotted_prefix: str


def text_components(family: ModelFamily) -> tuple[str, ...]:
    """Pipeline attribute names of the model's text encoders, in `model.text_encoders` order."""
    if is_refiner(family):
        return ("text_encoder_2",)
    if is_sdxl(family):
        return ("text_encoder", "text_encoder_2")
    return ("text_encoder",)


def _text_slots(family: ModelFamily) -> tuple[_TextSlot, ...]:
    if is_refiner(family):
        return (_TextSlot("text_encoder_2", ("lora_te2_",), "text_encoder_2."),)
    if is_sdxl(family):
        return (
            _TextSlot("text_encoder", ("lora_te1_",), "text_encoder."),
            _TextSlot("text_encoder_2", ("lora_te2_",), "text_encoder_2."),
        )
    return (_TextSlot("text_encoder", ("lora_te_", "lora_te1_"), "text_encoder."),)


def _patchable(module: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    for name, child in module.named_modules():
        if name and isinstance(child, PATCHABLE):
            yield name, child


def ldm_name(diffusers_name: str, table: dict[str, str]) -> str | None:
    """The original (LDM/SGM) name of a UNet module: its longest mapped prefix, renamed."""
    parts = diffusers_name.split(".")
    for cut in range(len(parts), 0, -1):
        mapped = table.get(".".join(parts[:cut]))
        if mapped is not None:
            return ".".join([mapped, *parts[cut:]])
    return None


def module_weight(module: torch.nn.Module) -> torch.Tensor:
    """The module's `weight` parameter (typed: nn.Module attributes are untyped for mypy)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight


def _underscored(name: str) -> str:
    return name.replace(".", "_")


class ModelLayers:
    """Every name a network file may use for a layer of this model -> that layer."""

    def __init__(self, unet: torch.nn.Module, text_encoders: Sequence[torch.nn.Module], family: ModelFamily) -> None:
        self.family = family
        self._table: dict[str, LayerTarget] = {}
        self._add_unet(unet)
        slots = _text_slots(family)
        if len(slots) != len(text_encoders):
            raise ValueError(f"a {family.value} model needs {len(slots)} text encoder(s), got {len(text_encoders)}")
        for slot, encoder in zip(slots, text_encoders, strict=True):
            self._add_text_encoder(slot, encoder)

    @classmethod
    def of(cls, model: NetworkModel) -> ModelLayers:
        return cls(model.unet, model.text_encoders, model.family)

    def find(self, layer_key: str) -> LayerTarget | None:
        return self._table.get(layer_key)

    def __len__(self) -> int:
        return len({id(t.module) for t in self._table.values()})

    def _add(self, key: str, target: LayerTarget) -> None:
        self._table.setdefault(key, target)

    def _add_unet(self, unet: torch.nn.Module) -> None:
        config = getattr(unet, "config", None)
        table = (
            unet_prefix_map(config) if config is not None and isinstance(config.get("layers_per_block"), int) else {}
        )
        for name, module in _patchable(unet):
            target = LayerTarget(UNET, name, module)
            for key in (f"lora_unet_{_underscored(name)}", f"unet.{name}", name):
                self._add(key, target)
            original = ldm_name(name, table)
            if original is not None:
                for key in (
                    f"lora_unet_{_underscored(original)}",
                    f"diffusion_model.{original}",
                    f"model.diffusion_model.{original}",
                ):
                    self._add(key, target)

    def _add_text_encoder(self, slot: _TextSlot, encoder: torch.nn.Module) -> None:
        for name, module in _patchable(encoder):
            target = LayerTarget(slot.component, name, module)
            # transformers >= 5.6 CLIPTextModel has no `text_model.` level; files always name it
            canonical = name if name.startswith("text_model.") or name == "text_projection" else f"text_model.{name}"
            for prefix in slot.kohya_prefixes:
                self._add(prefix + _underscored(canonical), target)
            self._add(slot.dotted_prefix + canonical, target)
            self._add(slot.dotted_prefix + name, target)
