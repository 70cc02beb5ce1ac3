"""`speed_patches`: every speed/memory option for one pass, applied on entry, undone on exit.

    with speed_patches(model, SpeedSettings.for_job(p), cache=service.speed_cache) as report:
        ... sample and decode ...

Nothing persists past the block: hooks are removed, attention processors, VAE switches, memory
format and the compiled-call slot are put back, so a model gives bit-identical results before
and after a job with any combination of options. A nested call on the same model (the hires
pass inside a job) only changes the token merging ratio; everything else stays as the outer
call set it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.generation.speed.attention import attention_backend, upcast_attention
from modules.generation.speed.compilation import CompileCache, compiled_unet
from modules.generation.speed.openvino import OpenVinoModels, openvino_available, openvino_backend
from modules.generation.speed.settings import SpeedSettings
from modules.generation.speed.taesd import TaesdDecoders
from modules.generation.speed.tome import TokenMergingState, token_merging
from modules.generation.speed.vae import VaeMode, vae_mode
from modules.models.ldm_views import called_unet, first_stage_of, is_diffusers_unet

log = logging.getLogger(__name__)

_ACTIVE_ATTR = "_speed_patches_active"  # on the UNet while an outer speed_patches holds it


@dataclass
class SpeedCache:
    """State worth keeping between jobs (compiled UNet callables, TAESD decoders); one per service."""

    compile: CompileCache = field(default_factory=CompileCache)
    taesd: TaesdDecoders = field(default_factory=TaesdDecoders)
    openvino: OpenVinoModels = field(default_factory=OpenVinoModels)


@dataclass
class SpeedReport:
    """What a speed_patches block actually applied (for logs, docs and tests)."""

    attention: str = "Automatic"
    token_merging: TokenMergingState | None = None
    channels_last: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    compiled: bool = False
    upcast_layers: int = 0  # attention layers computing in fp32 (upcast_attn)
    openvino: list[str] = field(default_factory=list)  # modules routed through OpenVINO ("unet", "vae_decoder", ...)
    notes: list[str] = field(default_factory=list)


@contextmanager
def speed_patches(
    model: Any,
    settings: SpeedSettings,
    *,
    cache: SpeedCache | None = None,
    allow_compile_on_cpu: bool = False,
    compile_backend: str = "inductor",
    cache_dir: Path | None = None,
) -> Iterator[SpeedReport]:
    """Apply `settings` to `model` (a LoadedModel or anything with .unet and .vae) while inside.

    `allow_compile_on_cpu`/`compile_backend` exist for tests; torch.compile is otherwise used on
    CUDA only (on CPU the inductor build costs minutes and gains little). `cache_dir`: where the
    OpenVINO backend keeps converted models (None: in memory only).
    """
    unet, vae = model.unet, model.vae
    report = SpeedReport()
    if unet.__dict__.get(_ACTIVE_ATTR):
        with token_merging(unet, settings.token_merging_ratio) as state:
            report.token_merging = state
            yield report
        return
    with ExitStack() as stack:
        unet.__dict__[_ACTIVE_ATTR] = True
        stack.callback(unet.__dict__.pop, _ACTIVE_ATTR, None)
        report.attention = stack.enter_context(attention_backend([unet, vae], settings.attention))
        if settings.upcast_attn:  # after the backend: its standard processors give way to the fp32-score one
            report.upcast_layers = stack.enter_context(upcast_attention(unet))
        report.token_merging = stack.enter_context(
            token_merging(unet, settings.token_merging_ratio, max_downsample=settings.token_merging_max_downsample)
        )
        mode = VaeMode(settings.vae_tiling, settings.vae_slicing, settings.vae_tile_size)
        if stack.enter_context(vae_mode(vae, mode)):
            report.vae_tiling, report.vae_slicing = settings.vae_tiling, settings.vae_slicing
        if settings.channels_last:
            stack.enter_context(_channels_last([unet, vae]))
            report.channels_last = True
        if settings.cpu_backend != "torch":
            report.openvino = _maybe_openvino(stack, model, settings.cpu_backend, cache, cache_dir, report)
        if settings.torch_compile:
            report.compiled = _maybe_compile(stack, unet, cache, report, allow_compile_on_cpu, compile_backend)
        yield report


def _maybe_compile(
    stack: ExitStack, unet: Any, cache: SpeedCache | None, report: SpeedReport, allow_cpu: bool, backend: str
) -> bool:
    device = next(unet.parameters()).device
    if device.type != "cuda" and not allow_cpu:
        report.notes.append(f"torch.compile skipped: the UNet runs on {device.type}, compile is used on CUDA only")
        return False
    if "_hf_hook" in unet.__dict__:
        report.notes.append("torch.compile skipped: the UNet is offloaded (--medvram/--lowvram)")
        return False
    # generation calls the ldm-shaped view (its forward is what extensions may replace): compile that
    stack.enter_context(compiled_unet(called_unet(unet), (cache or SpeedCache()).compile, backend=backend))
    return True


def _maybe_openvino(
    stack: ExitStack, model: Any, backend: str, cache: SpeedCache | None, cache_dir: Path | None, report: SpeedReport
) -> list[str]:
    unet, vae = model.unet, model.vae
    device = next(unet.parameters()).device
    why = None
    if not openvino_available():
        why = "the openvino package is not installed (pip install openvino)"
    elif device.type != "cpu":
        why = f"the UNet runs on {device.type}, OpenVINO is used for CPU inference"
    elif "_hf_hook" in unet.__dict__:
        why = "the UNet is offloaded (--medvram/--lowvram)"
    if why is not None:
        report.notes.append(f"{backend} not used: {why}")
        log.warning("cpu_compute_backend=%s not used: %s; PyTorch runs", backend, why)
        return []
    modules = _openvino_modules(unet, vae)
    precision = "bf16" if backend.endswith("bf16") else "f32"
    models = (cache or SpeedCache()).openvino
    return stack.enter_context(
        openvino_backend(modules, models, precision=precision, cache_dir=cache_dir, notes=report.notes)
    )


def _openvino_modules(unet: Any, vae: Any) -> dict[str, tuple[str, torch.nn.Module]]:
    """What generation calls (the ldm-shaped views) and the diffusers modules (direct callers,
    tiled VAE), with the call layout of each; the label names the converted files."""
    modules: dict[str, tuple[str, torch.nn.Module]] = {"unet_diffusers": ("unet", unet)}
    if is_diffusers_unet(unet):
        modules["unet"] = ("ldm", called_unet(unet))
    modules |= {"vae_decoder_diffusers": ("plain", vae.decoder), "vae_encoder_diffusers": ("plain", vae.encoder)}
    if type(vae).__name__ == "AutoencoderKL":
        view = first_stage_of(vae)
        modules |= {"vae_decoder": ("plain", view.decoder), "vae_encoder": ("plain", view.encoder)}
    return modules


@contextmanager
def _channels_last(modules: list[torch.nn.Module]) -> Iterator[None]:
    """Store 4-D weights channels-last while inside; values never change, only their layout."""
    converted: list[torch.nn.Module] = []
    try:
        for module in modules:
            module.to(memory_format=torch.channels_last)
            converted.append(module)
        yield
    finally:
        for module in converted:
            module.to(memory_format=torch.contiguous_format)
