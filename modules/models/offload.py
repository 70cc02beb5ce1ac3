"""--lowvram: blocks of each component move to the compute device only while they run.

A1111's lowvram keeps the model in RAM and moves one block at a time to the GPU (the UNet's
input, middle and output blocks; the VAE's encoder and decoder; the text encoders). This does
the same with forward hooks on the blocks: a block's pre-hook moves it (and its inputs) to the
compute device and sends the block that ran before it back to RAM, so at most one block of a
component sits in VRAM. diffusers' enable_sequential_cpu_offload does this per layer through
accelerate, but its meta-device swap fails with this torch (TypeError in accelerate's
set_module_tensor_to_device), and layer-sized moves are slower than block-sized ones.

Weights are moved with `.to()`, never rewritten, so LoRA patches and fp8 storage stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle


@dataclass(eq=False)
class BlockOffload:
    """Hooks of one pipeline; `remove()` takes them off and leaves every block in RAM."""

    device: torch.device
    offload: torch.device
    handles: list[RemovableHandle] = field(default_factory=list)
    resident: dict[int, torch.nn.Module] = field(default_factory=dict)  # component id -> its block in VRAM
    moves: int = 0  # blocks moved to the device (for tests and logs)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        for block in self.resident.values():
            block.to(self.offload)
        self.resident.clear()


def blocks_of(component: torch.nn.Module) -> list[torch.nn.Module]:
    """The units that move: direct children, with ModuleLists (down/up blocks, layers) opened up."""
    blocks: list[torch.nn.Module] = []
    for child in component.children():
        if isinstance(child, torch.nn.ModuleList):
            blocks.extend(child)
        else:
            blocks.append(child)
    return blocks


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def enable_block_offload(
    components: list[torch.nn.Module], device: torch.device, offload: torch.device
) -> BlockOffload:
    """Hook every component's blocks; its root gets a hook that moves inputs to `device` (weights stay put)."""
    state = BlockOffload(device, offload)
    for component in components:
        component.to(offload)
        state.handles.append(component.register_forward_pre_hook(_inputs_hook(device), with_kwargs=True))
        for block in blocks_of(component):
            if next(block.parameters(), None) is None:
                continue  # nothing to move (activations, Timesteps)
            state.handles.append(
                block.register_forward_pre_hook(_block_hook(state, id(component), block), with_kwargs=True)
            )
    return state


def _inputs_hook(device: torch.device) -> Any:
    def hook(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        return _to(args, device), _to(kwargs, device)

    return hook


def _block_hook(state: BlockOffload, owner: int, block: torch.nn.Module) -> Any:
    def hook(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        previous = state.resident.get(owner)
        if previous is not block:
            if previous is not None:
                previous.to(state.offload)
            state.resident[owner] = block
            state.moves += 1
        block.to(state.device)  # also when resident: a LoRA restore may have swapped RAM tensors in
        return _to(args, state.device), _to(kwargs, state.device)

    return hook
