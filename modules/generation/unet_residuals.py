"""The seam through which ControlNet-like models add residuals to the UNet's skip connections.

A job sets `p.unet_residuals` (an object with this protocol; the ControlNet script does); the
CFG denoiser asks it before each UNet call and passes what it returns to the UNet as ldm's
`control` list (ControlledUnetModel's convention: one residual per input block, then the middle
block's; each is added to its skip connection). Kept to one call so the UNet call path can
change (issue 19) without touching the providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class ResidualCall:
    """One UNet call as a residual provider sees it (rows: cond rows then uncond rows)."""

    x: torch.Tensor  # the scaled model input [rows, C, h, w] (inpainting channels included)
    t: torch.Tensor  # timesteps [rows]
    context: torch.Tensor  # text context [rows, tokens, width]
    added_cond: dict[str, torch.Tensor] | None  # SDXL text_embeds/time_ids
    uncond: torch.Tensor  # bool [rows]: the row is an unconditional (negative prompt) row
    progress: float  # fraction of the sampling pass done, 0 at the first step, 1 at the end
    dtype: torch.dtype  # the UNet's compute dtype
    device: torch.device
    unet_config: Any = None  # the UNet's diffusers config (what a ControlNet must fit)


class UNetResiduals(Protocol):
    def __call__(self, call: ResidualCall) -> list[torch.Tensor] | None:
        """The control residuals for this call (None: nothing this call)."""
        ...


def pass_progress(sigmas: torch.Tensor | None, sigma: float) -> float:
    """Where `sigma` lies in a pass's descending sigma schedule, as a fraction (0 = first step)."""
    if sigmas is None or len(sigmas) < 2:
        return 0.0
    steps = len(sigmas) - 1
    done = int((sigmas[:-1] > sigma * (1 + 1e-5) + 1e-8).sum())
    return min(1.0, done / steps)
