"""Model families (which architecture a checkpoint has) and file kinds (what a model file is)."""

from __future__ import annotations

from enum import StrEnum


class ModelFamily(StrEnum):
    SD1 = "sd1"
    SD1_INPAINT = "sd1-inpaint"
    SD2 = "sd2"  # 512-base, epsilon prediction
    SD2_V = "sd2-v"  # 768-v, v prediction
    SD2_INPAINT = "sd2-inpaint"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl-refiner"
    SDXL_INPAINT = "sdxl-inpaint"


class FileKind(StrEnum):
    CHECKPOINT = "checkpoint"
    VAE = "vae"
    LORA = "lora"  # LoRA and LyCORIS (LoHa, LoKr, ...)
    EMBEDDING = "embedding"
    HYPERNETWORK = "hypernetwork"
    UPSCALER = "upscaler"
    UNKNOWN = "unknown"


_SDXL = frozenset({ModelFamily.SDXL, ModelFamily.SDXL_REFINER, ModelFamily.SDXL_INPAINT})
_SD2 = frozenset({ModelFamily.SD2, ModelFamily.SD2_V, ModelFamily.SD2_INPAINT})
_INPAINT = frozenset({ModelFamily.SD1_INPAINT, ModelFamily.SD2_INPAINT, ModelFamily.SDXL_INPAINT})


def is_sdxl(family: ModelFamily) -> bool:
    return family in _SDXL


def is_sd2(family: ModelFamily) -> bool:
    return family in _SD2


def is_inpaint(family: ModelFamily) -> bool:
    return family in _INPAINT


def is_refiner(family: ModelFamily) -> bool:
    return family == ModelFamily.SDXL_REFINER


def prediction_type_of(family: ModelFamily) -> str:
    """The diffusers scheduler prediction_type a family is trained with."""
    return "v_prediction" if family == ModelFamily.SD2_V else "epsilon"


def native_size(family: ModelFamily | None) -> int:
    """The side length a family was trained at (A1111 users set it by hand; we use it when a
    request leaves width/height out): SDXL 1024, SD2 768-v 768, the rest 512."""
    if family is not None and is_sdxl(family):
        return 1024
    return 768 if family == ModelFamily.SD2_V else 512
