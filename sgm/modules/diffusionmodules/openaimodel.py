"""sgm.modules.diffusionmodules.openaimodel: SDXL's UNetModel (ldm's, with sgm's blocks)."""

from __future__ import annotations

from ldm.modules.diffusionmodules import openaimodel as ldm_openaimodel
from ldm.modules.diffusionmodules.openaimodel import Downsample, TimestepBlock, TimestepEmbedSequential, Upsample
from sgm.modules.attention import SpatialTransformer


class ResBlock(ldm_openaimodel.ResBlock):
    pass


class UNetModel(ldm_openaimodel.UNetModel):
    transformer_class = SpatialTransformer
    resblock_class = ResBlock


__all__ = ["Downsample", "ResBlock", "TimestepBlock", "TimestepEmbedSequential", "UNetModel", "Upsample"]
