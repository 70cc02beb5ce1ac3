"""A1111's `modules.sd_samplers_common` for extensions: SamplerData, the interrupt exception,
preview modes, img2img step arithmetic and the Sampler base class (its attributes, and methods
extensions wrap on the class); our samplers run inside modules.generation; `p.sampler` is
modules.sd_samplers_kdiffusion's KDiffusionSampler, a Sampler (docs/extensions.md)."""

from __future__ import annotations

from typing import Any

from modules.extension_host.compat_sampler import Sampler, SamplerData
from modules.extension_host.facade import current, is_bound

__all__ = [
    "InterruptedException",
    "Sampler",
    "SamplerData",
    "approximation_indexes",
    "setup_img2img_steps",
]

SamplerDataTuple = SamplerData

approximation_indexes = {"Full": 0, "Approx NN": 1, "Approx cheap": 2, "TAESD": 3}


class InterruptedException(BaseException):
    """Raised by A1111 samplers when the job is interrupted."""


def setup_img2img_steps(p: Any, steps: int | None = None) -> tuple[int, int]:
    """(total steps, steps actually run) for img2img at p.denoising_strength (A1111 rule)."""
    fix_steps = bool(getattr(current().opts, "img2img_fix_steps", False)) if is_bound() else False
    if fix_steps or steps is not None:
        requested = steps or p.steps
        total = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested - 1
    else:
        total = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * total)
    return total, t_enc
