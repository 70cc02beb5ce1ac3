"""k-diffusion's `utils`: the tensor helpers extensions use."""

from __future__ import annotations

import torch

from modules.extension_host.compat_sampler import append_dims

__all__ = ["append_dims", "append_zero"]


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])
