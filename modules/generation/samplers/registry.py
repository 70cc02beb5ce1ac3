"""The sampler registry: A1111 1.10's samplers in UI order, their aliases and options.

Sources of the facts: A1111/Forge modules/sd_samplers_kdiffusion.py (samplers_k_diffusion,
sampler_extra_params), sd_samplers_timesteps.py, sd_samplers_lcm.py, sd_samplers.py
(get_sampler_and_scheduler).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modules.generation.samplers.common import SamplerParams
from modules.generation.samplers.schedules import (
    SCHEDULERS,
    LcmSigmas,
    ModelSigmas,
    SchedulerSpec,
)


class SamplerKind(StrEnum):
    KDIFFUSION = "kdiffusion"  # sigma schedules, any schedule type
    TIMESTEPS = "timesteps"  # DDIM/PLMS/UniPC: A1111's own timesteps, schedule type ignored
    LCM = "lcm"  # k-diffusion style on the LCM denoiser's 50-step table


class UnknownSamplerError(ValueError):
    """A sampler name that is not in the registry; the message lists the valid names."""


CHURN_PARAMS = ("s_churn", "s_tmin", "s_tmax", "s_noise")


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler.

    extra_params: which of s_churn/s_tmin/s_tmax/s_noise A1111 passes to it (others stay default;
    e.g. Euler a never gets s_noise). uses_eta: the algorithm takes eta (A1111 default
    `default_eta`: eta_ancestral 1.0, or eta_ddim 0.0 for DDIM). uses_schedule: False where the
    sigma values between the ends do not matter (DPM fast/adaptive) or are A1111's own timesteps.
    needs_uncond_denoised / cfg_scale_multiplier: DDIM CFG++ reads the uncond x0 from the denoiser
    (`last_uncond_denoised`) and A1111 multiplies the CFG scale by 1/12.5 for it.
    """

    name: str
    aliases: tuple[str, ...]
    algorithm: str
    kind: SamplerKind = SamplerKind.KDIFFUSION
    default_scheduler: str | None = None
    discard_next_to_last_sigma: bool = False
    second_order: bool = False
    brownian_noise: bool = False
    uses_ensd: bool = False
    solver_type: str | None = None
    extra_params: tuple[str, ...] = ()
    uses_eta: bool = False
    default_eta: float = 1.0
    eta_infotext_field: str = "Eta"
    uses_schedule: bool = True
    needs_uncond_denoised: bool = False
    cfg_scale_multiplier: float = 1.0

    def total_steps(self, steps: int) -> int:
        """Model-call budget A1111 uses for progress and prompt-editing (x2 for second-order samplers)."""
        return steps * 2 if self.second_order else steps

    def effective_eta(self, params: SamplerParams) -> float:
        """eta the algorithm runs with: the user's when the sampler takes one, else its default."""
        if self.uses_eta and params.eta is not None:
            return params.eta
        return self.default_eta

    def infotext_params(self, params: SamplerParams) -> dict[str, Any]:
        """Infotext entries A1111 adds for these parameters: "Eta"/"Eta DDIM" when the sampler takes
        eta and it differs from the default; "Sigma churn/tmin/tmax/noise" for passed, non-default ones."""
        entries: dict[str, Any] = {}
        if self.uses_eta and params.eta is not None and params.eta != self.default_eta:
            entries[self.eta_infotext_field] = params.eta
        defaults = SamplerParams()
        labels = {"s_churn": "Sigma churn", "s_tmin": "Sigma tmin", "s_tmax": "Sigma tmax", "s_noise": "Sigma noise"}
        for name in self.extra_params:
            value = getattr(params, name)
            if value != getattr(defaults, name):
                entries[labels[name]] = value
        return entries

    def model_sigmas(self, base: ModelSigmas) -> ModelSigmas:
        """The noise-level table this sampler's denoiser uses (LCM has its own)."""
        if self.kind == SamplerKind.LCM and not isinstance(base, LcmSigmas):
            return LcmSigmas(base)
        return base

    @property
    def options(self) -> dict[str, Any]:
        """A1111's SamplerData.options (same as api_options())."""
        return self.api_options()

    def api_options(self) -> dict[str, Any]:
        """A1111's options dict for /sdapi/v1/samplers."""
        options: dict[str, Any] = {}
        if self.default_scheduler:
            options["scheduler"] = self.default_scheduler
        flags = (
            ("discard_next_to_last_sigma", self.discard_next_to_last_sigma),
            ("uses_ensd", self.uses_ensd),
            ("second_order", self.second_order),
            ("brownian_noise", self.brownian_noise),
        )
        options.update({key: True for key, on in flags if on})
        if self.solver_type:
            options["solver_type"] = self.solver_type
        return options

    def api_item(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "options": self.api_options()}


_NOISE = ("s_noise",)
_TS = SamplerKind.TIMESTEPS

SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", ("k_dpmpp_2m",), "dpmpp_2m", default_scheduler="karras"),
    SamplerSpec(
        "DPM++ SDE",
        ("k_dpmpp_sde",),
        "dpmpp_sde",
        default_scheduler="karras",
        second_order=True,
        brownian_noise=True,
        extra_params=_NOISE,
        uses_eta=True,
    ),
    SamplerSpec(
        "DPM++ 2M SDE",
        ("k_dpmpp_2m_sde",),
        "dpmpp_2m_sde",
        default_scheduler="exponential",
        brownian_noise=True,
        extra_params=_NOISE,
        uses_eta=True,
    ),
    SamplerSpec(
        "DPM++ 2M SDE Heun",
        ("k_dpmpp_2m_sde_heun",),
        "dpmpp_2m_sde_heun",
        default_scheduler="exponential",
        brownian_noise=True,
        solver_type="heun",
        extra_params=_NOISE,
        uses_eta=True,
    ),
    SamplerSpec(
        "DPM++ 2S a",
        ("k_dpmpp_2s_a",),
        "dpmpp_2s_ancestral",
        default_scheduler="karras",
        uses_ensd=True,
        second_order=True,
        extra_params=_NOISE,
        uses_eta=True,
    ),
    SamplerSpec(
        "DPM++ 3M SDE",
        ("k_dpmpp_3m_sde",),
        "dpmpp_3m_sde",
        default_scheduler="exponential",
        discard_next_to_last_sigma=True,
        brownian_noise=True,
        extra_params=_NOISE,
        uses_eta=True,
    ),
    SamplerSpec("Euler a", ("k_euler_a", "k_euler_ancestral"), "euler_ancestral", uses_ensd=True, uses_eta=True),
    SamplerSpec("Euler", ("k_euler",), "euler", extra_params=CHURN_PARAMS),
    SamplerSpec("LMS", ("k_lms",), "lms"),
    SamplerSpec("Heun", ("k_heun",), "heun", second_order=True, extra_params=CHURN_PARAMS),
    SamplerSpec(
        "DPM2",
        ("k_dpm_2",),
        "dpm_2",
        default_scheduler="karras",
        discard_next_to_last_sigma=True,
        second_order=True,
        extra_params=CHURN_PARAMS,
    ),
    SamplerSpec(
        "DPM2 a",
        ("k_dpm_2_a",),
        "dpm_2_ancestral",
        default_scheduler="karras",
        discard_next_to_last_sigma=True,
        uses_ensd=True,
        second_order=True,
        extra_params=_NOISE,
        uses_eta=True,
    ),
    SamplerSpec(
        "DPM fast", ("k_dpm_fast",), "dpm_fast", uses_ensd=True, extra_params=_NOISE, uses_schedule=False, uses_eta=True
    ),
    SamplerSpec("DPM adaptive", ("k_dpm_ad",), "dpm_adaptive", uses_ensd=True, uses_schedule=False, uses_eta=True),
    SamplerSpec("Restart", ("restart",), "restart", default_scheduler="karras", second_order=True),
    SamplerSpec(
        "DDIM",
        ("ddim",),
        "ddim",
        kind=_TS,
        default_eta=0.0,
        eta_infotext_field="Eta DDIM",
        uses_schedule=False,
        uses_eta=True,
    ),
    SamplerSpec(
        "DDIM CFG++",
        ("ddim_cfgpp",),
        "ddim_cfgpp",
        kind=_TS,
        default_eta=0.0,
        eta_infotext_field="Eta DDIM",
        uses_schedule=False,
        needs_uncond_denoised=True,
        cfg_scale_multiplier=1 / 12.5,
        uses_eta=True,
    ),
    SamplerSpec("PLMS", ("plms",), "plms", kind=_TS, default_eta=0.0, uses_schedule=False),
    SamplerSpec("UniPC", ("unipc",), "unipc", kind=_TS, default_eta=0.0, uses_schedule=False),
    SamplerSpec("LCM", ("k_lcm",), "lcm", kind=SamplerKind.LCM),
)

# Pre-1.9 names whose schedule lived in the sampler (the aliases A1111 gave them), e.g. k_dpmpp_2m_ka.
LEGACY_ALIASES: dict[str, tuple[str, str]] = {
    "k_lms_ka": ("LMS", "karras"),
    "k_dpm_2_ka": ("DPM2", "karras"),
    "k_dpm_2_a_ka": ("DPM2 a", "karras"),
    "k_dpmpp_2s_a_ka": ("DPM++ 2S a", "karras"),
    "k_dpmpp_2m_ka": ("DPM++ 2M", "karras"),
    "k_dpmpp_sde_ka": ("DPM++ SDE", "karras"),
    "k_dpmpp_2m_sde_ka": ("DPM++ 2M SDE", "karras"),
}


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def _exact(name: str) -> SamplerSpec | None:
    wanted = name.strip().lower()
    for spec in SAMPLERS:
        if wanted == spec.name.lower() or wanted in (a.lower() for a in spec.aliases):
            return spec
    return None


def _by_name(name: str) -> SamplerSpec:
    spec = _exact(name)
    if spec is None:
        raise KeyError(name)
    return spec


def _split_schedule_suffix(name: str) -> tuple[SamplerSpec, SchedulerSpec] | None:
    """ "DPM++ 2M Karras" -> (DPM++ 2M, Karras): a trailing schedule label, name or alias."""
    lowered = name.strip().lower()
    for scheduler in SCHEDULERS:
        for option in (scheduler.label, scheduler.name, *scheduler.aliases):
            suffix = " " + option.lower()
            if lowered.endswith(suffix):
                spec = _exact(name.strip()[: -len(suffix)])
                if spec is not None:
                    return spec, scheduler
    return None


def find_sampler(name: str | None) -> tuple[SamplerSpec, SchedulerSpec | None]:
    """The sampler for a label/alias/old combined name, and the schedule the name carried (if any)."""
    if name is None or not str(name).strip():
        return SAMPLERS[0], None
    text = str(name)
    spec = _exact(text)
    if spec is not None:
        return spec, None
    legacy = LEGACY_ALIASES.get(text.strip().lower())
    if legacy is not None:
        return _by_name(legacy[0]), next(s for s in SCHEDULERS if s.name == legacy[1])
    split = _split_schedule_suffix(text)
    if split is not None:
        return split
    valid = ", ".join(sampler_names())
    raise UnknownSamplerError(
        f"unknown sampler {name!r}; valid samplers: {valid} "
        "(aliases such as k_euler_a and old names such as 'DPM++ 2M Karras' are accepted too)"
    )
