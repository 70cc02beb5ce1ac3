"""A1111's `modules.processing` for extensions, backed by modules.generation.

`p` objects are our `Processing`; `isinstance(p, StableDiffusionProcessingImg2Img)` is true for
img2img jobs, and calling the classes builds a new `p` through the generation service
(A1111 keyword arguments). `process_images(p)` runs it in the current job.
"""

from __future__ import annotations

from typing import Any

from modules.extension_host.compat_processing import Processed, fix_seed
from modules.extension_host.facade import current
from modules.generation.processing import Processing
from modules.generation.rng import get_fixed_seed

__all__ = [
    "Processed",
    "StableDiffusionProcessing",
    "StableDiffusionProcessingImg2Img",
    "StableDiffusionProcessingTxt2Img",
    "create_infotext",
    "fix_seed",
    "get_fixed_seed",
    "process_images",
]

opt_C = 4
opt_f = 8


class _ProcessingKind(type):
    """isinstance() by job kind; calling the class builds a `p` for that kind."""

    kind: str | None = None

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Processing) and (cls.kind is None or obj.kind == cls.kind)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(f"{cls.__name__}() takes keyword arguments only (A1111 field names)")
        return current().new_processing(cls.kind or "txt2img", dict(kwargs))


class StableDiffusionProcessing(metaclass=_ProcessingKind):
    kind: str | None = None


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    kind = "txt2img"


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    kind = "img2img"


def process_images(p: Processing) -> Processed:
    """Run `p` (hooks of its scripts included) and return A1111's Processed."""
    return current().process_images(p)


def create_infotext(
    p: Processing,
    all_prompts: list[str] | None = None,
    all_seeds: list[int] | None = None,
    all_subseeds: list[int] | None = None,
    comments: Any = None,
    iteration: int = 0,
    position_in_batch: int = 0,
    use_main_prompt: bool = False,
    index: int | None = None,
    all_negative_prompts: list[str] | None = None,
) -> str:
    """The infotext of one image of `p` (model: the loaded one)."""
    host = current()
    model = host.services.models.active
    if model is None:
        raise RuntimeError("create_infotext needs a loaded model")
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    if use_main_prompt:
        index = 0
    return host.services.generation.infotext(p, model, index)
