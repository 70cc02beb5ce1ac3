"""Attention backend for one job: which diffusers attention processor the UNet and VAE use.

A1111's "Cross attention optimization" setting, mapped onto diffusers' processors:

- Automatic: leave the processors as loaded (diffusers' default on torch 2 is PyTorch SDPA,
  which picks flash / memory-efficient / math kernels itself). Also keeps processors an
  extension may have installed.
- sdp: PyTorch scaled_dot_product_attention (AttnProcessor2_0).
- sdp-no-mem: SDPA with the memory-efficient kernel disabled (A1111's --opt-sdp-no-mem-attention:
  deterministic results on CUDA).
- sliced: attention computed in slices of heads (diffusers SlicedAttnProcessor): lowest peak
  memory, slowest; what the split/sub-quadratic optimizations are for in A1111.
- xformers: xformers' memory-efficient attention (only when the package is installed).
- None: the plain matmul-softmax-matmul implementation (AttnProcessor).

A1111 names with no diffusers counterpart map to the nearest choice (`LEGACY_NAMES`). An
unavailable choice falls back to Automatic, as in A1111.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

log = logging.getLogger(__name__)

ATTENTION_CHOICES = ("Automatic", "sdp", "sdp-no-mem", "sliced", "xformers", "None")
LEGACY_NAMES = {
    "Doggettx": "sliced",
    "InvokeAI": "sliced",
    "sub-quadratic": "sliced",
    "V1": "None",
}


def resolve_attention(choice: str) -> str:
    """The backend that will run for a setting value (legacy names mapped, unavailable -> Automatic)."""
    name = LEGACY_NAMES.get(choice, choice)
    if name not in ATTENTION_CHOICES:
        valid = ", ".join(ATTENTION_CHOICES)
        raise ValueError(f"unknown cross attention optimization {choice!r}; valid: {valid}")
    if name == "xformers" and importlib.util.find_spec("xformers") is None:
        log.warning("cross attention optimization 'xformers' needs the xformers package; using Automatic")
        return "Automatic"
    return name


def _processor_for(name: str) -> Any:
    from diffusers.models import attention_processor as ap

    if name in ("sdp", "sdp-no-mem"):
        return ap.AttnProcessor2_0()
    if name == "None":
        return ap.AttnProcessor()
    if name == "xformers":
        return ap.XFormersAttnProcessor()
    if name == "sliced":
        return None  # per layer: depends on the number of heads
    raise ValueError(f"no processor for attention backend {name!r}")


def _standard_processor_types() -> tuple[type, ...]:
    from diffusers.models import attention_processor as ap

    return (ap.AttnProcessor, ap.AttnProcessor2_0, ap.SlicedAttnProcessor, ap.XFormersAttnProcessor)


def _replacements(module: Any, name: str) -> dict[str, Any] | None:
    """New processor per attention layer; layers with a non-standard processor keep theirs."""
    from diffusers.models.attention_processor import SlicedAttnProcessor

    current: dict[str, Any] = dict(module.attn_processors)
    if not current:
        return None
    standard = _standard_processor_types()
    shared = _processor_for(name)
    layers = {layer_name: layer for layer_name, layer in module.named_modules() if hasattr(layer, "set_processor")}
    wanted: dict[str, Any] = {}
    for key, processor in current.items():
        if not isinstance(processor, standard):
            wanted[key] = processor
        elif name == "sliced":
            layer = layers.get(key.removesuffix(".processor"))
            heads = int(getattr(layer, "heads", 1)) if layer is not None else 1
            wanted[key] = SlicedAttnProcessor(max(1, heads // 2))
        else:
            wanted[key] = shared
    return wanted


@contextmanager
def attention_backend(modules: list[Any], choice: str) -> Iterator[str]:
    """Use attention backend `choice` in every module (UNet, VAE) while inside; yields the backend used."""
    name = resolve_attention(choice)
    if name == "Automatic":
        yield name
        return
    saved: list[tuple[Any, dict[str, Any]]] = []
    with ExitStack() as stack:
        try:
            for module in modules:
                if not hasattr(module, "attn_processors"):
                    continue
                wanted = _replacements(module, name)
                if wanted is None:
                    continue
                saved.append((module, dict(module.attn_processors)))
                module.set_attn_processor(wanted)
            if name == "sdp-no-mem":
                stack.enter_context(_sdpa_without_memory_efficient())
            yield name
        finally:
            for module, processors in reversed(saved):
                module.set_attn_processor(dict(processors))  # set_attn_processor consumes its dict


@contextmanager
def _sdpa_without_memory_efficient() -> Iterator[None]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]):
        yield


@contextmanager
def upcast_attention(unet: Any) -> Iterator[int]:
    """A1111's upcast_attn for one job: attention scores and softmax of the UNet in float32.

    In half precision q.k can exceed fp16's range (SD2 models are known for it) and the softmax
    then gives NaNs. diffusers' Attention computes scores in fp32 when its upcast_attention /
    upcast_softmax flags are set, which only its plain processor (AttnProcessor) honours, so
    layers on a standard processor switch to it while inside (more memory than SDPA: the score
    matrix is materialised). Yields how many layers were upcast; everything is restored on exit.
    """
    from diffusers.models.attention_processor import Attention, AttnProcessor

    standard = _standard_processor_types()
    plain = AttnProcessor()
    saved: list[tuple[Any, Any, bool, bool]] = []
    try:
        for module in unet.modules():
            if isinstance(module, Attention) and isinstance(module.processor, standard):
                saved.append((module, module.processor, module.upcast_attention, module.upcast_softmax))
                module.upcast_attention = module.upcast_softmax = True
                module.processor = plain
        yield len(saved)
    finally:
        for module, processor, attention, softmax in reversed(saved):
            module.processor, module.upcast_attention, module.upcast_softmax = processor, attention, softmax
