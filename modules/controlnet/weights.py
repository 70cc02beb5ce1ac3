"""ControlNet files -> diffusers `ControlNetModel`, offline, from the shipped UNet configs.

Layouts users download, told apart by their keys:
- "ldm": lllyasviel's original layout (`control_model.input_blocks.*`, `zero_convs.*`,
  `input_hint_block.*`, `middle_block_out.*`), as in control_v11p_sd15_*.pth/.safetensors, the
  fp16 pruned files, and most SDXL single files (with `label_emb.*`); the `control_model.` prefix
  may be missing; old full files also carry a whole checkpoint beside it (ignored).
- "diffusers": diffusers' own keys (`controlnet_cond_embedding.*`, `controlnet_down_blocks.*`),
  a `diffusion_pytorch_model.safetensors` alone or in a folder with its config.json.
The architecture is read from the shapes (as the checkpoint loader does: the family's shipped
UNet config, adjusted) so the same code reads real files and the tiny test models.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.models.arch import derive_unet_config, shipped_configs
from modules.models.convert import unet_prefix_map
from modules.models.errors import UnsupportedModel, WrongModelKind
from modules.models.families import ModelFamily
from modules.models.layout import UNET_PREFIX
from modules.models.safe_load import load_state_dict
from modules.models.safetensors_header import read_safetensors_header

State = dict[str, torch.Tensor]
LDM_PREFIX = "control_model."
DIFFUSERS_MARK = "controlnet_cond_embedding."
CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


@dataclass(frozen=True)
class ControlNetKind:
    layout: str  # "ldm" | "diffusers"
    family: ModelFamily  # SD1, SD2 or SDXL: which base models it fits


def layout_of(keys: list[str]) -> str | None:
    """ "ldm", "diffusers" or None (not a ControlNet) from the keys alone."""
    if any(k.startswith(DIFFUSERS_MARK) for k in keys):
        return "diffusers"
    if any(k.startswith((LDM_PREFIX + "input_hint_block.", "input_hint_block.")) for k in keys):
        return "ldm"
    return None


def _ldm_part(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ControlNet's own keys without the `control_model.` prefix."""
    if any(k.startswith(LDM_PREFIX) for k in state):
        return {k[len(LDM_PREFIX) :]: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
    return {k: v for k, v in state.items() if not k.startswith(("model.", "first_stage_model.", "cond_stage_model."))}


def family_of(ldm_shapes: Mapping[str, Any]) -> ModelFamily:
    if "label_emb.0.0.weight" in ldm_shapes:
        return ModelFamily.SDXL
    proj = next((v for k, v in ldm_shapes.items() if k.endswith(".proj_in.weight")), None)
    linear = proj is not None and len(_dims(proj)) == 2
    return ModelFamily.SD2 if linear else ModelFamily.SD1


def _dims(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


# --- key maps --------------------------------------------------------------------------------------


def _hint_map(ldm_shapes: Mapping[str, Any]) -> dict[str, str]:
    """diffusers controlnet_cond_embedding paths <-> `input_hint_block.<i>` (convs at even indices)."""
    convs = sorted({int(m.group(1)) for k in ldm_shapes if (m := re.match(r"input_hint_block\.(\d+)\.weight", k))})
    if len(convs) < 2:
        raise UnsupportedModel("ControlNet without a hint encoder (input_hint_block)")
    table = {"controlnet_cond_embedding.conv_in": f"input_hint_block.{convs[0]}"}
    for block, index in enumerate(convs[1:-1]):
        table[f"controlnet_cond_embedding.blocks.{block}"] = f"input_hint_block.{index}"
    table["controlnet_cond_embedding.conv_out"] = f"input_hint_block.{convs[-1]}"
    return table


def _down_side(config: Mapping[str, Any]) -> dict[str, str]:
    """The UNet map without its output side (a ControlNet has none)."""
    full = dict(config, up_block_types=list(reversed(config["down_block_types"])))
    return {k: v for k, v in unet_prefix_map(full).items() if not k.startswith(("up_blocks.", "conv_out", "conv_norm"))}


def controlnet_prefix_map(config: Mapping[str, Any], ldm_shapes: Mapping[str, Any]) -> dict[str, str]:
    """diffusers ControlNetModel module paths -> ldm ControlNet paths (prefix removed)."""
    table = _down_side(config)
    zero = sorted({int(m.group(1)) for k in ldm_shapes if (m := re.match(r"zero_convs\.(\d+)\.0\.weight", k))})
    for i in zero:
        table[f"controlnet_down_blocks.{i}"] = f"zero_convs.{i}.0"
    table["controlnet_mid_block"] = "middle_block_out.0"
    table.update(_hint_map(ldm_shapes))
    return table


def _rename(state: Mapping[str, Any], table: Mapping[str, str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in state.items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            mapped = table.get(".".join(parts[:cut]))
            if mapped is not None:
                out[".".join([mapped, *parts[cut:]])] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise UnsupportedModel(f"{what}: {len(unknown)} keys do not fit a ControlNet, e.g. {unknown[:3]}")
    return out


def controlnet_config(ldm_shapes: Mapping[str, Any], base_unet: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """ControlNetModel config from ldm-layout shapes: the family's shipped UNet config, adjusted."""
    family = family_of(ldm_shapes)
    shapes = {UNET_PREFIX + k: _dims(v) for k, v in ldm_shapes.items()}
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None:
        raise UnsupportedModel("ControlNet lacks input_blocks.0.0 (not a ControlNet layout)")
    shapes[UNET_PREFIX + "out.2.weight"] = (conv_in[1], conv_in[0], 3, 3)  # no output side: a stand-in
    unet = derive_unet_config(shapes, family, shipped_configs(family).unet)
    if base_unet is not None and family == ModelFamily.SDXL:
        unet["addition_time_embed_dim"] = base_unet.get("addition_time_embed_dim", unet["addition_time_embed_dim"])
    hint = _hint_map(ldm_shapes)
    channels = [_dims(ldm_shapes[hint["controlnet_cond_embedding.conv_in"] + ".weight"])[0]]
    channels += [_dims(ldm_shapes[f"{v}.weight"])[0] for k, v in hint.items() if ".blocks." in k][1::2]
    unet["conditioning_embedding_out_channels"] = channels
    unet["conditioning_channels"] = _dims(ldm_shapes[hint["controlnet_cond_embedding.conv_in"] + ".weight"])[1]
    allowed = set(inspect.signature(_controlnet_class().__init__).parameters) - {"self"}
    return {k: v for k, v in unet.items() if k in allowed}


def _controlnet_class() -> Any:
    from diffusers import ControlNetModel

    return ControlNetModel


# --- diffusers keys -> ldm keys (to derive the config of a diffusers file without config.json) -----


def _guess_unet_config(keys: list[str]) -> dict[str, Any]:
    levels = 1 + max(int(m.group(1)) for k in keys if (m := re.match(r"down_blocks\.(\d+)\.", k)))
    layers = 1 + max(int(m.group(1)) for k in keys if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k)))
    attention = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in keys) for i in range(levels)]
    types = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention]
    return {"block_out_channels": [0] * levels, "layers_per_block": layers, "down_block_types": types}


def diffusers_to_ldm(state: Mapping[str, Any]) -> dict[str, Any]:
    keys = list(state)
    guess = _guess_unet_config(keys)
    # the hint map needs ldm indices: conv_in, blocks.0..n-1, conv_out -> 0, 2, ..., 2(n+1)
    blocks = sorted(
        {int(m.group(1)) for k in keys if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))}
    )
    hint = {"controlnet_cond_embedding.conv_in": "input_hint_block.0"}
    hint.update({f"controlnet_cond_embedding.blocks.{b}": f"input_hint_block.{2 * (b + 1)}" for b in blocks})
    hint["controlnet_cond_embedding.conv_out"] = f"input_hint_block.{2 * (len(blocks) + 1)}"
    table = _down_side(guess)
    zero = sorted({int(m.group(1)) for k in keys if (m := re.match(r"controlnet_down_blocks\.(\d+)\.", k))})
    table.update({f"controlnet_down_blocks.{i}": f"zero_convs.{i}.0" for i in zero})
    table["controlnet_mid_block"] = "middle_block_out.0"
    table.update(hint)
    return _rename(state, table, "ControlNet")


# --- files ------------------------------------------------------------------------------------------


def identify_controlnet(path: Path) -> ControlNetKind:
    """Layout and family of a ControlNet file or diffusers folder; WrongModelKind if it is none."""
    path = Path(path)
    if path.is_dir():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if "conditioning_embedding_out_channels" not in config:
            raise WrongModelKind(f"{path.name}: not a diffusers ControlNet folder")
        sdxl = config.get("addition_embed_type") == "text_time"
        return ControlNetKind("diffusers", ModelFamily.SDXL if sdxl else ModelFamily.SD1)
    if path.suffix == ".safetensors":
        shapes: Mapping[str, Any] = {
            k: v["shape"] for k, v in read_safetensors_header(path).items() if k != "__metadata__"
        }
    else:
        shapes = {k: tuple(v.shape) for k, v in load_state_dict(path).items()}
    layout = layout_of(list(shapes))
    if layout is None:
        raise WrongModelKind(f"{path.name} is not a ControlNet (no hint encoder keys)")
    ldm = _ldm_part(shapes) if layout == "ldm" else diffusers_to_ldm(shapes)
    return ControlNetKind(layout, family_of(ldm))


def _weights_file(path: Path) -> Path:
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        if (path / name).is_file():
            return path / name
    for name in ("diffusion_pytorch_model.bin",):
        if (path / name).is_file():
            return path / name
    raise UnsupportedModel(f"{path.name}: a diffusers ControlNet folder without diffusion_pytorch_model weights")


def load_controlnet(
    path: Path, *, dtype: torch.dtype = torch.float32, base_unet: Mapping[str, Any] | None = None
) -> Any:
    """A ControlNetModel (eval mode, `dtype`) from any supported layout; never downloads."""
    from modules.models.loader import _adopt, _cast, _empty

    path = Path(path)
    cls = _controlnet_class()
    if path.is_dir():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        state = load_state_dict(_weights_file(path))
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        config = {k: v for k, v in config.items() if k in allowed}
    else:
        raw = load_state_dict(path)
        layout = layout_of(list(raw))
        if layout is None:
            raise WrongModelKind(f"{path.name} is not a ControlNet (no hint encoder keys)")
        if layout == "diffusers":
            state, ldm = raw, diffusers_to_ldm(raw)
            config = controlnet_config(ldm, base_unet)
        else:
            ldm = _ldm_part(raw)
            config = controlnet_config(ldm, base_unet)
            inverse = {v: k for k, v in controlnet_prefix_map(config, ldm).items()}
            state = _rename(ldm, inverse, f"ControlNet {path.name}")
    model = _adopt(_empty(lambda: cls.from_config(config)), state, f"ControlNet {path.name}", dtype)
    return _cast(model, dtype)


def controlnet_to_ldm(model: Any) -> State:
    """A ControlNetModel's weights in the original single-file layout (`control_model.*`)."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    blocks = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))}
    )
    ldm_shapes = {f"input_hint_block.{2 * i}.weight": () for i in range(len(blocks) + 2)}
    ldm_shapes.update({f"zero_convs.{i}.0.weight": () for i in range(len(model.controlnet_down_blocks))})
    table = controlnet_prefix_map(dict(model.config), ldm_shapes)
    return {LDM_PREFIX + k: v for k, v in _rename(state, table, "ControlNet").items()}
