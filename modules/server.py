"""Builds the ASGI application: FastAPI with the API routes and the Gradio UI mounted on it.

Middleware, outermost first (each covers everything inside it, Gradio and extension routes too):
0. ProxyHeadersMiddleware: the client address from X-Forwarded-For, only from the trusted proxies
   of --forwarded-allow-ips (uvicorn's own proxy-header handling is off: UVICORN_OPTIONS).
1. SecurityMiddleware: Host header check (DNS rebinding), cross-origin refusal, body size limit,
   security headers.
2. CORSMiddleware: closed unless --cors-allow-origins(-regex); its presence also stops Gradio
   from adding its own, looser CORS handling.
3. AuthMiddleware: with logins configured, every route but /login and /logout needs a session
   cookie or HTTP Basic credentials.
4. --api-log request logging.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules.access.limits import RequestLimits
from modules.api.auth import Authenticator, LoginThrottle
from modules.api.context import ApiContext, ServerControl, current_user
from modules.api.errors import install_error_handlers
from modules.api.files import add_file_routes, allowed_roots
from modules.api.login import AuthMiddleware, add_login_routes
from modules.api.proxies import ProxyHeadersMiddleware, TrustedProxies
from modules.api.routes_sysinfo import add_sysinfo_routes
from modules.api.security import HostPolicy, OriginPolicy, SecurityMiddleware
from modules.core.paths import REPO_ROOT, Paths
from modules.extension_host.preload import BUILTIN_DIR
from modules.services import Services

if TYPE_CHECKING:
    from modules.extension_host.host import ExtensionHost

log = logging.getLogger(__name__)


def build_authenticator(services: Services) -> Authenticator:
    options = services.options

    def throttle_limits() -> tuple[int, float]:
        return int(options.get("api_login_max_failures")), float(options.get("api_login_lockout_seconds"))

    return Authenticator(services.users, LoginThrottle(throttle_limits))


def exit_soon(code: int, delay: float = 0.5) -> Callable[[], None]:
    """A server-kill action: leave the process after the response has gone out."""

    def act() -> None:
        log.warning("server exit requested through the API (exit code %d)", code)
        threading.Timer(delay, os._exit, args=(code,)).start()

    return act


def default_server_control() -> ServerControl:
    return ServerControl(kill=exit_soon(0), restart=exit_soon(0), stop=exit_soon(0))


class RequestLogMiddleware:
    """--api-log: one log line per request with status and time taken."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            user = (scope.get("state") or {}).get("user") or "-"
            elapsed = time.perf_counter() - started
            log.info("API %s %s %s %d %.3fs", user, scope["method"], scope["path"], status, elapsed)


def _add_middleware(app: FastAPI, services: Services, auth: Authenticator, hostname: str | None) -> None:
    args = services.args
    options = services.options
    if args.api_log:
        app.add_middleware(RequestLogMiddleware)
    app.add_middleware(AuthMiddleware, auth=auth, login_page=not args.nowebui)
    origins = OriginPolicy.from_args(args)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(origins.origins),
        allow_origin_regex=args.cors_allow_origins_regex,
        allow_methods=["*"],
        allow_headers=["*"],
        allow_credentials=True,
    )

    def max_body() -> int:
        return RequestLimits.from_settings(options.as_dict()).max_body_bytes

    app.add_middleware(
        SecurityMiddleware,
        hosts=HostPolicy.from_args(args, hostname),
        origins=origins,
        max_body_bytes=max_body,
    )
    app.add_middleware(ProxyHeadersMiddleware, proxies=TrustedProxies.parse(args.forwarded_allow_ips))


def _ui_login_by_us(app: FastAPI) -> None:
    """Let the mounted Gradio app take the user from our login instead of its own login form."""
    for route in app.router.routes:
        gradio_app = getattr(route, "app", None)
        if isinstance(route, Mount) and hasattr(gradio_app, "auth_dependency"):
            gradio_app.auth = None  # type: ignore[union-attr]
            gradio_app.auth_dependency = current_user  # type: ignore[union-attr]
            gradio_app.get_blocks().auth = None  # type: ignore[union-attr]


def extension_file_roots(paths: Paths) -> list[Path]:
    """What /file= shares besides outputs (A1111): installed extensions' folders (user and
    built-in) and the temp folders extensions write for their JavaScript (`tmp/`)."""
    return [paths.extensions_dir, BUILTIN_DIR, REPO_ROOT / "tmp", paths.data_dir / "tmp"]


def build_app(
    services: Services,
    *,
    extension_host: ExtensionHost | None = None,
    server_control: ServerControl | None = None,
    hostname: str | None = None,
) -> FastAPI:
    """The whole web application for these services (UI unless --nowebui, API with --api/--nowebui).

    `extension_host` (from modules.extension_host.facade.bind) adds the extension routes and runs
    on_app_started; `server_control` is what server-kill/restart/stop do (with --api-server-stop;
    default: exit the process); `hostname` overrides the machine name for the Host header check.
    """
    args = services.args
    auth = build_authenticator(services)
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs", redoc_url="/redoc")
    app.state.services = services
    app.state.auth = auth
    install_error_handlers(app)
    add_login_routes(app, auth, secure_cookie=bool(args.tls_certfile))

    @app.get("/internal/ping", tags=["internal"])
    async def ping() -> dict[str, str]:
        return {}

    @app.get("/internal/whoami", tags=["internal"])
    async def whoami(request: Request) -> dict[str, object]:
        user = current_user(request)
        return {"user": user, "admin": services.access.is_admin(user)}

    add_sysinfo_routes(
        app, services, lambda: [(e.name, e.enabled) for e in extension_host.installed()] if extension_host else []
    )
    paths = services.paths
    shared = [*(args.gradio_allowed_path or []), *extension_file_roots(paths)]
    add_file_routes(app, (paths.data_dir, REPO_ROOT), allowed_roots(paths.outputs_dir, shared))
    if extension_host is not None:
        from modules.extension_host.api import register_extension_routes

        register_extension_routes(app, extension_host)
    if args.api or args.nowebui:
        from modules.api.routes import build_api_context, register_api

        control = (server_control or default_server_control()) if args.api_server_stop else None
        ctx: ApiContext = build_api_context(services, auth, control, extension_routes=extension_host is not None)
        app.state.api = ctx
        register_api(app, ctx)
    _add_middleware(app, services, auth, hostname)
    demo = None
    if not args.nowebui:
        from modules.ui.app import mount_ui

        app = mount_ui(
            app,
            services,
            extension_host=extension_host,
            after_mount=_ui_login_by_us if auth.enabled else None,  # also after "Reload UI"
        )
        demo = getattr(getattr(app.state, "ui_host", None), "blocks", None)
    if extension_host is not None:
        extension_host.app_started(demo, app)  # extensions' routes, covered by the middleware above
    return app
