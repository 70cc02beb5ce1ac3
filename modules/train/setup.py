"""Steps shared by both training jobs before the loop starts: checks, folders, seeds, the dataset.

Order matters for "bad input writes nothing": every check (request, schedule, template, dataset
files and captions) runs before a model is touched or a folder is created.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.core.jobs import JobControl
from modules.models.manager import LoadedModel
from modules.train.context import TrainingContext
from modules.train.dataset import (
    CaptionRules,
    DatasetScan,
    DatasetSpec,
    TextRules,
    TrainingDataset,
    encode_dataset,
    scan_dataset,
)
from modules.train.errors import TrainingError
from modules.train.loop import LoopPlan
from modules.train.options import TrainingSettings
from modules.train.preview import check_preview_settings
from modules.train.requests import TrainRequest
from modules.train.schedule import RateSegment, parse_schedule
from modules.train.templates import read_template


@dataclass
class Checked:
    """A request that passed every check, with what the checks produced."""

    settings: TrainingSettings
    template_lines: list[str]
    learn_rate: tuple[RateSegment, ...]
    clip_value: tuple[RateSegment, ...] | None
    scan: DatasetScan
    seed: int


def check_request(req: TrainRequest, ctx: TrainingContext, initial_step: int) -> Checked:
    """Everything that can be wrong with the request or the dataset, before any work (A1111
    validate_train_inputs plus the dataset and caption checks)."""
    settings = ctx.settings()
    if req.save_every < 0 or req.create_image_every < 0:
        raise TrainingError("save and preview intervals must be 0 (off) or positive")
    if (req.save_every or req.create_image_every) and not req.log_directory.strip():
        raise TrainingError("log directory is empty (needed to save files and preview images)")
    if not req.varsize and (req.training_width % 8 or req.training_height % 8):
        raise TrainingError(f"training size {req.training_width}x{req.training_height} must be a multiple of 8")
    learn_rate = parse_schedule(req.learn_rate, req.steps, initial_step)
    clip_value = None
    if req.clip_grad_mode != "disabled":
        clip_value = parse_schedule(req.clip_grad_value, req.steps, initial_step, what="gradient clipping value")
    lines = read_template(ctx.templates_dir, req.template_filename)
    check_preview_settings(req)
    scan = scan_dataset(req.data_root, CaptionRules(settings.filename_word_regex, settings.filename_join_string))
    seed = req.seed if req.seed >= 0 else random.randrange(2**32)
    return Checked(settings, lines, learn_rate, clip_value, scan, seed)


def prepare_dataset(
    req: TrainRequest,
    checked: Checked,
    model: LoadedModel,
    placeholder: str,
    *,
    rng: random.Random,
    generator: torch.Generator,
    control: JobControl,
) -> TrainingDataset:
    spec = DatasetSpec(
        width=req.training_width,
        height=req.training_height,
        varsize=req.varsize,
        latent_sampling_method=req.latent_sampling_method,
        use_weight=req.use_weight,
        batch_size=req.batch_size,
        gradient_step=req.gradient_step,
    )
    rules = TextRules(tuple(checked.template_lines), placeholder, req.shuffle_tags, req.tag_drop_out)
    return encode_dataset(checked.scan, spec, model.vae, rules, rng=rng, generator=generator, control=control)


def log_root(req: TrainRequest, ctx: TrainingContext, name: str) -> Path:
    """<log directory>/<YYYY-MM-DD>/<name>; a relative log directory is under the data folder."""
    base = Path(req.log_directory).expanduser()
    if not base.is_absolute():
        base = ctx.paths.data_dir / base
    return base / datetime.datetime.now().strftime("%Y-%m-%d") / name


def loop_plan(
    req: TrainRequest, checked: Checked, *, main_file: Path, log_dir: Path, files_folder: str, csv_name: str
) -> LoopPlan:
    writes_logs = bool(req.save_every or req.create_image_every or checked.settings.write_csv_every)
    return LoopPlan(
        max_steps=req.steps,
        learn_rate=checked.learn_rate,
        clip_mode=req.clip_grad_mode,
        clip_value=checked.clip_value,
        save_every=req.save_every,
        preview_every=req.create_image_every,
        main_file=main_file,
        log_dir=log_dir if writes_logs else None,
        save_dir=log_dir / files_folder if req.save_every else None,
        images_dir=log_dir / "images" if req.create_image_every else None,
        csv_name=csv_name,
        write_csv_every=checked.settings.write_csv_every,
        samples_format=checked.settings.samples_format,
    )


def make_folders(plan: LoopPlan) -> None:
    for folder in (plan.log_dir, plan.save_dir, plan.images_dir):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)


def write_settings_file(log_dir: Path, req: TrainRequest, extra: dict[str, Any]) -> Path:
    """settings-<date>_<time>.json in the log folder (A1111 save_training_settings_to_txt)."""
    now = datetime.datetime.now()
    data = {"datetime": now.strftime("%Y-%m-%d %H:%M:%S"), **extra, **req.model_dump(mode="json")}
    path = log_dir / f"settings-{now.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    log_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global RNG (dropout) seeded for this run and restored afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def vae_in_ram(model: LoadedModel, enabled: bool) -> Iterator[None]:
    """unload_models_when_training: the VAE (needed only for the dataset and previews) waits in RAM."""
    vae = model.vae
    device = next(vae.parameters()).device
    offloaded = hasattr(vae, "_hf_hook")  # medvram/lowvram: accelerate moves it already
    if not enabled or device.type in ("cpu", "meta") or offloaded:
        yield
        return
    vae.to("cpu")
    try:
        yield
    finally:
        vae.to(device)
