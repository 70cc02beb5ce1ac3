"""`/file=<path>`: A1111's file route, serving only from the outputs folder and allowed folders.

A path is resolved (symlinks and `..` included) before it is compared with the allowed roots, so
no spelling of a path outside them gets through. Relative paths are taken from the data folder.
Refusals are 403 (outside the roots) and 404 (inside, but no such file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from modules.api.errors import ApiError


def allowed_roots(outputs_dir: Path, extra: Sequence[str | Path]) -> tuple[Path, ...]:
    return tuple(Path(os.path.realpath(p)) for p in (outputs_dir, *extra))


def resolve_served_file(requested: str, base: Path, roots: Sequence[Path]) -> Path:
    """The real file behind `requested` if it lies inside one of `roots`; ApiError otherwise."""
    if "\x00" in requested:
        raise ApiError(400, "invalid file path", "BadRequest")
    candidate = Path(requested)
    if not candidate.is_absolute():
        candidate = base / candidate
    real = Path(os.path.realpath(candidate))
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise ApiError(403, f"file {requested!r} is not in a folder this server shares", "Forbidden")
    if not real.is_file():
        raise ApiError(404, f"file {requested!r} not found", "NotFound")
    return real


def add_file_routes(app: FastAPI, base: Path, roots: Sequence[Path]) -> None:
    @app.get("/file={path:path}", tags=["files"])
    async def serve_file(path: str) -> FileResponse:
        return FileResponse(resolve_served_file(path, base, roots))
