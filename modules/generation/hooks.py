"""Hook points where A1111 calls its Script hooks and script_callbacks, so extensions can attach.

The generation code calls these methods at A1111's points and in A1111's order
(shared/reference/extension-api.md §2 and §4). The default does nothing; the extension host
provides an implementation that dispatches to each always-on script with its args and to the
registered `on_*` callbacks. The parameter objects are A1111's (same class names and
attributes); extensions may change their attributes and the generation code uses the result.

Per-step points (the CFG callbacks, `on_mask_blend`) are only reached when `wants(event)` says
someone listens, so a job without extensions builds no parameter objects.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

# Events `wants()` is asked about before building per-step or per-image parameter objects.
PER_STEP_EVENTS = ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "on_mask_blend")


# A1111's conds_list: per image, the (row of x_out, AND weight) of each of its positive prompts.
CondsList = list[list[tuple[int, float]]]


class CFGWrap(Protocol):
    """The job's A1111 sampler objects around the CFG denoiser (`p.sampler.model_wrap_cfg`).

    Extensions replace its inner model or its combine step; the denoiser calls through it. Made by
    the extension host (`ScriptHooks.cfg_wrap`); without extensions there is none."""

    sampler_name: str  # the sampler of our registry that runs (extensions may add names)
    total_steps: int  # model calls of the pass (A1111 CFGDenoiser.total_steps)

    @property
    def public(self) -> Any:
        """What callbacks see as the denoiser (A1111 CFGDenoiserParams.denoiser)."""
        ...

    def bind(self, denoiser: Any) -> None:
        """The denoiser now calling (base or refiner), for the default inner model and `step`."""

    def inner(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """x0 of the model rows (A1111 `CFGDenoiser.inner_model(x_in, sigma_in, cond=...)`)."""
        ...

    def combine(self, x_out: torch.Tensor, conds_list: CondsList, uncond: Any, cond_scale: float) -> torch.Tensor:
        """A1111 `CFGDenoiser.combine_denoised`."""
        ...

    def forward_replaced(self) -> bool:
        """True when an extension replaced `CFGDenoiser.forward` (instance or class): it then runs
        each whole CFG step through `forward` instead of the loop's own CFG."""
        ...

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The replaced `CFGDenoiser.forward(x, sigma, uncond=, cond=, cond_scale=, ...)` of the step."""
        ...


class ScriptHooks:
    """No-op hooks; subclass and override what you need."""

    def for_request(
        self,
        tab: str,
        script_name: str | None = None,
        script_args: Sequence[Any] = (),
        alwayson_scripts: Mapping[str, Any] | None = None,
    ) -> ScriptHooks:
        """The hooks of one API request (A1111's script_name/script_args/alwayson_scripts)."""
        return self

    def wants(self, event: str) -> bool:
        """True when a script hook or callback listens to `event` (a method name below)."""
        return False

    def setup(self, p: Any) -> None:
        """When `p` gets its scripts and args, before anything else."""

    def cfg_wrap(self, p: Any, sampler_name: str) -> CFGWrap | None:
        """The A1111 sampler objects of a sampling pass (`p.sampler`), None when there are none."""
        return None

    def run(self, p: Any, control: Any) -> Any:
        """A chosen dropdown script's run(); its result replaces process(), None means "not handled"."""
        return None

    def before_process(self, p: Any) -> None:
        pass

    def process(self, p: Any) -> None:
        pass

    def before_process_batch(
        self, p: Any, *, batch_number: int, prompts: list[str], seeds: list[int], subseeds: list[int]
    ) -> None:
        pass

    def process_batch(
        self, p: Any, *, batch_number: int, prompts: list[str], seeds: list[int], subseeds: list[int]
    ) -> None:
        pass

    def process_before_every_sampling(self, p: Any, *, x: Any, noise: Any, c: Any, uc: Any) -> None:
        pass

    def postprocess_batch(self, p: Any, images: Any, *, batch_number: int) -> None:
        pass

    def postprocess_batch_list(self, p: Any, pp: Any, *, batch_number: int) -> None:
        pass

    def after_extra_networks_activate(self, p: Any, **kwargs: Any) -> None:
        pass

    def before_hr(self, p: Any) -> None:
        pass

    def on_mask_blend(self, p: Any, mba: Any) -> None:
        pass

    def post_sample(self, p: Any, ps: Any) -> None:
        pass

    def postprocess_image(self, p: Any, pp: Any) -> None:
        pass

    def postprocess_maskoverlay(self, p: Any, ppmo: Any) -> None:
        pass

    def postprocess_image_after_composite(self, p: Any, pp: Any) -> None:
        pass

    def postprocess(self, p: Any, processed: Any) -> None:
        pass

    # --- script_callbacks the generation raises (A1111 on_* categories) ----------------------
    # `p` (the job) is for the implementation's job context; the callbacks get only `params`.
    def cfg_denoiser(self, params: CFGDenoiserParams) -> None:
        pass

    def cfg_denoised(self, params: CFGDenoisedParams, p: Any = None) -> None:
        pass

    def cfg_after_cfg(self, params: AfterCFGCallbackParams, p: Any = None) -> None:
        pass

    def extra_noise(self, params: ExtraNoiseParams, p: Any = None) -> None:
        pass

    def before_image_saved(self, params: ImageSaveParams) -> None:
        pass

    def image_saved(self, params: ImageSaveParams) -> None:
        pass

    def image_grid(self, params: ImageGridLoopParams, p: Any = None) -> None:
        pass


# --- Script hook argument objects (A1111 modules.scripts) ---------------------------------------


class PostprocessImageArgs:
    """A1111's `scripts.PostprocessImageArgs`: a hook may replace `.image`."""

    def __init__(self, image: Any, index: int = 0):
        self.image = image
        self.index = index


class PostprocessBatchListArgs:
    """A1111's `scripts.PostprocessBatchListArgs`: hooks may edit `.images` in place."""

    def __init__(self, images: list[Any]):
        self.images = images


class MaskBlendArgs:
    """A1111's `scripts.MaskBlendArgs`: a hook may replace `.blended_latent`.

    `denoiser`/`sigma` are set for the per-step blend; the final blend after sampling has none
    (`is_final_blend`)."""

    def __init__(
        self,
        current_latent: Any,
        nmask: Any,
        init_latent: Any,
        mask: Any,
        blended_latent: Any,
        denoiser: Any = None,
        sigma: Any = None,
    ):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.is_final_blend = denoiser is None
        self.sigma = sigma


class PostSampleArgs:
    """A1111's `scripts.PostSampleArgs`: a hook may replace `.samples` (latents before decoding)."""

    def __init__(self, samples: Any):
        self.samples = samples


class PostProcessMaskOverlayArgs:
    """A1111's `scripts.PostProcessMaskOverlayArgs`: hooks may replace the mask or overlay image."""

    def __init__(self, index: int, mask_for_overlay: Any, overlay_image: Any):
        self.index = index
        self.mask_for_overlay = mask_for_overlay
        self.overlay_image = overlay_image


# --- script_callbacks parameter objects (A1111 modules.script_callbacks) -------------------------


class ImageSaveParams:
    """on_before_image_saved / on_image_saved: `pnginfo["parameters"]` is the infotext.

    Before saving, `filename` is the planned file path; a callback may change it (the image is
    then written there), the image or the pnginfo. After saving it is the file written."""

    def __init__(self, image: Any, p: Any, filename: str, pnginfo: dict[str, Any]):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class ExtraNoiseParams:
    """on_extra_noise: `noise` (replaceable), `x` the init latent, `xi` the noised start latent."""

    def __init__(self, noise: Any, x: Any, xi: Any):
        self.noise = noise
        self.x = x
        self.xi = xi


class CFGDenoiserParams:
    """on_cfg_denoiser, before the UNet calls of one step; every attribute may be replaced.

    `x`, `sigma`, `image_cond` have one row per model input: the positive conds of every image
    (in image order, several per image with AND), then one uncond row per image. `text_cond` /
    `text_uncond` are the matching text contexts; for SDXL a dict {"crossattn", "vector"}."""

    def __init__(
        self,
        x: Any,
        image_cond: Any,
        sigma: Any,
        sampling_step: int,
        total_sampling_steps: int,
        text_cond: Any,
        text_uncond: Any,
        denoiser: Any = None,
    ):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    """on_cfg_denoised: `x` the model outputs (rows as CFGDenoiserParams.x), before CFG combines them."""

    def __init__(self, x: Any, sampling_step: int, total_sampling_steps: int, inner_model: Any):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    """on_cfg_after_cfg: `x` the combined (and mask-blended) denoised latent of the step."""

    def __init__(self, x: Any, sampling_step: int, total_sampling_steps: int):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class ImageGridLoopParams:
    """on_image_grid: `imgs`, `cols`, `rows` may be changed before the grid is drawn."""

    def __init__(self, imgs: list[Any], cols: int, rows: int):
        self.imgs = imgs
        self.cols = cols
        self.rows = rows


class ScriptHooksSlot:
    """The hooks a job gets when its caller passes none: no-op hooks until the extension host
    attaches its script runner. The composition root builds one slot and hands it to both the
    generation service (reads) and the extension host (attaches when bound, detaches on unbind),
    so neither is changed after construction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: ScriptHooks = ScriptHooks()

    def get(self) -> ScriptHooks:
        return self._hooks

    def attach(self, hooks: ScriptHooks) -> None:
        with self._lock:
            self._hooks = hooks

    def detach(self) -> None:
        with self._lock:
            self._hooks = ScriptHooks()
