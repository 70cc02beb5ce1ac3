"""The job queue: order, ids, per-user visibility and control, limits, failures, memory retention."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modules.core.jobs import (
    Fairness,
    Job,
    JobControl,
    JobInterrupted,
    JobNotFound,
    JobStatus,
    LocalJobQueue,
    QueueFull,
    QueuePolicy,
)


class Gate:
    """A job function that blocks until released, so tests control what is running."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, control: JobControl) -> str:
        self.started.set()
        assert self.release.wait(10)
        control.check()
        return "gate"


def recorder(log: list[str], name: str) -> Callable[[JobControl], str]:
    def run(_: JobControl) -> str:
        log.append(name)
        return name

    return run


def sized(n: int, data: bytearray) -> Callable[[JobControl], tuple[int, int]]:
    return lambda _: (n, len(data))


@pytest.fixture
def queue() -> Iterator[LocalJobQueue]:
    q = LocalJobQueue(visible=lambda owner, user: user in (None, owner, "root") or owner is None)
    yield q
    q.shutdown()


def test_task_ids_have_a1111_format_and_can_be_forced(queue: LocalJobQueue) -> None:
    job = queue.submit("txt2img", lambda c: 1)
    assert re.fullmatch(r"task\(txt2img-[A-Z0-9]{7}\)", job.id)
    forced = queue.submit("txt2img", lambda c: 2, task_id="task(mine)")
    assert forced.id == "task(mine)" and forced.wait(5) == 2
    with pytest.raises(ValueError, match="already in use"):
        queue.submit("txt2img", lambda c: 3, task_id="task(mine)")


def test_fifo_order_and_positions(queue: LocalJobQueue) -> None:
    gate, ran = Gate(), list[str]()
    first = queue.submit("a", gate)
    assert gate.started.wait(5)
    jobs = [queue.submit("b", recorder(ran, f"j{i}"), owner=f"u{i % 2}") for i in range(5)]
    assert [queue.position(j) for j in jobs] == [1, 2, 3, 4, 5]
    assert queue.position(first) == 0
    assert [j.id for j in queue.pending()] == [j.id for j in jobs]
    gate.release.set()
    for job in jobs:
        job.wait(5)
    assert ran == [f"j{i}" for i in range(5)]


def test_round_robin_lets_users_take_turns() -> None:
    queue = LocalJobQueue(policy=QueuePolicy(fairness=Fairness.ROUND_ROBIN))
    gate, ran = Gate(), list[str]()
    queue.submit("a", gate, owner="alice")
    assert gate.started.wait(5)
    alice = [queue.submit("x", recorder(ran, f"a{i}"), owner="alice") for i in range(3)]
    bob = [queue.submit("x", recorder(ran, f"b{i}"), owner="bob") for i in range(2)]
    predicted = [j.id for j in queue.pending()]
    gate.release.set()
    for job in alice + bob:
        job.wait(5)
    assert ran == ["b0", "a0", "b1", "a1", "a2"]  # alice was served last, so bob goes first
    by_id = {j.id: n for j, n in zip(alice + bob, ["a0", "a1", "a2", "b0", "b1"], strict=True)}
    assert [by_id[i] for i in predicted] == ran  # positions shown match the real order
    queue.shutdown()


def test_users_see_and_control_only_their_jobs_admins_all(queue: LocalJobQueue) -> None:
    gate = Gate()
    running = queue.submit("a", gate, owner="alice")
    assert gate.started.wait(5)
    waiting = queue.submit("b", lambda c: "late", owner="alice")
    with pytest.raises(JobNotFound):
        queue.get(running.id, user="bob")
    with pytest.raises(JobNotFound):
        queue.interrupt(running.id, user="bob")
    assert queue.interrupt(user="bob") is False  # bob has nothing running
    assert queue.skip(user="bob") is False
    assert not running.control.interrupted.is_set()
    assert queue.pending(user="bob") == [] and queue.pending(user="alice") == [waiting]
    assert queue.current_for("bob") is None and queue.current_for("alice") is running
    assert queue.get(running.id, user="root") is running  # admin
    assert queue.current_for(None) is running  # no logins: A1111 global view
    assert queue.interrupt(waiting.id, user="root") is True  # admin cancels a queued job
    with pytest.raises(JobInterrupted):
        waiting.wait(5)
    assert waiting.status == JobStatus.CANCELLED
    assert queue.interrupt(user="alice") is True
    gate.release.set()
    with pytest.raises(JobInterrupted):
        running.wait(5)


def test_max_queued_per_user_counts_waiting_jobs_per_key() -> None:
    queue = LocalJobQueue(policy=lambda: QueuePolicy(max_queued_per_user=2))
    gate = Gate()
    queue.submit("a", gate, owner="alice")
    assert gate.started.wait(5)
    queue.submit("x", lambda c: 1, owner="alice")
    queue.submit("x", lambda c: 1, owner="alice")
    with pytest.raises(QueueFull, match="limit is 2"):
        queue.submit("x", lambda c: 1, owner="alice")
    queue.submit("x", lambda c: 1, owner="bob")  # another user is not affected
    queue.submit("x", lambda c: 1, quota_key="addr:10.0.0.2")
    queue.submit("x", lambda c: 1, quota_key="addr:10.0.0.2")
    with pytest.raises(QueueFull, match="client 10.0.0.2"):
        queue.submit("x", lambda c: 1, quota_key="addr:10.0.0.2")
    gate.release.set()
    queue.shutdown()


@pytest.mark.parametrize("error", [MemoryError("boom"), RuntimeError("CUDA out of memory")])
def test_failing_job_reports_error_and_next_job_runs(queue: LocalJobQueue, error: BaseException) -> None:
    def fail(_: JobControl) -> None:
        raise error

    bad = queue.submit("x", fail)
    good = queue.submit("x", lambda c: "fine")
    with pytest.raises(type(error)):
        bad.wait(5)
    assert bad.status == JobStatus.FAILED
    assert good.wait(5) == "fine" and good.status == JobStatus.DONE


def test_done_callbacks_run_once_also_when_added_late(queue: LocalJobQueue) -> None:
    seen: list[str] = []
    job = queue.submit("x", lambda c: 1)
    job.add_done_callback(lambda j: seen.append(j.id))
    job.wait(5)
    job.add_done_callback(lambda j: seen.append("late"))
    assert seen == [job.id, "late"]


def test_finished_jobs_drop_collected_results_and_closures() -> None:
    queue = LocalJobQueue(keep_finished=4, keep_results=2)
    jobs: list[Job] = []
    for i in range(6):
        payload = bytearray(1000)
        job = queue.submit("x", sized(i, payload))
        assert job.wait(5) == (i, 1000)
        jobs.append(job)
    assert all(j.fn is None for j in jobs)
    assert [j.result for j in jobs[-2:]] == [(4, 1000), (5, 1000)]
    assert all(j.result is None for j in jobs[:-2])
    with pytest.raises(JobNotFound):
        queue.get(jobs[0].id)  # beyond keep_finished
    assert queue.get(jobs[-1].id) is jobs[-1]
    queue.shutdown()


def test_uncollected_result_is_kept_until_taken() -> None:
    queue = LocalJobQueue(keep_results=1)
    slow_reader = queue.submit("x", lambda c: "mine")
    others = [queue.submit("x", sized(i, bytearray())) for i in range(3)]
    for job in others:
        job.wait(5)
    assert slow_reader.wait(5) == "mine"
    queue.shutdown()


def test_progress_formula_and_eta() -> None:
    control = JobControl()
    control.begin_batch(1, 4, 10)
    control.set_step(5)
    assert control.progress() == pytest.approx((1 + 0.5) / 4)
    assert control.eta() is None  # not started
    control.started_at = 0.0
    eta: Any = control.eta()
    assert eta is not None and eta > 0
