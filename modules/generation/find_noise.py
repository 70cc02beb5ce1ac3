"""The noise that turns back into a given image ("img2img alternative test", A1111's
scripts/img2imgalt.py): run the sampler's ODE backwards with Euler steps, from the image's latent
at the lowest sigma up to the highest, under a "decode" prompt. Sampling forward from that noise
with the same prompt gives the image again; changing the prompt edits it while keeping the layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from modules.core.jobs import JobControl
from modules.generation import samplers
from modules.generation.passes import PassSpec, denoiser_for
from modules.generation.processing import Processing
from modules.models.manager import LoadedModel


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    prompt: str
    negative_prompt: str
    cfg_scale: float
    steps: int
    randomness: float = 0.0
    sigma_adjustment: bool = False


def reverse_noise(
    model: LoadedModel, p: Processing, spec: PassSpec, control: JobControl, decode: DecodeSettings
) -> torch.Tensor:
    """Unit-variance noise whose forward sampling under `decode.prompt` gives spec.init_latent."""
    assert spec.init_latent is not None
    x = spec.init_latent.clone()
    count = x.shape[0]
    euler = samplers.resolve_sampler("Euler").sampler
    decode_spec = dataclasses.replace(
        spec,
        steps=decode.steps,
        prompts=[decode.prompt] * count,
        negative_prompts=[decode.negative_prompt] * count,
        mask=None,
        hires_steps=None,
    )
    denoiser = denoiser_for(model, p, decode_spec, euler, control)
    denoiser = dataclasses.replace(denoiser, cfg_scale=decode.cfg_scale)
    model_sigmas = samplers.model_sigmas_for(model.alphas_cumprod, euler)
    sigmas = model_sigmas.get_sigmas(decode.steps).flip(0)  # 0, then ascending to sigma_max
    ones = x.new_ones([count])
    control.set_step(0, len(sigmas) - 1)
    with torch.no_grad():
        for i in range(1, len(sigmas)):
            # sigma adjustment: evaluate at the sigma we come from (the first step at the next one)
            at = sigmas[i] if not decode.sigma_adjustment or i == 1 else sigmas[i - 1]
            denoised = denoiser(x, at * ones)
            scale = sigmas[i] if not decode.sigma_adjustment else (2 * sigmas[i] if i == 1 else sigmas[i - 1])
            x = x + (x - denoised) / scale * (sigmas[i] - sigmas[i - 1])
            control.set_step(i, len(sigmas) - 1)
    return x / (x.std() if not decode.sigma_adjustment else sigmas[-1])


def noise_finder(decode: DecodeSettings) -> Callable[..., torch.Tensor]:
    """What a script puts in `p.find_noise`: the found noise mixed with the seed's by `randomness`,
    as the start noise of img2img (start latent = init + noise * sigma gives found * sigma_max)."""

    def find(
        model: LoadedModel,
        p: Processing,
        spec: PassSpec,
        control: JobControl,
        seed_noise: torch.Tensor,
        first_sigma: float,
    ) -> torch.Tensor:
        assert spec.init_latent is not None
        found = reverse_noise(model, p, spec, control, decode)
        r = decode.randomness
        mixed = ((1 - r) * found + r * seed_noise) / ((r**2 + (1 - r) ** 2) ** 0.5)
        return mixed - spec.init_latent / first_sigma

    return find
