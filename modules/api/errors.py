"""A1111's JSON error shape `{error, detail, body, errors}` for every failure the API reports.

Client mistakes map to 4xx (bad names, bad images, limits, full queue), a job that ran out of
memory or crashed to 500; the worker keeps running either way (see modules.core.jobs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.access.limits import LimitExceeded
from modules.access.policy import AccessDenied
from modules.api.url_inputs import UrlInputError
from modules.core.jobs import JobInterrupted, JobNotFound, QueueFull
from modules.core.options import OptionError, SettingsNotSaved
from modules.core.users import AuthConfigError
from modules.generation.image_io import ImageDecodeError
from modules.generation.masking import MaskError
from modules.generation.samplers import UnknownSamplerError, UnknownSchedulerError
from modules.interrogate.service import InterrogatorUnavailable, UnknownInterrogator
from modules.models.errors import ModelError, ModelNotFound
from modules.postprocessing import FaceRestorationUnavailable, UpscalerError
from modules.workflows.runner import describe, is_out_of_memory

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, raised by route code."""

    def __init__(self, status: int, detail: str, error: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error = error or type(self).__name__


def error_body(error: str, detail: Any, errors: str = "") -> dict[str, Any]:
    return {
        "error": error,
        "detail": detail,
        "body": "",
        "errors": errors or (detail if isinstance(detail, str) else ""),
    }


def error_response(status: int, error: str, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(error, detail), headers=dict(headers or {}))


# Exception type -> HTTP status, most specific first.
STATUS_BY_TYPE: tuple[tuple[type[BaseException], int], ...] = (
    (ModelNotFound, 404),
    (JobNotFound, 404),
    (QueueFull, 429),
    (JobInterrupted, 409),
    (AccessDenied, 403),
    (LimitExceeded, 400),
    (UrlInputError, 400),
    (UnknownSamplerError, 400),
    (UnknownSchedulerError, 400),
    (ImageDecodeError, 400),
    (MaskError, 400),
    (OptionError, 400),
    (SettingsNotSaved, 507),
    (ModelError, 400),
    (UpscalerError, 400),
    (FaceRestorationUnavailable, 400),
    (InterrogatorUnavailable, 400),
    (UnknownInterrogator, 404),
    (AuthConfigError, 400),
    (ValidationError, 422),
    (ValueError, 400),
)


def status_for(exc: BaseException) -> int:
    if is_out_of_memory(exc):
        return 500
    for exc_type, status in STATUS_BY_TYPE:
        if isinstance(exc, exc_type):
            return status
    return 500


# A full queue clears as jobs finish; clients (and A1111 scripts' retry loops) wait this long.
QUEUE_FULL_RETRY_AFTER_S = 5


def response_for(exc: BaseException) -> JSONResponse:
    status = status_for(exc)
    name = "OutOfMemoryError" if is_out_of_memory(exc) else type(exc).__name__
    if isinstance(exc, JobInterrupted):
        name = "JobCancelled"
    if isinstance(exc, AccessDenied):
        name = "Forbidden"
    if status >= 500:
        log.error("API request failed: %s: %s", type(exc).__name__, exc)
    headers = {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)} if status == 429 else None
    return error_response(status, name, describe(exc), headers)


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors in A1111's shape for HTTP errors, validation errors and everything else."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "HTTPException", exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # `detail` keeps FastAPI's list (clients read it); `errors` is a readable summary.
        errors = list(exc.errors())
        summary = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors)
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
        return JSONResponse(status_code=422, content=error_body("RequestValidationError", detail, summary))

    async def _known_error(_: Request, exc: Exception) -> JSONResponse:
        if status_for(exc) >= 500 and not is_out_of_memory(exc):
            log.error("API request failed", exc_info=exc)
        return response_for(exc)

    # Registered per type so Starlette answers them itself; a bare `Exception` handler would also
    # re-raise them into the server log as crashes.
    for exc_type in (*(t for t, _ in STATUS_BY_TYPE), MemoryError, RuntimeError, Exception):
        app.add_exception_handler(exc_type, _known_error)
