"""What the API routes share: services, logins, upscalers, server control; and small helpers
to find the caller, submit a job for them and wait for it without holding a server thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from modules.api.auth import Authenticator
from modules.api.errors import Forbidden
from modules.api.limits import RequestLimits
from modules.api.login import client_address
from modules.api.url_inputs import UrlPolicy
from modules.core.cmd_args import is_non_local
from modules.core.jobs import Job, JobFn
from modules.postprocessing import FaceRestorers, UpscalerRegistry
from modules.services import Services

# Settings that name folders: through the API they would let a client write files anywhere.
PATH_SETTING_PREFIXES = ("outdir_",)


@dataclass
class ServerControl:
    """What server-kill / server-restart / server-stop do (given by the entry point)."""

    kill: Callable[[], None]
    restart: Callable[[], None]
    stop: Callable[[], None]


@dataclass
class ApiContext:
    services: Services
    auth: Authenticator
    upscalers: UpscalerRegistry
    faces: FaceRestorers | None = None
    server: ServerControl | None = None
    extension_routes: bool = False  # the extension host serves scripts / script-info / extensions
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits.from_settings(self.services.options.as_dict())

    @property
    def url_policy(self) -> UrlPolicy:
        opts = self.services.options
        return UrlPolicy(enabled=bool(opts.get("api_enable_requests")), max_bytes=self.limits.max_body_bytes)

    @property
    def path_settings_locked(self) -> bool:
        args = self.services.args
        return bool(args.hide_ui_dir_config) or is_non_local(args)

    def check_settings_keys(self, keys: list[str] | set[str], what: str) -> None:
        """Refuse folder settings from API clients on shared servers (A1111 --hide-ui-dir-config)."""
        if not self.path_settings_locked:
            return
        locked = sorted(k for k in keys if k.startswith(PATH_SETTING_PREFIXES))
        if locked:
            raise Forbidden(f"{what}: folder settings cannot be changed through the API here: {', '.join(locked)}")

    def require_settings_access(self, request: Request) -> str | None:
        user = current_user(request)
        if not self.auth.may_change_settings(user):
            raise Forbidden("only admins may change global settings or models on this server")
        return user

    def submit(self, request: Request, kind: str, fn: JobFn, task_id: str | None = None) -> Job:
        """Queue `fn` for the caller; without logins the client address is the quota key."""
        user = current_user(request)
        quota = user if user is not None else f"addr:{client_address(request.scope)}"
        return self.services.jobs.submit(kind, fn, owner=user, task_id=task_id, quota_key=quota)


def current_user(request: Request) -> str | None:
    """The signed-in user (set by AuthMiddleware), None without logins."""
    state = request.scope.get("state") or {}
    user = state.get("user")
    return str(user) if user is not None else None


async def wait_for(job: Job) -> Any:
    """Await a job's end on the event loop (no thread blocked), then return or raise its outcome."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def wake(_: Job) -> None:
        loop.call_soon_threadsafe(settle)

    job.add_done_callback(wake)
    await finished
    return job.wait(0)
