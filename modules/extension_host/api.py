"""HTTP routes for extensions: A1111's read-only ones and our management routes.

A1111 (shared/reference/http-api.md): GET /sdapi/v1/extensions, /sdapi/v1/scripts,
/sdapi/v1/script-info. Ours, used by the Extensions tab and scripts: /internal/extensions/...
(list, install, update, check, remove, enable, disable-all, available, problems) and the
asset route serving extensions' JS/CSS. `available` makes the server fetch an index: POST with a
JSON body, admins only, another URL than the configured one only behind the access gate. Changes need the access gate (--listen without
--enable-insecure-extension-access refuses them, 403) and, with an admin list, an admin.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from modules.access.policy import caller_of
from modules.extension_host import assets
from modules.extension_host.gitops import (
    ExtensionAccessDenied,
    ExtensionError,
    ExtensionExists,
    ExtensionNotFound,
    GitOperationFailed,
)
from modules.extension_host.host import ExtensionHost, InstalledExtension
from modules.extension_host.index import ExtensionIndexError, entry_dict, normalize_git_url


class InstallBody(BaseModel):
    url: str
    branch: str | None = None
    folder: str | None = None


class NameBody(BaseModel):
    name: str


class EnableBody(BaseModel):
    name: str
    enabled: bool


class CheckBody(BaseModel):
    names: list[str] | None = None


class DisableAllBody(BaseModel):
    mode: str


class AvailableBody(BaseModel):
    url: str | None = None  # None: the configured index (WEBUI_EXTENSIONS_INDEX) or A1111's
    tag: str | None = None
    hide_tags: str = ""
    hide_installed: bool = True
    q: str = ""


def require_json(request: Request) -> None:
    """Refuse bodies a plain HTML form could send cross-site (only JSON needs a CORS preflight)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, "send the request as JSON (Content-Type: application/json)")


def _status(exc: ExtensionError) -> int:
    if isinstance(exc, ExtensionAccessDenied):
        return 403
    if isinstance(exc, ExtensionNotFound):
        return 404
    if isinstance(exc, ExtensionExists):
        return 409
    if isinstance(exc, GitOperationFailed):
        return 502
    return 400


def _installed_json(item: InstalledExtension) -> dict[str, Any]:
    return {**item.a1111_dict(), "is_builtin": item.is_builtin, "path": item.path, "problems": item.problems}


def build_router(host: ExtensionHost) -> APIRouter:
    router = APIRouter()

    def require_admin(request: Request) -> None:
        if not host.services.access.may_change_settings(caller_of(request.scope).user):  # the one admin rule
            raise HTTPException(403, "Only administrators may change extensions.")

    def guarded(request: Request, action: Any) -> Any:
        require_admin(request)
        try:
            return action()
        except ExtensionError as exc:
            raise HTTPException(_status(exc), str(exc)) from None

    @router.get("/sdapi/v1/extensions", tags=["extensions"])
    def list_extensions() -> list[dict[str, Any]]:
        return [item.a1111_dict() for item in host.installed()]

    @router.get("/sdapi/v1/scripts", tags=["extensions"])
    def scripts_list() -> dict[str, list[str]]:
        return host.runner.scripts_list()

    @router.get("/sdapi/v1/script-info", tags=["extensions"])
    def script_info() -> list[dict[str, Any]]:
        return host.runner.script_info()

    @router.get("/internal/extensions", tags=["extensions"])
    def installed() -> dict[str, Any]:
        return {
            "access": {"allowed": host.access.allowed, "reason": host.access.reason},
            "disable_all_extensions": host.disable_mode().value,
            "extensions": [_installed_json(i) for i in host.installed()],
        }

    @router.post("/internal/extensions/install", tags=["extensions"])
    def install(body: InstallBody, request: Request) -> dict[str, Any]:
        outcome = guarded(request, lambda: host.install(body.url, branch=body.branch, folder=body.folder))
        return {
            "name": outcome.name,
            "version": outcome.info.version,
            "branch": outcome.info.branch,
            "installer_ok": outcome.installer_ok,
            "output": outcome.output,
            "restart_needed": True,
        }

    @router.post("/internal/extensions/update", tags=["extensions"])
    def update(body: NameBody, request: Request) -> dict[str, Any]:
        info = guarded(request, lambda: host.update(body.name))
        return {"name": body.name, **asdict(info), "restart_needed": True}

    @router.post("/internal/extensions/check", tags=["extensions"])
    def check(body: CheckBody, request: Request) -> dict[str, str]:
        return dict(guarded(request, lambda: host.check_updates(body.names)))

    @router.post("/internal/extensions/remove", tags=["extensions"])
    def remove(body: NameBody, request: Request) -> dict[str, Any]:
        guarded(request, lambda: host.remove(body.name))
        return {"name": body.name, "removed": True, "restart_needed": True}

    @router.post("/internal/extensions/enable", tags=["extensions"])
    def enable(body: EnableBody, request: Request) -> dict[str, Any]:
        require_admin(request)
        try:
            host.set_enabled(body.name, body.enabled)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        return {"name": body.name, "enabled": body.enabled, "restart_needed": True}

    @router.post("/internal/extensions/disable-all", tags=["extensions"])
    def disable_all(body: DisableAllBody, request: Request) -> dict[str, Any]:
        require_admin(request)
        try:
            host.set_disable_all(body.mode)
        except ValueError:
            raise HTTPException(400, "mode must be one of: none, extra, all") from None
        return {"disable_all_extensions": body.mode, "restart_needed": True}

    @router.post("/internal/extensions/available", tags=["extensions"], dependencies=[Depends(require_json)])
    def available(body: AvailableBody, request: Request) -> dict[str, Any]:
        # The server fetches the URL: admins only, POST with a JSON body (a cross-site page can
        # neither send that without a CORS preflight nor pass the Origin check of
        # SecurityMiddleware), never on a GET an <img> could trigger.
        require_admin(request)
        try:
            data, entries = host.available(
                body.url,
                only_tags=[body.tag] if body.tag else [],
                hide_tags=[t for t in body.hide_tags.split(",") if t],
                hide_installed=body.hide_installed,
                search=body.q,
            )
        except ExtensionIndexError as exc:
            raise HTTPException(400, str(exc)) from None
        except ExtensionError as exc:
            raise HTTPException(_status(exc), str(exc)) from None
        installed = {normalize_git_url(i.git.remote) for i in host.installed()}
        return {
            "tags": data.tags,
            "extensions": [entry_dict(e, normalize_git_url(e.url) in installed) for e in entries],
        }

    @router.get("/internal/extensions/problems", tags=["extensions"])
    def problems() -> list[dict[str, Any]]:
        return [{"extension": p.extension, "where": p.where, "error": p.error, "at": p.at} for p in host.problem_list()]

    @router.get(assets.ASSET_ROUTE + "/{name}/{relative:path}", include_in_schema=False)
    def asset(name: str, relative: str) -> FileResponse:
        path = assets.resolve_asset(host.active(), name, relative)
        if path is None:
            raise HTTPException(404, "Not found")
        media = "text/javascript" if path.suffix.lower() in (".js", ".mjs") else None
        return FileResponse(path, media_type=media)

    return router


def register_extension_routes(app: FastAPI, host: ExtensionHost) -> None:
    """Add the routes to `app` (call before the Gradio UI is mounted at "/")."""
    app.include_router(build_router(host))
