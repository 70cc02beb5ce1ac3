"""A1111's `modules.processing` for extensions, backed by modules.generation.

`p` objects are our `Processing`; `isinstance(p, StableDiffusionProcessingImg2Img)` is true for
img2img jobs, and calling the classes builds a new `p` through the generation service
(A1111 keyword arguments). `process_images(p)` runs it in the current job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from modules.extension_host.compat_processing import Processed, fix_seed
from modules.extension_host.facade import current
from modules.generation.processing import Processing
from modules.generation.rng import ImageRNG, get_fixed_seed

__all__ = [
    "Processed",
    "StableDiffusionProcessing",
    "StableDiffusionProcessingImg2Img",
    "StableDiffusionProcessingTxt2Img",
    "create_binary_mask",
    "create_infotext",
    "create_random_tensors",
    "fix_seed",
    "get_fixed_seed",
    "process_images",
    "process_images_inner",
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


def process_images_inner(p: Processing) -> Processed:
    """A1111 splits process_images (settings overrides) from this inner loop; here one call does
    both, so this is process_images. Replacing this name does not change what process_images runs."""
    return process_images(p)


def create_binary_mask(image: Image.Image, round: bool = True) -> Image.Image:
    """An L-mode mask: the alpha channel of a transparent RGBA image, else its grey levels;
    `round` thresholds at 128 (A1111)."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        image = image.split()[-1].convert("L")
        return image.point(lambda x: 255 if x > 128 else 0) if round else image
    return image.convert("L")


def create_random_tensors(
    shape: Sequence[int],
    seeds: Sequence[int],
    subseeds: Sequence[int] | None = None,
    subseed_strength: float = 0.0,
    seed_resize_from_h: int = 0,
    seed_resize_from_w: int = 0,
    p: Any = None,
) -> torch.Tensor:
    """Initial noise for a batch, one image per seed, with variation seeds (our ImageRNG, the
    app's noise source setting)."""
    host = current()
    source = str(host.services.options.get("randn_source"))
    rng = ImageRNG(
        shape,
        seeds,
        subseeds=subseeds,
        subseed_strength=subseed_strength,
        seed_resize_from_h=seed_resize_from_h,
        seed_resize_from_w=seed_resize_from_w,
        source=source,
        device=host.services.policy.rng_device,
    )
    return rng.first().to(host.services.policy.device)
