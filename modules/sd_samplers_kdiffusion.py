"""A1111's `modules.sd_samplers_kdiffusion` for extensions: the k-diffusion sampler table, the
sampler object (`p.sampler` is a KDiffusionSampler) and its CFG denoiser class.

Samplers run inside our pipeline (KDiffusionSampler.sample is not offered); the CFG denoiser's
inner_model and combine_denoised are called by it each step (modules.extension_host.compat_sampler).
"""

from __future__ import annotations

from modules.extension_host.compat_sampler import (
    CFGDenoiserKDiffusion,
    KDiffusionSampler,
    all_samplers_map,
)
from modules.generation.samplers.registry import SAMPLERS, SamplerKind

__all__ = [
    "CFGDenoiser",
    "CFGDenoiserKDiffusion",
    "KDiffusionSampler",
    "k_diffusion_samplers_map",
    "sampler_extra_params",
    "samplers_data_k_diffusion",
    "samplers_k_diffusion",
]

CFGDenoiser = CFGDenoiserKDiffusion  # the pre-1.6 name extensions still import

samplers_k_diffusion = [
    (s.name, f"sample_{s.algorithm}", list(s.aliases), dict(s.options))
    for s in SAMPLERS
    if s.kind == SamplerKind.KDIFFUSION
]
samplers_data_k_diffusion = [all_samplers_map[label] for label, _fn, _aliases, _options in samplers_k_diffusion]
k_diffusion_samplers_map = {x.name: x for x in samplers_data_k_diffusion}
sampler_extra_params = {f"sample_{s.algorithm}": list(s.extra_params) for s in SAMPLERS if s.extra_params}
