"""A1111's `modules.sd_samplers` for extensions: the sampler list and name lookup.

Entries are A1111's SamplerData(name, constructor, aliases, options) built from our registry
(modules.generation.samplers.registry); `constructor(sd_model)` / `create_sampler` build the
A1111 sampler object (`p.sampler`, modules.extension_host.compat_sampler). Entries extensions add
to `all_samplers_map` can be chosen by name (p.sampler_name) for a job.
"""

from __future__ import annotations

from typing import Any

from modules.extension_host.compat_sampler import all_samplers, all_samplers_map, create_sampler, find_sampler_config
from modules.generation.samplers.registry import SAMPLERS, SamplerKind, UnknownSamplerError, find_sampler
from modules.generation.samplers.schedules import UnknownSchedulerError, find_scheduler
from modules.sd_samplers_common import SamplerData

__all__ = [
    "all_samplers",
    "all_samplers_map",
    "create_sampler",
    "find_sampler_config",
    "get_hr_sampler_and_scheduler",
    "get_sampler_and_scheduler",
    "get_sampler_from_infotext",
    "samplers",
    "samplers_for_img2img",
    "samplers_map",
    "visible_sampler_names",
]

samplers: list[SamplerData] = list(all_samplers)
samplers_for_img2img: list[SamplerData] = list(all_samplers)
samplers_map: dict[str, str] = {}
for _data in all_samplers:
    samplers_map[_data.name.lower()] = _data.name
    for _alias in _data.aliases:
        samplers_map[_alias.lower()] = _data.name
del _data, _alias

samplers_k_diffusion_names = [s.name for s in SAMPLERS if s.kind == SamplerKind.KDIFFUSION]


def visible_sampler_names() -> list[str]:
    return [s.name for s in samplers]


def get_sampler_from_infotext(d: dict[str, Any]) -> str:
    return get_sampler_and_scheduler(d.get("Sampler"), d.get("Schedule type"))[0]


def get_sampler_and_scheduler(
    sampler_name: Any, scheduler_name: Any, *, convert_automatic: bool = True
) -> tuple[str, str]:
    """(sampler name, schedule label) with old combined names split ("DPM++ 2M Karras")."""
    try:
        spec, from_name = find_sampler(sampler_name)
    except UnknownSamplerError:
        spec, from_name = SAMPLERS[0], None
    try:
        scheduler = from_name or find_scheduler(scheduler_name)
    except UnknownSchedulerError:
        scheduler = find_scheduler(None)
    label = scheduler.label
    if convert_automatic and scheduler.name == "automatic" and spec.default_scheduler:
        label = find_scheduler(spec.default_scheduler).label
    return spec.name, label


def get_hr_sampler_and_scheduler(d: dict[str, Any]) -> tuple[str, str]:
    hr_sampler = d.get("Hires sampler", "Use same sampler")
    sampler = d.get("Sampler") if hr_sampler == "Use same sampler" else hr_sampler
    hr_scheduler = d.get("Hires schedule type", "Use same scheduler")
    scheduler = d.get("Schedule type") if hr_scheduler == "Use same scheduler" else hr_scheduler
    name, label = get_sampler_and_scheduler(sampler, scheduler)
    return (name if hr_sampler != "Use same sampler" else "Use same sampler"), (
        label if hr_scheduler != "Use same scheduler" else "Use same scheduler"
    )
