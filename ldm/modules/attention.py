"""ldm.modules.attention: CrossAttention, BasicTransformerBlock, SpatialTransformer.

Each instance is a view onto one diffusers module: its children (to_q, to_k, to_v, to_out, norms,
ff, proj_in/proj_out) are the diffusers modules themselves. The default CrossAttention.forward
runs the diffusers attention layer (its processor: torch SDPA unless an attention option chose
another), so speed and attention options are as in diffusers; an extension that replaces
`forward` computes with the same shared to_q/to_k/to_v/to_out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, attention: Any) -> None:
        super().__init__()
        self.to_q = attention.to_q
        self.to_k = attention.to_k
        self.to_v = attention.to_v
        self.to_out = nn.Sequential(*attention.to_out)  # ldm calls self.to_out(x): a Sequential
        self.heads = int(attention.heads)
        self.scale = float(attention.scale)
        self.dim_head = int(attention.inner_dim // attention.heads)
        # the diffusers layer, kept outside the module tree so parameters are listed once
        self.__dict__["diffusers_attention"] = attention

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: Any = None, **kwargs: Any) -> Any:
        return self.__dict__["diffusers_attention"](x, encoder_hidden_states=context, attention_mask=mask)


MemoryEfficientCrossAttention = CrossAttention  # ldm's alternative class name (same interface)


class BasicTransformerBlock(nn.Module):
    ATTENTION_MODES = {"softmax": CrossAttention, "softmax-xformers": CrossAttention}
    attention_class: type[CrossAttention] = CrossAttention

    def __init__(self, block: Any) -> None:
        super().__init__()
        self.disable_self_attn = bool(getattr(block, "only_cross_attention", False))
        self.attn1 = self.attention_class(block.attn1)
        self.ff = block.ff  # diffusers FeedForward: net.0.proj (GEGLU), net.2, as ldm names them
        self.attn2 = self.attention_class(block.attn2)
        self.norm1 = block.norm1
        self.norm2 = block.norm2
        self.norm3 = block.norm3
        self.checkpoint = False

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return self._forward(x, context)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        x = self.attn1(self.norm1(x), context=context if self.disable_self_attn else None) + x
        if x.ndim == 4:
            x = x.squeeze(1)
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    block_class: type[BasicTransformerBlock] = BasicTransformerBlock

    def __init__(self, transformer: Any) -> None:
        super().__init__()
        self.in_channels = int(transformer.in_channels)
        self.use_linear = bool(transformer.use_linear_projection)
        self.norm = transformer.norm
        self.proj_in = transformer.proj_in
        self.transformer_blocks = nn.ModuleList(self.block_class(b) for b in transformer.transformer_blocks)
        self.proj_out = transformer.proj_out

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        contexts = context if isinstance(context, list) else [context] * len(self.transformer_blocks)
        b, _c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner)
        if self.use_linear:
            x = self.proj_in(x)
        for i, block in enumerate(self.transformer_blocks):
            x = block(x, context=contexts[i])
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in
