"""Scale-out over a real Redis: a front end (`--queue redis://...`, real uvicorn) and two worker
processes (`webui.py --worker`, CPU, one torch thread, tiny SD1). Users see what they see with one
process: every job done, in order, fairly interleaved, progress and previews, their own interrupt,
a batch count split over workers with the same images, a killed worker's job done elsewhere."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from modules.generation.image_io import read_info_from_image
from modules.scaleout import registry
from tests.api_server import LiveServer, b64_png, decode_b64, make_data_dir, start_server
from tests.fixtures_models import TinyModelFiles, link_into, models_home
from tests.scaleout_harness import WorkerProcess, redis_server, start_worker, stop_all

pytestmark = pytest.mark.integration

USERS = {f"user{n}": f"pass-{n}" for n in range(5)}  # user4 holds workers busy in some tests
PASSWORD = "broker-secret-7f3a"  # Redis's password: in the --queue URL, never in a log
AUTH = {name: (name, password) for name, password in USERS.items()}


class Cluster:
    def __init__(self, live: LiveServer, url: str, root: Path, tiny: TinyModelFiles):
        self.live, self.url, self.root, self.tiny = live, url, root, tiny
        self.workers: list[WorkerProcess] = []

    @property
    def pool(self) -> registry.WorkerPool:
        return self.live.services.generation.pool  # type: ignore[attr-defined]

    def add_worker(self, worker_id: str) -> WorkerProcess:
        data = make_data_dir(self.root / worker_id, self.tiny)
        worker = start_worker(self.url, data, worker_id)
        self.workers.append(worker)
        return worker

    def wait_workers(self, count: int, timeout: float = 240) -> None:
        wait_for(lambda: len(registry.live_workers(self.pool.client)) >= count, timeout, self.logs)

    def logs(self) -> str:
        return "\n".join(f"--- {w.worker_id}\n{w.output()[-3000:]}" for w in self.workers)


def wait_for(condition: Callable[[], bool], timeout: float, describe: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting\n{describe()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scaleout")
    front = models_home(root / "front")  # the front end also lists a model no worker has
    link_into(front.ckpt_dir, tiny_models.checkpoint("sdxl"))
    with redis_server(password=PASSWORD) as url:
        live = start_server(
            root / "front",
            tiny_models,
            "--nowebui",
            "--queue",
            url,
            "--api-auth",
            ",".join(f"{u}:{p}" for u, p in USERS.items()),
            settings={
                "samples_save": True,
                "save_images_add_number": True,
                "api_queue_fairness": "round-robin",
                "api_max_queued_per_user": 20,
                "live_previews_enable": True,
                "show_progress_every_n_steps": 1,
                "show_progress_type": "Approx cheap",
            },
        )
        cluster = Cluster(live, url, root, tiny_models)
        try:
            cluster.add_worker("w1")
            cluster.add_worker("w2")
            cluster.wait_workers(2)
            yield cluster
        finally:
            live.stop()
            stop_all(cluster.workers)


def job(prompt: str, seed: int, **fields: Any) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "seed": seed,
        "width": 64,
        "height": 64,
        "steps": 1,
        "sampler_name": "Euler",
        "save_images": True,
        **fields,
    }


def post(live: LiveServer, user: str, body: dict[str, Any], out: dict[str, httpx.Response], name: str) -> None:
    with httpx.Client(base_url=live.url, auth=AUTH[user], timeout=600) as client:
        out[name] = client.post("/sdapi/v1/txt2img", json=body)


def submit_async(live: LiveServer, user: str, body: dict[str, Any], out: dict[str, httpx.Response]) -> threading.Thread:
    """POST in a thread; returns once the job is in the front end's queue (or running)."""
    task = body["force_task_id"]
    thread = threading.Thread(target=post, args=(live, user, body, out, task), daemon=True)
    thread.start()
    wait_for(lambda: _known(live, task) or not thread.is_alive(), 60)
    return thread


def _known(live: LiveServer, task: str) -> bool:
    try:
        live.services.jobs.get(task)
        return True
    except KeyError:
        return False


def progress(live: LiveServer, user: str, task: str) -> dict[str, Any]:
    with live.client(AUTH[user]) as client:
        body = {"id_task": task, "id_live_preview": -1, "live_preview": True}
        return dict(client.post("/internal/progress", json=body).json())


def hold_workers(cluster: Cluster, out: dict[str, httpx.Response], count: int) -> list[str]:
    """user4 starts `count` long jobs that keep workers busy until interrupted."""
    tasks = []
    for n in range(count):
        task = f"task(hold-{n}-{time.monotonic_ns()})"
        submit_async(cluster.live, "user4", job("hold", 7, steps=150, width=128, height=128, force_task_id=task), out)
        tasks.append(task)
    wait_for(lambda: all(progress(cluster.live, "user4", t)["active"] for t in tasks), 120, cluster.logs)
    return tasks


def release(cluster: Cluster, tasks: list[str], out: dict[str, httpx.Response]) -> None:
    with cluster.live.client(AUTH["user4"]) as client:
        for task in tasks:
            client.post("/sdapi/v1/interrupt", params={"id_task": task})
    wait_for(lambda: all(t in out for t in tasks), 120, cluster.logs)


def test_four_users_ten_jobs_none_lost_in_order_and_interleaved(cluster: Cluster) -> None:
    live = cluster.live
    out: dict[str, httpx.Response] = {}
    held = hold_workers(cluster, out, 2)  # every job below is queued before any starts
    threads = []
    for n in range(10):
        for u in range(4):
            body = job(f"user{u} job {n:02d}", 100 * u + n, force_task_id=f"task(u{u}-{n:02d})")
            threads.append(submit_async(live, f"user{u}", body, out))
    release(cluster, held, out)
    for thread in threads:
        thread.join(600)
    tasks = [f"task(u{u}-{n:02d})" for u in range(4) for n in range(10)]
    assert all(out[t].status_code == 200 for t in tasks), [out[t].text for t in tasks if out[t].status_code != 200]
    assert all(len(out[t].json()["images"]) == 1 for t in tasks)
    started = sorted(tasks, key=lambda t: live.services.jobs.get(t).control.started_at or 0.0)
    for u in range(4):
        mine = [t for t in started if t.startswith(f"task(u{u}-")]
        assert mine == sorted(mine), f"user{u}'s jobs ran out of order: {mine}"
    counts = dict.fromkeys(range(4), 0)
    for task in started:  # round-robin: no user gets ahead of another by more than the 2 workers
        counts[int(task[6])] += 1
        assert max(counts.values()) - min(counts.values()) <= 2, started
    saved = sorted((live.services.paths.data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    prompts = [_infotext(path) for path in saved]
    for u in range(4):
        for n in range(10):
            assert sum(f"user{u} job {n:02d}\n" in text for text in prompts) == 1, f"user{u} job {n}"


def _infotext(path: Path) -> str:
    with Image.open(path) as image:
        return read_info_from_image(image).parameters or ""


def test_progress_preview_and_interrupt_of_ones_own_job_only(cluster: Cluster) -> None:
    live = cluster.live
    out: dict[str, httpx.Response] = {}
    a = submit_async(live, "user0", job("mine", 5, steps=150, force_task_id="task(int-a)"), out)
    b = submit_async(live, "user1", job("theirs", 6, steps=60, force_task_id="task(int-b)"), out)
    wait_for(lambda: progress(live, "user0", "task(int-a)").get("live_preview") is not None, 120, cluster.logs)
    seen = progress(live, "user0", "task(int-a)")
    assert seen["active"] and 0 < seen["progress"] < 1
    assert seen["live_preview"].startswith("data:image/png;base64,")
    assert progress(live, "user1", "task(int-a)")["textinfo"] == "Waiting..."  # not visible to user1
    with live.client(AUTH["user1"]) as client:  # user1 cannot stop user0's job
        client.post("/sdapi/v1/interrupt", params={"id_task": "task(int-a)"})
    wait_for(lambda: progress(live, "user1", "task(int-b)")["active"], 60)
    assert not live.services.jobs.get("task(int-a)").control.interrupted.is_set()
    with live.client(AUTH["user0"]) as client:
        client.post("/sdapi/v1/interrupt", params={"id_task": "task(int-a)"})
    a.join(300)
    b.join(300)
    assert out["task(int-a)"].status_code == 200 and out["task(int-b)"].status_code == 200
    assert live.services.jobs.get("task(int-a)").result.interrupted
    assert not live.services.jobs.get("task(int-b)").result.interrupted
    assert len(out["task(int-b)"].json()["images"]) == 1


def test_batch_count_four_on_two_workers_gives_one_workers_images(cluster: Cluster) -> None:
    live = cluster.live
    out: dict[str, httpx.Response] = {}
    body = job("a batch", 1234, n_iter=4, steps=2)
    held = hold_workers(cluster, out, 1)  # one worker busy: the batch runs on the other alone
    post(live, "user0", {**body, "force_task_id": "task(batch-one)"}, out, "one")
    release(cluster, held, out)
    post(live, "user0", {**body, "force_task_id": "task(batch-two)"}, out, "two")
    assert live.services.jobs.get("task(batch-one)").control.textinfo.count("w") == 1
    assert live.services.jobs.get("task(batch-two)").control.textinfo == "Workers: w1, w2" or (
        live.services.jobs.get("task(batch-two)").control.textinfo == "Workers: w2, w1"
    )
    one, two = out["one"].json(), out["two"].json()
    assert one["info"] and len(one["images"]) == len(two["images"]) == 5  # grid + 4
    assert [decode_b64(i).tobytes() for i in one["images"]] == [decode_b64(i).tobytes() for i in two["images"]]
    assert json.loads(two["info"])["all_seeds"] == [1234, 1235, 1236, 1237]


def test_img2img_runs_on_a_worker_and_is_saved_by_the_front_end(cluster: Cluster) -> None:
    live = cluster.live
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    body = job("repaint", 99, steps=2, denoising_strength=0.5, init_images=[b64_png(source)])
    with httpx.Client(base_url=live.url, auth=AUTH["user3"], timeout=600) as client:
        answer = client.post("/sdapi/v1/img2img", json=body)
    assert answer.status_code == 200, answer.text
    image = decode_b64(answer.json()["images"][0])
    assert image.size == (64, 64) and image.tobytes() != source.tobytes()
    saved = sorted((live.services.paths.data_dir / "outputs" / "img2img-images").rglob("*.png"))
    assert len(saved) == 1 and "Denoising strength: 0.5" in _infotext(saved[0])


def test_a_model_no_live_worker_has_is_named(cluster: Cluster) -> None:
    body = job("x", 1, override_settings={"sd_model_checkpoint": "tiny-sdxl"})
    with httpx.Client(base_url=cluster.live.url, auth=AUTH["user3"], timeout=120) as client:
        answer = client.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code >= 400
    assert "no live worker has the checkpoint 'tiny-sdxl'" in answer.text
    assert "tiny-sd1.safetensors" in answer.text  # what the workers do have


def test_switching_the_checkpoint_loads_nothing_on_the_front_end(cluster: Cluster) -> None:
    live = cluster.live
    with httpx.Client(base_url=live.url, auth=AUTH["user3"], timeout=120) as client:
        answer = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd1"})
        assert answer.status_code == 200, answer.text
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-sd1")
    assert live.services.models.active is None  # the workers load models; the front end only routes


def test_a_worker_killed_mid_job_loses_nothing(cluster: Cluster) -> None:
    live = cluster.live
    out: dict[str, httpx.Response] = {}
    body = job("survivor", 4321, steps=150, width=128, height=128)
    post(live, "user2", {**body, "force_task_id": "task(kill-ref)"}, out, "ref")
    thread = submit_async(live, "user2", {**body, "force_task_id": "task(kill)"}, out)
    wait_for(lambda: progress(live, "user2", "task(kill)")["progress"] > 0.1, 120, cluster.logs)
    busy = [w.id for w in registry.live_workers(cluster.pool.client) if w.task is not None]
    assert len(busy) == 1
    victim = next(w for w in cluster.workers if w.worker_id == busy[0])
    victim.kill()
    thread.join(300)
    assert out["task(kill)"].status_code == 200, out["task(kill)"].text
    assert (
        decode_b64(out["task(kill)"].json()["images"][0]).tobytes()
        == decode_b64(out["ref"].json()["images"][0]).tobytes()
    )
    survivor = next(w.worker_id for w in cluster.workers if w is not victim)
    assert live.services.jobs.get("task(kill)").control.textinfo.endswith(survivor)


def test_the_broker_password_is_in_no_worker_log(cluster: Cluster) -> None:
    logs = cluster.logs()
    assert "celery@" in logs or "w1" in logs  # the workers did write their logs
    assert PASSWORD not in logs
