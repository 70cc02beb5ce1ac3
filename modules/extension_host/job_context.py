"""Which job extension code is running for: set while a script hook or callback runs, read by the
A1111 facades (`shared.opts` gives the job's settings view, `shared.state` its control).

A leaf module (it imports only modules.core) so the runner, the facades' views and the host can
all import it without importing each other."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modules.core.jobs import JobControl

CURRENT_P: contextvars.ContextVar[Any] = contextvars.ContextVar("extension_current_p", default=None)
CURRENT_CONTROL: contextvars.ContextVar[JobControl | None] = contextvars.ContextVar(
    "extension_current_control", default=None
)


@contextmanager
def job_context(p: Any, control: JobControl | None) -> Iterator[None]:
    tokens = (CURRENT_P.set(p), CURRENT_CONTROL.set(control) if control is not None else None)
    try:
        yield
    finally:
        if tokens[1] is not None:
            CURRENT_CONTROL.reset(tokens[1])
        CURRENT_P.reset(tokens[0])
