"""A1111's `modules.sd_hijack_optimizations` for extensions: the attention helpers they import.

Our attention runs in the diffusers processors (torch SDPA by default); these give extensions
that compute attention themselves (Tiled VAE) the same results with torch's SDPA.
"""

from __future__ import annotations

import math
from typing import Any

import psutil
import torch

__all__ = ["get_available_vram", "get_xformers_flash_attention_op", "sub_quad_attention"]


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
    """softmax(q k^T / sqrt(d)) v for [batch*heads, tokens, d] tensors, in query chunks."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    chunks = [
        torch.nn.functional.scaled_dot_product_attention(q[:, i : i + q_chunk_size], k, v, scale=scale)
        for i in range(0, q.shape[1], max(1, q_chunk_size))
    ]
    return torch.cat(chunks, dim=1)
