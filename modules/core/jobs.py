"""Job queue and per-job control (progress, interrupt, skip).

One worker runs jobs one at a time (a GPU does one generation at a time). Each job has its own
`JobControl`: interrupting or skipping one job never touches another, unlike A1111's single
global `shared.state`. The `JobQueue` protocol is what UI and API use; `LocalJobQueue` is the
in-process implementation. A distributed implementation (workers behind an existing broker)
only has to provide the same protocol.

Visibility: a job submitted with an owner is visible to that owner and to admins only; jobs of
other users are reported as unknown (`JobNotFound`), never as forbidden, so ids cannot be probed.
A caller without a user name (no logins configured) sees everything: A1111's global semantics.
"""

from __future__ import annotations

import contextvars
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
    """A user (or, without logins, a client address) has too many jobs waiting."""


class JobNotFound(KeyError):
    """No such job, or one the caller may not see."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Fairness(StrEnum):
    """Which waiting job runs next."""

    FIFO = "fifo"  # strictly in submission order (A1111)
    ROUND_ROBIN = "round-robin"  # take turns between users; FIFO within one user


@dataclass(frozen=True)
class QueuePolicy:
    """Queue limits, read again at every submission (settings may change at run time)."""

    fairness: Fairness = Fairness.FIFO
    max_queued_per_user: int = 0  # waiting jobs per quota key; 0 = no limit


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
    preview_size: tuple[int, int] | None = None  # (width, height) of the image the preview is of
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

    def set_preview(self, image: Any, size: tuple[int, int] | None = None) -> None:
        with self._lock:
            self.preview, self.preview_size = image, size
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
    fn: JobFn | None
    quota_key: str | None = None
    control: JobControl = field(default_factory=JobControl)
    status: JobStatus = JobStatus.QUEUED
    result: Any = None
    error: BaseException | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    seq: int = 0
    collected: bool = False  # the submitter has taken the result (the queue may then drop it)
    done_event: threading.Event = field(default_factory=threading.Event)
    _callbacks: list[Callable[[Job], None]] = field(default_factory=list, repr=False)
    _callback_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> bool:
        return self.done_event.is_set()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until finished; re-raise the job's exception in the caller."""
        if not self.done_event.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.status}")
        self.collected = True
        if self.error is not None:
            raise self.error
        return self.result

    def add_done_callback(self, callback: Callable[[Job], None]) -> None:
        """Call `callback(job)` once the job has finished (at once if it already has)."""
        with self._callback_lock:
            if not self.done_event.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _finish(self) -> None:
        self.finished_at = time.time()
        with self._callback_lock:
            self.done_event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # boundary: a broken waiter must not break the worker
                log.exception("done-callback of job %s failed", self.id)


def new_task_id(kind: str) -> str:
    """A1111's API task id format: task(<kind>-<7 characters A-Z0-9>)."""
    alphabet = string.ascii_uppercase + string.digits
    return f"task({kind}-{''.join(secrets.choice(alphabet) for _ in range(7))})"


class JobQueue(Protocol):
    """What UI and API use; `user=None` means "no logins configured" (sees everything)."""

    def submit(
        self,
        kind: str,
        fn: JobFn,
        *,
        owner: str | None = None,
        task_id: str | None = None,
        quota_key: str | None = None,
    ) -> Job: ...
    def get(self, job_id: str, *, user: str | None = None) -> Job: ...
    def position(self, job: Job) -> int: ...
    def pending(self, *, user: str | None = None) -> list[Job]: ...
    def current(self) -> Job | None: ...
    def current_for(self, user: str | None) -> Job | None: ...
    def interrupt(self, job_id: str | None = None, *, user: str | None = None) -> bool: ...
    def skip(self, job_id: str | None = None, *, user: str | None = None) -> bool: ...


# The control of the job the current thread runs for (set by the worker around each job): code deep
# inside a job finds its own job here, never another user's (unlike "the queue's current job").
_RUNNING_CONTROL: contextvars.ContextVar[JobControl | None] = contextvars.ContextVar("running_job", default=None)


def running_control() -> JobControl | None:
    """The JobControl of the job this code runs in (None outside a job, e.g. in a server thread)."""
    return _RUNNING_CONTROL.get()


class LocalJobQueue:
    """In-process queue with one worker thread.

    `policy` is called at each submission and each pick (settings may change while running).
    Finished jobs stay visible for lookups (`keep_finished`), but only the last `keep_results`
    keep their results in memory once their submitter has taken them.
    """

    def __init__(
        self,
        policy: Callable[[], QueuePolicy] | QueuePolicy | None = None,
        visible: Callable[[str | None, str | None], bool] | None = None,
        keep_finished: int = 64,
        keep_results: int = 2,
        slots: Callable[[], int] | None = None,
    ):
        fixed = policy if isinstance(policy, QueuePolicy) else QueuePolicy()
        self._policy: Callable[[], QueuePolicy] = policy if callable(policy) else (lambda: fixed)
        # (job owner, asking user) -> may see it; the access policy's rule (modules.access.policy)
        self._visible = visible or _owner_only
        self._queue: list[Job] = []
        self._jobs: dict[str, Job] = {}
        self._finished: deque[Job] = deque()
        self._keep_finished = keep_finished
        self._keep_results = keep_results
        self._current: Job | None = None
        # How many jobs may run at once (a scale-out front end: one per free remote worker); None = one,
        # run on the queue's own thread. Read at each pick, as workers join and leave.
        self._slots = slots
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._turn = itertools.count()
        self._last_served: dict[str | None, int] = {}
        self._worker: threading.Thread | None = None
        self._stopping = False

    # --- submission ----------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        fn: JobFn,
        *,
        owner: str | None = None,
        task_id: str | None = None,
        quota_key: str | None = None,
    ) -> Job:
        """Queue `fn`; `quota_key` (default: the owner) is what max_queued_per_user counts."""
        key = quota_key if quota_key is not None else owner
        policy = self._policy()
        with self._cond:
            if policy.max_queued_per_user > 0 and key is not None:
                waiting = sum(1 for j in self._queue if j.quota_key == key)
                if waiting >= policy.max_queued_per_user:
                    raise QueueFull(
                        f"{waiting} jobs are already waiting for {_describe_key(key)}; "
                        f"the limit is {policy.max_queued_per_user} (setting api_max_queued_per_user)"
                    )
            job_id = task_id or new_task_id(kind)
            taken = self._jobs.get(job_id)
            if taken is not None:
                if not self._may_see(taken, owner):
                    raise JobNotFound(job_id)  # another user's task id: as if unknown, revealing nothing
                raise ValueError(f"task id {job_id!r} is already in use")
            job = Job(id=job_id, kind=kind, owner=owner, fn=fn, quota_key=key, seq=next(self._seq))
            self._jobs[job_id] = job
            self._queue.append(job)
            self._ensure_worker()
            self._cond.notify_all()
        return job

    # --- queries ---------------------------------------------------------------------------
    def _may_see(self, job: Job, user: str | None) -> bool:
        return self._visible(job.owner, user)

    def get(self, job_id: str, *, user: str | None = None) -> Job:
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None or not self._may_see(job, user):
            raise JobNotFound(job_id)  # another user's job is reported as unknown, not forbidden
        return job

    def _run_order(self) -> list[Job]:
        """Waiting jobs in the order they will run (caller holds the lock)."""
        if self._policy().fairness != Fairness.ROUND_ROBIN:
            return list(self._queue)
        order: list[Job] = []
        waiting = list(self._queue)
        served = dict(self._last_served)
        turn = itertools.count(max(served.values(), default=0) + 1)
        while waiting:
            job = min(waiting, key=lambda j: (served.get(j.quota_key, -1), j.seq))
            waiting.remove(job)
            served[job.quota_key] = next(turn)
            order.append(job)
        return order

    def position(self, job: Job) -> int:
        """0 = running or finished, k = k-th in line."""
        with self._cond:
            for index, queued in enumerate(self._run_order()):
                if queued is job:
                    return index + 1
        return 0

    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    def pending(self, *, user: str | None = None) -> list[Job]:
        """Waiting jobs the user may see, in run order."""
        with self._cond:
            return [j for j in self._run_order() if self._may_see(j, user)]

    def current(self) -> Job | None:
        """The running job, whoever owns it (callers must check visibility before showing it)."""
        return self._current

    def current_for(self, user: str | None) -> Job | None:
        """The running job if `user` may see it (with several running: the user's own first)."""
        with self._cond:
            running = list(self._running) or ([self._current] if self._current is not None else [])
        visible = [job for job in running if self._may_see(job, user)]
        own = [job for job in visible if user is not None and job.owner == user]
        chosen = own or visible
        return chosen[0] if chosen else None

    def finished(self, *, user: str | None = None) -> list[Job]:
        """Recently finished jobs the user may see, oldest first."""
        with self._cond:
            return [j for j in self._finished if self._may_see(j, user)]

    # --- control ---------------------------------------------------------------------------
    def _target(self, job_id: str | None, user: str | None) -> Job | None:
        if job_id is not None:
            return self.get(job_id, user=user)
        return self.current_for(user)

    def interrupt(self, job_id: str | None = None, *, user: str | None = None) -> bool:
        """Interrupt a running job or cancel a queued one. Without an id: the running job."""
        job = self._target(job_id, user)
        if job is None:
            return False
        with self._cond:
            if job.status == JobStatus.QUEUED and job in self._queue:
                self._queue.remove(job)
                job.status = JobStatus.CANCELLED
                job.error = JobInterrupted("cancelled before it started")
                job.fn = None
                self._remember_finished(job)
                cancelled = True
            else:
                cancelled = False
        if cancelled:
            job._finish()
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
        """Keep ids for lookups; drop results (and previews) of all but the newest few (lock held)."""
        self._finished.append(job)
        while len(self._finished) > self._keep_finished:
            self._jobs.pop(self._finished.popleft().id, None)
        older = len(self._finished) - self._keep_results
        for index, old in enumerate(self._finished):
            if index >= older:
                break
            if old.collected:
                old.result = None
            old.control.preview = None

    def _next_job(self) -> Job:
        """Remove and return the job that runs next (lock held, queue not empty)."""
        if self._policy().fairness == Fairness.ROUND_ROBIN:
            job = min(self._queue, key=lambda j: (self._last_served.get(j.quota_key, -1), j.seq))
        else:
            job = self._queue[0]
        self._queue.remove(job)
        self._last_served[job.quota_key] = next(self._turn)
        if len(self._last_served) > 4096:  # forget users with nothing waiting
            waiting = {j.quota_key for j in self._queue}
            self._last_served = {k: v for k, v in self._last_served.items() if k in waiting}
        return job

    def _run(self) -> None:
        if self._slots is not None:
            self._run_parallel(self._slots)
            return
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._next_job()
                job.status = JobStatus.RUNNING
                self._current = job
            self._execute(job)

    def _run_parallel(self, slots: Callable[[], int]) -> None:
        """Start the next job on its own thread whenever fewer than `slots()` jobs run."""
        while True:
            with self._cond:
                while not self._stopping and (not self._queue or len(self._running) >= max(0, slots())):
                    self._cond.wait(0.2)  # slots change without a notify (a worker joins)
                if self._stopping:
                    return
                job = self._next_job()
                job.status = JobStatus.RUNNING
                self._running.append(job)
                self._current = job
            threading.Thread(target=self._execute, args=(job,), name=f"job-{job.id}", daemon=True).start()

    def _execute(self, job: Job) -> None:
        job.control.started_at = time.monotonic()
        fn, job.fn = job.fn, None  # release the closure (decoded images, request) when done
        token = _RUNNING_CONTROL.set(job.control)
        try:
            assert fn is not None
            job.result = fn(job.control)
            job.status = JobStatus.DONE
        except BaseException as exc:  # boundary: a failing job must not kill the worker
            if not isinstance(exc, JobInterrupted):
                log.exception("job %s failed", job.id)
            job.error = exc
            job.status = JobStatus.FAILED
        finally:
            _RUNNING_CONTROL.reset(token)
            del fn
            with self._cond:
                if job in self._running:
                    self._running.remove(job)
                    self._cond.notify_all()
                self._current = self._running[-1] if self._running else None
                self._remember_finished(job)
            job._finish()


def _owner_only(owner: str | None, user: str | None) -> bool:
    """Visibility without an access policy (no admins): the owner, or anyone without logins."""
    return user is None or owner is None or owner == user


def _describe_key(key: str) -> str:
    return f"client {key[5:]}" if key.startswith("addr:") else f"user {key!r}"
