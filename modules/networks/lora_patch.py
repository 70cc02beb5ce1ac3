"""Reversible application of layer updates to a model, for one job.

Patch mode (default): for each affected layer a float32 copy of the weight receives every
update in place (LoRA: one `addmm_`, no temporaries), is cast back to the layer's dtype and
swapped in for the weight tensor; the original tensor object is kept aside untouched.
`restore()` swaps the originals back: the cached model returns to its exact bits with no
copying, and only affected layers are touched. The patched tensors can be kept and swapped in
again for the next batch with the same networks (`install`), as long as the base weights are
still the ones they were computed from (`is_current`).

Functional mode (A1111's `lora_functional`, and forced when weights are offloaded to the meta
device by sequential CPU offload, and for layers stored in fp8: modules.models.fp8): weights stay as they are and a forward hook adds the
layer's response to the weight delta (`F.linear(x, dW, db)` etc.). Slower per step, but it never
writes to weights.

As in A1111, several networks on one layer are applied in order and each update is computed
against the weight as changed by the previous ones (this matters only for IA3 and DoRA).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from modules.models.fp8 import dequantize, is_fp8_layer
from modules.networks.keymap import LayerTarget, module_weight
from modules.networks.lora_formats import LayerUpdate

Tensor = torch.Tensor


@dataclass(frozen=True)
class LayerChange:
    """One network's update of one layer, with the multiplier the prompt gave for that part."""

    target: LayerTarget
    update: LayerUpdate
    multiplier: float
    dyn_dim: int | None = None
    network: str = ""


@dataclass(eq=False)
class PatchedLayer:
    """The computed result for one layer: its new weight (or, functional, the weight delta) and bias."""

    module: torch.nn.Module
    weight: Tensor
    bias: Tensor | None  # new bias (functional: bias delta); None when the bias is unchanged
    source: tuple[int, int]  # (data_ptr, _version) of the weight it was computed from
    is_delta: bool = False


def _source(module: torch.nn.Module) -> tuple[int, int]:
    weight = module_weight(module)
    return weight.data_ptr(), weight._version


def compute_patch(changes: Sequence[LayerChange], *, functional: bool = False) -> list[PatchedLayer]:
    """New weights (functional: deltas) for every module the changes touch; multiplier 0 is skipped."""
    by_module: dict[int, list[LayerChange]] = {}
    for change in changes:
        if change.multiplier != 0:
            by_module.setdefault(id(change.target.module), []).append(change)
    functional = functional or any(module_weight(c[0].target.module).is_meta for c in by_module.values())
    layers: list[PatchedLayer] = []
    with torch.no_grad():
        for module_changes in by_module.values():
            layers.append(_compute_layer(module_changes, functional))
    return layers


def _compute_layer(changes: list[LayerChange], functional: bool) -> PatchedLayer:
    module = changes[0].target.module
    weight = module_weight(module)
    offloaded = weight.is_meta
    fp8 = is_fp8_layer(module)  # fp8 storage: the update is applied in compute precision, never merged
    functional = functional or fp8
    if offloaded:
        buffer = torch.zeros(weight.shape)
    else:
        buffer = dequantize(module, torch.float32) if fp8 else weight.detach().to(torch.float32, copy=True)
    bias_delta: Tensor | None = None
    for change in changes:
        change.update.add_to(buffer, change.multiplier, change.dyn_dim)
        extra = change.update.bias_delta()
        if extra is not None:
            scaled = extra.to(buffer.device).float().reshape(-1) * change.multiplier
            bias_delta = scaled if bias_delta is None else bias_delta + scaled
    if functional:
        if not offloaded:
            buffer.sub_(dequantize(module, torch.float32) if fp8 else weight.detach().float())
        delta = buffer
        return PatchedLayer(module, delta, bias_delta, _source(module), is_delta=True)
    new_weight = buffer if weight.dtype == torch.float32 else buffer.to(weight.dtype)
    new_bias = None
    if bias_delta is not None:
        bias = getattr(module, "bias", None)
        if isinstance(bias, Tensor):
            new_bias = (bias.detach().float() + bias_delta.to(bias.device)).to(bias.dtype)
        else:
            new_bias = bias_delta.to(weight.device, weight.dtype)
    return PatchedLayer(module, new_weight, new_bias, _source(module))


def is_current(layers: Sequence[PatchedLayer]) -> bool:
    """True while every layer still has the base weight the patch was computed from."""
    return all(_source(layer.module) == layer.source for layer in layers)


@dataclass
class AppliedPatch:
    """Changes in effect on a model; `restore()` undoes them exactly (idempotent)."""

    functional: bool
    layers: int = 0
    _saved: list[tuple[torch.nn.Module, str, Tensor | None]] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)

    def restore(self) -> None:
        with torch.no_grad():
            for module, name, original in reversed(self._saved):
                if original is None:
                    setattr(module, name, None)  # a bias the patch created
                else:
                    getattr(module, name).data = original
        for handle in self._handles:
            handle.remove()
        self._saved.clear()
        self._handles.clear()


def install(layers: Sequence[PatchedLayer]) -> AppliedPatch:
    """Put computed layers into effect (swap weights in, or hook deltas in)."""
    functional = any(layer.is_delta for layer in layers)
    patch = AppliedPatch(functional=functional, layers=len(layers))
    try:
        for layer in layers:
            if layer.is_delta:
                patch._handles.append(layer.module.register_forward_hook(_delta_hook(layer)))
            else:
                _swap_in(patch, layer)
    except BaseException:
        patch.restore()
        raise
    return patch


def _swap_in(patch: AppliedPatch, layer: PatchedLayer) -> None:
    module = layer.module
    with torch.no_grad():
        weight = module_weight(module)
        patch._saved.append((module, "weight", weight.data))
        weight.data = layer.weight
        if layer.bias is None:
            return
        bias = getattr(module, "bias", None)
        if isinstance(bias, Tensor):
            patch._saved.append((module, "bias", bias.data))
            bias.data = layer.bias
        else:
            patch._saved.append((module, "bias", None))
            module.bias = torch.nn.Parameter(layer.bias, requires_grad=False)


def _delta_hook(layer: PatchedLayer) -> Any:
    """A forward hook adding the module's response to the weight (and bias) delta."""
    module = layer.module
    cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor | None]] = {}

    def on_device(x: Tensor) -> tuple[Tensor, Tensor | None]:
        key = (x.device, x.dtype)
        if key not in cache:
            bias = None if layer.bias is None else layer.bias.to(x.device, x.dtype)
            cache[key] = (layer.weight.to(x.device, x.dtype), bias)
        return cache[key]

    def hook(_module: torch.nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        x = inputs[0]
        weight, bias = on_device(x)
        if isinstance(module, torch.nn.Linear):
            extra = F.linear(x, weight, bias)
        elif isinstance(module, torch.nn.Conv2d):
            extra = module._conv_forward(x, weight, bias)
        elif isinstance(module, torch.nn.LayerNorm):
            extra = F.layer_norm(x, module.normalized_shape, weight, bias, module.eps)
        elif isinstance(module, torch.nn.GroupNorm):
            extra = F.group_norm(x, module.num_groups, weight, bias, module.eps)
        else:
            raise TypeError(f"functional networks cannot change a {type(module).__name__}")
        return output + extra

    return hook
