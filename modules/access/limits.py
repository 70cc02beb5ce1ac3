"""Limits for a shared instance: image size, steps, queue length, request size, login throttling.

They are settings (declared here, registered by the composition root) so an admin can change them
in the Settings tab or config.json; none can be changed through the API (`restrict_api`), so a
client cannot lift its own limits. Checks raise `LimitExceeded` (HTTP 400) naming the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modules.core.jobs import Fairness, QueuePolicy
from modules.core.options import OptionInfo
from modules.generation.hires_size import HiresSize, checked_hires_size
from modules.generation.requests import GenerationRequest, Txt2ImgRequest

SHARING = ("sharing", "Shared instance")

API_OPTIONS: tuple[OptionInfo, ...] = (
    OptionInfo(
        "api_max_pixels_per_image",
        2048 * 2048,
        "Largest image (width x height, also after hires fix / upscaling) a request may ask for",
        SHARING,
        "number",
        minimum=64 * 64,
        restrict_api=True,
    ),
    OptionInfo(
        "api_max_pixels_per_batch",
        4 * 2048 * 2048,
        "Largest batch (width x height x batch size) a request may ask for",
        SHARING,
        "number",
        minimum=64 * 64,
        restrict_api=True,
    ),
    OptionInfo("api_max_steps", 150, "Most sampling steps per pass", SHARING, "number", minimum=1, restrict_api=True),
    OptionInfo(
        "api_max_batch_count", 100, "Most batches (n_iter) per request", SHARING, "number", minimum=1, restrict_api=True
    ),
    OptionInfo(
        "api_max_queued_per_user",
        10,
        "Most jobs one user (without logins: one client address) may have waiting; 0 = no limit",
        SHARING,
        "number",
        minimum=0,
        restrict_api=True,
    ),
    OptionInfo(
        "api_queue_fairness",
        Fairness.FIFO.value,
        "Queue order: fifo (submission order) or round-robin (users take turns)",
        SHARING,
        "radio",
        tuple(f.value for f in Fairness),
        restrict_api=True,
    ),
    OptionInfo(
        "api_max_prompt_length",
        20_000,
        "Longest prompt (and negative / hires prompt) in characters a request may send",
        SHARING,
        "number",
        minimum=100,
        restrict_api=True,
    ),
    OptionInfo(
        "api_max_request_body_mb",
        32.0,
        "Largest request body in MB (base64 images included)",
        SHARING,
        "number",
        minimum=0.001,
        restrict_api=True,
    ),
    OptionInfo(
        "api_login_max_failures",
        5,
        "Failed logins from one address before it must wait",
        SHARING,
        "number",
        minimum=1,
        restrict_api=True,
    ),
    OptionInfo(
        "api_login_lockout_seconds",
        60.0,
        "How long an address must wait after too many failed logins",
        SHARING,
        "number",
        minimum=0.0,
        restrict_api=True,
    ),
)


class LimitExceeded(ValueError):
    """A request beyond a configured limit; the message names the setting."""


@dataclass(frozen=True)
class RequestLimits:
    max_pixels_per_image: int
    max_pixels_per_batch: int
    max_steps: int
    max_batch_count: int
    max_body_bytes: int
    max_prompt_length: int = 20_000

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RequestLimits:
        return cls(
            max_pixels_per_image=int(settings["api_max_pixels_per_image"]),
            max_pixels_per_batch=int(settings["api_max_pixels_per_batch"]),
            max_steps=int(settings["api_max_steps"]),
            max_batch_count=int(settings["api_max_batch_count"]),
            max_body_bytes=int(float(settings["api_max_request_body_mb"]) * 1024 * 1024),
            max_prompt_length=int(settings["api_max_prompt_length"]),
        )


def queue_policy(settings: Mapping[str, Any]) -> QueuePolicy:
    """The job queue's policy from the current settings."""
    return QueuePolicy(
        fairness=Fairness(str(settings["api_queue_fairness"])),
        max_queued_per_user=int(settings["api_max_queued_per_user"]),
    )


def check_image_size(width: int, height: int, batch_size: int, limits: RequestLimits, what: str = "image") -> None:
    pixels = width * height
    if pixels > limits.max_pixels_per_image:
        raise LimitExceeded(
            f"{what} of {width}x{height} = {pixels} pixels is over the limit of "
            f"{limits.max_pixels_per_image} pixels (setting api_max_pixels_per_image)"
        )
    if pixels * batch_size > limits.max_pixels_per_batch:
        raise LimitExceeded(
            f"batch of {batch_size} x {width}x{height} = {pixels * batch_size} pixels is over the limit of "
            f"{limits.max_pixels_per_batch} pixels (setting api_max_pixels_per_batch)"
        )


def _check_steps(steps: int, limits: RequestLimits, field: str) -> None:
    if steps > limits.max_steps:
        raise LimitExceeded(f"{field}={steps} is over the limit of {limits.max_steps} (setting api_max_steps)")


def hires_size_of(req: Txt2ImgRequest) -> HiresSize:
    """The sizes hires fix will work at for this request (the function txt2img uses)."""
    return checked_hires_size(req.width, req.height, req.hr_scale, req.hr_resize_x, req.hr_resize_y)


PROMPT_FIELDS = ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt")


def check_prompts(req: GenerationRequest, limits: RequestLimits) -> None:
    """A very long prompt holds the only worker for a minute (tokenizing, parsing): refuse it."""
    for name in PROMPT_FIELDS:
        text = getattr(req, name, None)
        if isinstance(text, str) and len(text) > limits.max_prompt_length:
            raise LimitExceeded(
                f"{name} has {len(text)} characters, over the limit of {limits.max_prompt_length} "
                "(setting api_max_prompt_length)"
            )


def check_generation(req: GenerationRequest, limits: RequestLimits) -> None:
    """Refuse a txt2img/img2img request beyond the limits, before it is queued."""
    check_prompts(req, limits)
    check_image_size(req.width, req.height, req.batch_size, limits)
    _check_steps(req.steps, limits, "steps")
    if req.n_iter > limits.max_batch_count:
        raise LimitExceeded(
            f"n_iter={req.n_iter} is over the limit of {limits.max_batch_count} (setting api_max_batch_count)"
        )
    if isinstance(req, Txt2ImgRequest) and req.enable_hr:
        size = hires_size_of(req)
        check_image_size(size.final_w, size.final_h, req.batch_size, limits, "hires fix image")
        if size.crops:  # the upscale covers the box before it is cropped: bigger than the result
            check_image_size(size.upscale_w, size.upscale_h, req.batch_size, limits, "hires fix upscale before crop")
        _check_steps(req.hr_second_pass_steps, limits, "hr_second_pass_steps")


def check_upscale(width: int, height: int, scale: float, target: tuple[int, int] | None, limits: RequestLimits) -> None:
    """Refuse an extras upscale whose result would be beyond the per-image limit."""
    if target is not None:
        out_w, out_h = target
    else:
        out_w, out_h = int(width * scale), int(height * scale)
    check_image_size(out_w, out_h, 1, limits, "upscaled image")
