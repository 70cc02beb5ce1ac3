"""A1111's sampler objects for extensions: `p.sampler` and what hangs off it.

- `KDiffusionSampler` (`p.sampler`): `model_wrap` (the k-diffusion CompVis wrapper of the model:
  sigmas, sigma_to_t, t_to_sigma, inner_model = p.sd_model), `model_wrap_cfg` (the CFG denoiser),
  `sampler_extra_args`, `config` (SamplerData), `funcname`, `steps`;
- `CFGDenoiser`: what the sampler calls each step. Our denoise loop (modules.generation.denoiser)
  calls its `inner_model(x, sigma, cond=...)` for every model pass and its `combine_denoised` for
  CFG, so replacing either, on the instance or on the class, takes effect; a replaced `forward`
  (instance or class) runs each whole step instead, and may call the original on tiles of x;
- `p.sampler` comes from `modules.sd_samplers.create_sampler` as it is at the time, so a swapped
  one (Tiled Diffusion) makes it;
- the k-diffusion wrapper classes (k_diffusion.external re-exports them).

Samplers still run inside our pipeline: `KDiffusionSampler.sample` is not offered. An extension
that registers a new SamplerData whose constructor builds on an existing one (Dynamic
Thresholding) gets its sampler object used for the pass: the pipeline runs the algorithm of the
sampler that the object was made for.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import torch

from modules.extension_host.compat_conds import a1111_conds
from modules.generation.denoiser import combine_conds
from modules.generation.hooks import CondsList
from modules.generation.samplers import SAMPLERS, SamplerSpec, UnknownSamplerError, find_sampler
from modules.generation.samplers.common import append_zero
from modules.generation.samplers.schedules import ModelSigmas

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """x with trailing singleton dimensions up to target_dims (k-diffusion utils)."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


# --- k-diffusion's discrete-time model wrappers -------------------------------------------------


class DiscreteSchedule(torch.nn.Module):
    """A model trained on discrete noise levels: sigma <-> timestep maps (our ModelSigmas)."""

    sigmas: torch.Tensor
    log_sigmas: torch.Tensor

    def __init__(self, sigmas: torch.Tensor, quantize: bool) -> None:
        super().__init__()
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())
        self.quantize = quantize
        self._table = ModelSigmas(sigmas.detach().cpu(), quantize=quantize)

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def get_sigmas(self, n: int | None = None) -> torch.Tensor:
        if n is None:
            return append_zero(self.sigmas.flip(0))
        return self._table.get_sigmas(n).to(self.sigmas.device)

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        return self._table.sigma_to_t(sigma, quantize).to(sigma.device)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return self._table.t_to_sigma(t).to(t.device)


class DiscreteEpsDDPMDenoiser(DiscreteSchedule):
    """An eps-predicting model as a denoiser: x0 = x - sigma * eps(x * c_in, t(sigma))."""

    def __init__(self, model: Any, alphas_cumprod: torch.Tensor, quantize: bool) -> None:
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32).detach().cpu()
        super().__init__(((1 - ac) / ac) ** 0.5, quantize)
        self.inner_model = model
        self.sigma_data = 1.0

    def get_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c_out = -sigma
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return c_out, c_in

    def get_eps(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model(*args, **kwargs)

    def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        c_out, c_in = (append_dims(c, input.ndim) for c in self.get_scalings(sigma))
        eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
        return input + eps * c_out


class DiscreteVDDPMDenoiser(DiscreteSchedule):
    """A v-predicting model as a denoiser (SD 2.x 768-v)."""

    def __init__(self, model: Any, alphas_cumprod: torch.Tensor, quantize: bool) -> None:
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32).detach().cpu()
        super().__init__(((1 - ac) / ac) ** 0.5, quantize)
        self.inner_model = model
        self.sigma_data = 1.0

    def get_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        total = sigma**2 + self.sigma_data**2
        return self.sigma_data**2 / total, -sigma * self.sigma_data / total**0.5, 1 / total**0.5

    def get_v(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model(*args, **kwargs)

    def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        c_skip, c_out, c_in = (append_dims(c, input.ndim) for c in self.get_scalings(sigma))
        return input * c_skip + self.get_v(input * c_in, self.sigma_to_t(sigma), **kwargs) * c_out


class CompVisDenoiser(DiscreteEpsDDPMDenoiser):
    """An ldm model (`apply_model(x, t, cond)`, `alphas_cumprod`) as an eps denoiser."""

    def __init__(self, model: Any, quantize: bool = False, device: Any = "cpu") -> None:
        super().__init__(model, model.alphas_cumprod, quantize=quantize)

    def get_eps(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model.apply_model(*args, **kwargs)


class CompVisVDenoiser(DiscreteVDDPMDenoiser):
    """An ldm model as a v denoiser."""

    def __init__(self, model: Any, quantize: bool = False, device: Any = "cpu") -> None:
        super().__init__(model, model.alphas_cumprod, quantize=quantize)

    def get_v(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model.apply_model(*args, **kwargs)


class _JobModel:
    """The job's model wrapper forwards to the pipeline's model pass (same numbers as without
    extensions); wrapping it, or CFGDenoiser.inner_model, changes what the sampler sees."""

    sampler: KDiffusionSampler

    def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        denoiser = self.sampler.bound
        if denoiser is None:
            raise RuntimeError("p.sampler.model_wrap runs only while this job samples")
        return denoiser.predict_x0(input, sigma, kwargs.get("cond") or {})


class _JobEpsDenoiser(_JobModel, CompVisDenoiser):
    pass


class _JobVDenoiser(_JobModel, CompVisVDenoiser):
    pass


# --- the CFG denoiser -----------------------------------------------------------------------


def _uncond_rows(uncond: Any) -> int:
    if isinstance(uncond, dict):
        uncond = uncond["crossattn"]
    return int(uncond.shape[0])


class CFGDenoiser(torch.nn.Module):
    """A1111's CFGDenoiser (modules.sd_samplers_cfg_denoiser): the sampler's per-step model.

    `inner_model(x, sigma, cond=...)` gives x0 of the model rows; `combine_denoised` mixes the
    cond and uncond rows. Attributes A1111 extensions read (step, total_steps, mask, nmask,
    init_latent, p, sampler) follow the running step."""

    def __init__(self, sampler: Any) -> None:
        super().__init__()
        self.sampler = sampler
        self.model_wrap = getattr(sampler, "model_wrap", None)
        self.mask: torch.Tensor | None = None
        self.nmask: torch.Tensor | None = None
        self.init_latent: torch.Tensor | None = None
        self.steps: int | None = None
        self.total_steps: int | None = None
        self.step = 0
        self.image_cfg_scale: float | None = None
        self.padded_cond_uncond = False
        self.p: Any = None
        self.mask_before_denoising = False
        self.cond_scale_miltiplier = 1.0  # sic: A1111's spelling
        self.need_last_noise_uncond = False
        self.last_noise_uncond: torch.Tensor | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("inner_model", "model_wrap"):  # any callable may stand in, not only a Module
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def inner_model(self) -> Any:
        """The model wrapper the denoise loop calls (A1111: model_wrap, made from the model)."""
        return self.model_wrap

    @inner_model.setter
    def inner_model(self, value: Any) -> None:
        self.model_wrap = value

    def combine_denoised(
        self, x_out: torch.Tensor, conds_list: CondsList, uncond: Any, cond_scale: float
    ) -> torch.Tensor:
        return combine_conds(x_out, conds_list, _uncond_rows(uncond), cond_scale)

    def combine_denoised_for_edit_model(self, x_out: torch.Tensor, cond_scale: float) -> torch.Tensor:
        out_cond, out_img_cond, out_uncond = x_out.chunk(3)
        image_scale = self.image_cfg_scale if self.image_cfg_scale is not None else 1.5
        return out_uncond + cond_scale * (out_cond - out_img_cond) + image_scale * (out_img_cond - out_uncond)

    def get_pred_x0(self, x_in: torch.Tensor, x_out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x_out

    def update_inner_model(self) -> None:
        """A1111 re-reads the loaded model here; ours follows the job."""

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        uncond: Any = None,
        cond: Any = None,
        cond_scale: float | None = None,
        s_min_uncond: float | None = None,
        image_cond: Any = None,
    ) -> torch.Tensor:
        """One CFG step of our pipeline on x (A1111's signature; the cond arguments are the job's).

        Extensions that replace forward call this one from theirs, maybe on parts of x (tiles)."""
        denoiser = getattr(self.sampler, "bound", None)
        if denoiser is None:
            raise RuntimeError("CFGDenoiser runs only while its job samples")
        result: torch.Tensor = denoiser.cfg_step(x, sigma)
        return result


_ORIGINAL_FORWARD = CFGDenoiser.forward  # replacing it (class or instance) hands extensions the step


class CFGDenoiserKDiffusion(CFGDenoiser):
    """A1111's k-diffusion flavour (modules.sd_samplers_kdiffusion)."""


# --- the sampler ----------------------------------------------------------------------------


class Sampler:
    """A1111's sampler base class (modules.sd_samplers_common.Sampler): the attributes extensions
    read, and methods they wrap on the class. Sampling itself runs inside our pipeline."""

    def __init__(self, funcname: str) -> None:
        self.funcname = funcname
        self.func: Any = None
        self.extra_params: list[str] = []
        self.sampler_extra_args: dict[str, Any] = {}
        self.config: Any = None
        self.options: dict[str, Any] = {}
        self.model_wrap: Any = None
        self.model_wrap_cfg: Any = None
        self.p: Any = None
        self.steps: int | None = None
        self.eta: float | None = None
        self.eta_option_field = "eta_ancestral"
        self.eta_infotext_field = "Eta"
        self.eta_default = 1.0
        self.s_min_uncond: float | None = None
        self.s_churn = 0.0
        self.s_tmin = 0.0
        self.s_tmax = float("inf")
        self.s_noise = 1.0
        self.last_latent: torch.Tensor | None = None
        self.stop_at: int | None = None
        self.conditioning_key = "crossattn"

    def callback_state(self, d: dict[str, Any]) -> None:
        """A1111 calls this after each step with {"i", "denoised", ...}: keeps the latest latent."""
        self.last_latent = d.get("denoised", self.last_latent)

    def number_of_needed_noises(self, p: Any) -> int:
        return int(p.steps)

    def initialize(self, p: Any) -> dict[str, Any]:
        self.p = p
        self.eta = getattr(p, "eta", None)
        self.s_min_uncond = getattr(p, "s_min_uncond", None)
        return {}

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("samplers run inside this web UI's pipeline: set p.sampler_name instead")

    sample_img2img = sample

    def interrupt(self) -> None:
        """The job's Interrupt button stops sampling (our JobControl)."""

    def stop(self) -> None:
        """See interrupt()."""


class KDiffusionSampler(Sampler):
    """A1111's `p.sampler` for a sampler of our registry."""

    def __init__(self, funcname: str, sd_model: Any, options: dict[str, Any] | None = None, *, spec: SamplerSpec):
        super().__init__(funcname)
        self.spec = spec
        self.extra_params = list(spec.extra_params)
        self.options = dict(options or spec.options)
        self.sd_model = sd_model
        wrap_class = _JobVDenoiser if _is_v_model(sd_model) else _JobEpsDenoiser
        self.model_wrap = wrap_class(sd_model)
        self.model_wrap.sampler = self
        self.model_wrap_cfg: CFGDenoiser = CFGDenoiserKDiffusion(self)
        self.conditioning_key = "crossattn-adm" if getattr(sd_model, "is_sdxl", False) else "crossattn"
        self.bound: Any = None  # the pipeline's denoiser now running (base or refiner)

    def get_sigmas(self, p: Any, steps: int) -> torch.Tensor:
        return self.model_wrap.get_sigmas(steps)


def _is_v_model(model: Any) -> bool:
    return getattr(model, "parameterization", None) == "v" or getattr(model, "prediction_type", "") == "v_prediction"


def _constructor(spec: SamplerSpec) -> Callable[[Any], KDiffusionSampler]:
    def construct(model: Any) -> KDiffusionSampler:
        return KDiffusionSampler(f"sample_{spec.algorithm}", model, spec=spec)

    return construct


# A1111's sd_samplers.all_samplers / all_samplers_map: extensions add entries (and remove them)
all_samplers: list[Any] = [SamplerData(s.name, _constructor(s), list(s.aliases), dict(s.options)) for s in SAMPLERS]
all_samplers_map: dict[str, Any] = {s.name: s for s in all_samplers}


def find_sampler_config(name: str | None) -> Any:
    """SamplerData by name (extension-added ones too), alias or old combined name; None: unknown."""
    if name in all_samplers_map:
        return all_samplers_map[name]
    try:
        spec, _ = find_sampler(name)
    except UnknownSamplerError:
        return None
    return all_samplers_map.get(spec.name)


def create_sampler(name: str, model: Any) -> Any:
    config = find_sampler_config(name)
    if config is None:
        raise ValueError(f"bad sampler name: {name}")
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def current_create_sampler() -> Callable[[str, Any], Any]:
    """`modules.sd_samplers.create_sampler` as it is now: extensions swap it (Tiled Diffusion hooks
    the sampler it makes), so it is looked up at each call, not bound at import."""
    facade = sys.modules.get("modules.sd_samplers")  # not imported: nobody can have swapped it
    made: Callable[[str, Any], Any] = getattr(facade, "create_sampler", create_sampler)
    return made


def sampler_for_job(p: Any) -> KDiffusionSampler | None:
    """`p.sampler` for scripts before sampling: the job's sampler on the loaded model."""
    model = getattr(p, "sd_model", None)
    if getattr(model, "alphas_cumprod", None) is None or find_sampler_config(getattr(p, "sampler_name", None)) is None:
        return None
    sampler = current_create_sampler()(p.sampler_name, model)
    return sampler if isinstance(sampler, KDiffusionSampler) else None


class JobCFGWrap:
    """The pipeline's view of `p.sampler` during one pass (generation.hooks.CFGWrap)."""

    def __init__(self, sampler: KDiffusionSampler, sampler_name: str, p: Any):
        self.sampler = sampler
        self.sampler_name = sampler_name
        self.total_steps = 0
        sampler.p = p
        sampler.steps = getattr(p, "steps", None)
        sampler.s_min_uncond = getattr(p, "s_min_uncond", None)

    @property
    def public(self) -> CFGDenoiser:
        return self.sampler.model_wrap_cfg

    def bind(self, denoiser: Any) -> None:
        if denoiser is not self.sampler.bound and denoiser.conditioning is not None:
            denoiser.p.c, denoiser.p.uc = a1111_conds(denoiser.conditioning)  # this pass's conds
        self.sampler.bound = denoiser
        cfg = self.sampler.model_wrap_cfg
        cfg.step = denoiser.step
        cfg.total_steps = cfg.steps = self.total_steps
        cfg.p = denoiser.p
        cfg.mask, cfg.nmask, cfg.init_latent = denoiser.mask, denoiser.nmask, denoiser.init_latent
        extra = self.sampler.sampler_extra_args
        extra["cond_scale"] = denoiser.cfg_scale
        extra["s_min_uncond"] = denoiser.s_min_uncond
        extra["image_cond"] = denoiser.extra.image_cond

    def inner(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        result: torch.Tensor = self.sampler.model_wrap_cfg.inner_model(x, sigma, cond=cond)
        return result

    def combine(self, x_out: torch.Tensor, conds_list: CondsList, uncond: Any, cond_scale: float) -> torch.Tensor:
        result: torch.Tensor = self.sampler.model_wrap_cfg.combine_denoised(x_out, conds_list, uncond, cond_scale)
        return result

    def forward_replaced(self) -> bool:
        cfg = self.sampler.model_wrap_cfg
        return "forward" in vars(cfg) or type(cfg).forward is not _ORIGINAL_FORWARD

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        extra = self.sampler.sampler_extra_args
        p = self.sampler.p
        result: torch.Tensor = self.sampler.model_wrap_cfg.forward(
            x,
            sigma,
            uncond=getattr(p, "uc", None),
            cond=getattr(p, "c", None),
            cond_scale=extra.get("cond_scale"),
            s_min_uncond=extra.get("s_min_uncond"),
            image_cond=extra.get("image_cond"),
        )
        return result


def cfg_wrap_for(p: Any, sampler_name: str) -> JobCFGWrap | None:
    """The A1111 sampler of a pass: p.sampler when it was made for this sampler name (what scripts
    changed on it stays), else a new one (A1111 makes one per pass too). None: no model view."""
    model = getattr(p, "sd_model", None)
    config = find_sampler_config(sampler_name)
    if getattr(model, "alphas_cumprod", None) is None or config is None:
        return None
    sampler = getattr(p, "sampler", None)
    make = current_create_sampler()
    # a swapped create_sampler is asked each pass, as A1111 does (it may hook what it returns)
    if make is not create_sampler or not isinstance(sampler, KDiffusionSampler) or sampler.config is not config:
        sampler = make(sampler_name, model)
        if not isinstance(sampler, KDiffusionSampler):
            return None
        p.sampler = sampler
    try:
        find_sampler(sampler_name)
        runs = sampler_name
    except UnknownSamplerError:  # an extension's SamplerData around one of ours
        runs = sampler.spec.name
    return JobCFGWrap(sampler, runs, p)
