"""Tell what a model file is from its key names and tensor shapes, without loading the weights.

For .safetensors only the header is read (our own parser: 8-byte little-endian length, then
JSON). Pickles (.ckpt/.pt) have no header, so they go through the safe loader. A diffusers
folder is identified from its unet/config.json.

Checkpoint families (original LDM/SGM single-file layout):
- SDXL: `conditioner.embedders.1.model.*` (OpenCLIP bigG beside CLIP-L); refiner: only
  `conditioner.embedders.0.model.*`; 9 UNet input channels = inpaint.
- SD2: `cond_stage_model.model.*` (OpenCLIP ViT-H); 9 input channels = inpaint. eps vs v is A1111's
  rule: a sibling `<name>.yaml` whose `model.params.parameterization` is "v" means v-prediction,
  any other sibling yaml means eps; without one the loader runs A1111's numeric check.
- SD1: `cond_stage_model.transformer.*` (CLIP ViT-L); 9 input channels = inpaint.
Without text-encoder keys the UNet's cross-attention width decides (768 / 1024 / 2048 / 1280).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modules.models.errors import InvalidModelFile
from modules.models.families import FileKind, ModelFamily, prediction_type_of
from modules.models.safetensors_header import read_safetensors_header

UNET_PREFIX = "model.diffusion_model."
Shapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Identification:
    path: Path
    kind: FileKind
    family: ModelFamily | None = None
    # "epsilon" | "v_prediction"; None when undecided (SD2 without a sibling .yaml: decided at load)
    prediction_type: str | None = None
    file_format: str = "safetensors"  # "safetensors" | "pickle" | "diffusers"
    notes: tuple[str, ...] = field(default=())

    @property
    def needs_v_check(self) -> bool:
        return self.family == ModelFamily.SD2 and self.prediction_type is None


def header_shapes(header: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


# --- key normalisation (layouts A1111 also accepts) -------------------------------------------

_SD1_OLD_TEXT_PREFIXES = ("embeddings.", "encoder.", "final_layer_norm.")


def normalize_key(key: str, is_sd2_turbo: bool = False) -> str:
    """Old SD1 files lack `text_model.`; SD2-Turbo uses the SGM `conditioner.embedders.0.` prefix."""
    text = "cond_stage_model.transformer."
    if key.startswith(text) and key[len(text) :].startswith(_SD1_OLD_TEXT_PREFIXES):
        return text + "text_model." + key[len(text) :]
    if is_sd2_turbo and key.startswith("conditioner.embedders.0."):
        return "cond_stage_model." + key[len("conditioner.embedders.0.") :]
    return key


def is_sd2_turbo_layout(shapes: Shapes) -> bool:
    ln = shapes.get("conditioner.embedders.0.model.ln_final.weight")
    return ln is not None and ln[0] == 1024 and not any(k.startswith("conditioner.embedders.1.") for k in shapes)


def normalize_keys(shapes: Mapping[str, Any]) -> dict[str, Any]:
    turbo = is_sd2_turbo_layout({k: getattr(v, "shape", v) for k, v in shapes.items() if k.endswith("ln_final.weight")})
    return {normalize_key(k, turbo): v for k, v in shapes.items()}


# --- classification from key names and shapes --------------------------------------------------

_LORA_MARKERS = (
    "lora_down",
    "lora_up",
    "lora_A",
    "lora_B",
    "lora.down",
    "lora.up",
    "hada_w1",
    "lokr_w1",
    "oft_blocks",
    "oft_diag",
    ".diff_b",
    "lora_mid",
)
_UPSCALER_MARKERS = (
    "conv_first.",
    "RRDB_trunk.",
    "body.0.rdb1.",
    "model.1.sub.",
    "layers.0.residual_group.",
    "conv_body.",
    "upconv1.",
    "trunk_conv.",
)


@dataclass(frozen=True)
class Classification:
    kind: FileKind
    family: ModelFamily | None = None
    notes: tuple[str, ...] = ()


def classify_shapes(shapes: Shapes) -> Classification:
    """Kind and family of a state dict given its key names and shapes (LDM single-file layout)."""
    shapes = normalize_keys(shapes)
    keys = shapes.keys()
    if any(k.startswith(UNET_PREFIX) for k in keys):
        return _classify_checkpoint(shapes)
    if any(m in k for k in keys for m in _LORA_MARKERS) or any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        return Classification(FileKind.LORA)
    if _is_vae(keys):
        return Classification(FileKind.VAE)
    if "emb_params" in keys or ({"clip_l", "clip_g"} <= set(keys)) or "string_to_param.*" in keys:
        return Classification(FileKind.EMBEDDING)
    if any(k.startswith(_UPSCALER_MARKERS) or k.startswith("model.0.") for k in keys):
        return Classification(FileKind.UPSCALER)
    return Classification(FileKind.UNKNOWN, notes=("no known key layout",))


def _is_vae(keys: Any) -> bool:
    for prefix in ("", "first_stage_model.", "vae."):
        if f"{prefix}encoder.conv_in.weight" in keys and f"{prefix}decoder.conv_out.weight" in keys:
            return True
    return False


def _classify_checkpoint(shapes: Shapes) -> Classification:
    first = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if first is None or len(first) != 4:
        return Classification(FileKind.CHECKPOINT, None, ("UNet layout not recognised (no input_blocks.0.0)",))
    in_channels = first[1]
    keys = shapes.keys()
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    context = _context_dim(shapes)
    notes: list[str] = []
    if in_channels not in (4, 9):
        return Classification(
            FileKind.CHECKPOINT, None, (f"UNet with {in_channels} input channels (e.g. instruct-pix2pix) unsupported",)
        )
    inpaint = in_channels == 9
    if has("conditioner.embedders.1.model.") or (not has("conditioner.") and context == 2048):
        family = ModelFamily.SDXL_INPAINT if inpaint else ModelFamily.SDXL
    elif has("conditioner.embedders.0.model.") or (
        not has("conditioner.") and context == 1280 and UNET_PREFIX + "label_emb.0.0.weight" in shapes
    ):
        family = ModelFamily.SDXL_REFINER
        if inpaint:
            return Classification(FileKind.CHECKPOINT, None, ("an inpainting SDXL refiner is not a known model",))
    elif has("cond_stage_model.model.") or context == 1024:
        family = ModelFamily.SD2_INPAINT if inpaint else ModelFamily.SD2
    elif has("cond_stage_model.transformer.") or context == 768:
        family = ModelFamily.SD1_INPAINT if inpaint else ModelFamily.SD1
    else:
        return Classification(FileKind.CHECKPOINT, None, ("no text encoder keys and unknown cross-attention width",))
    if not has("cond_stage_model.") and not has("conditioner."):
        notes.append("file holds no text encoder weights")
    if not has("first_stage_model."):
        notes.append("file holds no VAE weights")
    return Classification(FileKind.CHECKPOINT, family, tuple(notes))


def _context_dim(shapes: Shapes) -> int | None:
    for key, shape in shapes.items():
        if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return int(shape[1])
    return None


# --- SD2 sibling yaml ---------------------------------------------------------------------------


def sibling_yaml(path: Path) -> Path | None:
    candidate = Path(path).with_suffix(".yaml")
    return candidate if candidate.is_file() else None


def prediction_type_from_yaml(path: Path) -> str:
    """A1111 config yaml: model.params.parameterization "v" -> v-prediction, anything else eps."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidModelFile(f"{Path(path).name}: unreadable model config yaml ({exc})") from None
    params = (config or {}).get("model", {}).get("params", {}) if isinstance(config, dict) else {}
    return "v_prediction" if isinstance(params, dict) and params.get("parameterization") == "v" else "epsilon"


# --- whole files ------------------------------------------------------------------------------


def identify_file(path: Path, *, safe: bool = True) -> Identification:
    """Kind, family and prediction type of a model file or diffusers folder, without building a model."""
    path = Path(path)
    if path.is_dir():
        return _identify_diffusers_folder(path)
    if not path.is_file():
        raise InvalidModelFile(f"{path}: no such file")
    if path.suffix.lower() == ".safetensors":
        shapes: Shapes = header_shapes(read_safetensors_header(path))
        file_format = "safetensors"
    else:
        shapes, special = _pickle_shapes(path, safe)
        file_format = "pickle"
        if special is not None:
            return Identification(path, special, file_format=file_format)
    found = classify_shapes(shapes)
    return _with_prediction(path, found, file_format)


def _with_prediction(path: Path, found: Classification, file_format: str) -> Identification:
    family, notes, prediction = found.family, list(found.notes), None
    if family == ModelFamily.SD2:
        config = sibling_yaml(path)
        if config is not None:
            prediction = prediction_type_from_yaml(config)
            family = ModelFamily.SD2_V if prediction == "v_prediction" else ModelFamily.SD2
            notes.append(f"prediction type from {config.name}")
        else:
            notes.append("eps or v decided at load by A1111's numeric check")
    elif family is not None:
        prediction = prediction_type_of(family)
    return Identification(path, found.kind, family, prediction, file_format, tuple(notes))


def _pickle_shapes(path: Path, safe: bool) -> tuple[dict[str, tuple[int, ...]], FileKind | None]:
    import torch

    from modules.models.safe_load import load_pickle

    obj = load_pickle(path, safe=safe)
    if isinstance(obj, dict):
        if "string_to_param" in obj or "emb_params" in obj or ("clip_l" in obj and "clip_g" in obj):
            return {}, FileKind.EMBEDDING
        if any(isinstance(k, int) for k in obj) or "layer_structure" in obj:
            return {}, FileKind.HYPERNETWORK
        if isinstance(obj.get("params_ema"), dict) or isinstance(obj.get("params"), dict):
            return {}, FileKind.UPSCALER
        if isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        return {k: tuple(v.shape) for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}, None
    return {}, FileKind.UNKNOWN


def _identify_diffusers_folder(path: Path) -> Identification:
    unet_config = path / "unet" / "config.json"
    if not (path / "model_index.json").is_file() or not unet_config.is_file():
        raise InvalidModelFile(f"{path}: a folder but not a diffusers model (no model_index.json / unet/config.json)")
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads(unet_config.read_text(encoding="utf-8"))
        scheduler_file = path / "scheduler" / "scheduler_config.json"
        scheduler = json.loads(scheduler_file.read_text(encoding="utf-8")) if scheduler_file.is_file() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidModelFile(f"{path}: unreadable diffusers config ({exc})") from None
    has_first_text_encoder = bool((index.get("text_encoder") or [None])[0])
    family = family_from_unet_config(unet, scheduler.get("prediction_type", "epsilon"), has_first_text_encoder)
    notes = () if family is not None else ("unrecognised diffusers UNet config",)
    prediction = scheduler.get("prediction_type", "epsilon") if family is not None else None
    return Identification(path, FileKind.CHECKPOINT, family, prediction, "diffusers", notes)


def family_from_unet_config(
    unet: Mapping[str, Any], prediction_type: str = "epsilon", has_first_text_encoder: bool = True
) -> ModelFamily | None:
    """Family of a diffusers UNet config (used for diffusers folders).

    The SDXL refiner is the SDXL-style UNet whose pipeline has no first (CLIP-L) text encoder.
    """
    inpaint = unet.get("in_channels") == 9
    if unet.get("addition_embed_type") == "text_time":
        if not has_first_text_encoder:
            return None if inpaint else ModelFamily.SDXL_REFINER
        return ModelFamily.SDXL_INPAINT if inpaint else ModelFamily.SDXL
    if unet.get("use_linear_projection") or unet.get("cross_attention_dim") == 1024:
        if inpaint:
            return ModelFamily.SD2_INPAINT
        return ModelFamily.SD2_V if prediction_type == "v_prediction" else ModelFamily.SD2
    return ModelFamily.SD1_INPAINT if inpaint else ModelFamily.SD1
