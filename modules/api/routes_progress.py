"""Progress, interrupt and skip (A1111 routes), scoped to the caller's own jobs when logins are on.

Without logins they act on whatever job runs, as in A1111. With logins a user sees and stops
only their own jobs (admins: all); another user's running job looks like an idle server.
`id_task` (query) on interrupt/skip is an addition: it targets one job, also a queued one.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from modules.api.context import ApiContext, current_user
from modules.api.schemas import (
    InternalProgressRequest,
    InternalProgressResponse,
    PendingTasksResponse,
    ProgressResponse,
    ProgressState,
)
from modules.core.jobs import Job, JobNotFound, JobStatus


def _png_base64(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _state(job: Job) -> ProgressState:
    c = job.control
    return ProgressState(
        skipped=c.skipped.is_set(),
        interrupted=c.interrupted.is_set(),
        stopping_generation=c.stopping_after_current.is_set(),
        job=job.id,
        job_count=c.job_count,
        job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(job.created_at)),
        job_no=c.job_no,
        sampling_step=c.sampling_step,
        sampling_steps=c.sampling_steps,
    )


def _queued_text(ctx: ApiContext, user: str | None) -> str | None:
    mine = ctx.services.jobs.pending(user=user)
    if not mine:
        return None
    return f"In queue: {ctx.services.jobs.position(mine[0])}/{ctx.services.jobs.queue_length()}"


def add_progress_routes(router: APIRouter, app: FastAPI, ctx: ApiContext) -> None:
    jobs = ctx.services.jobs

    @router.get("/progress", response_model=ProgressResponse)
    async def progressapi(request: Request, skip_current_image: bool = False) -> ProgressResponse:
        user = current_user(request)
        job = jobs.current_for(user)
        if job is None:
            return ProgressResponse(
                progress=0.0,
                eta_relative=0.0,
                state=ProgressState(),
                current_image=None,
                textinfo=_queued_text(ctx, user),
            )
        c = job.control
        preview = c.preview
        image = None
        if not skip_current_image and preview is not None:
            image = await run_in_threadpool(_png_base64, preview)
        return ProgressResponse(
            progress=c.progress(),
            eta_relative=c.eta() or 0.0,
            state=_state(job),
            current_image=image,
            textinfo=c.textinfo or None,
        )

    @router.post("/interrupt")
    async def interruptapi(request: Request, id_task: str | None = None) -> dict[str, Any]:
        jobs.interrupt(id_task, user=current_user(request))
        return {}

    @router.post("/skip")
    async def skip(request: Request, id_task: str | None = None) -> None:
        jobs.skip(id_task, user=current_user(request))

    @app.get("/internal/pending-tasks", response_model=PendingTasksResponse, tags=["internal"])
    async def pending_tasks(request: Request) -> PendingTasksResponse:
        tasks = [j.id for j in jobs.pending(user=current_user(request))]
        return PendingTasksResponse(size=len(tasks), tasks=tasks)

    @app.post("/internal/progress", response_model=InternalProgressResponse, tags=["internal"])
    async def internal_progress(req: InternalProgressRequest, request: Request) -> InternalProgressResponse:
        try:
            job = jobs.get(str(req.id_task), user=current_user(request))
        except JobNotFound:
            return InternalProgressResponse(
                active=False, queued=False, completed=False, id_live_preview=-1, textinfo="Waiting..."
            )
        c = job.control
        position = jobs.position(job)
        preview = c.preview
        live = None
        if req.live_preview and preview is not None and c.preview_id != req.id_live_preview:
            live = "data:image/png;base64," + await run_in_threadpool(_png_base64, preview)
        return InternalProgressResponse(
            active=job.status == JobStatus.RUNNING,
            queued=job.status == JobStatus.QUEUED,
            completed=job.done,
            progress=c.progress() if not job.done else 1.0,
            eta=c.eta(),
            live_preview=live,
            id_live_preview=c.preview_id,
            textinfo=f"In queue: {position}/{jobs.queue_length()}" if position else (c.textinfo or None),
        )
