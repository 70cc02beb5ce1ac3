"""/sdapi/v1/create/* and /sdapi/v1/train/*: textual inversion and hypernetworks (modules.train).

Training reads a server folder (`data_root`) and writes files, so with an admin list only admins may
use these routes. Training runs as a queued job like a generation; the response waits for it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from modules.api.context import ApiContext, wait_for
from modules.api.errors import ApiError
from modules.train.errors import TrainingError
from modules.train.requests import (
    CreateEmbeddingRequest,
    CreateHypernetworkRequest,
    TrainEmbeddingRequest,
    TrainHypernetworkRequest,
)


def add_train_routes(router: APIRouter, ctx: ApiContext) -> None:
    def service() -> Any:
        training = ctx.services.training
        if training is None:
            raise ApiError(404, "training is not available on this server", "NotFound")
        return training

    @router.post("/create/embedding")
    async def create_embedding(req: CreateEmbeddingRequest, request: Request) -> dict[str, str]:
        ctx.require_settings_access(request)
        try:
            return {"info": service().create_embedding(req).info}
        except TrainingError as exc:
            raise ApiError(400, str(exc), "TrainingError") from exc

    @router.post("/create/hypernetwork")
    async def create_hypernetwork(req: CreateHypernetworkRequest, request: Request) -> dict[str, str]:
        ctx.require_settings_access(request)
        try:
            return {"info": service().create_hypernetwork(req).info}
        except TrainingError as exc:
            raise ApiError(400, str(exc), "TrainingError") from exc

    @router.post("/train/embedding")
    async def train_embedding(req: TrainEmbeddingRequest, request: Request) -> dict[str, str]:
        ctx.require_settings_access(request)
        training = service()
        job = ctx.submit(request, "train", lambda control: training.train_embedding(req, control))
        try:
            return {"info": (await wait_for(job)).info}
        except TrainingError as exc:
            raise ApiError(400, str(exc), "TrainingError") from exc

    @router.post("/train/hypernetwork")
    async def train_hypernetwork(req: TrainHypernetworkRequest, request: Request) -> dict[str, str]:
        ctx.require_settings_access(request)
        training = service()
        job = ctx.submit(request, "train", lambda control: training.train_hypernetwork(req, control))
        try:
            return {"info": (await wait_for(job)).info}
        except TrainingError as exc:
            raise ApiError(400, str(exc), "TrainingError") from exc
