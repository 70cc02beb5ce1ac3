"""sd-webui-controlnet's HTTP routes (/controlnet/...), answered by the built-in ControlNet.

Shapes follow the extension's api.py so its clients (webuiapi and others) work unchanged:
version, model_list, module_list (with module_detail), control_types, settings, detect.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from modules.api.context import ApiContext
from modules.controlnet.preprocessors import ALIASES, CONTROL_TYPES, PREPROCESSORS, Slider
from modules.controlnet.service import VERSION
from modules.controlnet.units import UnitError, decode_image
from modules.generation.image_io import encode_image_base64
from modules.workflows.controlnet import detect_images


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    controlnet_module: str = "none"
    controlnet_input_images: list[Any] = Field(default_factory=list)
    controlnet_images: list[Any] = Field(default_factory=list)  # webuiapi's older name
    controlnet_processor_res: int = Field(512, ge=0, le=4096)
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1


def _slider(slider: Slider | None) -> dict[str, Any] | None:
    if slider is None:
        return None
    return {
        "name": slider.label,
        "value": slider.value,
        "min": slider.minimum,
        "max": slider.maximum,
        "step": slider.step,
    }


def _module_detail() -> dict[str, Any]:
    detail = {}
    for name, pre in PREPROCESSORS.items():
        sliders = [{"name": "Preprocessor Resolution", "value": 512, "min": 64, "max": 2048}] if name != "none" else []
        sliders += [s for s in (_slider(pre.threshold_a), _slider(pre.threshold_b)) if s is not None]
        detail[name] = {"model_free": False, "sliders": sliders, "annotator": pre.annotator}
    return detail


def _control_types(models: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in CONTROL_TYPES:
        modules = [n for n, p in PREPROCESSORS.items() if kind == "All" or p.control_type == kind]
        words = [w for w in kind.lower().replace("/", " ").split() if w not in ("t2i-adapter",)]
        fitting = [m for m in models if kind == "All" or any(w in m.lower() for w in words)]
        out[kind] = {
            "module_list": modules if kind == "All" else ["none", *modules],
            "model_list": ["None", *fitting],
            "default_option": modules[0] if modules and kind != "All" else "none",
            "default_model": fitting[0] if fitting and kind != "All" else "None",
        }
    return out


def add_controlnet_routes(app: FastAPI, ctx: ApiContext) -> None:
    router = APIRouter(prefix="/controlnet", tags=["controlnet"])
    controlnet = ctx.services.controlnet

    @router.get("/version")
    async def version() -> dict[str, Any]:
        return {"version": VERSION}

    @router.get("/model_list")
    async def model_list(update: bool = True) -> dict[str, Any]:
        if update:
            await run_in_threadpool(controlnet.library.refresh)
        return {"model_list": controlnet.model_titles()}

    @router.get("/module_list")
    async def module_list(alias_names: bool = False) -> dict[str, Any]:
        names = list(PREPROCESSORS)
        if alias_names:
            short = {v: k for k, v in ALIASES.items() if k != "None"}
            names = [short.get(n, n) for n in names]
        return {"module_list": names, "module_detail": _module_detail()}

    @router.get("/control_types")
    async def control_types() -> dict[str, Any]:
        return {"control_types": _control_types(controlnet.model_titles())}

    @router.get("/settings")
    async def settings() -> dict[str, Any]:
        count = controlnet.unit_count()
        return {"control_net_unit_count": count, "control_net_max_models_num": count}

    @router.post("/detect")
    async def detect(req: DetectRequest) -> dict[str, Any]:
        raw = req.controlnet_input_images or req.controlnet_images
        if not raw:
            raise UnitError("controlnet_input_images is empty: send at least one base64 image")
        images = [image for image, _ in (decode_image(item) for item in raw) if image is not None]
        results = await run_in_threadpool(
            detect_images,
            ctx.access,
            controlnet,
            req.controlnet_module,
            images,
            req.controlnet_processor_res,
            req.controlnet_threshold_a,
            req.controlnet_threshold_b,
        )
        return {"images": [encode_image_base64(image) for image in results], "info": "Success"}

    app.include_router(router)
