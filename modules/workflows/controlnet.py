"""ControlNet checks both adapters run before a job is queued: unit fields, model names,
preprocessors, and the access policy's image limits on control images and preprocessor sizes."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from modules.access.limits import check_image_size
from modules.access.policy import AccessPolicy
from modules.controlnet.preprocessors import find
from modules.controlnet.service import ControlNetService
from modules.controlnet.units import ControlNetUnit, looks_like_unit, unit_from
from modules.generation.requests import GenerationRequest

SCRIPT_TITLE = "controlnet"


def request_units(req: GenerationRequest) -> list[ControlNetUnit]:
    """The units of an API request's `alwayson_scripts` ControlNet entry (any key case)."""
    for title, value in req.alwayson_scripts.items():
        if title.lower() == SCRIPT_TITLE:
            return [unit_from(v) for v in value.args if looks_like_unit(v)]
    return []


def check_control_image(access: AccessPolicy, image: Image.Image, resolution: int, what: str) -> None:
    limits = access.limits
    check_image_size(image.width, image.height, 1, limits, what)
    if resolution > 0:
        scale = resolution / max(1, min(image.size))
        check_image_size(round(image.width * scale), round(image.height * scale), 1, limits, f"{what} (preprocessed)")


def check_units(access: AccessPolicy, controlnet: ControlNetService, units: Sequence[ControlNetUnit]) -> None:
    """Unknown model (ModelNotFound) or preprocessor, images over the limits: refused before queueing."""
    for index, unit in enumerate(units):
        if not unit.active:
            continue
        controlnet.library.find(unit.model)
        find(unit.module)
        if unit.image is not None:
            check_control_image(access, unit.image, unit.processor_res, f"ControlNet unit {index} image")


def check_controlnet_request(access: AccessPolicy, controlnet: ControlNetService, req: GenerationRequest) -> None:
    check_units(access, controlnet, request_units(req))


def detect_images(
    access: AccessPolicy,
    controlnet: ControlNetService,
    module: str,
    images: Sequence[Image.Image],
    resolution: int,
    threshold_a: float | None,
    threshold_b: float | None,
) -> list[Image.Image]:
    """/controlnet/detect and the UI preview: limits first, then the preprocessor on each image."""
    find(module)
    for image in images:
        check_control_image(access, image, resolution, "ControlNet detect image")
    return [
        controlnet.detect(module, image, resolution=resolution, threshold_a=threshold_a, threshold_b=threshold_b)
        for image in images
    ]
