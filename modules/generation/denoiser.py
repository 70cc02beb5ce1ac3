"""The classifier-free-guidance denoiser the samplers call: x (sigma space) -> denoised x0.

A1111 semantics (k-diffusion CompVis wrappers + CFGDenoiser):
- input scaled by c_in = 1/sqrt(sigma^2+1), timestep t = sigma_to_t(sigma) (continuous);
- eps models: x0 = x - sigma*eps; v models: x0 = x/(sigma^2+1) - v*sigma/sqrt(sigma^2+1);
- composable prompts (AND): x0 = uncond + sum_k w_k * cfg * (cond_k - uncond);
- NGMS: on odd steps with sigma below s_min_uncond the uncond pass is skipped;
- img2img masks blend the denoised latent with the init latent after every call;
- inpainting UNets get [mask, masked-image latent] appended to the (scaled) input channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from modules.core.jobs import JobControl


@dataclass
class StepConds:
    """Conditioning in force at one sampling step.

    `cond` holds every positive cond of every image, flattened; `cond_owner[i]` is the image
    index of cond i and `cond_weight[i]` its AND weight. `uncond` has one row per image.
    """

    cond: torch.Tensor
    cond_pooled: torch.Tensor | None
    cond_owner: list[int]
    cond_weight: list[float]
    uncond: torch.Tensor
    uncond_pooled: torch.Tensor | None


@dataclass
class UNetInputs:
    """What the UNet needs besides x, t and the text context (SDXL size ids, inpaint conditioning)."""

    time_ids_cond: torch.Tensor | None = None  # [B, n] rows per image for positive conds
    time_ids_uncond: torch.Tensor | None = None
    image_cond: torch.Tensor | None = None  # [B, 5, h, w] for 9-channel inpainting UNets


@dataclass
class CFGDenoiser:
    unet: torch.nn.Module
    prediction_type: str
    sigma_to_t: Callable[[torch.Tensor], torch.Tensor]
    conds_at: Callable[[int], StepConds]
    cfg_scale: float
    extra: UNetInputs = field(default_factory=UNetInputs)
    control: JobControl | None = None
    s_min_uncond: float = 0.0
    batch_cond_uncond: bool = True  # A1111 setting: one UNet call for cond and uncond rows
    init_latent: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # 1 = keep init latent
    nmask: torch.Tensor | None = None  # 1 = generate
    finish: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # e.g. LCM
    step: int = 0
    last_uncond_denoised: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.control is not None:
            self.control.check()
        conds = self.conds_at(self.step)
        batch = x.shape[0]
        images = list(range(batch))
        skip_uncond = self.step % 2 == 1 and self.s_min_uncond > 0 and float(sigma[0]) < self.s_min_uncond
        cond_ids = _rows(self.extra.time_ids_cond, conds.cond_owner)
        if skip_uncond:
            cond_out = self._run(x, sigma, conds.cond, conds.cond_pooled, conds.cond_owner, cond_ids)
            uncond_out = self._first_cond_per_image(cond_out, conds.cond_owner, batch)
        elif self.batch_cond_uncond and conds.cond.shape[1] == conds.uncond.shape[1]:
            # one batched UNet pass for cond and uncond rows, as diffusers does
            both = self._run(
                x,
                sigma,
                torch.cat([conds.cond, conds.uncond]),
                _cat_optional(conds.cond_pooled, conds.uncond_pooled),
                conds.cond_owner + images,
                _cat_optional(cond_ids, _rows(self.extra.time_ids_uncond, images)),
            )
            cond_out, uncond_out = both[: len(conds.cond_owner)], both[len(conds.cond_owner) :]
        else:
            cond_out = self._run(x, sigma, conds.cond, conds.cond_pooled, conds.cond_owner, cond_ids)
            uncond_ids = _rows(self.extra.time_ids_uncond, images)
            uncond_out = self._run(x, sigma, conds.uncond, conds.uncond_pooled, images, uncond_ids)
        self.last_uncond_denoised = uncond_out  # read by DDIM CFG++
        denoised = uncond_out.clone()
        for i, owner in enumerate(conds.cond_owner):
            denoised[owner] += (cond_out[i] - uncond_out[owner]) * (conds.cond_weight[i] * self.cfg_scale)
        if self.mask is not None and self.init_latent is not None and self.nmask is not None:
            denoised = self.init_latent * self.mask + self.nmask * denoised
        self.step += 1  # per model call, as A1111 (schedules use steps x the sampler's call multiplier)
        return denoised

    @staticmethod
    def _first_cond_per_image(cond_out: torch.Tensor, owners: list[int], batch: int) -> torch.Tensor:
        picked = [owners.index(b) for b in range(batch)]
        return cond_out[picked]

    def _run(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        context: torch.Tensor,
        pooled: torch.Tensor | None,
        owners: list[int],
        time_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        """One UNet pass for rows `owners` of the batch (time_ids already per row) -> x0 per row."""
        x_rows = x[owners]
        sigma_rows = sigma[owners]
        param = next(self.unet.parameters())
        s = sigma_rows.reshape(-1, 1, 1, 1).to(x.dtype)
        c_in = 1.0 / torch.sqrt(s**2 + 1.0)
        model_in = x_rows * c_in
        if self.extra.image_cond is not None:
            model_in = torch.cat([model_in, self.extra.image_cond[owners].to(model_in)], dim=1)
        t = self.sigma_to_t(sigma_rows)
        kwargs: dict[str, object] = {}
        if pooled is not None and time_ids is not None:
            kwargs["added_cond_kwargs"] = {
                "text_embeds": pooled.to(param.device, param.dtype),
                "time_ids": time_ids.to(param.device, param.dtype),
            }
        out = (
            self.unet(
                model_in.to(param.device, param.dtype),
                t.to(param.device),
                encoder_hidden_states=context.to(param.device, param.dtype),
                **kwargs,
            )
            .sample.to(x.dtype)
            .to(x.device)
        )
        if self.prediction_type == "v_prediction":
            denoised = x_rows / (s**2 + 1.0) - out * s / torch.sqrt(s**2 + 1.0)
        else:
            denoised = x_rows - out * s
        return denoised if self.finish is None else self.finish(x_rows, denoised, sigma_rows)


def _rows(table: torch.Tensor | None, rows: list[int]) -> torch.Tensor | None:
    return None if table is None else table[rows]


def _cat_optional(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return None
    return torch.cat([a, b])
