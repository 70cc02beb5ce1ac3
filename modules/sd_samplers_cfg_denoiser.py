"""A1111's `modules.sd_samplers_cfg_denoiser` for extensions: the CFGDenoiser class.

`p.sampler.model_wrap_cfg` is an instance (of its k-diffusion subclass); our denoise loop calls
its `inner_model` for the model passes and its `combine_denoised` for CFG each step, so wrapping or
replacing either, on the instance or on this class, changes the image (undoing it restores it).
The cfg callbacks (on_cfg_denoiser, on_cfg_denoised, on_cfg_after_cfg) fire once per step from the
loop, with this object as `params.denoiser`.
"""

from __future__ import annotations

from typing import Any

import torch

from modules.extension_host.compat_sampler import CFGDenoiser

__all__ = ["CFGDenoiser", "catenate_conds", "pad_cond", "subscript_cond"]


def catenate_conds(conds: list[Any]) -> Any:
    """Stack conds along the batch (tensors, or SDXL's dicts key by key)."""
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return {key: torch.cat([c[key] for c in conds]) for key in conds[0]}


def subscript_cond(cond: Any, a: int, b: int) -> Any:
    if not isinstance(cond, dict):
        return cond[a:b]
    return {key: vec[a:b] for key, vec in cond.items()}


def pad_cond(tensor: Any, repeats: int, empty: torch.Tensor) -> Any:
    """Append `repeats` copies of the empty-prompt chunk along the token axis."""
    if isinstance(tensor, dict):
        padded = dict(tensor)
        padded["crossattn"] = pad_cond(tensor["crossattn"], repeats, empty)
        return padded
    return torch.cat([tensor, empty.repeat((tensor.shape[0], repeats, 1)).to(tensor)], dim=1)
