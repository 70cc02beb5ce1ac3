"""A1111's old `modules.sd_samplers_compvis` for extensions that still import it.

DDIM, PLMS and UniPC run inside our pipeline like every sampler; this CompVis sampler class
exists so that subclasses can be declared, and says so when one is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VanillaStableDiffusionSampler"]


class VanillaStableDiffusionSampler:
    def __init__(self, constructor: Any, sd_model: Any, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "CompVis sampler objects are not offered: DDIM, PLMS and UniPC run inside this web UI's pipeline"
        )
