"""Settings, flags, listings, model control and server control routes (A1111 shapes).

Changing global state (settings, loaded model, server) is limited to admins when an admin list
exists; model loads go through the job queue so they never swap a model under a running job.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from modules.access.policy import caller_of
from modules.api import listings
from modules.api.context import ApiContext
from modules.api.errors import ApiError
from modules.api.schemas import (
    EmbeddingsResponse,
    ExtensionItem,
    FaceRestorerItem,
    HypernetworkItem,
    LatentUpscalerModeItem,
    LoraItem,
    MemoryResponse,
    PromptStyleItem,
    RealesrganItem,
    SamplerItem,
    SchedulerItem,
    ScriptInfo,
    ScriptsList,
    SDModelItem,
    SDVaeItem,
    UpscalerItem,
)
from modules.generation import samplers
from modules.generation.latents import LATENT_UPSCALE_MODES
from modules.models.errors import ModelNotFound
from modules.postprocessing.face_restoration import api_entries, face_restorer_folders
from modules.workflows.runner import JobKind
from modules.workflows.sysinfo import public_flags


def add_settings_routes(router: APIRouter, ctx: ApiContext) -> None:
    services = ctx.services
    settings = services.settings

    @router.get("/options", response_model=dict[str, Any])
    async def get_config() -> dict[str, Any]:
        return services.options.as_dict()

    @router.post("/options")
    async def set_config(body: dict[str, Any], request: Request) -> None:
        caller = caller_of(request.scope)
        try:
            change = settings.prepare(caller, body, from_api=True, strict=True)
        except ModelNotFound as exc:
            raise ApiError(400, str(exc), "ModelNotFound") from exc
        job = settings.load_checkpoint(change)  # load first; stored only once it loaded
        if job is not None:
            await ctx.runner.wait(job)
        settings.store(change)  # all or nothing; a failed write: SettingsNotSaved (507)

    @router.get("/cmd-flags", response_model=dict[str, Any])
    async def get_cmd_flags() -> dict[str, Any]:
        return public_flags(vars(services.args))


def add_listing_routes(router: APIRouter, ctx: ApiContext) -> None:
    services = ctx.services
    paths = services.paths

    @router.get("/samplers", response_model=list[SamplerItem])
    async def get_samplers() -> list[SamplerItem]:
        return [SamplerItem(name=s.name, aliases=list(s.aliases), options=s.options) for s in samplers.SAMPLERS]

    @router.get("/schedulers", response_model=list[SchedulerItem])
    async def get_schedulers() -> list[SchedulerItem]:
        return [SchedulerItem(**s.api_item()) for s in samplers.SCHEDULERS]

    @router.get("/upscalers", response_model=list[UpscalerItem])
    async def get_upscalers() -> list[UpscalerItem]:
        return [UpscalerItem(**vars(e)) for e in ctx.upscalers.entries()]

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    async def get_latent_upscale_modes() -> list[LatentUpscalerModeItem]:
        return [LatentUpscalerModeItem(name=name) for name in LATENT_UPSCALE_MODES]

    @router.get("/sd-models", response_model=list[SDModelItem])
    async def get_sd_models() -> list[SDModelItem]:
        return [
            SDModelItem(
                title=c.title,
                model_name=c.model_name,
                hash=c.shorthash,
                sha256=c.sha256,
                filename=str(c.filename),
                config=None,
            )
            for c in services.models.list_checkpoints()
        ]

    @router.get("/sd-vae", response_model=list[SDVaeItem])
    async def get_sd_vaes() -> list[SDVaeItem]:
        return [SDVaeItem(model_name=v.name, filename=str(v.filename)) for v in services.models.list_vaes()]

    networks = services.generation.networks  # the extra-networks service, when configured

    @router.get("/hypernetworks", response_model=list[HypernetworkItem])
    async def get_hypernetworks() -> list[HypernetworkItem]:
        if networks is not None:
            found = await run_in_threadpool(networks.catalogue.hypernetworks)
            return [HypernetworkItem(**h.api_json()) for h in found]
        return await run_in_threadpool(listings.list_hypernetworks, paths.hypernetwork_dir)

    @router.get("/face-restorers", response_model=list[FaceRestorerItem])
    async def get_face_restorers() -> list[FaceRestorerItem]:
        if ctx.faces is None:
            return []
        folders = face_restorer_folders(paths.gfpgan_dir, paths.codeformer_dir)
        return [FaceRestorerItem(**entry) for entry in api_entries(ctx.faces, folders)]  # type: ignore[arg-type]

    @router.get("/realesrgan-models", response_model=list[RealesrganItem])
    async def get_realesrgan_models() -> list[RealesrganItem]:
        return [
            RealesrganItem(name=u.name, path=str(u.model_path), scale=int(u.scale))
            for u in ctx.upscalers.all()
            if u.model_path is not None and u.model_path.parent == paths.realesrgan_dir
        ]

    @router.get("/prompt-styles", response_model=list[PromptStyleItem])
    async def get_prompt_styles() -> list[PromptStyleItem]:
        return [
            PromptStyleItem(name=s.name, prompt=s.prompt, negative_prompt=s.negative_prompt)
            for s in services.generation.styles.styles.values()
        ]

    def embeddings() -> dict[str, Any]:
        active = services.models.active
        if networks is not None and active is not None:
            return dict(networks.embedding_lookup(active).api_listing())  # loaded / skipped for this model
        if networks is not None:
            return {"loaded": {f.name: f.api_entry() for f in networks.catalogue.embeddings().files}, "skipped": {}}
        return listings.list_embeddings(paths.embeddings_dir)

    @router.get("/embeddings", response_model=EmbeddingsResponse)
    async def get_embeddings() -> EmbeddingsResponse:
        return EmbeddingsResponse(**await run_in_threadpool(embeddings))

    @router.get("/loras", response_model=list[LoraItem])
    async def get_loras() -> list[LoraItem]:
        if networks is not None:
            found = await run_in_threadpool(networks.catalogue.loras)
            return [LoraItem(**lora.api_json()) for lora in found]
        return await run_in_threadpool(listings.list_loras, [paths.lora_dir, paths.lyco_dir])

    @router.get("/memory", response_model=MemoryResponse)
    async def get_memory() -> MemoryResponse:
        return MemoryResponse(**await run_in_threadpool(listings.memory_stats))

    if ctx.extension_routes:
        return

    @router.get("/scripts", response_model=ScriptsList)
    async def get_scripts_list() -> ScriptsList:
        return ScriptsList()  # without the extension host there are no scripts

    @router.get("/script-info", response_model=list[ScriptInfo])
    async def get_script_info() -> list[ScriptInfo]:
        return []

    @router.get("/extensions", response_model=list[ExtensionItem])
    async def get_extensions_list() -> list[ExtensionItem]:
        disabled = services.options.as_dict().get("disabled_extensions") or []
        return await run_in_threadpool(listings.list_extensions, paths.extensions_dir, set(disabled))


def add_model_routes(router: APIRouter, ctx: ApiContext) -> None:
    services = ctx.services

    @router.post("/refresh-checkpoints")
    async def refresh_checkpoints(request: Request) -> None:
        await run_in_threadpool(services.models.refresh)

    @router.post("/refresh-vae")
    async def refresh_vae() -> None:
        return None  # VAEs are listed from disk on every request

    def refresh_networks() -> None:
        networks = services.generation.networks
        if networks is not None:
            networks.catalogue.refresh()

    @router.post("/refresh-embeddings")
    async def refresh_embeddings() -> None:
        refresh_networks()  # embedding files are re-read when they change

    @router.post("/refresh-loras")
    async def refresh_loras() -> None:
        await run_in_threadpool(refresh_networks)

    @router.post("/unload-checkpoint")
    async def unloadapi(request: Request) -> dict[str, Any]:
        ctx.require_settings_access(request)
        await ctx.runner.wait(ctx.submit(request, JobKind.UNLOAD_MODEL, lambda _: services.models.unload()))
        return {}

    @router.post("/reload-checkpoint")
    async def reloadapi(request: Request) -> dict[str, Any]:
        ctx.require_settings_access(request)
        await ctx.runner.wait(ctx.submit(request, JobKind.RELOAD_MODEL, lambda _: services.models.reload()))
        return {}


def add_server_routes(router: APIRouter, ctx: ApiContext) -> None:
    """Only registered with --api-server-stop."""
    server = ctx.server
    if server is None:
        return

    @router.post("/server-kill")
    async def kill_webui(request: Request) -> dict[str, Any]:
        ctx.require_settings_access(request)
        server.kill()
        return {}

    @router.post("/server-restart")
    async def restart_webui(request: Request) -> dict[str, Any]:
        ctx.require_settings_access(request)
        server.restart()
        return {}

    @router.post("/server-stop")
    async def stop_webui(request: Request) -> dict[str, Any]:
        ctx.require_settings_access(request)
        server.stop()
        return {}
