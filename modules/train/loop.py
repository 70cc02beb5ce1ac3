"""The optimisation loop shared by embedding and hypernetwork training (A1111's train_* loops).

Per epoch the dataset yields batches (one size bucket each); batches that cannot complete a
gradient-accumulation group at the end of an epoch are dropped. Each batch adds loss /
gradient_step to the gradients; every `gradient_step` batches the optimizer steps (after optional
clipping by value or norm, with its own schedule), and the step count goes up by one.

Steps are counted from the file's stored step, so a resumed run continues the count. After step
n: files are saved when n is a multiple of "save every" (<log>/<name>-<n> and the main file),
the loss goes to the CSV log every `training_write_csv_every` steps, a preview is made when n is a
multiple of "create image every". Training ends at max steps, when the learning-rate schedule
ends, or when the job is interrupted; in every case the main file is saved with the last step.
(A1111 names a file saved after n steps "<name>-<n+1>"; we name it after the step it holds.)
"""

from __future__ import annotations

import contextlib
import csv
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from modules.core.jobs import JobControl
from modules.generation.conditioning import Conditioning
from modules.generation.image_io import save_image_with_geninfo
from modules.models.manager import LoadedModel
from modules.train.dataset import Batch, TrainingDataset
from modules.train.diffusion import NoiseSource, inpaint_conditioning, training_loss
from modules.train.errors import TrainingError
from modules.train.preview import PreviewRenderer, preview_request
from modules.train.requests import TrainRequest, TrainResult
from modules.train.schedule import RateSegment, ScheduleCursor

Tensor = torch.Tensor


class TrainingTarget(Protocol):
    """What is trained: an embedding's vectors or a hypernetwork's modules."""

    kind: str  # "embedding" | "hypernetwork"
    name: str
    step: int
    file_suffix: str  # of the files it saves
    preview_disables_extra_networks: bool

    def parameters(self) -> list[Tensor]: ...
    def conditioning(self, texts: Sequence[str]) -> Conditioning: ...
    def save(self, path: Path, file_name: str, optimizer: torch.optim.Optimizer | None) -> Path: ...
    def preview_mode(self) -> contextlib.AbstractContextManager[None]: ...
    def after_preview(self, image: Image.Image, step: int, last_saved: Path | None) -> Path | None: ...


@dataclass(frozen=True)
class LoopPlan:
    max_steps: int
    learn_rate: tuple[RateSegment, ...]
    clip_mode: str = "disabled"  # "value" | "norm" | "disabled"
    clip_value: tuple[RateSegment, ...] | None = None
    save_every: int = 0
    preview_every: int = 0
    main_file: Path = Path()
    log_dir: Path | None = None
    save_dir: Path | None = None  # <log>/embeddings or <log>/hypernetworks
    images_dir: Path | None = None
    csv_name: str = "loss.csv"
    write_csv_every: int = 0
    samples_format: str = "png"


@dataclass(frozen=True)
class StepReport:
    step: int
    max_steps: int
    loss: float
    learn_rate: float
    prompt: str
    epoch: int
    epoch_step: int  # 1-based within the epoch
    steps_per_epoch: int
    eta_seconds: float | None


@dataclass
class TrainingRun:
    target: TrainingTarget
    dataset: TrainingDataset
    model: LoadedModel
    plan: LoopPlan
    request: TrainRequest
    control: JobControl
    optimizer: torch.optim.Optimizer
    noise: NoiseSource
    rng: random.Random
    generator: torch.Generator
    result: TrainResult
    renderer: PreviewRenderer | None = None
    on_step: Callable[[StepReport], None] | None = None


class _Scaler:
    """Loss scaling for half-precision UNets on CUDA; a pass-through otherwise."""

    def __init__(self, model: LoadedModel) -> None:
        param = next(model.unet.parameters())
        self.inner = torch.amp.GradScaler("cuda") if param.is_cuda and param.dtype == torch.float16 else None

    def backward(self, loss: Tensor) -> None:
        (self.inner.scale(loss) if self.inner is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.inner is not None:
            self.inner.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.inner is None:
            optimizer.step()
            return
        self.inner.step(optimizer)
        self.inner.update()


def _set_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate


def _clip(mode: str, params: list[Tensor], value: float) -> None:
    if mode == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Loop:
    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.scaler = _Scaler(run.model)
        self.schedule = ScheduleCursor(run.plan.learn_rate)
        self.clip = (
            ScheduleCursor(run.plan.clip_value) if run.plan.clip_mode != "disabled" and run.plan.clip_value else None
        )
        self.image_conds: dict[tuple[int, int], Tensor | None] = {}
        self.step_times: list[float] = []
        self.last_prompt = ""
        self.last_saved: Path | None = None
        self.last_image: Path | None = None
        self.saved_at_step = -1

    # --- one batch / one optimizer step ---------------------------------------------------
    def batch_loss(self, batch: Batch) -> Tensor:
        run = self.run
        if batch.size not in self.image_conds:
            self.image_conds[batch.size] = inpaint_conditioning(run.model, *batch.size)
        draw = run.noise.draw(batch.indices, batch.latents.shape[1:])
        cond = run.target.conditioning(batch.texts)
        self.last_prompt = batch.texts[0]
        return training_loss(
            run.model,
            batch.latents,
            cond,
            draw,
            size=batch.size,
            weights=batch.weights,
            image_cond=self.image_conds[batch.size],
        )

    def optimizer_step(self) -> None:
        run = self.run
        if self.clip is not None:
            self.clip.advance(run.target.step)
            self.scaler.unscale(run.optimizer)
            _clip(run.plan.clip_mode, run.target.parameters(), self.clip.rate)
        self.scaler.step(run.optimizer)
        run.optimizer.zero_grad(set_to_none=True)
        run.target.step += 1

    # --- the loop -------------------------------------------------------------------------
    def execute(self) -> TrainResult:
        run = self.run
        dataset, control = run.dataset, run.control
        _set_rate(run.optimizer, self.schedule.rate)
        control.begin_batch(0, 1, run.plan.max_steps - run.target.step)
        run.optimizer.zero_grad(set_to_none=True)
        accumulated = 0.0
        started = time.monotonic()
        while not self._should_stop():
            epoch_start = run.target.step
            for j, indices in enumerate(dataset.epoch(run.rng)):
                if j == dataset.batches_used_per_epoch or self._should_stop():
                    break
                loss = self.batch_loss(dataset.batch(indices, run.rng, run.generator)) / dataset.gradient_step
                self.scaler.backward(loss)
                accumulated += float(loss.item())
                if (j + 1) % dataset.gradient_step != 0:
                    continue
                if not math.isfinite(accumulated) and self.scaler.inner is None:
                    raise TrainingError(
                        f"the loss became {accumulated} at step {run.target.step + 1}; training stopped and the "
                        "last saved file was kept (try a lower learning rate)"
                    )
                self.optimizer_step()
                now = time.monotonic()
                self.step_times.append(now - started)
                started = now
                self.after_step(accumulated)
                accumulated = 0.0
            if run.target.step == epoch_start and not self._should_stop():
                raise TrainingError("the dataset gives no complete batch; lower the batch size or accumulation")
        run.result.interrupted = control.interrupted.is_set()
        self.save_main()
        return run.result

    def _should_stop(self) -> bool:
        run = self.run
        if run.control.interrupted.is_set():
            return True
        if self.schedule.finished:
            if run.target.step < run.plan.max_steps and not run.result.note:
                run.result.note = f"the learning rate schedule ends at step {run.target.step}"
            return True
        return run.target.step >= run.plan.max_steps

    def after_step(self, loss: float) -> None:
        run, plan = self.run, self.run.plan
        step = run.target.step
        run.result.step = step
        run.result.losses.append(loss)
        run.result.learn_rates.append(self.schedule.rate)
        if self.schedule.advance(step):
            _set_rate(run.optimizer, self.schedule.rate)
        if plan.save_every and step % plan.save_every == 0:
            self.save_checkpoint(step)
        self.write_csv(step, loss)
        if plan.preview_every and step % plan.preview_every == 0 and not run.control.interrupted.is_set():
            self.preview(step)
        self.report(step, loss)

    # --- files ----------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        run, plan = self.run, self.run.plan
        if plan.save_dir is not None:
            stem = f"{run.target.name}-{step}"
            path = run.target.save(plan.save_dir / f"{stem}{run.target.file_suffix}", stem, run.optimizer)
            run.result.saved_files.append(path)
            self.last_saved = path
        self.save_main()

    def save_main(self) -> None:
        run = self.run
        if self.saved_at_step == run.target.step:
            return
        if run.target.step == run.result.initial_step:
            return  # nothing trained: the file stays as it was
        path = run.target.save(run.plan.main_file, run.target.name, run.optimizer)
        run.result.saved_files.append(path)
        self.saved_at_step = run.target.step

    def write_csv(self, step: int, loss: float) -> None:
        plan = self.run.plan
        if plan.log_dir is None or not plan.write_csv_every or step % plan.write_csv_every:
            return
        per_epoch = self.run.dataset.steps_per_epoch
        path = plan.log_dir / plan.csv_name
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "epoch", "epoch_step", "loss", "learn_rate"])
            if new:
                writer.writeheader()
            writer.writerow(
                {
                    "step": step,
                    "epoch": (step - 1) // per_epoch,
                    "epoch_step": (step - 1) % per_epoch,
                    "loss": f"{loss:.7f}",
                    "learn_rate": self.schedule.rate,
                }
            )

    # --- previews -------------------------------------------------------------------------
    def preview(self, step: int) -> None:
        run, plan = self.run, self.run.plan
        if run.renderer is None or plan.images_dir is None:
            if "previews skipped: no generation service" not in run.result.warnings:
                run.result.warnings.append("previews skipped: no generation service")
            return
        self.save_main()  # the engine finds embeddings by name in the embeddings folder
        request = preview_request(
            run.request,
            last_prompt=self.last_prompt,
            checkpoint=run.model.checkpoint.title,
            disable_extra_networks=run.target.preview_disables_extra_networks,
        )
        child = JobControl(interrupted=run.control.interrupted)  # own progress, shared interrupt
        with run.target.preview_mode(), _vae_on_compute_device(run.model):
            rendered = run.renderer(request, child)
        if rendered is None:
            return
        path = plan.images_dir / f"{run.target.name}-{step}.{plan.samples_format}"
        save_image_with_geninfo(rendered.image, path, rendered.infotext, plan.samples_format)
        run.result.preview_images.append(path)
        self.last_image = path
        run.control.set_preview(rendered.image)
        stored = run.target.after_preview(rendered.image, step, self.last_saved)
        if stored is not None:
            run.result.preview_images.append(stored)
            self.last_saved = None

    # --- progress -------------------------------------------------------------------------
    def report(self, step: int, loss: float) -> None:
        run = self.run
        done = step - run.result.initial_step
        total = run.plan.max_steps - run.result.initial_step
        recent = self.step_times[-20:]
        eta = sum(recent) / len(recent) * (run.plan.max_steps - step) if recent else None
        per_epoch = run.dataset.steps_per_epoch
        report = StepReport(
            step, run.plan.max_steps, loss, self.schedule.rate, self.last_prompt,
            (step - 1) // per_epoch, (step - 1) % per_epoch + 1, per_epoch, eta,
        )  # fmt: skip
        run.control.set_step(done, total)
        run.control.textinfo = "\n".join(
            [
                f"Training {run.target.kind} {run.target.name!r} [Epoch {report.epoch}: "
                f"{report.epoch_step}/{per_epoch}]: step {step}/{run.plan.max_steps}",
                f"Loss: {loss:.7f}",
                f"Learning rate: {self.schedule.rate:g}",
                f"ETA: {_format_eta(eta)}",
                f"Last prompt: {self.last_prompt}",
                f"Last saved {run.target.kind}: {self.last_saved or '<none>'}",
                f"Last saved image: {self.last_image or '<none>'}",
            ]
        )
        if run.on_step is not None:
            run.on_step(report)


@contextlib.contextmanager
def _vae_on_compute_device(model: LoadedModel) -> Iterator[None]:
    """With "unload models when training" the VAE waits in RAM; a preview needs it back."""
    vae = model.vae
    unet_device = next(model.unet.parameters()).device
    vae_device = next(vae.parameters()).device
    if vae_device == unet_device or unet_device.type == "meta":
        yield
        return
    vae.to(unet_device)
    try:
        yield
    finally:
        vae.to(vae_device)


def run_training(run: TrainingRun) -> TrainResult:
    """Train until max steps, the end of the schedule or an interrupt; returns the filled result."""
    return _Loop(run).execute()
