"""A1111's `modules.prompt_parser` for extensions: prompt syntax (attention, editing, AND).

Parsing is ours (modules.generation.prompt_parser); the results keep A1111's shapes (schedules
are lists of [end_at_step, text], attention a list of [text, weight]). get_learned_conditioning
encodes with the model's A1111 text interface (shared.sd_model.get_learned_conditioning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modules.extension_host.compat_conds import (
    ComposableScheduledPromptConditioning,
    DictWithShape,
    MulticondLearnedConditioning,
    ScheduledPromptConditioning,
)
from modules.generation import prompt_parser as _pp
from modules.generation.prompt_parser import strip_comments

__all__ = [
    "ComposableScheduledPromptConditioning",
    "DictWithShape",
    "MulticondLearnedConditioning",
    "ScheduledPromptConditioning",
    "SdConditioning",
    "get_learned_conditioning",
    "get_learned_conditioning_prompt_schedules",
    "get_multicond_learned_conditioning",
    "get_multicond_prompt_list",
    "parse_prompt_attention",
    "strip_comments",
]


class SdConditioning(list):  # type: ignore[type-arg]
    """A list of prompts with the image size and whether they are negative (A1111)."""

    def __init__(
        self,
        prompts: Sequence[str],
        is_negative_prompt: bool = False,
        width: int | None = None,
        height: int | None = None,
        copy_from: Any = None,
    ):
        super().__init__()
        self.extend(prompts)
        copy_from = copy_from if copy_from is not None else prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


def parse_prompt_attention(text: str) -> list[list[Any]]:
    """[[text, weight], ...] ("BREAK" is ["BREAK", -1])."""
    return [[span.text, span.weight] for span in _pp.parse_prompt_attention(text)]


def get_learned_conditioning_prompt_schedules(
    prompts: Sequence[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[list[Any]]]:
    """For each prompt, [[end_at_step, text], ...] (A1111's prompt editing rules)."""
    schedules = _pp.get_learned_conditioning_prompt_schedules(
        list(prompts), base_steps, hires_steps=hires_steps, use_old_scheduling=use_old_scheduling
    )
    return [[[entry.end_at_step, entry.text] for entry in schedule] for schedule in schedules]


def get_multicond_prompt_list(
    prompts: Sequence[str],
) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """(res_indexes, prompt_flat_list, prompt_indexes) as A1111 returns them."""
    result = _pp.get_multicond_prompt_list(list(prompts))
    indexes = [[(ref.flat_index, ref.weight) for ref in refs] for refs in result.per_prompt]
    return indexes, list(result.flat_prompts), dict(result.index_of)


def get_learned_conditioning(model: Any, prompts: Any, steps: int, hires_steps: int | None = None) -> Any:
    """For each prompt, [ScheduledPromptConditioning(end_at_step, cond), ...]: its prompt-editing
    schedule encoded by `model.get_learned_conditioning` (cond: a [77*k, D] tensor, or SDXL's dict
    of rows), as A1111 returns it."""
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps)
    result = []
    for schedule in schedules:
        texts = SdConditioning([text for _, text in schedule], copy_from=prompts)
        conds = model.get_learned_conditioning(texts)
        rows = []
        for i, (end_at_step, _) in enumerate(schedule):
            cond = {k: v[i] for k, v in conds.items()} if isinstance(conds, dict) else conds[i]
            rows.append(ScheduledPromptConditioning(end_at_step, cond))
        result.append(rows)
    return result


def get_multicond_learned_conditioning(
    model: Any, prompts: Any, steps: int, hires_steps: int | None = None
) -> MulticondLearnedConditioning:
    """AND-composed prompts: per prompt, its parts' schedules with their weights (A1111)."""
    indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, flat, steps, hires_steps)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in refs] for refs in indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)
