"""k-diffusion's `external`: model wrappers. The job's `p.sampler.model_wrap` is an instance of
CompVisDenoiser (or CompVisVDenoiser for v models), so isinstance checks hold."""

from __future__ import annotations

from modules.extension_host.compat_sampler import (
    CompVisDenoiser,
    CompVisVDenoiser,
    DiscreteEpsDDPMDenoiser,
    DiscreteSchedule,
    DiscreteVDDPMDenoiser,
)

__all__ = [
    "CompVisDenoiser",
    "CompVisVDenoiser",
    "DiscreteEpsDDPMDenoiser",
    "DiscreteSchedule",
    "DiscreteVDDPMDenoiser",
]
