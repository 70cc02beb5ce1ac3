"""Preview images during training, rendered by the generation service (A1111's "create image every").

With "Read parameters from txt2img" the preview uses the txt2img fields given in the request;
otherwise the first prompt of the latest batch, 20 steps, the training size (A1111). Previews are
not saved to the outputs folder; training saves them itself into <log dir>/images.
A hypernetwork being trained is hooked into the UNet for the whole run, so previews show it;
an embedding is found by name once the engine reads embeddings from the embeddings folder, which
training keeps up to date before each preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from modules.core.jobs import JobControl
from modules.generation import samplers
from modules.generation.requests import Txt2ImgRequest
from modules.train.errors import TrainingError
from modules.train.requests import TrainRequest

if TYPE_CHECKING:
    from modules.generation.engine import GenerationService

DEFAULT_PREVIEW_STEPS = 20  # A1111, when not reading the txt2img settings


@dataclass
class PreviewImage:
    image: Image.Image
    infotext: str | None = None


class PreviewRenderer(Protocol):
    def __call__(self, request: Txt2ImgRequest, control: JobControl) -> PreviewImage | None: ...


@dataclass(frozen=True)
class GenerationPreview:
    """Renders previews with the generation service, inside the training job."""

    service: GenerationService

    def __call__(self, request: Txt2ImgRequest, control: JobControl) -> PreviewImage | None:
        result = self.service.txt2img(request, control)
        if not result.images:
            return None
        first = result.index_of_first_image
        return PreviewImage(result.images[first], result.infotexts[first] if result.infotexts else None)


def check_preview_settings(req: TrainRequest) -> None:
    """Unknown sampler or schedule names fail before training starts, not at the first preview."""
    if req.create_image_every <= 0 or not req.preview_from_txt2img:
        return
    try:
        samplers.resolve_sampler(req.preview_sampler_name, req.preview_scheduler)
    except ValueError as exc:
        raise TrainingError(f"preview settings: {exc}") from None


def preview_request(
    req: TrainRequest, *, last_prompt: str, checkpoint: str, disable_extra_networks: bool
) -> Txt2ImgRequest:
    common = {
        "do_not_save_samples": True,
        "do_not_save_grid": True,
        "override_settings": {"sd_model_checkpoint": checkpoint},
        "disable_extra_networks": disable_extra_networks,
    }
    if req.preview_from_txt2img:
        return Txt2ImgRequest(
            prompt=req.preview_prompt,
            negative_prompt=req.preview_negative_prompt,
            steps=req.preview_steps,
            sampler_name=req.preview_sampler_name,
            scheduler=req.preview_scheduler,
            cfg_scale=req.preview_cfg_scale,
            seed=req.preview_seed,
            width=req.preview_width,
            height=req.preview_height,
            **common,
        )
    return Txt2ImgRequest(
        prompt=last_prompt,
        steps=DEFAULT_PREVIEW_STEPS,
        sampler_name="Euler a",
        width=req.training_width,
        height=req.training_height,
        **common,
    )
