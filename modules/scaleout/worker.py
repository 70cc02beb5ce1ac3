"""A worker: loads models and runs the generation tasks the front end sends to its own queue, one
at a time, relaying progress, previews and stop requests through Redis (`--worker --queue URL`)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modules.core.jobs import JobControl
from modules.core.options import OptionError
from modules.generation.engine import GenerationService
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.scaleout import registry, wire
from modules.scaleout.broker import TASK_NAME, BrokerUrl, celery_app, connect, key
from modules.scaleout.registry import Checkpoint, WorkerInfo

log = logging.getLogger(__name__)


@dataclass
class RelayControl(JobControl):
    """The worker's JobControl for one task: progress and previews go to Redis, and the front
    end's interrupt / skip / stop requests come from Redis (read at each step and batch)."""

    client: Any = None
    task: str = ""
    _skips_seen: int = 0
    _last_write: float = field(default=0.0, repr=False)

    def _poll(self) -> None:
        wanted = wire.read_control(self.client, self.task)
        if wanted.get("interrupt"):
            self.interrupted.set()
        if wanted.get("stop"):
            self.stopping_after_current.set()
        if wanted.get("skip", 0) > self._skips_seen:
            self._skips_seen = wanted["skip"]
            self.skipped.set()

    def _publish(self) -> None:
        wire.write_progress(
            self.client, self.task, self.job_no, self.job_count, self.sampling_step, self.sampling_steps
        )

    def check(self) -> None:
        self._poll()
        super().check()

    def begin_batch(self, job_no: int, job_count: int, steps: int) -> None:
        super().begin_batch(job_no, job_count, steps)
        self._poll()
        self._publish()

    def set_step(self, step: int, steps: int | None = None) -> None:
        super().set_step(step, steps)
        self._publish()

    def set_preview(self, image: Any, size: tuple[int, int] | None = None) -> None:
        super().set_preview(image, size)
        if image is not None:
            wire.write_preview(self.client, self.task, self.preview_id, image, size)


def changed_settings_applied(generation: GenerationService, settings: dict[str, Any]) -> dict[str, Any]:
    """The front end's settings this worker knows and accepts (a path or a model name that only
    exists over there is left out: the job still runs, with this worker's value)."""
    accepted: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in generation.options.registry:
            continue
        try:
            accepted[name] = generation.options.validate(name, value)
        except (OptionError, ValueError, TypeError):
            log.info("front end setting %s not usable on this worker; using the worker's value", name)
    return accepted


@dataclass
class Executor:
    """Runs one task payload on this worker's generation service."""

    generation: GenerationService
    client: Any
    worker_id: str
    task: str | None = None  # the task running now (announced: which worker runs what)

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        task = str(payload["task"])
        if wire.read_control(self.client, task).get("abandoned"):
            return {"abandoned": True, "worker": self.worker_id}  # given to another worker meanwhile
        self.task = task
        try:
            return self._run(task, payload)
        except Exception as exc:  # boundary: the front end shows the error; the worker goes on
            log.exception("task %s failed", task)
            return {"error": f"{type(exc).__name__}: {exc}", "worker": self.worker_id}
        finally:
            self.task = None

    def _run(self, task: str, payload: dict[str, Any]) -> dict[str, Any]:
        control = RelayControl(client=self.client, task=task)
        control.started_at = time.monotonic()
        data = dict(payload["request"])
        overrides = changed_settings_applied(self.generation, dict(payload.get("settings") or {}))
        data["override_settings"] = {**overrides, **(data.get("override_settings") or {})}
        user = payload.get("user")
        if payload["kind"] == "img2img":
            req = Img2ImgRequest(**data)
            images = [wire.decode_png(i) for i in payload.get("init_images") or []]
            mask = wire.decode_png(payload["mask"]) if payload.get("mask") else None
            result = self.generation.img2img(req, control, user=user, init_images=images, mask=mask)
        else:
            result = self.generation.txt2img(Txt2ImgRequest(**data), control, user=user)
        first = result.index_of_first_image
        return {
            "worker": self.worker_id,
            "images": [wire.encode_png(image) for image in result.images[first:]],
            "infotexts": list(result.infotexts[first:]),
            "js": result.js(),
            "interrupted": result.interrupted,
        }


def worker_info(
    generation: GenerationService, worker_id: str, extensions: Sequence[str], task: str | None = None
) -> WorkerInfo:
    models = generation.models
    active = models.active
    return WorkerInfo(
        id=worker_id,
        queue=key("queue", worker_id),
        checkpoints=tuple(Checkpoint(c.title, c.name, c.shorthash) for c in models.list_checkpoints()),
        loaded=active.checkpoint.title if active is not None else None,
        extensions=tuple(sorted(extensions)),
        task=task,
    )


def default_worker_id(device_id: str | None) -> str:
    return f"{socket.gethostname()}-gpu{device_id or 0}"


def run_worker(
    broker: BrokerUrl,
    generation: GenerationService,
    *,
    worker_id: str,
    extensions: Sequence[str],
    loglevel: str = "INFO",
) -> None:
    """Join (extension set checked), announce every second, and consume this worker's queue until
    stopped. Blocks; Celery handles SIGTERM (warm shutdown) and SIGINT."""
    client = connect(broker)
    registry.check_extensions(client, extensions)
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # it logs each result (images)
    executor = Executor(generation, client, worker_id)
    app = celery_app(broker)
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)(executor.run)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            try:
                registry.announce(client, worker_info(generation, worker_id, extensions, executor.task))
            except Exception:  # boundary: a Redis hiccup must not end the heartbeat thread
                log.warning("worker %s could not announce itself to Redis", worker_id)
            stop.wait(registry.HEARTBEAT_SECONDS)

    info = worker_info(generation, worker_id, extensions)
    registry.announce(client, info)
    threading.Thread(target=heartbeat, name="worker-heartbeat", daemon=True).start()
    log.info("worker %s joined %s with %d checkpoints", worker_id, broker.safe, len(info.checkpoints))
    try:
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                f"--queues={info.queue}",
                f"--hostname={worker_id}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--loglevel={loglevel}",
            ]
        )
    finally:
        stop.set()
        client.delete(key("worker", worker_id))
