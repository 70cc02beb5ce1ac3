"""`/file=<path>`: A1111's file route, serving only from the shared roots: the outputs folder,
--gradio-allowed-path folders, the installed extensions (user and built-in: extensions load their
own JSON/CSV/images this way) and A1111's temp folders (`tmp/` of the web UI and of the data dir).

A path is resolved (symlinks and `..` included) before it is compared with the allowed roots, so
no spelling of a path outside them gets through; a hidden part (`.git/config`, `.env`) inside a
root is refused too. Relative paths are taken from the data folder, then from the web UI folder
(A1111 resolved them from its own folder, where extensions wrote their `tmp/` files).
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


def _inside(real: Path, roots: Sequence[Path]) -> Path | None:
    return next((root for root in roots if real == root or real.is_relative_to(root)), None)


def _shared(real: Path, roots: Sequence[Path]) -> bool:
    """Inside a root, and no hidden part below it (.git, .env...)."""
    root = _inside(real, roots)
    return root is not None and not any(part.startswith(".") for part in real.relative_to(root).parts)


def resolve_served_file(requested: str, base: Path | Sequence[Path], roots: Sequence[Path]) -> Path:
    """The real file behind `requested` if it lies inside one of `roots`; ApiError otherwise.
    A relative path is tried against each base in turn; the first existing file wins."""
    if "\x00" in requested:
        raise ApiError(400, "invalid file path", "BadRequest")
    bases = [base] if isinstance(base, Path) else list(base)
    path = Path(requested)
    candidates = [path] if path.is_absolute() else [b / path for b in bases]
    shared = [real for real in (Path(os.path.realpath(c)) for c in candidates) if _shared(real, roots)]
    if not shared:
        raise ApiError(403, f"file {requested!r} is not in a folder this server shares", "Forbidden")
    for real in shared:
        if real.is_file():
            return real
    raise ApiError(404, f"file {requested!r} not found", "NotFound")


def add_file_routes(app: FastAPI, base: Path | Sequence[Path], roots: Sequence[Path]) -> None:
    @app.get("/file={path:path}", tags=["files"])
    async def serve_file(path: str) -> FileResponse:
        return FileResponse(resolve_served_file(path, base, roots))
