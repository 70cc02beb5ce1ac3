"""The front end's generation service: the same `txt2img` / `img2img` the UI, the API and scripts
call, but the sampling runs on a worker. The job stays in the front end's queue (fair order,
position, interrupt); here it waits for a free worker that has its checkpoint, relays progress,
previews and stop requests, spreads a batch count over idle workers, and saves the images."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from PIL import Image

from modules.core.jobs import JobControl, JobInterrupted
from modules.generation.engine import GenerationService, _unless_disk_fails
from modules.generation.hooks import ScriptHooks
from modules.generation.processing import GenerationResult, Processing
from modules.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from modules.generation.rng import get_fixed_seed
from modules.generation.saving import write_params_txt
from modules.scaleout import registry, wire
from modules.scaleout.broker import TASK_NAME
from modules.scaleout.registry import WorkerInfo, WorkerPool

log = logging.getLogger(__name__)
POLL_SECONDS = 0.02  # relay and completion checks: a few small Redis reads per running part


@dataclass
class Part:
    """One slice of a job (its whole batch count, or one of its batches when fanned out)."""

    index: int
    request: dict[str, Any]
    task: str = ""
    worker: WorkerInfo | None = None
    pending: Any = None  # celery AsyncResult
    result: dict[str, Any] | None = None
    preview_seen: int = 0


@dataclass
class Dispatcher:
    """Sends parts to workers and waits for them, relaying what the job's control asks for."""

    app: Any  # the Celery app
    client: Any  # Redis
    pool: WorkerPool
    settings: Any  # () -> dict of the front end's settings the worker should use
    parts_done: int = 0
    used: list[str] = field(default_factory=list)  # the workers the job ran on (shown as its textinfo)

    def run(
        self, kind: str, parts: list[Part], control: JobControl, *, user: str | None, extra: dict[str, Any]
    ) -> list[Part]:
        waiting: deque[Part] = deque(parts)
        active: list[Part] = []
        skips_sent = 0
        try:
            while waiting or active:
                self._dispatch(kind, waiting, active, control, user, extra)
                if control.skipped.is_set():
                    control.skipped.clear()
                    skips_sent += 1
                    for part in active:
                        wire.send_control(self.client, part.task, "skip", increment=True)
                for part in list(active):
                    self._relay(part, control, len(parts))
                    if part.pending.ready():
                        part.result = part.pending.get(timeout=5, propagate=True)
                        self._finish(part, active, waiting)
                    elif not registry.is_alive(self.client, part.worker.id if part.worker else ""):
                        self._lost(part, active, waiting)
                if control.interrupted.is_set():
                    for part in active:
                        wire.send_control(self.client, part.task, "interrupt")
                    waiting.clear()
                if control.stopping_after_current.is_set():
                    waiting.clear()
                if not active and waiting and control.interrupted.is_set():
                    break
                time.sleep(POLL_SECONDS)
        finally:
            for part in active:  # the job itself failed: free the workers it held
                self._release(part)
        return [p for p in parts if p.result is not None]

    def _dispatch(
        self,
        kind: str,
        waiting: deque[Part],
        active: list[Part],
        control: JobControl,
        user: str | None,
        extra: dict[str, Any],
    ) -> None:
        """Give waiting parts to free workers: the first waits for one, more only take idle ones."""
        while waiting and not control.interrupted.is_set():
            checkpoint = waiting[0].request.get("_checkpoint")
            if not active and not self.used:
                control.textinfo = "Waiting for a free worker"
            worker = self.pool.acquire(checkpoint, stop=lambda: control.interrupted.is_set(), wait=not active)
            if worker is None:
                return
            part = waiting.popleft()
            part.task = uuid.uuid4().hex
            part.worker = worker
            request = {k: v for k, v in part.request.items() if k != "_checkpoint"}
            payload = {
                "task": part.task,
                "kind": kind,
                "request": request,
                "user": user,
                "settings": self.settings(),
                **extra,
            }
            part.pending = self.app.send_task(TASK_NAME, args=[payload], queue=worker.queue, task_id=part.task)
            active.append(part)
            if worker.id not in self.used:
                self.used.append(worker.id)
                control.textinfo = "Workers: " + ", ".join(self.used)
            if control.started_at is None:
                control.started_at = time.monotonic()

    def _relay(self, part: Part, control: JobControl, total: int) -> None:
        progress = wire.read_progress(self.client, part.task)
        if progress is not None:
            per_part = max(1, progress["job_count"])
            with control._lock:
                control.job_count = per_part * total
                control.job_no = min(control.job_count - 1, self.parts_done * per_part + progress["job_no"])
                control.sampling_step, control.sampling_steps = progress["step"], progress["steps"]
        preview = wire.read_preview(self.client, part.task, part.preview_seen)
        if preview is not None:
            part.preview_seen = preview["id"]
            size = tuple(preview["size"]) if preview.get("size") else None
            control.set_preview(wire.decode_png(preview["png"]), cast(Any, size))

    def _finish(self, part: Part, active: list[Part], waiting: deque[Part]) -> None:
        active.remove(part)
        self._release(part)
        result = part.result or {}
        if result.get("abandoned"):
            part.result = None
            waiting.appendleft(part)
            return
        if "error" in result:
            raise RuntimeError(f"worker {result.get('worker')}: {result['error']}")
        self.parts_done += 1

    def _lost(self, part: Part, active: list[Part], waiting: deque[Part]) -> None:
        """The worker stopped announcing itself mid-task (killed): the part goes to another one."""
        log.warning(
            "worker %s is gone; task %s goes to another worker", part.worker.id if part.worker else "?", part.task
        )
        active.remove(part)
        self._release(part)
        part.preview_seen = 0
        waiting.appendleft(part)

    def _release(self, part: Part) -> None:
        wire.retire(self.client, part.task)
        if part.worker is not None:
            self.pool.release(part.worker)


class RemoteGeneration(GenerationService):
    """GenerationService whose jobs sample on workers; images and infotext saved here."""

    def __init__(self, local: GenerationService, *, app: Any, client: Any, pool: WorkerPool):
        super().__init__(**{f.name: getattr(local, f.name) for f in dataclasses.fields(local)})
        self.app, self.client, self.pool = app, client, pool

    def txt2img(
        self, req: Txt2ImgRequest, control: JobControl, *, user: str | None = None, hooks: ScriptHooks | None = None
    ) -> GenerationResult:
        p = self.new_txt2img(req, user=user)
        return self._remote(p, req, control, user, {})

    def img2img(
        self,
        req: Img2ImgRequest,
        control: JobControl,
        *,
        user: str | None = None,
        init_images: list[Image.Image] | None = None,
        mask: Image.Image | None = None,
        hooks: ScriptHooks | None = None,
    ) -> GenerationResult:
        p = self.new_img2img(req, user=user, init_images=init_images, mask=mask)
        extra = {
            "init_images": [wire.encode_png(i) for i in p.init_images],
            "mask": wire.encode_png(mask) if mask is not None else None,
        }
        return self._remote(p, req, control, user, extra)

    def _front_settings(self) -> dict[str, Any]:
        """Settings changed from their defaults here, which the worker uses for the job."""
        values = self.options.as_dict()
        registry_ = self.options.registry
        return {k: v for k, v in values.items() if k in registry_ and v != registry_[k].default}

    def _remote(
        self, p: Processing, req: GenerationRequest, control: JobControl, user: str | None, extra: dict[str, Any]
    ) -> GenerationResult:
        seed, subseed = get_fixed_seed(req.seed), get_fixed_seed(req.subseed)  # the same on any worker
        parts = split_parts(req, seed, subseed, str(p.opts["sd_model_checkpoint"] or "") or None)
        dispatcher = Dispatcher(self.app, self.client, self.pool, self._front_settings)
        done = dispatcher.run(p.kind, parts, control, user=user, extra=extra)
        if not done and control.interrupted.is_set():
            raise JobInterrupted("interrupted before a worker made an image")
        return self._assemble(p, seed, subseed, done, control)

    def _assemble(
        self, p: Processing, seed: int, subseed: int, done: list[Part], control: JobControl
    ) -> GenerationResult:
        images: list[Image.Image] = []
        infotexts: list[str] = []
        p.seed, p.subseed = seed, subseed
        p.all_seeds, p.all_subseeds, p.all_prompts, p.all_negative_prompts = [], [], [], []
        interrupted = control.interrupted.is_set()
        for part in done:
            answer = part.result or {}
            js = answer["js"]
            images.extend(wire.decode_png(i) for i in answer["images"])
            infotexts.extend(answer["infotexts"])
            p.all_seeds += js["all_seeds"]
            p.all_subseeds += js["all_subseeds"]
            p.all_prompts += js["all_prompts"]
            p.all_negative_prompts += js["all_negative_prompts"]
            interrupted = interrupted or bool(answer.get("interrupted"))
        if done:
            js = (done[0].result or {})["js"]
            for name in ("sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash", "job_timestamp"):
                setattr(p, name, js.get(name))
            p.face_restoration_model = js.get("face_restoration_model")
            p.extra_generation_params.update(js.get("extra_generation_params") or {})
            if js.get("comments"):
                p.comments["worker"] = js["comments"]
        p.main_prompt, p.main_negative_prompt = p.prompt, p.negative_prompt
        result = GenerationResult(images=images, infotexts=infotexts, p=p, interrupted=interrupted)
        if self._should_save(p):
            for index, (image, text) in enumerate(zip(images, infotexts, strict=True)):
                path = _unless_disk_fails(p, lambda: self._save(p, image, text, index, cast(Any, None)))  # noqa: B023
                if path is not None:
                    result.saved_paths.append(str(path))
        self._grid(p, result, cast(Any, None))
        if self.write_params_txt and infotexts:
            text = result.infotexts[result.index_of_first_image]
            _unless_disk_fails(p, lambda: write_params_txt(self.paths.params_file, text))
        return result


def split_parts(req: GenerationRequest, seed: int, subseed: int, checkpoint: str | None) -> list[Part]:
    """The job as parts: one per batch of its batch count (each with A1111's seeds for its images,
    so the images are those of one run), or the whole job when a script decides what runs."""
    data = req.model_dump(mode="json", exclude_unset=True)
    data.update(seed=seed, subseed=subseed, do_not_save_samples=True, do_not_save_grid=True, send_images=True)
    data["_checkpoint"] = checkpoint
    scripted = bool(req.script_name) or bool(req.alwayson_scripts)
    if req.n_iter <= 1 or scripted:
        return [Part(0, data)]
    parts = []
    for n in range(req.n_iter):
        offset = n * req.batch_size
        first_seed = seed + offset if req.subseed_strength == 0 else seed
        parts.append(Part(n, {**data, "n_iter": 1, "seed": first_seed, "subseed": subseed + offset}))
    return parts
