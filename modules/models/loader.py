"""Build diffusers pipelines from single-file checkpoints or diffusers folders, offline.

We convert keys ourselves (modules/models/convert*.py) and build each component from its config
on the meta device, then `load_state_dict(strict, assign=True)`: no random init (a full-size
UNet would take ~16 s to initialise), no hub access, .ckpt files go through the safe unpickler,
any missing weight is an error instead of silently random, and the same code reads real
checkpoints and the tiny test models. `diffusers.from_single_file` is not used for loading
(it loads leniently and reads pickles itself); tests compare our conversion with it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch

from modules.models.arch import ModelConfigs, derive_configs
from modules.models.convert_text import from_model_keys, to_model_keys
from modules.models.errors import InvalidModelFile, UnsupportedModel, WrongModelKind
from modules.models.families import FileKind, ModelFamily, is_inpaint, is_refiner, is_sdxl, prediction_type_of
from modules.models.identify import (
    classify_shapes,
    identify_file,
    normalize_keys,
    prediction_type_from_yaml,
    sibling_yaml,
)
from modules.models.layout import VAE_PREFIX, text_slots
from modules.models.safe_load import load_state_dict
from modules.models.single_file import ComponentWeights, checkpoint_to_diffusers, diffusers_to_checkpoint
from modules.models.tokenizer import load_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dtypes:
    """Precision of each component after loading (from DevicePolicy)."""

    unet: torch.dtype = torch.float32
    vae: torch.dtype = torch.float32
    text_encoder: torch.dtype = torch.float32


@dataclass
class BuiltModel:
    family: ModelFamily
    pipe: Any  # a diffusers pipeline (class depends on the family)
    prediction_type: str
    notes: list[str] = field(default_factory=list)


# --- components ------------------------------------------------------------------------------


def _empty(factory: Callable[[], Any]) -> Any:
    """Create a module without allocating or initialising its weights (meta tensors)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return factory()


def _prepared(tensor: torch.Tensor, dtype: torch.dtype, align: bool) -> torch.Tensor:
    """In the target dtype; with `align`, in its own aligned memory.

    Tensors read from a .safetensors file are zero-copy views of the memory-mapped file at
    arbitrary offsets; CPU kernels then take other code paths and results differ in the last
    bits from a model loaded any other way. A copy (which a dtype change makes anyway) fixes
    that. Models that run on an accelerator get copied there anyway: no need (align=False).
    """
    if tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    if align and (tensor.data_ptr() % 64 or not tensor.is_contiguous()):
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor


def _adopt(module: Any, state: Mapping[str, torch.Tensor], what: str, dtype: torch.dtype, align: bool = True) -> Any:
    """Make `state`'s tensors (cast to `dtype`) the module's weights; every weight must be present and fit."""
    state = {k: _prepared(v, dtype, align) for k, v in state.items()}
    try:
        result = module.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:
        raise UnsupportedModel(f"{what}: weights do not fit the model ({str(exc).splitlines()[-1].strip()})") from None
    if result.missing_keys:
        raise UnsupportedModel(
            f"{what}: checkpoint lacks {len(result.missing_keys)} weights, e.g. {result.missing_keys[:3]}"
        )
    if result.unexpected_keys:
        raise UnsupportedModel(
            f"{what}: {len(result.unexpected_keys)} weights have no place in the model, e.g. {result.unexpected_keys[:3]}"
        )
    return module.eval()


def _cast(module: Any, dtype: torch.dtype) -> Any:
    """Cast floating weights; plain nn.Module.to (these models keep no fp32-only submodules)."""
    if all(p.dtype == dtype for p in module.parameters() if p.is_floating_point()):
        return module
    return torch.nn.Module.to(module, dtype=dtype)


def build_unet(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], dtype: torch.dtype, align: bool = True
) -> UNet2DConditionModel:
    from diffusers import UNet2DConditionModel

    unet = _adopt(_empty(lambda: UNet2DConditionModel.from_config(dict(config))), state, "UNet", dtype, align)
    return _cast(unet, dtype)


def build_vae(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], dtype: torch.dtype, align: bool = True
) -> AutoencoderKL:
    from diffusers import AutoencoderKL

    vae = _adopt(_empty(lambda: AutoencoderKL.from_config(dict(config))), state, "VAE", dtype, align)
    return _cast(vae, dtype)


def build_text_encoder(
    config: Mapping[str, Any],
    canonical: Mapping[str, torch.Tensor],
    with_projection: bool,
    dtype: torch.dtype,
    align: bool = True,
) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    text_config = CLIPTextConfig(**{k: v for k, v in config.items() if not k.startswith("_")})
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    model = _empty(lambda: cls(text_config))
    return _cast(_adopt(model, to_model_keys(canonical, model), "text encoder", dtype, align), dtype)


def make_scheduler(config: Mapping[str, Any]) -> Any:
    import diffusers

    cls = getattr(diffusers, str(config.get("_class_name", "EulerDiscreteScheduler")))
    return cls.from_config(dict(config))


def assemble_pipeline(
    family: ModelFamily,
    *,
    unet: Any,
    vae: Any,
    text_encoders: Sequence[Any],
    tokenizers: Sequence[Any],
    scheduler: Any,
) -> Any:
    """The diffusers pipeline class for the family, with no safety checker or watermarker."""
    import diffusers

    cls: Any
    if is_sdxl(family):
        if is_refiner(family):
            te1, tok1, (te2,), (tok2,) = None, None, text_encoders, tokenizers
            cls, extra = diffusers.StableDiffusionXLImg2ImgPipeline, {"requires_aesthetics_score": True}
            extra["force_zeros_for_empty_prompt"] = False
        else:
            (te1, te2), (tok1, tok2) = text_encoders, tokenizers
            if is_inpaint(family):
                cls, extra = diffusers.StableDiffusionXLInpaintPipeline, {"requires_aesthetics_score": False}
            else:
                cls, extra = diffusers.StableDiffusionXLPipeline, {}
            extra["force_zeros_for_empty_prompt"] = True
        return cls(
            vae=vae,
            text_encoder=te1,
            text_encoder_2=te2,
            tokenizer=tok1,
            tokenizer_2=tok2,
            unet=unet,
            scheduler=scheduler,
            add_watermarker=False,
            **extra,
        )
    sd_cls = diffusers.StableDiffusionInpaintPipeline if is_inpaint(family) else diffusers.StableDiffusionPipeline
    return sd_cls(
        vae=vae,
        text_encoder=text_encoders[0],
        tokenizer=tokenizers[0],
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tokenizers_for(family: ModelFamily, cache_root: Path) -> list[Any]:
    return [load_clip_tokenizer(cache_root, pad_token=slot.pad_token) for slot in text_slots(family)]


# --- SD2 eps / v ----------------------------------------------------------------------------


def is_v_prediction(unet: torch.nn.Module) -> bool:
    """A1111's test: at t=999 on a constant input, a v-model's output minus the input averages below -1."""
    probe: Any = unet if _is_cpu_fp32(unet) else copy.deepcopy(unet).to("cpu", torch.float32)
    config = probe.config
    with torch.no_grad():
        x = torch.full((1, config.in_channels, 8, 8), 0.5)
        context = torch.full((1, 2, config.cross_attention_dim), 0.5)
        out = probe(x, torch.tensor([999]), encoder_hidden_states=context).sample
        return bool((out - x).mean().item() < -1)


def _is_cpu_fp32(module: torch.nn.Module) -> bool:
    param = next(module.parameters())
    return param.device.type == "cpu" and param.dtype == torch.float32


# --- whole models ----------------------------------------------------------------------------


def build_from_weights(
    weights: ComponentWeights,
    configs: ModelConfigs,
    *,
    tokenizer_cache: Path,
    dtypes: Dtypes = Dtypes(),
    align: bool = True,
) -> Any:
    """Build the family's pipeline. Consumes `weights` (emptied as each component is built, to cap memory)."""
    slots = text_slots(configs.family)
    unet = build_unet(configs.unet, weights.unet, dtypes.unet, align)
    weights.unet = {}
    vae = build_vae(configs.vae, weights.vae, dtypes.vae, align)
    weights.vae = {}
    encoders = []
    for slot, config in zip(slots, configs.text_encoders, strict=True):
        state = weights.text_encoders.pop(0)
        encoders.append(build_text_encoder(config, state, slot.with_projection, dtypes.text_encoder, align))
    return assemble_pipeline(
        configs.family,
        unet=unet,
        vae=vae,
        text_encoders=encoders,
        tokenizers=tokenizers_for(configs.family, tokenizer_cache),
        scheduler=make_scheduler(configs.scheduler),
    )


def read_checkpoint_state(path: Path, *, safe: bool = True) -> tuple[dict[str, torch.Tensor], ModelFamily]:
    """Load a single-file checkpoint's tensors and tell its family (before any eps/v decision)."""
    state = normalize_keys(load_state_dict(path, safe=safe))
    found = classify_shapes({k: tuple(v.shape) for k, v in state.items()})
    if found.kind != FileKind.CHECKPOINT:
        raise WrongModelKind(f"{Path(path).name} is a {found.kind.value} file, not a Stable Diffusion checkpoint")
    if found.family is None:
        raise UnsupportedModel(f"{Path(path).name}: unsupported checkpoint ({'; '.join(found.notes)})")
    missing = [s.ldm_prefix for s in text_slots(found.family) if not any(k.startswith(s.ldm_prefix) for k in state)]
    if not any(k.startswith(VAE_PREFIX) for k in state):
        missing.append(VAE_PREFIX)
    if missing:
        raise UnsupportedModel(
            f"{Path(path).name}: a {found.family.value} UNet without {', '.join(p + '*' for p in missing)} weights; "
            "only complete checkpoints (UNet, VAE, text encoders) can be loaded"
        )
    return state, found.family


def load_single_file(
    path: Path, *, tokenizer_cache: Path, safe: bool = True, dtypes: Dtypes = Dtypes(), align: bool = True
) -> BuiltModel:
    """A pipeline from an A1111-style .safetensors/.ckpt file (original LDM/SGM key layout).

    `align=False` keeps zero-copy views of the file where no dtype change is needed: use it when
    the model moves to an accelerator right after (the copy there realigns it anyway).
    """
    path = Path(path)
    state, family = read_checkpoint_state(path, safe=safe)
    notes: list[str] = []
    yaml_file = sibling_yaml(path) if family == ModelFamily.SD2 else None
    if yaml_file is not None and prediction_type_from_yaml(yaml_file) == "v_prediction":
        family = ModelFamily.SD2_V
        notes.append(f"v-prediction from {yaml_file.name}")
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    configs = derive_configs(shapes, family)
    weights = checkpoint_to_diffusers(state, configs)
    del state
    if weights.unused_keys:
        notes.append(f"{len(weights.unused_keys)} keys unused, e.g. {weights.unused_keys[:3]}")
    pipe = build_from_weights(weights, configs, tokenizer_cache=tokenizer_cache, dtypes=dtypes, align=align)
    del weights
    if family == ModelFamily.SD2 and yaml_file is None and is_v_prediction(pipe.unet):
        # rebuild with the 768-v configs around the same tensors (no copy)
        family = ModelFamily.SD2_V
        configs = derive_configs(shapes, family)
        pipe = build_from_weights(
            pipeline_weights(pipe), configs, tokenizer_cache=tokenizer_cache, dtypes=dtypes, align=align
        )
        notes.append("v-prediction detected by A1111's numeric check")
    return BuiltModel(family, pipe, prediction_type_of(family), notes)


def load_diffusers_folder(path: Path, *, tokenizer_cache: Path, dtypes: Dtypes = Dtypes()) -> BuiltModel:
    """A pipeline from a diffusers-format folder (model_index.json + component subfolders), offline."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path = Path(path)
    found = identify_file(path)
    if found.family is None:
        raise UnsupportedModel(f"{path.name}: unsupported diffusers model ({'; '.join(found.notes)})")
    family = found.family
    try:
        unet = UNet2DConditionModel.from_pretrained(
            path, subfolder="unet", local_files_only=True, torch_dtype=dtypes.unet
        )
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, torch_dtype=dtypes.vae)
        encoders, tokenizers = [], []
        for slot in text_slots(family):
            cls = CLIPTextModelWithProjection if slot.with_projection else CLIPTextModel
            encoders.append(
                cls.from_pretrained(path / slot.subfolder, local_files_only=True, dtype=dtypes.text_encoder).eval()
            )
            tok_dir = path / slot.subfolder.replace("text_encoder", "tokenizer")
            tokenizers.append(
                CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
                if (tok_dir / "vocab.json").is_file()
                else load_clip_tokenizer(tokenizer_cache, pad_token=slot.pad_token)
            )
        scheduler = make_scheduler(_read_json(path / "scheduler" / "scheduler_config.json"))
    except (OSError, ValueError) as exc:
        raise InvalidModelFile(f"{path.name}: incomplete diffusers folder ({str(exc).splitlines()[0]})") from None
    pipe = assemble_pipeline(
        family, unet=unet.eval(), vae=vae.eval(), text_encoders=encoders, tokenizers=tokenizers, scheduler=scheduler
    )
    return BuiltModel(family, pipe, found.prediction_type or prediction_type_of(family), ["diffusers folder"])


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


# --- saving --------------------------------------------------------------------------------


def pipeline_configs(pipe: Any, family: ModelFamily) -> ModelConfigs:
    encoders = text_encoders_of(pipe)
    return ModelConfigs(
        family=family,
        model_index={},
        scheduler=dict(pipe.scheduler.config),
        unet=dict(pipe.unet.config),
        vae=dict(pipe.vae.config),
        text_encoders=[e.config.to_dict() for e in encoders],
    )


def text_encoders_of(pipe: Any) -> list[Any]:
    return [e for e in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if e is not None]


def tokenizers_of(pipe: Any) -> list[Any]:
    return [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t is not None]


def pipeline_weights(pipe: Any) -> ComponentWeights:
    return ComponentWeights(
        unet=dict(pipe.unet.state_dict()),
        vae=dict(pipe.vae.state_dict()),
        text_encoders=[from_model_keys(e.state_dict()) for e in text_encoders_of(pipe)],
    )


def save_single_file(
    pipe: Any,
    family: ModelFamily,
    path: Path,
    *,
    dtype: torch.dtype | None = None,
    extra: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the pipeline as one .safetensors file in the original (A1111) key layout."""
    state = diffusers_to_checkpoint(pipeline_weights(pipe), pipeline_configs(pipe, family), extra=extra)
    if extra:
        state.update({k: v for k, v in extra.items() if k not in state})
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in state.items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(path), metadata=dict(metadata or {}))
    return path


def save_diffusers_folder(pipe: Any, folder: Path) -> Path:
    """Write the pipeline as a diffusers folder (safetensors weights, configs, tokenizers)."""
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


__all__ = [
    "BuiltModel",
    "Dtypes",
    "assemble_pipeline",
    "build_from_weights",
    "is_v_prediction",
    "load_diffusers_folder",
    "load_single_file",
    "read_checkpoint_state",
    "save_diffusers_folder",
    "save_single_file",
]
