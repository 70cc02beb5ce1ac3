"""What the API routes share: services, logins, upscalers, server control; and small helpers
to find the caller, submit a job for them and wait for it without holding a server thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from modules.access.limits import RequestLimits
from modules.access.policy import AccessPolicy, caller_of
from modules.api.auth import Authenticator
from modules.api.url_inputs import UrlPolicy
from modules.core.jobs import Job, JobFn
from modules.postprocessing import FaceRestorers, UpscalerRegistry
from modules.services import Services
from modules.workflows.runner import JobKind, JobRunner


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
    def access(self) -> AccessPolicy:
        return self.services.access

    @property
    def runner(self) -> JobRunner:
        return self.services.runner

    @property
    def limits(self) -> RequestLimits:
        return self.access.limits

    @property
    def url_policy(self) -> UrlPolicy:
        opts = self.services.options
        return UrlPolicy(enabled=bool(opts.get("api_enable_requests")), max_bytes=self.limits.max_body_bytes)

    def require_settings_access(self, request: Request) -> None:
        self.access.require_settings_access(caller_of(request.scope))

    def submit(self, request: Request, kind: JobKind, fn: JobFn, task_id: str | None = None) -> Job:
        """Queue `fn` for the caller (owner and quota key from the access policy)."""
        return self.runner.submit(caller_of(request.scope), kind, fn, task_id)


def current_user(request: Request) -> str | None:
    """The signed-in user (set by AuthMiddleware), None without logins."""
    state = request.scope.get("state") or {}
    user = state.get("user")
    return str(user) if user is not None else None
