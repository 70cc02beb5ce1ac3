"""FP8 weight storage for the UNet (A1111 1.8's "FP8 weight" setting, Forge's default).

Every Linear/Conv weight of the UNet is kept in float8_e4m3fn with one float32 scale per layer
(the layer's largest magnitude maps to 448, e4m3's largest value, so small-weight layers keep
their resolution); biases, norms and embeddings stay in the compute dtype. A layer's forward
turns its weight back into the input's dtype (fp16/bf16 on a GPU, fp32 on the CPU) just for
that call, so weight memory is half of fp16's and compute precision is unchanged.

LoRA and other networks cannot be merged into fp8 weights without losing them on the next
quantisation, so modules.networks applies them to fp8 layers in compute precision (functional
mode: a forward hook adds the delta's response); the stored fp8 weights are never written.

Going back from fp8 needs the original weights: the model manager reloads from disk.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
FP8_CHOICES = ("Disable", "Enable for SDXL", "Enable")  # A1111's fp8_storage values
_SCALE = "fp8_scale"
_ROOT_DTYPE = "_fp8_compute_dtype"  # on the quantised root module: the dtype it computes in


def fp8_wanted(setting: str, is_sdxl: bool, device: torch.device) -> bool:
    """Whether the fp8_storage setting asks for fp8 on this model (MPS has no float8 dtype)."""
    if device.type == "mps":
        return False
    return setting == "Enable" or (setting == "Enable for SDXL" and is_sdxl)


def is_fp8_layer(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.dtype == FP8


def is_fp8_model(module: torch.nn.Module) -> bool:
    return _ROOT_DTYPE in module.__dict__


def compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype inputs of `module` should have: its compute dtype when stored in fp8, else its first weight's."""
    stored = module.__dict__.get(_ROOT_DTYPE)
    if isinstance(stored, torch.dtype):
        return stored
    return next(module.parameters()).dtype


def dequantize(module: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The layer's weight in `dtype` (fp8 value x scale)."""
    weight = module.weight
    scale = getattr(module, _SCALE)
    assert isinstance(weight, torch.Tensor) and isinstance(scale, torch.Tensor)
    return weight.to(dtype) * scale.to(dtype)


def store_fp8(root: torch.nn.Module) -> int:
    """Quantise every Linear/Conv2d weight under `root` in place; returns how many layers changed."""
    if is_fp8_model(root):
        return 0
    dtype = compute_dtype(root)
    count = 0
    with torch.no_grad():
        for module in root.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and not is_fp8_layer(module):
                _quantise(module)
                count += 1
    root.__dict__[_ROOT_DTYPE] = dtype
    return count


def _quantise(module: torch.nn.Module) -> None:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    w = weight.detach().float()
    scale = (w.abs().amax() / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    stored = (w / scale).to(FP8)
    module.weight = torch.nn.Parameter(stored, requires_grad=False)
    module.register_buffer(_SCALE, scale.to(weight.device), persistent=False)
    forward = _linear_forward if isinstance(module, torch.nn.Linear) else _conv_forward
    module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]


def _bias(module: Any, x: torch.Tensor) -> torch.Tensor | None:
    bias = module.bias
    return None if bias is None else bias.to(x.dtype)


def _linear_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, dequantize(self, x.dtype), _bias(self, x))


def _conv_forward(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return self._conv_forward(x, dequantize(self, x.dtype), _bias(self, x))


def weight_bytes(root: torch.nn.Module) -> int:
    """Bytes of the Linear/Conv2d weights under `root` (what fp8 storage halves against fp16)."""
    total = 0
    for module in root.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            weight = module.weight
            total += weight.numel() * weight.element_size()
            scale = getattr(module, _SCALE, None)
            if isinstance(scale, torch.Tensor):
                total += scale.numel() * scale.element_size()
    return total
