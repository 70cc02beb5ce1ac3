"""What the Train tab's buttons do, apart from the Gradio layout (modules/ui/train.py).

Handlers take plain values (by request field name) and return plain results, so they can be called
without a browser. Training and preprocessing run as jobs in the queue (services.training); the
streaming handler polls the job's JobControl and yields `TrainView`s: progress text (step, loss,
ETA from `textinfo`), the latest preview image and, at the end, the result or the error.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from modules.access.policy import AccessDenied, Caller
from modules.core.jobs import Job, JobInterrupted, JobNotFound, QueueFull
from modules.models.errors import ModelError
from modules.train.errors import TrainingError
from modules.train.requests import (
    CreateEmbeddingRequest,
    CreateHypernetworkRequest,
    PreprocessRequest,
    PreprocessResult,
    TrainEmbeddingRequest,
    TrainHypernetworkRequest,
    TrainRequest,
    TrainResult,
)
from modules.train.service import TrainingService
from modules.ui.common import UiContext, error_html
from modules.workflows.runner import JobKind

POLL_SECONDS = 0.25
TRAINABLE_SUFFIXES = (".pt", ".safetensors", ".bin")  # formats training reads and writes
MAX_GALLERY = 16  # preview images shown at the end (the newest)

# txt2img field -> preview field of the train request ("Read parameters from txt2img tab")
TXT2IMG_PREVIEW_FIELDS = {
    "prompt": "preview_prompt",
    "negative_prompt": "preview_negative_prompt",
    "steps": "preview_steps",
    "sampler_name": "preview_sampler_name",
    "scheduler": "preview_scheduler",
    "cfg_scale": "preview_cfg_scale",
    "seed": "preview_seed",
    "width": "preview_width",
    "height": "preview_height",
}


@dataclass
class CreateOutcome:
    """Result of Create embedding / Create hypernetwork: the fresh dropdown list and the texts."""

    choices: list[str]
    selected: str | None
    output: str  # ti_output: A1111's info line ("create embedding filename: ...")
    outcome: str  # ti_error: HTML (the saved file, or the error)


@dataclass
class TrainView:
    """One state of the output area while a training or preprocessing job runs."""

    progress: str = ""  # HTML: bar + textinfo lines
    output: str | None = None  # ti_output text (None: unchanged)
    outcome: str | None = None  # ti_error HTML (None: unchanged)
    preview: Image.Image | None = None  # newest preview image (None: unchanged)
    gallery: list[Image.Image] | None = None  # preview images of the finished run (None: unchanged)
    task_id: str = ""
    reset: bool = False  # a new run starts: clear the previous run's preview and gallery
    done: bool = False
    result: Any = None  # TrainResult / PreprocessResult once finished
    seen_steps: list[int] = field(default_factory=list)  # steps the progress showed (for callers/tests)


def training_service(ctx: UiContext) -> TrainingService:
    training = ctx.services.training
    if training is None:
        raise TrainingError("training is not available on this server")
    return training


# --- lists for the dropdowns -------------------------------------------------------------------


def embedding_names(ctx: UiContext) -> list[str]:
    """Names of the trainable embedding files (A1111's train_embedding dropdown), sorted. Training
    finds a file by its stem, so embeddings stored inside PNG images are left out."""
    files = [f.path for f in ctx.services.networks.embeddings().files]
    found = (p.stem for p in files if p.suffix.lower() in TRAINABLE_SUFFIXES)
    return sorted(set(found), key=str.lower)


def hypernetwork_names(ctx: UiContext) -> list[str]:
    ctx.services.networks.refresh()
    return sorted((h.name for h in ctx.services.networks.hypernetworks()), key=str.lower)


def template_names(ctx: UiContext) -> list[str]:
    return training_service(ctx).template_names() if ctx.services.training is not None else []


# --- create ------------------------------------------------------------------------------------


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    return "; ".join(parts)


def _user_error(exc: Exception) -> str:
    return _validation_message(exc) if isinstance(exc, ValidationError) else str(exc)


def create_embedding_action(ctx: UiContext, values: Mapping[str, Any]) -> CreateOutcome:
    """Create embedding: writes <embeddings>/<name>.pt (or .safetensors for SDXL) with step 0."""
    try:
        req = CreateEmbeddingRequest(
            name=str(values.get("name") or "").strip(),
            init_text=str(values.get("init_text") if values.get("init_text") is not None else "*"),
            num_vectors_per_token=int(values.get("num_vectors_per_token") or 1),
            overwrite_old=bool(values.get("overwrite_old")),
        )
        created = training_service(ctx).create_embedding(req)
    except (ValidationError, TrainingError, ModelError) as exc:
        message = _user_error(exc)
        return CreateOutcome(embedding_names(ctx), None, f"create embedding error: {message}", error_html(message))
    return CreateOutcome(
        embedding_names(ctx),
        created.name,
        created.info,
        f"<p>Created embedding <b>{html.escape(created.name)}</b>: {html.escape(str(created.filename))}</p>",
    )


def create_hypernetwork_action(ctx: UiContext, values: Mapping[str, Any]) -> CreateOutcome:
    """Create hypernetwork: writes <hypernetworks>/<name>.pt with freshly initialised modules."""
    try:
        req = CreateHypernetworkRequest(
            name=str(values.get("name") or "").strip(),
            enable_sizes=[int(s) for s in values.get("enable_sizes") or []],
            overwrite_old=bool(values.get("overwrite_old")),
            layer_structure=values.get("layer_structure") or "1, 2, 1",
            activation_func=values.get("activation_func") or "linear",
            weight_init=values.get("weight_init") or "Normal",
            add_layer_norm=bool(values.get("add_layer_norm")),
            use_dropout=bool(values.get("use_dropout")),
            dropout_structure=values.get("dropout_structure") or "0, 0, 0",
        )
        created = training_service(ctx).create_hypernetwork(req)
    except (ValidationError, TrainingError, ModelError, ValueError) as exc:
        message = _user_error(exc)
        return CreateOutcome(
            hypernetwork_names(ctx), None, f"create hypernetwork error: {message}", error_html(message)
        )
    return CreateOutcome(
        hypernetwork_names(ctx),
        created.name,
        created.info,
        f"<p>Created hypernetwork <b>{html.escape(created.name)}</b>: {html.escape(str(created.filename))}</p>",
    )


# --- train -------------------------------------------------------------------------------------


def train_request(kind: str, values: Mapping[str, Any]) -> TrainRequest:
    """UI values (named like the request fields, plus embedding_learn_rate / hypernetwork_learn_rate /
    save_every / train_embedding / train_hypernetwork) -> the typed request. Raises ValidationError."""
    data = {k: v for k, v in values.items() if v is not None}
    if not data.get("preview_from_txt2img"):
        data = {k: v for k, v in data.items() if not k.startswith("preview_") or k == "preview_from_txt2img"}
    save_every = data.pop("save_every", None)
    emb_rate, hyper_rate = data.pop("embedding_learn_rate", None), data.pop("hypernetwork_learn_rate", None)
    emb_name, hyper_name = data.pop("train_embedding", None), data.pop("train_hypernetwork", None)
    if kind == "embedding":
        data.update(embedding_name=emb_name or "", learn_rate=emb_rate if emb_rate is not None else "0.005")
        if save_every is not None:
            data["save_embedding_every"] = int(save_every)
        return TrainEmbeddingRequest(**data)
    data.update(hypernetwork_name=hyper_name or "", learn_rate=hyper_rate if hyper_rate is not None else "0.00001")
    if save_every is not None:
        data["save_hypernetwork_every"] = int(save_every)
    return TrainHypernetworkRequest(**data)


def submit_training(ctx: UiContext, kind: str, req: TrainRequest, caller: Caller) -> Job:
    """Training writes files on the server: a global change (the access policy's admin rule)."""
    ctx.services.access.require_settings_access(caller)
    training = training_service(ctx)
    runner = ctx.services.runner
    if isinstance(req, TrainEmbeddingRequest):
        embedding = req
        return runner.submit(caller, JobKind.TRAIN, lambda c: training.train_embedding(embedding, c), req.id_task)
    assert isinstance(req, TrainHypernetworkRequest)
    hypernetwork = req
    return runner.submit(caller, JobKind.TRAIN, lambda c: training.train_hypernetwork(hypernetwork, c), req.id_task)


def progress_html(job: Job, position: int) -> str:
    """A1111's progress bar with the job's text lines (step, loss, learning rate, ETA, prompt)."""
    control = job.control
    if position > 0:
        return f'<div class="progressDiv"><div class="progress" style="width:0%">In queue: {position}</div></div>'
    done = control.progress() * 100
    bar_text = f"{done:.0f}%"
    if control.sampling_steps:
        bar_text += f" · step {control.sampling_step}/{control.sampling_steps}"
    lines = "<br>".join(html.escape(line) for line in (control.textinfo or "").splitlines())
    bar = f'<div class="progressDiv"><div class="progress" style="width:{done:.1f}%">{bar_text}</div></div>'
    return bar + (f'<div class="ti-textinfo"><p>{lines}</p></div>' if lines else "")


def result_html(result: TrainResult) -> str:
    """A1111's closing message (ti_error): where training stopped and where the file is."""
    state = "interrupted" if result.interrupted else "finished"
    kind = "Embedding" if result.kind == "embedding" else "Hypernetwork"
    parts = [
        f"<p>Training {state} at {result.step} steps.</p>",
        f"<p>{kind} saved to {html.escape(str(result.filename))}</p>",
    ]
    if result.losses:
        parts.append(f"<p>Loss: {result.losses[0]:.6f} (first step) → {result.losses[-1]:.6f} (last step)</p>")
    if result.note:
        parts.append(f"<p>{html.escape(result.note)}</p>")
    parts += [f'<p class="warning">{html.escape(w)}</p>' for w in result.warnings]
    return "".join(parts)


def _load_previews(paths: list[Path]) -> list[Image.Image]:
    """Preview files as images (the log folder is outside Gradio's allowed paths); text chunks kept."""
    images = []
    for path in paths[-MAX_GALLERY:]:
        with contextlib.suppress(OSError), Image.open(path) as opened:
            opened.load()
            images.append(opened.copy())
    return images


def stream_job(ctx: UiContext, job: Job, kind: str) -> Iterator[TrainView]:
    """Poll `job` until it ends: progress views, then the final view (result text or error)."""
    jobs = ctx.services.jobs
    preview_id = 0
    last_progress = ""
    seen: list[int] = []
    yield TrainView(progress=progress_html(job, jobs.position(job)), output="", outcome="", task_id=job.id, reset=True)
    while not job.done_event.wait(POLL_SECONDS):
        control = job.control
        text = progress_html(job, jobs.position(job))
        fresh_preview = None
        if control.preview is not None and control.preview_id != preview_id:
            preview_id, fresh_preview = control.preview_id, control.preview
        if text != last_progress or fresh_preview is not None:
            last_progress = text
            if control.sampling_steps and (not seen or seen[-1] != control.sampling_step):
                seen.append(control.sampling_step)
            yield TrainView(progress=text, preview=fresh_preview, task_id=job.id, seen_steps=list(seen))
    yield _final_view(job, kind, seen)


def _final_view(job: Job, kind: str, seen: list[int]) -> TrainView:
    label = {"embedding": "train embedding", "hypernetwork": "train hypernetwork"}.get(kind, kind)
    try:
        result = job.wait()
    except JobInterrupted:
        return TrainView(output=f"{label}: interrupted", outcome="<p>Interrupted before it started.</p>", done=True)
    except (TrainingError, ModelError, ValidationError) as exc:
        message = _user_error(exc)
        return TrainView(output=f"{label} error: {message}", outcome=error_html(message), done=True, seen_steps=seen)
    except Exception as exc:  # boundary: any failure of the job is shown in the tab, not as a stack trace
        message = f"{type(exc).__name__}: {exc}"
        return TrainView(output=f"{label} error: {message}", outcome=error_html(message), done=True, seen_steps=seen)
    if isinstance(result, TrainResult):
        gallery = _load_previews(list(result.preview_images))
        last = gallery[-1] if gallery else None
        return TrainView(
            output=result.info,
            outcome=result_html(result),
            preview=last,
            gallery=gallery,
            done=True,
            result=result,
            seen_steps=seen,
        )
    if isinstance(result, PreprocessResult):
        return TrainView(output=result.info, outcome=f"<p>{html.escape(result.info)}</p>", done=True, result=result)
    return TrainView(output=str(result), outcome="", done=True, result=result)


def train_action(ctx: UiContext, kind: str, values: Mapping[str, Any], caller: Caller) -> Iterator[TrainView]:
    """Train Embedding / Train Hypernetwork: check the request, queue the job, stream its progress."""
    label = f"train {kind}"
    try:
        req = train_request(kind, values)
        job = submit_training(ctx, kind, req, caller)
    except (ValidationError, TrainingError, ValueError, AccessDenied, QueueFull) as exc:
        message = _user_error(exc)
        yield TrainView(output=f"{label} error: {message}", outcome=error_html(message), done=True)
        return
    yield from stream_job(ctx, job, kind)


def preprocess_action(ctx: UiContext, values: Mapping[str, Any], caller: Caller) -> Iterator[TrainView]:
    """Preprocess images: a queued job over the source folder (interruptible between images)."""
    try:
        ctx.services.access.require_settings_access(caller)  # reads and writes server folders
        training = training_service(ctx)
        req = PreprocessRequest(**{k: v for k, v in values.items() if v is not None})
        job = ctx.services.runner.submit(caller, JobKind.PREPROCESS, lambda control: training.preprocess(req, control))
    except (ValidationError, TrainingError, AccessDenied, QueueFull) as exc:
        message = _user_error(exc)
        yield TrainView(output=f"preprocess error: {message}", outcome=error_html(message), done=True)
        return
    yield from stream_job(ctx, job, "preprocess")


def interrupt_action(ctx: UiContext, job_id: str, user: str | None) -> bool:
    """Interrupt this tab's job (by id); without one, the user's running training job, never a generation."""
    jobs = ctx.services.jobs
    if job_id:
        try:
            jobs.get(job_id, user=user)
        except JobNotFound:
            return False
        return jobs.interrupt(job_id, user=user)
    current = jobs.current_for(user)
    if current is not None and current.kind.startswith("train"):
        return jobs.interrupt(current.id, user=user)
    return False


def wait_until_done(views: Iterator[TrainView], timeout: float = 600) -> TrainView:
    """Drain a handler's views (for scripts and tests); returns the last one."""
    deadline = time.monotonic() + timeout
    last = TrainView()
    for view in views:
        last = view
        if time.monotonic() > deadline:
            raise TimeoutError("training did not finish in time")
    return last
