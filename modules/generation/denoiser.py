"""The classifier-free-guidance denoiser the samplers call: x (sigma space) -> denoised x0.

A1111 semantics (k-diffusion CompVis wrappers + CFGDenoiser):
- input scaled by c_in = 1/sqrt(sigma^2+1), timestep t = sigma_to_t(sigma) (continuous);
- eps models: x0 = x - sigma*eps; v models: x0 = x/(sigma^2+1) - v*sigma/sqrt(sigma^2+1);
- composable prompts (AND): x0 = uncond + sum_k w_k * cfg * (cond_k - uncond);
- NGMS: on odd steps with sigma below s_min_uncond the uncond pass is skipped;
- img2img masks blend the denoised latent with the init latent after every call;
- inpainting UNets get [mask, masked-image latent] appended to the (scaled) input channels;
- extension callbacks as in A1111: on_cfg_denoiser before the model calls (may change the
  inputs and conds), on_cfg_denoised on the model outputs, Script.on_mask_blend on the blend,
  on_cfg_after_cfg on the result;
- with extensions, the model calls and the CFG combine go through the job's A1111 objects
  (`wrap`: p.sampler.model_wrap_cfg's inner_model and combine_denoised), which they may replace;
  when they replace its forward, that runs the whole step (and may call our cfg_step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.core.devices import NanCheck
from modules.core.jobs import JobControl
from modules.generation.hooks import (
    PER_STEP_EVENTS,
    AfterCFGCallbackParams,
    CFGDenoisedParams,
    CFGDenoiserParams,
    CFGWrap,
    CondsList,
    MaskBlendArgs,
    ScriptHooks,
)
from modules.generation.unet_residuals import ResidualCall, UNetResiduals, pass_progress
from modules.models.fp8 import compute_dtype
from modules.models.ldm_views import call_unet


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

    nan_check: NanCheck | None = None  # A1111's per-step NaN test of the UNet output (None: off)
    events: DenoiserEvents | None = None  # extension callbacks; None when nobody listens
    p: Any = None  # the job (A1111 CFGDenoiser.p, read by callbacks through params.denoiser)
    wrap: CFGWrap | None = None  # the job's A1111 sampler objects (extensions); None: direct calls
    conditioning: Any = None  # the pass's PromptConditioning (A1111's p.c / p.uc are views of it)
    residuals: UNetResiduals | None = None  # ControlNet: extra UNet skip residuals per call
    pass_sigmas: torch.Tensor | None = None  # the pass's schedule, for the residuals' progress
    _uncond_rows: int = field(default=0, init=False, repr=False)  # of the model call in flight
    _hold_step: bool = field(default=False, init=False, repr=False)  # inside an extension's forward

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.control is not None:
            self.control.check()
        if self.wrap is not None:
            self.wrap.bind(self)
            if self.wrap.forward_replaced():
                return self._replaced_step(x, sigma)
        return self.cfg_step(x, sigma)

    def _replaced_step(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """An extension's CFGDenoiser.forward runs the whole step (Tiled Diffusion, DemoFusion); the
        step advances once however often it calls our cfg_step (e.g. once per tile)."""
        assert self.wrap is not None
        step, self._hold_step = self.step, True
        try:
            return self.wrap.forward(x, sigma)
        finally:
            self._hold_step = False
            self.step = step + 1

    def cfg_step(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """One CFG step of our own (A1111's original CFGDenoiser.forward)."""
        conds = self.conds_at(self.step)
        batch = x.shape[0]
        images = list(range(batch))
        owners = list(conds.cond_owner)
        rows = owners + images  # model inputs: every positive cond, then one uncond per image
        step = _StepInputs(
            x[rows],
            sigma[rows],
            None if self.extra.image_cond is None else self.extra.image_cond[rows],
            conds.cond,
            conds.cond_pooled,
            conds.uncond,
            conds.uncond_pooled,
        )
        events = self.events
        if events is not None and events.denoiser:
            step = events.before_step(self, step)
        skip_uncond = self.step % 2 == 1 and self.s_min_uncond > 0 and float(sigma[0]) < self.s_min_uncond
        n = len(owners)
        cond_ids = _rows(self.extra.time_ids_cond, owners)
        uncond_ids = _rows(self.extra.time_ids_uncond, images)
        if skip_uncond:
            cond_out = self._model(step.part(0, n), step.cond, step.cond_pooled, cond_ids)
            uncond_out = self._first_cond_per_image(cond_out, owners, batch)
        elif self.batch_cond_uncond and step.cond.shape[1] == step.uncond.shape[1]:
            # one batched UNet pass for cond and uncond rows, as diffusers does
            both = self._model(
                step.part(0, None),
                torch.cat([step.cond, step.uncond]),
                _cat_optional(step.cond_pooled, step.uncond_pooled),
                _cat_optional(cond_ids, uncond_ids),
                uncond_rows=batch,
            )
            cond_out, uncond_out = both[:n], both[n:]
        else:
            cond_out = self._model(step.part(0, n), step.cond, step.cond_pooled, cond_ids)
            uncond_out = self._model(step.part(n, None), step.uncond, step.uncond_pooled, uncond_ids, uncond_rows=batch)
        if events is not None and events.denoised:
            cond_out, uncond_out = events.after_model(self, cond_out, uncond_out)
        self.last_uncond_denoised = uncond_out  # read by DDIM CFG++
        conds_list: CondsList = [[] for _ in images]
        for i, owner in enumerate(owners):
            conds_list[owner].append((i, conds.cond_weight[i]))
        x_out = torch.cat([cond_out, uncond_out])
        if self.wrap is None:
            denoised = combine_conds(x_out, conds_list, batch, self.cfg_scale)
        else:
            uncond_arg = _text_arg(step.uncond, step.uncond_pooled)
            denoised = self.wrap.combine(x_out, conds_list, uncond_arg, self.cfg_scale)
        if self.nan_check is not None:
            self.nan_check.unet(denoised)  # one reduction per step: cond and uncond both flow into it
        if self.mask is not None and self.init_latent is not None and self.nmask is not None:
            blended = self.init_latent * self.mask + self.nmask * denoised
            if events is not None and events.mask_blend:
                blended = events.mask_blend_step(self, denoised, blended, sigma)
            denoised = blended
        if events is not None and events.after_cfg:
            denoised = events.after_cfg_step(denoised)
        if not self._hold_step:  # per model call, as A1111 (schedules use steps x the sampler's call multiplier)
            self.step += 1
        return denoised

    @staticmethod
    def _first_cond_per_image(cond_out: torch.Tensor, owners: list[int], batch: int) -> torch.Tensor:
        picked = [owners.index(b) for b in range(batch)]
        return cond_out[picked]

    def _model(
        self,
        rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
        context: torch.Tensor,
        pooled: torch.Tensor | None,
        time_ids: torch.Tensor | None,
        *,
        uncond_rows: int = 0,
    ) -> torch.Tensor:
        """x0 of model-input rows: directly, or through the job's (maybe wrapped) inner model;
        the last `uncond_rows` rows are unconditional ones (ControlNet's modes tell them apart)."""
        if self.wrap is None:
            return self._run(rows, context, pooled, time_ids, uncond_rows=uncond_rows)
        x_rows, sigma_rows, image_cond = rows
        cond: dict[str, Any] = {"c_crossattn": [context]}
        if pooled is not None:  # SDXL: A1111's sgm dict (our "vector" is the pooled text embedding)
            cond = {"crossattn": context, "vector": pooled, "time_ids": time_ids}
        if image_cond is not None:
            cond["c_concat"] = [image_cond]
        elif pooled is None:  # A1111's txt2img placeholder (extensions such as Tiled Diffusion read it)
            cond["c_concat"] = [x_rows.new_zeros(x_rows.shape[0], 5, 1, 1)]
        self._uncond_rows = uncond_rows  # for predict_x0 below, called back through the wrap
        try:
            return self.wrap.inner(x_rows, sigma_rows, cond)
        finally:
            self._uncond_rows = 0

    def predict_x0(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """The model's x0 for rows x at sigma with an A1111 cond dict (the default inner model)."""
        if "crossattn" in cond:
            context, pooled, time_ids = cond["crossattn"], cond.get("vector"), cond.get("time_ids")
        else:
            context, pooled, time_ids = _joined(cond["c_crossattn"]), None, None
        concat = cond.get("c_concat")
        image_cond = _joined(concat) if concat else None
        if image_cond is not None and image_cond.shape[-2:] == (1, 1):
            image_cond = None  # the placeholder: no image conditioning
        uncond_rows = min(self._uncond_rows, x.shape[0])  # a wrapper may pass fewer rows
        return self._run((x, sigma, image_cond), context, pooled, time_ids, uncond_rows=uncond_rows)

    def _run(
        self,
        rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
        context: torch.Tensor,
        pooled: torch.Tensor | None,
        time_ids: torch.Tensor | None,
        *,
        uncond_rows: int = 0,
    ) -> torch.Tensor:
        """One UNet pass over model-input rows (x, sigma, image_cond per row) -> x0 per row."""
        x_rows, sigma_rows, image_cond = rows
        param = next(self.unet.parameters())
        dtype = compute_dtype(self.unet)  # not param.dtype: with fp8 storage that is float8
        s = sigma_rows.reshape(-1, 1, 1, 1).to(x_rows.dtype)
        c_in = 1.0 / torch.sqrt(s**2 + 1.0)
        model_in = x_rows * c_in
        t = self.sigma_to_t(sigma_rows)
        device = param.device
        control = None
        if self.residuals is not None:
            control = self._residuals(model_in, t, context, pooled, time_ids, uncond_rows, float(sigma_rows[0]))
        # through A1111's model objects (sd_model.apply_model / model.diffusion_model, ldm-shaped):
        # what extensions replace or patch there takes effect
        out = call_unet(
            self.unet,
            model_in.to(device, dtype),
            t.to(device),
            context.to(device, dtype),
            pooled=None if pooled is None else pooled.to(device, dtype),
            time_ids=None if time_ids is None else time_ids.to(device, dtype),
            image_cond=None if image_cond is None else image_cond.to(device, dtype),
            control=control,
        )
        out = out.to(x_rows.dtype).to(x_rows.device)
        if self.prediction_type == "v_prediction":
            denoised = x_rows / (s**2 + 1.0) - out * s / torch.sqrt(s**2 + 1.0)
        else:
            denoised = x_rows - out * s
        return denoised if self.finish is None else self.finish(x_rows, denoised, sigma_rows)

    def _residuals(
        self,
        model_in: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        pooled: torch.Tensor | None,
        time_ids: torch.Tensor | None,
        uncond_rows: int,
        sigma: float,
    ) -> list[torch.Tensor] | None:
        """The residual provider's control for this call (ldm's list: input-block residuals, then mid)."""
        assert self.residuals is not None
        param = next(self.unet.parameters())
        dtype = compute_dtype(self.unet)
        rows = model_in.shape[0]
        added = None
        if pooled is not None and time_ids is not None:
            added = {"text_embeds": pooled.to(param.device, dtype), "time_ids": time_ids.to(param.device, dtype)}
        call = ResidualCall(
            x=model_in.to(param.device, dtype),
            t=t.to(param.device),
            context=context.to(param.device, dtype),
            added_cond=added,
            uncond=torch.arange(rows) >= rows - uncond_rows,
            progress=pass_progress(self.pass_sigmas, sigma),
            dtype=dtype,
            device=param.device,
            unet_config=getattr(self.unet, "config", None),
        )
        return self.residuals(call)


@dataclass
class _StepInputs:
    """The model inputs of one step (A1111's x_in, sigma_in, image_cond_in, tensor, uncond)."""

    x: torch.Tensor
    sigma: torch.Tensor
    image_cond: torch.Tensor | None
    cond: torch.Tensor
    cond_pooled: torch.Tensor | None
    uncond: torch.Tensor
    uncond_pooled: torch.Tensor | None

    def part(self, start: int, end: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        image_cond = None if self.image_cond is None else self.image_cond[start:end]
        return self.x[start:end], self.sigma[start:end], image_cond


@dataclass
class DenoiserEvents:
    """The extension hooks of one sampling pass around each denoiser call (A1111 CFGDenoiser.forward).

    Made only when a hook listens (`for_job` returns None otherwise), so plain jobs build no
    parameter objects. `sampling_step` follows A1111's `state.sampling_step`: the index of the
    last finished step (the sampler callback sets it)."""

    hooks: ScriptHooks
    p: Any
    denoiser: bool
    denoised: bool
    after_cfg: bool
    mask_blend: bool
    total_steps: int = 0
    sampling_step: int = 0

    @classmethod
    def for_job(cls, hooks: ScriptHooks | None, p: Any) -> DenoiserEvents | None:
        if hooks is None:
            return None
        flags = [hooks.wants(name) for name in PER_STEP_EVENTS]
        return cls(hooks, p, *flags) if any(flags) else None

    def before_step(self, denoiser: CFGDenoiser, step: _StepInputs) -> _StepInputs:
        params = CFGDenoiserParams(
            step.x,
            step.image_cond,
            step.sigma,
            self.sampling_step,
            self.total_steps,
            _text_arg(step.cond, step.cond_pooled),
            _text_arg(step.uncond, step.uncond_pooled),
            denoiser if denoiser.wrap is None else denoiser.wrap.public,
        )
        self.hooks.cfg_denoiser(params)
        cond, cond_pooled = _text(params.text_cond, step.cond_pooled)
        uncond, uncond_pooled = _text(params.text_uncond, step.uncond_pooled)
        return _StepInputs(params.x, params.sigma, params.image_cond, cond, cond_pooled, uncond, uncond_pooled)

    def after_model(
        self, denoiser: CFGDenoiser, cond_out: torch.Tensor, uncond_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        params = CFGDenoisedParams(
            torch.cat([cond_out, uncond_out]), self.sampling_step, self.total_steps, denoiser.unet
        )
        self.hooks.cfg_denoised(params, self.p)
        n = cond_out.shape[0]
        return params.x[:n], params.x[n:]

    def mask_blend_step(
        self, denoiser: CFGDenoiser, current: torch.Tensor, blended: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        mba = MaskBlendArgs(
            current, denoiser.nmask, denoiser.init_latent, denoiser.mask, blended, denoiser=denoiser, sigma=sigma
        )
        self.hooks.on_mask_blend(self.p, mba)
        return mba.blended_latent

    def after_cfg_step(self, denoised: torch.Tensor) -> torch.Tensor:
        params = AfterCFGCallbackParams(denoised, self.sampling_step, self.total_steps)
        self.hooks.cfg_after_cfg(params, self.p)
        return params.x


def combine_conds(x_out: torch.Tensor, conds_list: CondsList, n_uncond: int, cond_scale: float) -> torch.Tensor:
    """CFG with AND-composition (A1111 combine_denoised): x_out holds the cond rows, then one uncond
    row per image; each image's x0 = uncond + sum_k w_k * scale * (cond_k - uncond)."""
    uncond = x_out[-n_uncond:]
    denoised = uncond.clone()
    for image, conds in enumerate(conds_list):
        for row, weight in conds:
            denoised[image] += (x_out[row] - uncond[image]) * (weight * cond_scale)
    return denoised


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """ldm's list-of-tensors cond entries as one tensor (no copy for the usual single entry)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _text_arg(context: torch.Tensor, pooled: torch.Tensor | None) -> Any:
    """A text cond as A1111 passes it to extensions: a tensor, or SDXL's dict."""
    return context if pooled is None else {"crossattn": context, "vector": pooled}


def _text(value: Any, pooled: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A callback's text_cond back into (context, pooled): SDXL uses A1111's dict form."""
    if isinstance(value, dict):
        return value["crossattn"], value.get("vector", pooled)
    return value, pooled


def _rows(table: torch.Tensor | None, rows: list[int]) -> torch.Tensor | None:
    return None if table is None else table[rows]


def _cat_optional(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return None
    return torch.cat([a, b])
