"""/sdapi/v1/create/* and /sdapi/v1/train/*: textual inversion and hypernetworks (modules.train).

Training reads a server folder (`data_root`) and writes files, so with an admin list only admins may
use these routes. Training runs as a queued job like a generation; the response waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from modules.api.context import ApiContext
from modules.api.errors import ApiError
from modules.core.jobs import JobControl
from modules.train.errors import TrainingError
from modules.train.requests import (
    CreateEmbeddingRequest,
    CreateHypernetworkRequest,
    TrainEmbeddingRequest,
    TrainHypernetworkRequest,
)
from modules.workflows.runner import JobKind


def add_train_routes(router: APIRouter, ctx: ApiContext) -> None:
    def service() -> Any:
        training = ctx.services.training
        if training is None:
            raise ApiError(404, "training is not available on this server", "NotFound")
        return training

    def create(request: Request, make: Callable[[Any], Any], req: Any) -> dict[str, str]:
        ctx.require_settings_access(request)
        try:
            return {"info": make(req).info}
        except TrainingError as exc:
            raise ApiError(400, str(exc), "TrainingError") from exc

    async def train(request: Request, run: Callable[[Any, JobControl], Any], req: Any) -> dict[str, str]:
        ctx.require_settings_access(request)
        job = ctx.submit(request, JobKind.TRAIN, lambda control: run(req, control))
        try:
            return {"info": (await ctx.runner.wait(job)).info}
        except TrainingError as exc:
            raise ApiError(400, str(exc), "TrainingError") from exc

    @router.post("/create/embedding")
    async def create_embedding(req: CreateEmbeddingRequest, request: Request) -> dict[str, str]:
        return create(request, service().create_embedding, req)

    @router.post("/create/hypernetwork")
    async def create_hypernetwork(req: CreateHypernetworkRequest, request: Request) -> dict[str, str]:
        return create(request, service().create_hypernetwork, req)

    @router.post("/train/embedding")
    async def train_embedding(req: TrainEmbeddingRequest, request: Request) -> dict[str, str]:
        return await train(request, service().train_embedding, req)

    @router.post("/train/hypernetwork")
    async def train_hypernetwork(req: TrainHypernetworkRequest, request: Request) -> dict[str, str]:
        return await train(request, service().train_hypernetwork, req)
