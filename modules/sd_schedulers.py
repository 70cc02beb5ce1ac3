"""A1111's `modules.sd_schedulers` for extensions: the schedule types (Karras, Exponential...)."""

from __future__ import annotations

from collections import namedtuple

from modules.generation.samplers.schedules import SCHEDULERS

__all__ = ["Scheduler", "schedulers", "schedulers_map"]

Scheduler = namedtuple(
    "Scheduler", ["name", "label", "function", "default_rho", "need_inner_model", "aliases"], defaults=(-1, False, None)
)

# `function` is None: the sigmas are computed inside our sampling pipeline for the chosen name.
schedulers = [
    Scheduler(s.name, s.label, None, s.default_rho, s.need_inner_model, list(s.aliases) or None) for s in SCHEDULERS
]
schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
