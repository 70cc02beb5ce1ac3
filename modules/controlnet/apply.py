"""The residual provider of one job: ControlNet units -> UNet skip residuals at each call.

Control modes as in sd-webui-controlnet: "Balanced" adds weight x residuals to every row;
"My prompt is more important" scales the residuals down from the deepest block outwards
(weight x 0.825^(n-1-i), "soft injection"); "ControlNet is more important" does that and adds
them to the conditional rows only, so classifier-free guidance amplifies the control.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.controlnet.units import ControlNetUnit, UnitError
from modules.generation.unet_residuals import ResidualCall

SOFT_INJECTION = 0.825


@dataclass
class PreparedUnit:
    index: int
    unit: ControlNetUnit
    control: Image.Image  # the preprocessed control image (any size; fitted per pass)
    _hints: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def hint(self, height: int, width: int) -> torch.Tensor:
        """[1, 3, height, width] in [0, 1], fitted by the unit's resize mode (cached per size)."""
        key = (height, width)
        if key not in self._hints:
            fitted = fit_image(self.control, width, height, self.unit.resize_mode)
            array = np.asarray(fitted.convert("RGB"), dtype=np.float32) / 255.0
            self._hints[key] = torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
        return self._hints[key]


def fit_image(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """Just Resize: stretch; Crop and Resize: cover, then centre crop; Resize and Fill: contain, pad black."""
    if mode == "Just Resize" or image.size == (width, height):
        return image.resize((width, height), Image.Resampling.LANCZOS)
    cover = mode == "Crop and Resize"
    scale = (max if cover else min)(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(resized, ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


def control_scales(unit: ControlNetUnit, count: int) -> list[float]:
    if unit.control_mode == "Balanced":
        return [unit.weight] * count
    return [unit.weight * SOFT_INJECTION ** float(count - 1 - i) for i in range(count)]


@dataclass
class ControlResiduals:
    """`p.unet_residuals` for a job with ControlNet units (see modules/generation/unet_residuals.py)."""

    units: list[PreparedUnit]
    p: Any  # the job's Processing: is_hr_pass picks the hires option
    # (model name, dtype, device, UNet config) -> ControlNetModel; the library's cache behind it
    load: Callable[[str, torch.dtype, torch.device, Any], Any]

    def __call__(self, call: ResidualCall) -> list[torch.Tensor] | None:
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for prepared in self.units:
            unit = prepared.unit
            if not self._active(unit, call.progress):
                continue
            d, m = self._run(prepared, call)
            down = d if down is None else [a + b for a, b in zip(down, d, strict=True)]
            mid = m if mid is None else mid + m
        if down is None or mid is None:
            return None
        return [*down, mid]

    def _active(self, unit: ControlNetUnit, progress: float) -> bool:
        hires = bool(getattr(self.p, "is_hr_pass", False))
        if (hires and unit.hr_option == "Low res only") or (not hires and unit.hr_option == "High res only"):
            return False
        return unit.guidance_start <= progress <= unit.guidance_end

    def _run(self, prepared: PreparedUnit, call: ResidualCall) -> tuple[list[torch.Tensor], torch.Tensor]:
        unit = prepared.unit
        model = self.load(unit.model, call.dtype, call.device, call.unet_config)
        width = int(model.config.cross_attention_dim)
        if call.context.shape[-1] != width:
            raise UnitError(
                f"ControlNet {unit.model} expects text conditioning {width} wide, the checkpoint gives "
                f"{call.context.shape[-1]}: use a ControlNet made for this model's family"
            )
        rows, _, h, w = call.x.shape
        hint = prepared.hint(h * 8, w * 8).to(call.device, call.dtype).expand(rows, -1, -1, -1)
        sample = call.x[:, : int(model.config.in_channels)]
        if unit.low_vram and call.device.type != "cpu":
            model.to(call.device)
        try:
            down, mid = model(sample, call.t, call.context, hint, added_cond_kwargs=call.added_cond, return_dict=False)
        finally:
            if unit.low_vram and call.device.type != "cpu":
                model.to("cpu")
        outs = [*down, mid]
        scales = control_scales(unit, len(outs))
        keep = (~call.uncond).to(call.device, call.dtype).view(-1, 1, 1, 1)
        cond_only = unit.control_mode == "ControlNet is more important"
        scaled = [o * s * keep if cond_only else o * s for o, s in zip(outs, scales, strict=True)]
        return scaled[:-1], scaled[-1]
