"""A1111-compatible HTTP API (/sdapi/v1/...). Field names and shapes follow shared/reference/http-api.md.

Generation goes through the job queue like the UI; errors become A1111's JSON error shape.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from modules.core.jobs import JobNotFound
from modules.core.options import OptionError
from modules.core.services import Services
from modules.generation import samplers
from modules.generation.image_io import ImageDecodeError, decode_image_base64, encode_image_base64, read_info_from_image
from modules.generation.infotext import parse_generation_parameters
from modules.generation.latents import LATENT_UPSCALE_MODES
from modules.generation.masking import MaskError
from modules.generation.processing import GenerationResult
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.models.errors import ModelError


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail, "body": "", "errors": detail})


def _images_payload(result: GenerationResult, send: bool) -> list[str]:
    if not send:
        return []
    return [encode_image_base64(img, "png", text) for img, text in zip(result.images, result.infotexts, strict=True)]


def _user(request: Request) -> str | None:
    return getattr(request.state, "user", None)


def register_api(app: FastAPI, services: Services) -> None:
    router = APIRouter(prefix="/sdapi/v1")
    gen = services.generation

    @app.exception_handler(samplers.UnknownSamplerError)
    async def _bad_sampler(_: Request, exc: Exception) -> JSONResponse:
        return _error(400, type(exc).__name__, str(exc))

    for exc_type in (samplers.UnknownSchedulerError, ImageDecodeError, MaskError, OptionError, ValueError):
        app.add_exception_handler(exc_type, _bad_sampler)  # type: ignore[arg-type]

    @app.exception_handler(ModelError)
    async def _model_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(400, type(exc).__name__, str(exc))

    @router.post("/txt2img")
    def txt2img(req: Txt2ImgRequest, request: Request) -> dict[str, Any]:
        if not req.save_images:
            req = req.model_copy(update={"do_not_save_samples": True, "do_not_save_grid": True})
        user = _user(request)
        job = services.jobs.submit(
            "txt2img", lambda c: gen.txt2img(req, c, user=user), owner=user, task_id=req.force_task_id
        )
        result: GenerationResult = job.wait()
        return {
            "images": _images_payload(result, req.send_images),
            "parameters": req.model_dump(),
            "info": result.info_json(),
        }

    @router.post("/img2img")
    def img2img(req: Img2ImgRequest, request: Request) -> dict[str, Any]:
        if not req.init_images:
            raise HTTPException(404, "Init image not found")
        images = [decode_image_base64(str(item)) for item in req.init_images]
        mask = decode_image_base64(str(req.mask)) if req.mask else None
        if not req.save_images:
            req = req.model_copy(update={"do_not_save_samples": True, "do_not_save_grid": True})
        user = _user(request)
        job = services.jobs.submit(
            "img2img",
            lambda c: gen.img2img(req, c, user=user, init_images=images, mask=mask),
            owner=user,
            task_id=req.force_task_id,
        )
        result: GenerationResult = job.wait()
        params = req.model_dump()
        if not req.include_init_images:
            params["init_images"] = None
            params["mask"] = None
        return {"images": _images_payload(result, req.send_images), "parameters": params, "info": result.info_json()}

    @router.post("/png-info")
    def png_info(body: dict[str, Any]) -> dict[str, Any]:
        data = body.get("image")
        if not data:
            raise HTTPException(404, "Image not found")
        image = decode_image_base64(str(data))
        info = read_info_from_image(image)
        text = info.parameters or ""
        return {"info": text, "items": info.items, "parameters": parse_generation_parameters(text) if text else {}}

    @router.get("/progress")
    def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
        job = services.jobs.current()
        user = _user(request)
        if job is None or (user is not None and job.owner not in (None, user)):
            return {
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": _idle_state(),
                "current_image": None,
                "textinfo": None,
            }
        c = job.control
        image = None
        if not skip_current_image and c.preview is not None:
            buf = io.BytesIO()
            c.preview.save(buf, format="PNG")
            image = base64.b64encode(buf.getvalue()).decode()
        state = {
            "skipped": c.skipped.is_set(),
            "interrupted": c.interrupted.is_set(),
            "stopping_generation": c.stopping_after_current.is_set(),
            "job": job.id,
            "job_count": c.job_count,
            "job_timestamp": "",
            "job_no": c.job_no,
            "sampling_step": c.sampling_step,
            "sampling_steps": c.sampling_steps,
        }
        return {
            "progress": c.progress(),
            "eta_relative": c.eta() or 0.0,
            "state": state,
            "current_image": image,
            "textinfo": c.textinfo or None,
        }

    @router.post("/interrupt")
    def interrupt(request: Request) -> dict[str, Any]:
        services.jobs.interrupt(user=_user(request))
        return {}

    @router.post("/skip")
    def skip(request: Request) -> None:
        services.jobs.skip(user=_user(request))

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        return services.options.as_dict()

    @router.post("/options")
    def set_options(body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "sd_model_checkpoint":
                services.models.find_checkpoint(str(value))  # unknown checkpoint -> clear error
            services.options.set(key, value, from_api=True)
        services.options.save()

    @router.get("/cmd-flags")
    def cmd_flags() -> dict[str, Any]:
        return vars(services.args)

    @router.get("/samplers")
    def list_samplers() -> list[dict[str, Any]]:
        return [{"name": s.name, "aliases": list(s.aliases), "options": dict(s.options)} for s in samplers.SAMPLERS]

    @router.get("/schedulers")
    def list_schedulers() -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "label": s.label,
                "aliases": list(s.aliases) or None,
                "default_rho": s.default_rho,
                "need_inner_model": s.need_inner_model,
            }
            for s in samplers.SCHEDULERS
        ]

    @router.get("/latent-upscale-modes")
    def latent_modes() -> list[dict[str, str]]:
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        return [
            {
                "title": c.title,
                "model_name": c.model_name,
                "hash": c.shorthash,
                "sha256": c.sha256,
                "filename": str(c.filename),
                "config": None,
            }
            for c in services.models.list_checkpoints()
        ]

    @router.get("/sd-vae")
    def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": v.name, "filename": str(v.filename)} for v in services.models.list_vaes()]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        services.models.refresh()

    @router.post("/refresh-vae")
    def refresh_vae() -> None:
        services.models.refresh()

    @router.post("/unload-checkpoint")
    def unload() -> dict[str, Any]:
        services.models.unload()
        return {}

    @router.post("/reload-checkpoint")
    def reload() -> dict[str, Any]:
        services.models.reload()
        return {}

    @router.get("/prompt-styles")
    def prompt_styles() -> list[dict[str, Any]]:
        return [
            {"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
            for s in gen.styles.styles.values()
        ]

    @app.get("/internal/pending-tasks")
    def pending(request: Request) -> dict[str, Any]:
        tasks = [j.id for j in services.jobs.pending(user=_user(request))]
        return {"size": len(tasks), "tasks": tasks}

    @app.post("/internal/progress")
    def internal_progress(body: dict[str, Any], request: Request) -> dict[str, Any]:
        try:
            job = services.jobs.get(str(body.get("id_task")), user=_user(request))
        except JobNotFound:
            return {
                "active": False,
                "queued": False,
                "completed": False,
                "progress": None,
                "eta": None,
                "live_preview": None,
                "id_live_preview": -1,
                "textinfo": "Waiting...",
            }
        position = services.jobs.position(job)
        c = job.control
        return {
            "active": job.status == "running",
            "queued": job.status == "queued",
            "completed": job.done_event.is_set(),
            "progress": c.progress(),
            "eta": c.eta(),
            "live_preview": None,
            "id_live_preview": c.preview_id,
            "textinfo": f"In queue: {position}" if position else c.textinfo,
        }

    app.include_router(router)


def _idle_state() -> dict[str, Any]:
    return {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": "",
        "job_count": 0,
        "job_timestamp": "",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
