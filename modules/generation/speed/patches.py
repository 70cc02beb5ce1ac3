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
from typing import Any

import torch

from modules.generation.speed.attention import attention_backend, upcast_attention
from modules.generation.speed.compilation import CompileCache, compiled_unet
from modules.generation.speed.settings import SpeedSettings
from modules.generation.speed.taesd import TaesdDecoders
from modules.generation.speed.tome import TokenMergingState, token_merging
from modules.generation.speed.vae import VaeMode, vae_mode
from modules.models.ldm_views import called_unet

log = logging.getLogger(__name__)

_ACTIVE_ATTR = "_speed_patches_active"  # on the UNet while an outer speed_patches holds it


@dataclass
class SpeedCache:
    """State worth keeping between jobs (compiled UNet callables, TAESD decoders); one per service."""

    compile: CompileCache = field(default_factory=CompileCache)
    taesd: TaesdDecoders = field(default_factory=TaesdDecoders)


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
    notes: list[str] = field(default_factory=list)


@contextmanager
def speed_patches(
    model: Any,
    settings: SpeedSettings,
    *,
    cache: SpeedCache | None = None,
    allow_compile_on_cpu: bool = False,
    compile_backend: str = "inductor",
) -> Iterator[SpeedReport]:
    """Apply `settings` to `model` (a LoadedModel or anything with .unet and .vae) while inside.

    `allow_compile_on_cpu`/`compile_backend` exist for tests; torch.compile is otherwise used on
    CUDA only (on CPU the inductor build costs minutes and gains little).
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
