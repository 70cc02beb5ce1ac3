"""What every txt2img/img2img request passes before it is queued, from the API or the UI."""

from __future__ import annotations

from modules.access.policy import AccessPolicy
from modules.core.options import Options
from modules.generation import samplers
from modules.generation.requests import GenerationRequest


def check_generation_request(access: AccessPolicy, options: Options, req: GenerationRequest) -> None:
    """Limits and folder rules (the access policy), then sampler and settings names: a mistake
    costs the queue nothing and reads the same from the Generate button and from HTTP."""
    access.check_generation(req)
    samplers.resolve_sampler(req.effective_sampler_name, req.scheduler)
    options.view(req.override_settings)  # unknown keys / bad values
