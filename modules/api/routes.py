"""A1111-compatible HTTP API (/sdapi/v1/...): assembles the route groups on the app.

Field names and shapes follow shared/reference/http-api.md; docs at /docs. Generation, extras and
model changes go through the job queue like the UI; errors use A1111's JSON error shape.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from modules.api.auth import Authenticator
from modules.api.context import ApiContext, ServerControl
from modules.api.routes_controlnet import add_controlnet_routes
from modules.api.routes_generation import add_generation_routes
from modules.api.routes_info import add_listing_routes, add_model_routes, add_server_routes, add_settings_routes
from modules.api.routes_progress import add_progress_routes
from modules.api.routes_train import add_train_routes
from modules.services import Services


def build_api_context(
    services: Services, auth: Authenticator, server: ServerControl | None = None, extension_routes: bool = False
) -> ApiContext:
    """The API's view of the services (one upscaler registry and restorer set with the UI)."""
    return ApiContext(
        services=services,
        auth=auth,
        upscalers=services.upscalers,
        faces=services.faces.restorers(),
        server=server,
        extension_routes=extension_routes,
    )


def register_api(app: FastAPI, ctx: ApiContext) -> None:
    """Add every /sdapi/v1 route (server-kill/restart/stop only with --api-server-stop)."""
    router = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])
    add_generation_routes(router, ctx)
    add_progress_routes(router, app, ctx)
    add_settings_routes(router, ctx)
    add_listing_routes(router, ctx)
    add_model_routes(router, ctx)
    add_train_routes(router, ctx)
    if ctx.services.args.api_server_stop:
        add_server_routes(router, ctx)
    app.include_router(router)
    add_controlnet_routes(app, ctx)  # sd-webui-controlnet's /controlnet/* routes (built in)
