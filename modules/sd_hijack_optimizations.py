"""A1111's `modules.sd_hijack_optimizations` for extensions: the SdOptimization base class and
the attention helpers extensions import (Tiled VAE: get_available_vram, sub_quad_attention).

Extensions add their optimizations through `script_callbacks.on_list_optimizers`; one is applied
with `sd_hijack.model_hijack.apply_optimizations(name)`. Their apply() typically replaces
`ldm.modules.attention.CrossAttention.forward`, which the generation UNet runs through; undo()
puts back our own forwards. The built-in attention choices stay our speed settings'.
"""

from __future__ import annotations

import math
from typing import Any

import psutil
import torch

import ldm.modules.attention
import ldm.modules.diffusionmodules.model
import sgm.modules.attention

__all__ = ["SdOptimization", "get_available_vram", "get_xformers_flash_attention_op", "sub_quad_attention"]

# each class's own forward (None: inherited, as sgm's CrossAttention from ldm's)
_OWN_FORWARDS = {
    cls: cls.__dict__.get("forward")
    for cls in (
        ldm.modules.attention.CrossAttention,
        sgm.modules.attention.CrossAttention,
        ldm.modules.diffusionmodules.model.AttnBlock,
    )
}


class SdOptimization:
    name: str | None = None
    label: str | None = None
    cmd_opt: str | None = None
    priority: int = 0

    def title(self) -> str:
        return str(self.name) if self.label is None else f"{self.name} - {self.label}"

    def is_available(self) -> bool:
        return True

    def apply(self) -> None:
        pass

    def undo(self) -> None:
        for cls, forward in _OWN_FORWARDS.items():
            if forward is not None:
                cls.forward = forward  # type: ignore[method-assign]
            elif "forward" in cls.__dict__:
                delattr(cls, "forward")


def get_available_vram() -> int:
    """Free bytes for attention buffers: free GPU memory on CUDA, else available RAM (A1111)."""
    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    return int(psutil.virtual_memory().available)


def get_xformers_flash_attention_op(q: Any = None, k: Any = None, v: Any = None) -> None:
    """No xformers flash op: callers fall back to their default attention."""
    return None


def sub_quad_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_chunk_size: int = 1024,
    kv_chunk_size: int | None = None,
    kv_chunk_size_min: int | None = None,
    chunk_threshold: int | None = None,
    use_checkpoint: bool = True,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for [batch*heads, tokens, d] tensors, in query chunks (torch SDPA)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    chunks = [
        torch.nn.functional.scaled_dot_product_attention(q[:, i : i + q_chunk_size], k, v, scale=scale)
        for i in range(0, q.shape[1], max(1, q_chunk_size))
    ]
    return torch.cat(chunks, dim=1)
