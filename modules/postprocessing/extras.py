"""Extras tab / extra-single-image API: resize with up to two blended upscalers, face restoration.

A1111 rules kept (scripts/postprocessing_upscale.py, postprocessing_gfpgan/codeformer.py):
- resize_mode 0 scales by `upscaling_resize` (optionally capped by `max_side_length`); 1 scales by
  max(W/w, H/h) and, with `upscaling_crop`, centres the result on a W×H canvas.
- Upscaler 1 "None" means no resizing at all (upscaler 2 is then ignored too). Upscaler 2 runs
  on the same input and is blended in with `extras_upscaler_2_visibility`.
- Face restoration is blended in by its visibility; info keys and rounding are A1111's.
- `upscale_first` picks the order (A1111 1.6+ ignores the flag and always upscales first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from modules.postprocessing.face_restoration import FaceRestorationUnavailable, FaceRestorers
from modules.postprocessing.upscalers import Upscaler, UpscalerRegistry

InfoValue = str | int | float


class ExtrasParams(BaseModel):
    """The fields of A1111's extras API request (defaults as there)."""

    model_config = ConfigDict(frozen=True)

    resize_mode: Literal[0, 1] = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0.0, ge=0, le=1)
    codeformer_visibility: float = Field(default=0.0, ge=0, le=1)
    codeformer_weight: float = Field(default=0.0, ge=0, le=1)
    upscaling_resize: float = Field(default=2.0, gt=0, le=8)
    upscaling_resize_w: int = Field(default=512, ge=1)
    upscaling_resize_h: int = Field(default=512, ge=1)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(default=0.0, ge=0, le=1)
    upscale_first: bool = False
    max_side_length: int = Field(default=0, ge=0)


@dataclass
class ExtrasResult:
    image: Image.Image
    info: dict[str, InfoValue] = field(default_factory=dict)

    @property
    def infotext(self) -> str:
        """The text A1111 stores in the image's "postprocessing" chunk."""
        return format_infotext(self.info)


def _quote(value: InfoValue) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(ch in text for ch in ",\n:") else text


def format_infotext(info: dict[str, InfoValue]) -> str:
    return ", ".join(k if k == v else f"{k}: {_quote(v)}" for k, v in info.items())


def limit_size_by_one_dimension(w: float, h: float, limit: int) -> tuple[int, int]:
    """Shrink (w, h) so the longer side is at most `limit`, keeping the aspect (A1111's integer maths)."""
    if h > w and h > limit:
        w, h = limit * w // h, limit
    elif w > limit:
        w, h = limit, limit * h // w
    return int(w), int(h)


@dataclass(frozen=True)
class _Resize:
    """What one upscale call does: the factor, and the canvas to crop/pad onto (if any)."""

    scale: float
    canvas: tuple[int, int] | None


def _plan_resize(image: Image.Image, params: ExtrasParams, info: dict[str, InfoValue]) -> _Resize:
    if params.resize_mode == 1:
        w, h = params.upscaling_resize_w, params.upscaling_resize_h
        info["Postprocess upscale to"] = f"{w}x{h}"
        return _Resize(max(w / image.width, h / image.height), (w, h) if params.upscaling_crop else None)
    scale = params.upscaling_resize
    info["Postprocess upscale by"] = scale
    limit = params.max_side_length
    if limit and max(image.size) * scale > limit:
        w, h = limit_size_by_one_dimension(image.width * scale, image.height * scale, limit)
        info["Max side length"] = limit
        return _Resize(max(w / image.width, h / image.height), None)
    return _Resize(scale, None)


def _upscale(image: Image.Image, upscaler: Upscaler, resize: _Resize, info: dict[str, InfoValue]) -> Image.Image:
    result = upscaler.upscale(image, resize.scale)
    if resize.canvas is not None:
        w, h = resize.canvas
        canvas = Image.new("RGB", (w, h))
        canvas.paste(result, box=(w // 2 - result.width // 2, h // 2 - result.height // 2))
        result = canvas
        info["Postprocess crop to"] = f"{w}x{h}"
    return result


def _run_upscale(
    image: Image.Image, params: ExtrasParams, upscalers: UpscalerRegistry, info: dict[str, InfoValue]
) -> Image.Image:
    if params.upscaler_1 == "None":
        return image
    first = upscalers.get(params.upscaler_1)
    second = upscalers.get(params.upscaler_2) if params.upscaler_2 != "None" else None
    resize = _plan_resize(image, params, info)
    result = _upscale(image, first, resize, info)
    info["Postprocess upscaler"] = first.name
    if second is not None and params.extras_upscaler_2_visibility > 0:
        other = _upscale(image, second, resize, info).convert(result.mode)
        result = Image.blend(result, other, params.extras_upscaler_2_visibility)
        info["Postprocess upscaler 2"] = second.name
    return result


def _run_faces(
    image: Image.Image, params: ExtrasParams, faces: FaceRestorers | None, info: dict[str, InfoValue]
) -> Image.Image:
    steps = (("GFPGAN", params.gfpgan_visibility), ("CodeFormer", params.codeformer_visibility))
    for family, visibility in steps:
        if visibility == 0 or faces is None:
            continue
        restored = faces.get(family).restore(image)
        image = Image.blend(image, restored, visibility) if visibility < 1 else restored
        info[f"{family} visibility"] = round(visibility, 3)
        if family == "CodeFormer":
            info["CodeFormer weight"] = round(params.codeformer_weight, 3)
    return image


def _check_faces(params: ExtrasParams, faces: FaceRestorers | None) -> None:
    for family, visibility in (("GFPGAN", params.gfpgan_visibility), ("CodeFormer", params.codeformer_visibility)):
        if visibility > 0 and faces is None:
            raise FaceRestorationUnavailable(
                f"{family} face restoration is not available: no face restorers configured"
            )
        if visibility > 0 and faces is not None:
            faces.get(family)


def run_extras(
    image: Image.Image, params: ExtrasParams, upscalers: UpscalerRegistry, faces: FaceRestorers | None = None
) -> ExtrasResult:
    """Process one image as A1111's Extras tab does; `info` holds the postprocessing infotext keys."""
    # Fail on unknown upscalers or missing face restorers before spending time on the other step.
    for name in (params.upscaler_1, params.upscaler_2):
        if name != "None":
            upscalers.get(name)
    _check_faces(params, faces)
    info: dict[str, InfoValue] = {}
    result = image.convert("RGB")
    if params.upscale_first:
        result = _run_faces(_run_upscale(result, params, upscalers, info), params, faces, info)
    else:
        result = _run_upscale(_run_faces(result, params, faces, info), params, upscalers, info)
    return ExtrasResult(result, info)
