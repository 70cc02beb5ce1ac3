"""A1111's conditioning structures for extensions: `p.c`, `p.uc`, `p.setup_conds()`, `p.get_conds()`.

`p.c` is a MulticondLearnedConditioning (per image, its AND parts with their weights, each a
prompt-editing schedule of ScheduledPromptConditioning(end_at_step, cond)), `p.uc` a list of
schedules, one per image. `cond` is the prompt's [tokens, width] tensor, or for SDXL a
DictWithShape {"crossattn": ..., "vector": pooled}. They are views of what the pipeline samples with
(set when sampling starts); replacing them does not change sampling (use on_cfg_denoiser).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import torch

from modules.generation.conditioning import (
    Conditioning,
    PromptConditioning,
    ScheduledConditioning,
    build_prompt_conditioning,
)
from modules.generation.passes import conditioner_for
from modules.generation.samplers import UnknownSamplerError, find_sampler

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules: list[Any], weight: float = 1.0):
        self.schedules = schedules
        self.weight = weight


class MulticondLearnedConditioning:
    def __init__(self, shape: tuple[int, ...], batch: list[list[ComposableScheduledPromptConditioning]]):
        self.shape = shape
        self.batch = batch


class DictWithShape(dict):  # type: ignore[type-arg]
    def __init__(self, x: dict[str, Any], shape: Any = None):
        super().__init__()
        self.update(x)

    @property
    def shape(self) -> Any:
        return self["crossattn"].shape


def _cond(c: Conditioning) -> Any:
    context = c.context[0]
    return context if c.pooled is None else DictWithShape({"crossattn": context, "vector": c.pooled[0]})


def _schedule(s: ScheduledConditioning) -> list[ScheduledPromptConditioning]:
    return [ScheduledPromptConditioning(end, _cond(c)) for end, c in zip(s.end_at_steps, s.conds, strict=True)]


def a1111_conds(conditioning: PromptConditioning) -> tuple[MulticondLearnedConditioning, list[list[Any]]]:
    """(p.c, p.uc) for a pass's conditioning."""
    per_image = conditioning.positive.per_image
    batch = [
        [ComposableScheduledPromptConditioning(_schedule(w.schedule), w.weight) for w in parts] for parts in per_image
    ]
    return MulticondLearnedConditioning((len(per_image),), batch), [_schedule(s) for s in conditioning.negative]


def setup_conds(p: Any) -> None:
    """A1111's p.setup_conds(): encode this batch's prompts on the loaded model into p.c / p.uc."""
    model = getattr(getattr(p, "sd_model", None), "loaded_model", None)
    if model is None:
        raise RuntimeError("p.setup_conds() needs a loaded model")
    try:
        spec, _ = find_sampler(p.sampler_name)
    except UnknownSamplerError:  # an extension's sampler name: its object knows ours
        spec = p.sampler.spec
    prompts = list(p.prompts) or [p.prompt] * p.batch_size
    negatives = list(p.negative_prompts) or [p.negative_prompt] * len(prompts)
    with torch.no_grad():
        conditioning = build_prompt_conditioning(
            conditioner_for(model, p),
            prompts,
            negatives,
            steps=spec.total_steps(p.steps),
            hires_steps=None,
            use_old_scheduling=bool(p.opts["use_old_scheduling"]),
        )
    p.c, p.uc = a1111_conds(conditioning)


def get_conds(p: Any) -> tuple[Any, Any]:
    """A1111's p.get_conds(): (p.c, p.uc), made by setup_conds when sampling has not yet made them."""
    if getattr(p, "c", None) is None:
        setup_conds(p)
    return p.c, p.uc
