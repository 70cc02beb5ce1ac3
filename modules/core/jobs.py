"""Job queue and per-job control (progress, interrupt, skip).

One worker runs jobs one at a time (a GPU does one generation at a time) in FIFO order.
Each job has its own `JobControl`: interrupting or skipping one job never touches another,
unlike A1111's single global `shared.state`. The `JobQueue` protocol is what UI and API use;
`LocalJobQueue` is the in-process implementation.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


class JobInterrupted(Exception):
    """Raised inside a job when its owner interrupted it; work finished so far is kept."""


class JobSkipped(Exception):
    """Raised inside a job's current batch when skipped; the job continues with its next batch."""


class QueueFull(RuntimeError):
    """A user has too many jobs waiting."""


class JobNotFound(KeyError):
    pass


class JobForbidden(PermissionError):
    pass


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class JobControl:
    """Flags and progress of one job, written by the job, read by pollers."""

    interrupted: threading.Event = field(default_factory=threading.Event)
    skipped: threading.Event = field(default_factory=threading.Event)
    stopping_after_current: threading.Event = field(default_factory=threading.Event)
    job_no: int = 0
    job_count: int = 1
    sampling_step: int = 0
    sampling_steps: int = 0
    textinfo: str = ""
    started_at: float | None = None
    preview: Any = None  # latest live-preview PIL image
    preview_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def interrupt(self) -> None:
        self.interrupted.set()

    def skip(self) -> None:
        self.skipped.set()

    def stop_after_current(self) -> None:
        self.stopping_after_current.set()

    def check(self) -> None:
        """Called between sampling steps: raise if the owner asked to stop."""
        if self.interrupted.is_set():
            raise JobInterrupted()
        if self.skipped.is_set():
            raise JobSkipped()

    def begin_batch(self, job_no: int, job_count: int, steps: int) -> None:
        with self._lock:
            self.job_no, self.job_count = job_no, job_count
            self.sampling_step, self.sampling_steps = 0, steps
            self.skipped.clear()

    def set_step(self, step: int, steps: int | None = None) -> None:
        with self._lock:
            self.sampling_step = step
            if steps is not None:
                self.sampling_steps = steps

    def set_preview(self, image: Any) -> None:
        with self._lock:
            self.preview = image
            self.preview_id += 1

    def progress(self) -> float:
        """Fraction done, A1111's formula: (job_no + step/steps) / job_count."""
        with self._lock:
            if self.job_count <= 0:
                return 0.0
            part = self.sampling_step / self.sampling_steps if self.sampling_steps else 0.0
            return min(1.0, (self.job_no + part) / self.job_count)

    def eta(self) -> float | None:
        done = self.progress()
        if self.started_at is None or done <= 0.0:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed / done - elapsed


JobFn = Callable[[JobControl], Any]


@dataclass
class Job:
    id: str
    kind: str
    owner: str | None
    fn: JobFn
    control: JobControl = field(default_factory=JobControl)
    status: JobStatus = JobStatus.QUEUED
    result: Any = None
    error: BaseException | None = None
    created_at: float = field(default_factory=time.time)
    seq: int = 0
    done_event: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until finished; re-raise the job's exception in the caller."""
        if not self.done_event.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.status}")
        if self.error is not None:
            raise self.error
        return self.result


def new_task_id(kind: str) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return f"task({kind}-{''.join(secrets.choice(alphabet) for _ in range(7))})"


class JobQueue(Protocol):
    def submit(self, kind: str, fn: JobFn, *, owner: str | None = None, task_id: str | None = None) -> Job: ...
    def get(self, job_id: str, *, user: str | None = None) -> Job: ...
    def position(self, job: Job) -> int: ...
    def pending(self, *, user: str | None = None) -> list[Job]: ...
    def current(self) -> Job | None: ...
    def interrupt(self, job_id: str | None = None, *, user: str | None = None) -> bool: ...
    def skip(self, job_id: str | None = None, *, user: str | None = None) -> bool: ...


class LocalJobQueue:
    """In-process FIFO queue with one worker thread."""

    def __init__(self, max_queued_per_user: int = 0, admins: frozenset[str] = frozenset(), keep_finished: int = 64):
        self.max_queued_per_user = max_queued_per_user
        self.admins = admins
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished: deque[str] = deque()
        self._keep_finished = keep_finished
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._worker: threading.Thread | None = None
        self._stopping = False

    # --- submission ----------------------------------------------------------------------
    def submit(self, kind: str, fn: JobFn, *, owner: str | None = None, task_id: str | None = None) -> Job:
        with self._cond:
            if self.max_queued_per_user and owner is not None:
                waiting = sum(1 for j in self._queue if j.owner == owner)
                if waiting >= self.max_queued_per_user:
                    raise QueueFull(
                        f"user {owner!r} already has {waiting} jobs waiting (limit {self.max_queued_per_user})"
                    )
            job_id = task_id or new_task_id(kind)
            if job_id in self._jobs:
                raise ValueError(f"task id {job_id!r} is already in use")
            job = Job(id=job_id, kind=kind, owner=owner, fn=fn, seq=next(self._seq))
            self._jobs[job_id] = job
            self._queue.append(job)
            self._ensure_worker()
            self._cond.notify_all()
        return job

    def run_sync(self, kind: str, fn: JobFn, *, owner: str | None = None, task_id: str | None = None) -> Any:
        return self.submit(kind, fn, owner=owner, task_id=task_id).wait()

    # --- queries ---------------------------------------------------------------------------
    def _may_see(self, job: Job, user: str | None) -> bool:
        return user is None or job.owner is None or job.owner == user or user in self.admins

    def get(self, job_id: str, *, user: str | None = None) -> Job:
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None or not self._may_see(job, user):
            raise JobNotFound(job_id)  # another user's job is reported as unknown, not forbidden
        return job

    def position(self, job: Job) -> int:
        """0 = running or done, k = k-th in line."""
        with self._cond:
            for index, queued in enumerate(self._queue):
                if queued is job:
                    return index + 1
        return 0

    def pending(self, *, user: str | None = None) -> list[Job]:
        with self._cond:
            return [j for j in self._queue if self._may_see(j, user)]

    def current(self) -> Job | None:
        return self._current

    # --- control ---------------------------------------------------------------------------
    def _target(self, job_id: str | None, user: str | None) -> Job | None:
        if job_id is not None:
            return self.get(job_id, user=user)
        current = self._current
        if current is None or not self._may_see(current, user):
            return None
        return current

    def interrupt(self, job_id: str | None = None, *, user: str | None = None) -> bool:
        """Interrupt a running job or cancel a queued one. Without an id: the running job."""
        job = self._target(job_id, user)
        if job is None:
            return False
        with self._cond:
            if job.status == JobStatus.QUEUED:
                self._queue.remove(job)
                job.status = JobStatus.CANCELLED
                job.error = JobInterrupted("cancelled before it started")
                job.done_event.set()
                self._remember_finished(job)
                return True
        job.control.interrupt()
        return True

    def skip(self, job_id: str | None = None, *, user: str | None = None) -> bool:
        job = self._target(job_id, user)
        if job is None or job.status != JobStatus.RUNNING:
            return False
        job.control.skip()
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    # --- worker ----------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="job-worker", daemon=True)
            self._worker.start()

    def _remember_finished(self, job: Job) -> None:
        self._finished.append(job.id)
        while len(self._finished) > self._keep_finished:
            self._jobs.pop(self._finished.popleft(), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                job.status = JobStatus.RUNNING
                self._current = job
            job.control.started_at = time.monotonic()
            try:
                job.result = job.fn(job.control)
                job.status = JobStatus.DONE
            except BaseException as exc:  # boundary: a failing job must not kill the worker
                if not isinstance(exc, JobInterrupted):
                    log.exception("job %s failed", job.id)
                job.error = exc
                job.status = JobStatus.FAILED
            finally:
                with self._cond:
                    self._current = None
                    self._remember_finished(job)
                job.done_event.set()
