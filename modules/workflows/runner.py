"""The one job runner for the UI and the API: submit a job for a caller (owner and quota key from
the access policy), stream it (Gradio handlers) or await it (HTTP routes), and say what went wrong
in words users understand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from modules.access.policy import Caller
from modules.core.jobs import Job, JobFn, JobInterrupted, JobNotFound, LocalJobQueue

POLL_SECONDS = 0.25


class JobKind(StrEnum):
    """What a job does (part of its task id, shown in progress answers)."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    EXTRAS = "extras"
    INTERROGATE = "interrogate"
    LOAD_MODEL = "load-model"
    UNLOAD_MODEL = "unload-model"
    RELOAD_MODEL = "reload-model"
    MERGE = "modelmerger"
    TRAIN = "train"
    PREPROCESS = "train-preprocess"


class JobRunner:
    def __init__(self, jobs: LocalJobQueue):
        self.jobs = jobs

    def submit(self, caller: Caller, kind: JobKind, fn: JobFn, task_id: str | None = None) -> Job:
        """Queue `fn` for the caller; the queue limit counts the caller's quota key (user or address)."""
        return self.jobs.submit(kind.value, fn, owner=caller.user, task_id=task_id, quota_key=caller.quota_key)

    def stream(self, job: Job, poll: float = POLL_SECONDS) -> Iterator[int]:
        """While the job has not ended: its queue position (0 = running), every `poll` seconds."""
        while not job.done_event.wait(poll):
            yield self.jobs.position(job)

    async def wait(self, job: Job) -> Any:
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


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.OutOfMemoryError (CUDA/MPS/XPU), and errors whose text says so."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return "out of memory" in str(exc).lower() and isinstance(exc, RuntimeError)


def describe(exc: BaseException) -> str:
    """The message a user sees for a failed request or job (API `detail`, the UI's error box)."""
    if isinstance(exc, JobInterrupted):
        return "the job was cancelled before it started"
    if isinstance(exc, JobNotFound):
        return f"no task {exc.args[0]!r}" if exc.args else "no such task"
    if is_out_of_memory(exc):
        return f"out of memory while running the job ({type(exc).__name__}: {exc}); try a smaller size or batch"
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc) or type(exc).__name__
