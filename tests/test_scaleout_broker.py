"""Scale-out pieces without workers: the broker URL (password never shown), Redis unreachable is a
clear error and not a hang, a worker with other extensions is refused, the batch-count split keeps
A1111's seeds, and a queue with several slots runs jobs side by side, still in fair order."""

from __future__ import annotations

import threading
import time

import pytest

from modules.core.cmd_args import ArgumentError, parse_args
from modules.core.jobs import Fairness, JobControl, LocalJobQueue, QueuePolicy
from modules.generation.requests import Txt2ImgRequest
from modules.scaleout import registry
from modules.scaleout.broker import BrokerUrl, ScaleOutError, celery_app, connect, redact
from modules.scaleout.frontend import split_parts
from modules.scaleout.registry import Checkpoint, NoWorkerHasModel, WorkerInfo, WorkerPool
from tests.scaleout_harness import free_port, redis_server


def test_the_password_never_shows_in_messages() -> None:
    url = "redis://:s3cret@10.0.0.5:6390/2"
    assert redact(url) == "redis://***@10.0.0.5:6390/2"
    assert BrokerUrl.parse(url).safe == "redis://***@10.0.0.5:6390/2"
    with pytest.raises(ScaleOutError) as bad:
        BrokerUrl.parse("amqp://:s3cret@host/0")
    assert "s3cret" not in str(bad.value) and "redis://" in str(bad.value)
    with pytest.raises(ScaleOutError, match="database"):
        BrokerUrl.parse("redis://:s3cret@host:6379/zero")


def test_only_json_crosses_the_broker_and_jobs_survive_a_dead_worker() -> None:
    conf = celery_app(BrokerUrl.parse("redis://127.0.0.1:1/0")).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.result_accept_content == ["json"] and conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    tls = celery_app(BrokerUrl.parse("rediss://:pw@example.org:6380/0")).conf
    assert tls.broker_use_ssl and tls.redis_backend_use_ssl


def test_redis_unreachable_is_a_clear_error_not_a_hang() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ScaleOutError) as error:
        connect(BrokerUrl.parse(f"redis://:hunter2@127.0.0.1:{port}/0"))
    assert time.monotonic() - started < 10
    assert f"cannot reach Redis at redis://***@127.0.0.1:{port}/0" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_wrong_password_is_named_without_showing_it() -> None:
    with redis_server(password="right-one") as url:
        with pytest.raises(ScaleOutError) as error:
            connect(BrokerUrl.parse(url.replace("right-one", "wrong-one")))
        assert "refused the password" in str(error.value) or "cannot reach" in str(error.value)
        assert "wrong-one" not in str(error.value)
        assert connect(BrokerUrl.parse(url)).ping()


def test_a_worker_with_other_extensions_is_refused_saying_why() -> None:
    with redis_server() as url:
        client = connect(BrokerUrl.parse(url))
        registry.check_extensions(client, ["anything"])  # no front end yet: nothing to compare
        registry.publish_extensions(client, ["sd-webui-controlnet", "adetailer"])
        registry.check_extensions(client, ["adetailer", "sd-webui-controlnet"])
        with pytest.raises(ScaleOutError) as refused:
            registry.check_extensions(client, ["adetailer", "stable-diffusion-webui-rembg"])
        message = str(refused.value)
        assert "missing here: sd-webui-controlnet" in message
        assert "not on the front end: stable-diffusion-webui-rembg" in message


def test_worker_flag_needs_a_queue() -> None:
    with pytest.raises(ArgumentError, match="--worker needs --queue"):
        parse_args(["--worker"])
    args = parse_args(["--worker", "--queue", "redis://127.0.0.1:6379/0", "--device-id", "1"])
    assert args.worker and args.device_id == "1"


def test_batch_count_split_keeps_a1111_seeds() -> None:
    req = Txt2ImgRequest(prompt="x", seed=-1, n_iter=3, batch_size=2)
    parts = split_parts(req, 100, 500, "tiny-sd1")
    assert [(p.request["seed"], p.request["subseed"], p.request["n_iter"]) for p in parts] == [
        (100, 500, 1),
        (102, 502, 1),
        (104, 504, 1),
    ]
    varied = Txt2ImgRequest(prompt="x", n_iter=2, subseed_strength=0.5)
    assert [p.request["seed"] for p in split_parts(varied, 7, 9, None)] == [7, 7]
    scripted = Txt2ImgRequest(prompt="x", n_iter=3, script_name="x/y/z plot")
    assert len(split_parts(scripted, 1, 2, None)) == 1  # a script decides what runs: not split


def test_a_queue_with_slots_runs_jobs_side_by_side_in_fair_order() -> None:
    slots = {"n": 2}
    queue = LocalJobQueue(QueuePolicy(fairness=Fairness.ROUND_ROBIN), slots=lambda: slots["n"])
    gate = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def work(name: str):  # type: ignore[no-untyped-def]
        def run(control: JobControl) -> str:
            with lock:
                started.append(name)
            assert gate.wait(30)
            return name

        return run

    jobs = [queue.submit("t", work(f"{u}{n}"), owner=u) for n in range(3) for u in ("a", "b", "c")]
    deadline = time.monotonic() + 10
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(started) == ["a0", "b0"]  # two at once, not three
    assert queue.current_for("b") is jobs[1]  # each user sees their own running job
    gate.set()
    assert [j.wait(30) for j in jobs] == [f"{u}{n}" for n in range(3) for u in ("a", "b", "c")]
    assert started[:2] == ["a0", "b0"] or started[:2] == ["b0", "a0"]
    assert sorted(started[2:5]) == ["a1", "b1", "c0"]
    queue.shutdown()


def test_jobs_go_to_a_worker_with_the_checkpoint_preferring_one_that_has_it_loaded() -> None:
    sd15 = Checkpoint("sd15.safetensors [abcd1234]", "sd15.safetensors", "abcd1234")
    xl = Checkpoint("xl/base.safetensors [99887766]", "xl/base.safetensors", "99887766")
    with redis_server() as url:
        client = connect(BrokerUrl.parse(url))
        registry.announce(client, WorkerInfo("a", "q-a", (sd15,)))
        registry.announce(client, WorkerInfo("b", "q-b", (sd15, xl), loaded=sd15.title))
        pool = WorkerPool(client, refresh_seconds=0)
        assert [c.title for c in pool.checkpoints()] == [sd15.title, xl.title]  # the union
        first = pool.acquire("sd15", stop=lambda: True)
        second = pool.acquire("sd15.safetensors", stop=lambda: True)
        assert (first and first.id, second and second.id) == ("b", "a")  # loaded first, then any
        assert pool.acquire("abcd1234", stop=lambda: True) is None  # both busy: wait (here: stop)
        assert first is not None
        pool.release(first)
        chosen = pool.acquire("xl/base", stop=lambda: True)
        assert chosen is not None and chosen.id == "b"
        with pytest.raises(NoWorkerHasModel) as missing:
            pool.acquire("flux-dev", stop=lambda: True)
        assert str(missing.value) == (
            "no live worker has the checkpoint 'flux-dev'; workers have: "
            "sd15.safetensors [abcd1234], xl/base.safetensors [99887766]"
        )


def test_a_job_waiting_for_a_worker_gets_one_that_joins_late() -> None:
    sd15 = Checkpoint("sd15.safetensors [abcd1234]", "sd15.safetensors", "abcd1234")
    with redis_server() as url:
        client = connect(BrokerUrl.parse(url))
        registry.announce(client, WorkerInfo("busy", "q-busy", (sd15,)))
        pool = WorkerPool(client, refresh_seconds=0)
        assert pool.acquire("sd15", stop=lambda: True) is not None  # the only worker is now busy
        got: list[WorkerInfo | None] = []
        waiter = threading.Thread(target=lambda: got.append(pool.acquire("sd15", stop=lambda: False)))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not got  # waits, without an error, while all are busy
        registry.announce(client, WorkerInfo("late", "q-late", (sd15,)))
        waiter.join(10)
        assert got and got[0] is not None and got[0].id == "late"
