"""Load: 4 signed-in clients each send 25 jobs without waiting for results (pipelined, in order).

All complete; every saved output is its own file; each client's jobs run in its sending order;
server memory is flat afterwards; one client's interrupt stops only its own job.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from modules.generation.hooks import ScriptHooks
from modules.generation.image_io import read_info_from_image
from tests.api_server import LiveServer, decode_b64, start_server
from tests.fixtures_models import TinyModelFiles

CLIENTS = 4
JOBS = 25
BLOCKED = (0, 12)  # (client, job) that client 0 interrupts while it runs
USERS = {f"user{c}": f"pass-{c}" for c in range(CLIENTS)}


class OrderHooks(ScriptHooks):
    """Records the order jobs start in; one marked prompt waits until the test releases it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()

    def before_process(self, p: Any) -> None:
        with self.lock:
            self.started.append(p.prompt)

    def process_batch(self, p: Any, **kwargs: Any) -> None:
        if p.prompt.endswith("block"):
            assert self.gate.wait(60)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    auth = ",".join(f"{u}:{p}" for u, p in USERS.items())
    server = start_server(
        tmp_path_factory.mktemp("load"),
        tiny_models,
        "--nowebui",
        "--api-auth",
        auth,
        settings={"samples_save": True, "api_max_queued_per_user": JOBS, "save_images_add_number": True},
    )
    server.services.script_hooks.attach(OrderHooks())
    yield server
    server.stop()


def payload(client: int, job: int) -> dict[str, Any]:
    prompt = f"client {client} job {job:02d}" + (" block" if (client, job) == BLOCKED else "")
    return {
        "prompt": prompt,
        "seed": 1000 * client + job,
        "width": 64,
        "height": 64,
        "steps": 1,
        "sampler_name": "Euler",
        "save_images": True,
        "force_task_id": f"task(c{client}-{job:02d})",
    }


def run_client(live: LiveServer, client: int, responses: dict[tuple[int, int], httpx.Response]) -> None:
    """Send jobs one after another, each once the previous is in the queue (not finished)."""
    user = f"user{client}"
    with live.client(auth=(user, USERS[user])) as http:
        senders = []
        for job in range(JOBS):
            body = payload(client, job)

            def send(body: dict[str, Any] = body, key: tuple[int, int] = (client, job)) -> None:
                responses[key] = http.post("/sdapi/v1/txt2img", json=body)

            sender = threading.Thread(target=send)
            sender.start()
            senders.append(sender)
            wait_accepted(http, body["force_task_id"])
        for sender in senders:
            sender.join(120)


def wait_accepted(http: httpx.Client, task_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = http.post("/internal/progress", json={"id_task": task_id}).json()
        if state["queued"] or state["active"] or state["completed"]:
            return
        time.sleep(0.005)
    raise AssertionError(f"{task_id} never reached the queue")


def interrupt_blocked_job(live: LiveServer) -> None:
    """Other users cannot stop user0's running job; user0 can."""
    owner, task = f"user{BLOCKED[0]}", f"task(c{BLOCKED[0]}-{BLOCKED[1]:02d})"
    hooks = live.services.generation.hooks
    assert isinstance(hooks, OrderHooks)
    with live.client(auth=(owner, USERS[owner])) as mine, live.client(auth=("user1", USERS["user1"])) as other:
        deadline = time.monotonic() + 90
        while mine.get("/sdapi/v1/progress").json()["state"]["job"] != task:
            assert time.monotonic() < deadline, "blocked job never ran"
            time.sleep(0.01)
        assert other.get("/sdapi/v1/progress").json()["state"]["job"] != task  # not visible to others
        assert other.post("/sdapi/v1/interrupt").status_code == 200  # user1 has nothing running: no effect
        assert other.post("/sdapi/v1/interrupt", params={"id_task": task}).status_code == 404
        assert not live.services.jobs.get(task).control.interrupted.is_set()
        assert mine.post("/sdapi/v1/interrupt").status_code == 200
        assert live.services.jobs.get(task).control.interrupted.is_set()
    hooks.gate.set()


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def warm_up(live: LiveServer) -> None:
    with live.client(auth=("user1", USERS["user1"])) as http:
        for i in range(6):
            body = {**payload(1, 0), "force_task_id": None, "seed": i, "save_images": False}
            assert http.post("/sdapi/v1/txt2img", json=body).status_code == 200


def saved_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "outputs").rglob("*.png"))


def test_four_clients_twenty_five_jobs_each(live: LiveServer) -> None:
    warm_up(live)
    before = rss_mb()
    hooks = live.services.generation.hooks
    assert isinstance(hooks, OrderHooks)
    hooks.started.clear()
    responses: dict[tuple[int, int], httpx.Response] = {}
    started = time.monotonic()
    threads = [threading.Thread(target=run_client, args=(live, c, responses)) for c in range(CLIENTS)]
    threads.append(threading.Thread(target=interrupt_blocked_job, args=(live,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    elapsed = time.monotonic() - started
    assert len(responses) == CLIENTS * JOBS

    for (client, job), response in responses.items():
        assert response.status_code == 200, (client, job, response.text)
        images = response.json()["images"]
        if (client, job) == BLOCKED:
            assert images == []  # interrupted before its first step
            continue
        assert len(images) == 1
        assert (read_info_from_image(decode_b64(images[0])).parameters or "").startswith(
            f"client {client} job {job:02d}"
        )

    for client in range(CLIENTS):
        order = [int(p.split()[3]) for p in hooks.started if p.startswith(f"client {client} ")]
        assert order == list(range(JOBS)), f"client {client} ran out of order: {order}"

    files = saved_files(live.services.paths.data_dir)
    assert len(files) == CLIENTS * JOBS - 1 == len({f.name for f in files})
    texts = {(read_info_from_image(_open(f)).parameters or "").split("\n")[0] for f in files}
    assert len(texts) == CLIENTS * JOBS - 1

    jobs = live.services.jobs
    assert jobs.queue_length() == 0 and jobs.current() is None
    assert sum(1 for j in jobs.finished() if j.result is not None) <= 2  # results are not hoarded
    growth = rss_mb() - before
    print(f"load: {CLIENTS * JOBS} jobs in {elapsed:.1f} s; RSS growth {growth:.1f} MiB")
    assert growth < 150, f"server memory grew by {growth:.0f} MiB"


def _open(path: Path) -> Any:
    from PIL import Image

    image = Image.open(path)
    image.load()
    return image
