"""sgm.models.diffusion: DiffusionEngine (what A1111's shared.sd_model is for SDXL)."""

from __future__ import annotations

from typing import Any

from ldm.models.diffusion.ddpm import LatentDiffusion


class DiffusionEngine(LatentDiffusion):
    """SDXL's model view: `conditioner` instead of `cond_stage_model`; conds are sgm dicts
    ({"crossattn": context, "vector": y})."""

    @property
    def conditioner(self) -> Any:
        return self.cond_stage_model

    def get_learned_conditioning(self, c: Any) -> Any:
        return super().get_learned_conditioning(c)
