"""A scale-out front end (`--queue`, real uvicorn, real Redis) with announced workers and no
worker processes: what it lists and where it sends jobs, read from Redis itself."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from modules.scaleout import registry
from modules.scaleout.broker import BrokerUrl, connect, key
from modules.scaleout.registry import Checkpoint, WorkerInfo
from modules.ui.option_components import checkpoint_choices
from tests.api_server import start_server
from tests.fixtures_models import TinyModelFiles
from tests.scaleout_harness import redis_server

ONLY = Checkpoint("worker-only.safetensors [0123456789]", "worker-only.safetensors", "0123456789")
OTHER = Checkpoint("other.safetensors [abcdef0123]", "other.safetensors", "abcdef0123")


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@contextmanager
def announcing(client: Any, *workers: WorkerInfo) -> Iterator[None]:
    """Workers that announce themselves (as a real one does, every second) and do nothing else."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            for worker in workers:
                registry.announce(client, worker)
            stop.wait(registry.HEARTBEAT_SECONDS)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        for worker in workers:
            client.delete(key("worker", worker.id))


def queued_payloads(client: Any, queue: str) -> list[dict[str, Any]]:
    """The tasks waiting in a worker's Celery queue (a Redis list of JSON messages)."""
    messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[0][0] for m in messages]


def test_front_end_lists_the_workers_checkpoints_and_routes_a_worker_only_one(
    tmp_path: Path, tiny_models: TinyModelFiles
) -> None:
    with redis_server() as url:
        client = connect(BrokerUrl.parse(url))
        live = start_server(tmp_path / "front", tiny_models, "--nowebui", "--queue", url)
        workers = (WorkerInfo("only", "q-only", (ONLY,)), WorkerInfo("other", "q-other", (OTHER,)))
        try:
            with live.client() as api:
                with announcing(client, *workers):
                    wait_for(lambda: ONLY.title in api.get("/sdapi/v1/sd-models").text)
                    models = api.get("/sdapi/v1/sd-models").json()
                    assert [m["title"] for m in models] == [OTHER.title, ONLY.title]  # the workers', not ours
                    assert checkpoint_choices(live.services) == [OTHER.title, ONLY.title]  # the UI's dropdown
                    assert models[1]["model_name"] == "worker-only" and models[1]["hash"] == "0123456789"

                    chosen = api.post("/sdapi/v1/options", json={"sd_model_checkpoint": "worker-only"})
                    assert chosen.status_code == 200, chosen.text
                    assert api.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == ONLY.title
                    wrong = api.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd1"})
                    assert wrong.status_code >= 400 and "no live worker has the checkpoint 'tiny-sd1'" in wrong.text

                    body = {"prompt": "a", "steps": 1, "width": 64, "height": 64}
                    body["override_settings"] = {"sd_model_checkpoint": "worker-only"}
                    answers: list[httpx.Response] = []
                    post = threading.Thread(target=lambda: answers.append(api.post("/sdapi/v1/txt2img", json=body)))
                    post.start()
                    wait_for(lambda: client.llen("q-only") > 0 or not post.is_alive())
                    assert client.llen("q-other") == 0
                    task = queued_payloads(client, "q-only")[0]
                    assert task["kind"] == "txt2img" and task["request"]["prompt"] == "a"
                    assert task["request"]["override_settings"]["sd_model_checkpoint"] == "worker-only"
                api.post("/sdapi/v1/interrupt")  # the announced worker is gone: the job ends unmade
                post.join(60)
                assert not post.is_alive() and answers
        finally:
            live.stop()
