"""txt2img, img2img, extras and png-info routes (A1111 shapes; http-api.md §3-§6).

Requests are checked (limits, settings, images) before they are queued, so mistakes cost the
queue nothing; the job runs on the shared queue like the UI's; the handler awaits it on the
event loop, so a long queue ties up no server threads.
"""

from __future__ import annotations

import html
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from modules.api.context import ApiContext, current_user
from modules.api.errors import ApiError
from modules.api.schemas import (
    ErrorResponse,
    ExtrasBaseRequest,
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    ImageToImageResponse,
    InterrogateRequest,
    InterrogateResponse,
    PNGInfoRequest,
    PNGInfoResponse,
    TextToImageResponse,
)
from modules.api.url_inputs import load_image_input
from modules.generation.image_io import decode_image_base64, encode_image_base64, read_info_from_image
from modules.generation.infotext import parse_generation_parameters
from modules.generation.infotext_fields import infotext_to_request_fields
from modules.generation.processing import GenerationResult
from modules.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from modules.interrogate.service import INTERROGATORS, InterrogationService
from modules.postprocessing import ExtrasParams, ExtrasResult, run_extras
from modules.workflows.controlnet import check_controlnet_request
from modules.workflows.extras import check_extras_size
from modules.workflows.generate import check_generation_request
from modules.workflows.runner import JobKind

R = TypeVar("R", bound=GenerationRequest)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad request or a limit exceeded"},
    404: {"model": ErrorResponse, "description": "Missing image or unknown model"},
    409: {"model": ErrorResponse, "description": "The job was cancelled before it started"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
    429: {"model": ErrorResponse, "description": "Too many jobs waiting for this user"},
    500: {"model": ErrorResponse, "description": "The job failed (e.g. out of memory)"},
}


def plaintext_to_html(text: str) -> str:
    return "<p>" + "<br>\n".join(html.escape(line) for line in text.split("\n")) + "</p>"


def apply_infotext(req: R, ctx: ApiContext, tab: str) -> R:
    """A1111 `infotext` field: fill the fields the client did not set, add its override settings."""
    if not req.infotext:
        return req
    options = ctx.services.options
    params = parse_generation_parameters(req.infotext)
    found = infotext_to_request_fields(
        params,
        ctx.services.registry,
        tab=tab,  # type: ignore[arg-type]
        current_settings=options.as_dict(),
        disable_weights_auto_swap=bool(options.get("disable_weights_auto_swap")),
    )
    data = req.model_dump()
    data.update(
        {k: v for k, v in found.fields.items() if k in type(req).model_fields and k not in req.model_fields_set}
    )
    overrides = {**found.override_settings, **(req.override_settings or {})}
    data["override_settings"] = overrides or None
    return type(req).model_validate(data)


def prepare_request(req: R, ctx: ApiContext, tab: str) -> R:
    req = apply_infotext(req, ctx, tab)
    check_generation_request(ctx.access, ctx.services.options, req)
    check_controlnet_request(ctx.access, ctx.services.controlnet, req)
    if not req.save_images:
        req = req.model_copy(update={"do_not_save_samples": True, "do_not_save_grid": True})
    return req


def encode_result(result: GenerationResult, send: bool) -> list[str]:
    if not send:
        return []
    return [encode_image_base64(img, "png", text) for img, text in zip(result.images, result.infotexts, strict=True)]


def extras_params(req: ExtrasBaseRequest) -> ExtrasParams:
    return ExtrasParams(**req.model_dump(include=set(ExtrasParams.model_fields)))


def extras_image(image: Image.Image, result: ExtrasResult) -> Image.Image:
    """The processed image carrying the source's text chunks plus the postprocessing infotext."""
    out = result.image
    out.info = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
    if result.infotext:
        out.info["postprocessing"] = result.infotext
    return out


def add_generation_routes(router: APIRouter, ctx: ApiContext) -> None:
    gen = ctx.services.generation

    @router.post("/txt2img", response_model=TextToImageResponse, responses=ERRORS)
    async def text2imgapi(txt2imgreq: Txt2ImgRequest, request: Request) -> TextToImageResponse:
        req = prepare_request(txt2imgreq, ctx, "txt2img")
        user = current_user(request)
        job = ctx.submit(request, JobKind.TXT2IMG, lambda c: gen.txt2img(req, c, user=user), req.force_task_id)
        result: GenerationResult = await ctx.runner.wait(job)
        images = await run_in_threadpool(encode_result, result, req.send_images)
        return TextToImageResponse(images=images, parameters=req.model_dump(), info=result.info_json())

    @router.post("/img2img", response_model=ImageToImageResponse, responses=ERRORS)
    async def img2imgapi(img2imgreq: Img2ImgRequest, request: Request) -> ImageToImageResponse:
        if not img2imgreq.init_images:
            raise ApiError(404, "Init image not found", "HTTPException")
        req = prepare_request(img2imgreq, ctx, "img2img")
        policy = ctx.url_policy
        images = await run_in_threadpool(lambda: [load_image_input(item, policy) for item in req.init_images])
        mask = await run_in_threadpool(load_image_input, req.mask, policy) if req.mask else None
        user = current_user(request)
        job = ctx.submit(
            request,
            JobKind.IMG2IMG,
            lambda c: gen.img2img(req, c, user=user, init_images=images, mask=mask),
            req.force_task_id,
        )
        result: GenerationResult = await ctx.runner.wait(job)
        encoded = await run_in_threadpool(encode_result, result, req.send_images)
        params = req.model_dump()
        if not req.include_init_images:
            params["init_images"] = None
            params["mask"] = None
        return ImageToImageResponse(images=encoded, parameters=params, info=result.info_json())

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse, responses=ERRORS)
    async def extras_single_image_api(req: ExtrasSingleImageRequest, request: Request) -> ExtrasSingleImageResponse:
        if not req.image:
            raise ApiError(404, "Image not found", "HTTPException")
        image = await run_in_threadpool(load_image_input, req.image, ctx.url_policy)
        check_extras_size(ctx.access, image, extras_params(req))
        params = extras_params(req)
        job = ctx.submit(request, JobKind.EXTRAS, lambda _: run_extras(image, params, ctx.upscalers, ctx.faces))
        result: ExtrasResult = await ctx.runner.wait(job)
        encoded = await run_in_threadpool(encode_image_base64, extras_image(image, result), "png")
        return ExtrasSingleImageResponse(html_info=plaintext_to_html(result.infotext), image=encoded)

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse, responses=ERRORS)
    async def extras_batch_images_api(req: ExtrasBatchImagesRequest, request: Request) -> ExtrasBatchImagesResponse:
        policy = ctx.url_policy
        images = await run_in_threadpool(lambda: [load_image_input(f.data, policy) for f in req.imageList])
        for image in images:
            check_extras_size(ctx.access, image, extras_params(req))
        params = extras_params(req)

        def run(_: Any) -> list[tuple[Image.Image, ExtrasResult]]:
            return [(image, run_extras(image, params, ctx.upscalers, ctx.faces)) for image in images]

        results: list[tuple[Image.Image, ExtrasResult]] = await ctx.runner.wait(
            ctx.submit(request, JobKind.EXTRAS, run)
        )
        encoded = await run_in_threadpool(
            lambda: [encode_image_base64(extras_image(src, res), "png") for src, res in results]
        )
        info = results[0][1].infotext if results else ""
        return ExtrasBatchImagesResponse(html_info=plaintext_to_html(info), images=encoded)

    @router.post("/interrogate", response_model=InterrogateResponse, responses=ERRORS)
    async def interrogateapi(req: InterrogateRequest, request: Request) -> InterrogateResponse:
        if not req.image:
            raise ApiError(404, "Image not found", "HTTPException")
        if req.model not in INTERROGATORS:
            raise ApiError(404, "Model not found", "HTTPException")
        image = await run_in_threadpool(load_image_input, req.image, ctx.url_policy)
        service = InterrogationService(ctx.services.models, ctx.services.paths, ctx.services.options)
        job = ctx.submit(request, JobKind.INTERROGATE, lambda _: service.interrogate(image.convert("RGB"), req.model))
        return InterrogateResponse(caption=await ctx.runner.wait(job))

    @router.post("/png-info", response_model=PNGInfoResponse, responses=ERRORS)
    async def pnginfoapi(req: PNGInfoRequest) -> PNGInfoResponse:
        if not req.image.strip():
            raise ApiError(404, "Image not found", "HTTPException")
        image = await run_in_threadpool(decode_image_base64, req.image)
        info = read_info_from_image(image)
        text = info.parameters or ""
        parameters = parse_generation_parameters(text) if text else {}
        return PNGInfoResponse(info=text, items=info.items, parameters=parameters)
