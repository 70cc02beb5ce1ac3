"""sgm.modules.attention: the SDXL attention classes (subclasses of ldm's)."""

from __future__ import annotations

from ldm.modules import attention as ldm_attention


class CrossAttention(ldm_attention.CrossAttention):
    pass


MemoryEfficientCrossAttention = CrossAttention


class BasicTransformerBlock(ldm_attention.BasicTransformerBlock):
    ATTENTION_MODES = {"softmax": CrossAttention, "softmax-xformers": CrossAttention}
    attention_class = CrossAttention


class SpatialTransformer(ldm_attention.SpatialTransformer):
    block_class = BasicTransformerBlock
