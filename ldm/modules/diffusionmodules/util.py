"""ldm.modules.diffusionmodules.util: the helpers extensions import (timestep_embedding, ...)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: int = 10000, repeat_only: bool = False
) -> torch.Tensor:
    """Sinusoidal embedding [N, dim], cos half first (ldm's layout; equal to diffusers' Timesteps
    with flip_sin_to_cos=True, downscale_freq_shift=0, op for op)."""
    if repeat_only:
        return timesteps[:, None].float().repeat(1, dim)
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / half)
    args = timesteps[:, None].float() * freqs[None, :]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.nn.functional.pad(embedding, (0, 1, 0, 0))
    return embedding


def checkpoint(func: Callable[..., Any], inputs: Sequence[Any], params: Any, flag: bool) -> Any:
    """ldm's gradient checkpoint helper; inference never checkpoints, so this just calls."""
    return func(*inputs)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


def normalization(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


def conv_nd(dims: int, *args: Any, **kwargs: Any) -> nn.Module:
    if dims == 1:
        return nn.Conv1d(*args, **kwargs)
    if dims == 2:
        return nn.Conv2d(*args, **kwargs)
    if dims == 3:
        return nn.Conv3d(*args, **kwargs)
    raise ValueError(f"unsupported dimensions: {dims}")


def linear(*args: Any, **kwargs: Any) -> nn.Linear:
    return nn.Linear(*args, **kwargs)


def avg_pool_nd(dims: int, *args: Any, **kwargs: Any) -> nn.Module:
    pools: dict[int, Callable[..., nn.Module]] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in pools:
        raise ValueError(f"unsupported dimensions: {dims}")
    return pools[dims](*args, **kwargs)
