"""The ControlNet service: the model library, the preprocessors, and a job's units -> its residual
provider and infotext. Built once by the composition root; the built-in ControlNet script
(scripts/controlnet.py), the /controlnet API routes and the UI all call this one object.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules.controlnet.apply import ControlResiduals, PreparedUnit
from modules.controlnet.library import DEMO_CONTROLNET, ControlNetLibrary
from modules.controlnet.preprocessors import run_preprocessor
from modules.controlnet.units import ControlNetUnit, UnitError, infotext_entry
from modules.core.options import OptionInfo, Options
from modules.core.paths import Paths
from modules.models.manager import ModelManager

VERSION = 2  # what /controlnet/version answers (the extension's API version the routes follow)
SECTION = ("control_net", "ControlNet")
CONTROLNET_OPTIONS: tuple[OptionInfo, ...] = (
    OptionInfo(
        "control_net_unit_count",
        3,
        "Multi-ControlNet: ControlNet unit number (requires restart)",
        SECTION,
        "slider",
        minimum=1,
        maximum=8,
        step=1,
    ),  # fmt: skip
    OptionInfo(
        "control_net_model_cache_size",
        2,
        "Model cache size (requires restart)",
        SECTION,
        "slider",
        minimum=1,
        maximum=10,
        step=1,
    ),  # fmt: skip
    OptionInfo("control_net_no_detectmap", False, "Do not append detectmap to output", SECTION),
)


@dataclass(frozen=True)
class ControlNetDirs:
    models: Path
    annotators: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace, paths: Paths) -> ControlNetDirs:
        def pick(flag: str, default: Path) -> Path:
            value = getattr(args, flag, None)
            return Path(value).resolve() if value else default

        return cls(
            pick("controlnet_dir", paths.models_dir / "ControlNet"),
            pick("controlnet_annotator_models_path", paths.models_dir / "ControlNet-annotators"),
        )


class ControlNetService:
    def __init__(
        self,
        dirs: ControlNetDirs,
        options: Options,
        models: ModelManager,
        *,
        builtin: Sequence[Path] = (DEMO_CONTROLNET,),
    ) -> None:
        """`builtin`: shipped ControlNets listed after the user's (the demo model's)."""
        self.dirs = dirs
        self.options = options
        self.models = models

        def ram_left() -> int:
            budget = models.budget().ram_bytes
            return max(1, budget - models.bytes_in("ram")) if budget > 0 else 0

        self.library = ControlNetLibrary(
            [dirs.models],
            builtin=builtin,
            cache_size=lambda: int(options.get("control_net_model_cache_size")),
            ram_left=ram_left,
        )

    # --- listings ----------------------------------------------------------------------------
    def model_titles(self) -> list[str]:
        return [info.title for info in self.library.listing()]

    def unit_count(self) -> int:
        return max(1, min(8, int(self.options.get("control_net_unit_count"))))

    # --- preprocessing -----------------------------------------------------------------------
    def detect(
        self,
        module: str,
        image: Image.Image,
        *,
        resolution: int = 512,
        threshold_a: float | None = None,
        threshold_b: float | None = None,
    ) -> Image.Image:
        return run_preprocessor(
            module,
            image,
            resolution=resolution,
            threshold_a=threshold_a,
            threshold_b=threshold_b,
            annotators_dir=self.dirs.annotators,
        )

    # --- a job's units -----------------------------------------------------------------------
    def prepare(self, p: Any, units: list[ControlNetUnit]) -> ControlResiduals | None:
        """The residual provider for `p` (None when no unit is active); writes the infotext entries.

        Everything a user can get wrong fails here, before sampling: unknown model or preprocessor,
        a missing image or annotator. The ControlNet weights load at the first UNet call (then the
        UNet's device and dtype are known) and stay in the library's cache."""
        prepared: list[PreparedUnit] = []
        for index, unit in enumerate(units):
            if not unit.active:
                continue
            info = self.library.find(unit.model)
            source = unit.image
            if source is None and getattr(p, "init_images", None):
                source = p.init_images[0]  # img2img: the input image, as the extension does
            if source is None:
                raise UnitError(f"ControlNet unit {index} ({unit.model}) has no control image")
            control = self.detect(
                unit.module,
                source,
                resolution=self._resolution(unit, source, p),
                threshold_a=unit.threshold_a,
                threshold_b=unit.threshold_b,
            )
            prepared.append(PreparedUnit(index, unit, control))
            p.extra_generation_params[f"ControlNet {index}"] = infotext_entry(unit, info.title)
        return ControlResiduals(prepared, p, self._load) if prepared else None

    def _load(self, name: str, dtype: torch.dtype, device: torch.device, unet_config: Any) -> Any:
        base = dict(unet_config) if unet_config is not None else None
        return self.library.load(name, dtype=dtype, device=device, base_unet=base)[1]

    @staticmethod
    def _resolution(unit: ControlNetUnit, image: Image.Image, p: Any) -> int:
        """processor_res, or with pixel perfect the resolution at which the control image maps 1:1."""
        if not unit.pixel_perfect:
            return unit.processor_res
        width, height = int(p.width), int(p.height)
        scales = (width / image.width, height / image.height)
        k = max(scales) if unit.resize_mode == "Crop and Resize" else min(scales)
        return max(64, int(math.floor(k * min(image.width, image.height) + 0.5)))
