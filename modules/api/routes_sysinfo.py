"""A1111's `/internal/sysinfo` (the report as JSON text) and `/internal/sysinfo-download` (the
same as a file), outside /sdapi/v1 as in A1111 and served with or without --api. With logins and
an admin list only admins read it (it shows paths, flags and settings)."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from modules.api.context import current_user
from modules.services import Services
from modules.workflows.sysinfo import sysinfo_text

ExtensionList = Callable[[], Sequence[tuple[str, bool]]]


def add_sysinfo_routes(app: FastAPI, services: Services, extensions: ExtensionList) -> None:
    """`extensions`: (name, enabled) of the installed extensions, read when a report is made."""

    async def report(request: Request) -> str:
        if not services.access.may_change_settings(current_user(request)):
            raise HTTPException(403, "Only administrators may read the system information.")
        return await run_in_threadpool(
            lambda: sysinfo_text(services.paths, services.args, services.options, extensions())
        )

    @app.get("/internal/sysinfo", tags=["internal"])
    async def sysinfo(request: Request) -> Response:
        return Response(await report(request), media_type="application/json")

    @app.get("/internal/sysinfo-download", tags=["internal"])
    async def sysinfo_download(request: Request) -> Response:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H-%M")
        headers = {"Content-Disposition": f'attachment; filename="sysinfo-{stamp}.json"'}
        return Response(await report(request), media_type="application/json", headers=headers)
