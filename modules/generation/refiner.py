"""Refiner: continue sampling with another checkpoint once a fraction of the schedule is done.

A1111 rule (default): the switch happens at the first model call whose sigma maps to a timestep t
with (999 - t) / 1000 >= refiner_switch_at. The sampler keeps its state; only the model behind
the denoiser (UNet, text conditioning, SDXL size/aesthetic ids) changes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch

from modules.generation.denoiser import CFGDenoiser


@dataclass
class RefinerSwitch:
    """A denoiser that delegates to `base` until the switch point, then to the refiner's denoiser."""

    base: CFGDenoiser
    switch_at: float
    model_sigmas: torch.Tensor  # the base model's 1000 training sigmas, ascending
    make_refiner: Callable[[ExitStack], CFGDenoiser]
    stack: ExitStack = field(default_factory=ExitStack)
    active: CFGDenoiser | None = None

    def completed_ratio(self, sigma: torch.Tensor) -> float:
        timestep = int(torch.argmin(torch.abs(self.model_sigmas.to(sigma.device) - sigma.max())))
        return (999 - timestep) / 1000

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.active is None and self.completed_ratio(sigma) >= self.switch_at:
            refiner = self.make_refiner(self.stack)
            refiner.step = self.base.step
            self.active = refiner
        current = self.active or self.base
        out = current(x, sigma)
        return out

    @property
    def last_uncond_denoised(self) -> torch.Tensor | None:
        return (self.active or self.base).last_uncond_denoised

    def close(self) -> None:
        self.stack.close()
