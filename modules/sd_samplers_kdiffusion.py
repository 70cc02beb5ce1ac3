"""A1111's `modules.sd_samplers_kdiffusion` for extensions: the k-diffusion sampler table.

The sampler and CFG denoiser classes (KDiffusionSampler, CFGDenoiserKDiffusion) are internal to
our pipeline and not offered (hooks into sampling: on_cfg_denoiser & co., docs/extensions.md).
"""

from __future__ import annotations

from modules.generation.samplers.registry import SAMPLERS, SamplerKind
from modules.sd_samplers_common import SamplerData, no_constructor

__all__ = ["k_diffusion_samplers_map", "samplers_data_k_diffusion", "samplers_k_diffusion", "sampler_extra_params"]

samplers_k_diffusion = [
    (s.name, f"sample_{s.algorithm}", list(s.aliases), dict(s.options))
    for s in SAMPLERS
    if s.kind == SamplerKind.KDIFFUSION
]
samplers_data_k_diffusion = [
    SamplerData(label, no_constructor(label), aliases, options) for label, _fn, aliases, options in samplers_k_diffusion
]
k_diffusion_samplers_map = {x.name: x for x in samplers_data_k_diffusion}
sampler_extra_params = {f"sample_{s.algorithm}": list(s.extra_params) for s in SAMPLERS if s.extra_params}
