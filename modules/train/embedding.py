"""Textual-inversion training: only the embedding's vectors change (A1111 train_embedding).

The vectors go into the prompt through the same lookup generation uses (the embedding's name,
tokenized, is replaced by its vectors), the text encoder(s) and UNet are frozen, and the loss
gradient flows back through both to the vectors. Optimizer: AdamW, no weight decay. Files:
`<log>/<date>/<name>/embeddings/<name>-<step>.pt` every "save every" steps, the embedding in the
embeddings folder at those steps and at the end (also when interrupted); with "save images with
embedding in PNG chunks", `image_embeddings/<name>-<step>.png` after a preview.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from PIL import Image, PngImagePlugin

from modules.core.jobs import JobControl, JobInterrupted
from modules.generation.conditioning import Conditioning, TextConditioner
from modules.models.manager import LoadedModel
from modules.models.safe_load import load_pickle
from modules.networks.embeddings import EmbeddingDatabase, encoder_widths
from modules.networks.image_embedding import TEXT_CHUNK, embed_in_pixels, embedding_to_text_chunk
from modules.train.context import TrainingContext, conditioner_for
from modules.train.diffusion import NoiseSource, encode_texts, frozen_model
from modules.train.errors import TrainingError
from modules.train.files import (
    EmbeddingMeta,
    StoredEmbedding,
    embedding_checksum,
    embedding_suffix,
    find_embedding_file,
    load_optimizer_state,
    read_embedding_for_training,
    save_embedding,
    save_optimizer_state,
)
from modules.train.loop import StepReport, TrainingRun, run_training
from modules.train.options import TrainingSettings
from modules.train.preview import GenerationPreview, PreviewRenderer
from modules.train.requests import TrainEmbeddingRequest, TrainResult
from modules.train.setup import (
    Checked,
    check_request,
    log_root,
    loop_plan,
    make_folders,
    prepare_dataset,
    seeded_torch,
    vae_in_ram,
    write_settings_file,
)

Tensor = torch.Tensor


class EmbeddingTarget:
    kind = "embedding"
    preview_disables_extra_networks = False

    def __init__(
        self,
        stored: StoredEmbedding,
        vectors: Tensor | dict[str, Tensor],
        conditioner: TextConditioner,
        *,
        model: LoadedModel,
        settings: TrainingSettings,
        image_embeddings_dir: Path | None,
    ) -> None:
        self.name = stored.file.name
        self.step = stored.step
        self.vectors = vectors
        self.file_suffix = embedding_suffix(vectors)
        self.conditioner = conditioner
        self.checkpoint = model.checkpoint
        self.settings = settings
        self.image_embeddings_dir = image_embeddings_dir

    def parameters(self) -> list[Tensor]:
        return [self.vectors] if isinstance(self.vectors, Tensor) else list(self.vectors.values())

    def conditioning(self, texts: Sequence[str]) -> Conditioning:
        return encode_texts(self.conditioner, texts, grad=True)

    def save(self, path: Path, file_name: str, optimizer: torch.optim.Optimizer | None) -> Path:
        meta = EmbeddingMeta(file_name, self.step, self.checkpoint.shorthash, self.checkpoint.model_name)
        save_embedding(path, self.vectors, meta)
        if self.settings.save_optimizer_state and optimizer is not None:
            save_optimizer_state(path, embedding_checksum(self.vectors), optimizer.state_dict())
        return path

    def preview_mode(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def after_preview(self, image: Image.Image, step: int, last_saved: Path | None) -> Path | None:
        """A1111's "save images with embedding in PNG chunks": the last saved file inside a PNG."""
        if self.image_embeddings_dir is None or last_saved is None or not last_saved.is_file():
            return None
        data = _file_data(last_saved)
        info = PngImagePlugin.PngInfo()
        info.add_text(TEXT_CHUNK, embedding_to_text_chunk(data))
        path = self.image_embeddings_dir / f"{self.name}-{step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        embed_in_pixels(image.convert("RGB"), data).save(path, "PNG", pnginfo=info)
        return path


def _file_data(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        data: dict[str, Any] = dict(safetensors.torch.load_file(str(path)))
        with safetensors.safe_open(str(path), framework="pt") as handle:
            data["name"] = (handle.metadata() or {}).get("name", path.stem)
        return data
    loaded = load_pickle(path)
    return dict(loaded) if isinstance(loaded, dict) else {}


def trainable_vectors(stored: StoredEmbedding, device: torch.device) -> Tensor | dict[str, Tensor]:
    def leaf(t: Tensor) -> Tensor:
        return t.detach().to(device, torch.float32).clone().requires_grad_(True)

    vectors = stored.file.vectors
    if isinstance(vectors, Tensor):
        return leaf(vectors)
    return {key: leaf(value) for key, value in vectors.items()}


def training_lookup(
    model: LoadedModel, stored: StoredEmbedding, vectors: Tensor | Mapping[str, Tensor]
) -> EmbeddingDatabase:
    """The name -> vectors lookup for the trained embedding; TrainingError if it does not fit."""
    widths = encoder_widths(model.family, model.text_encoders)
    file = replace(stored.file, vectors=vectors if isinstance(vectors, Tensor) else dict(vectors))
    database = EmbeddingDatabase([file], model.tokenizers[0], widths)
    if file.name in database.skipped:
        reason = database.skipped[file.name].reason
        raise TrainingError(f"embedding {file.name!r} cannot be trained on {model.checkpoint.name}: {reason}")
    return database


def locate_embedding(ctx: TrainingContext, name: str, model: LoadedModel) -> StoredEmbedding:
    """The embedding file to train; an SDXL model looks for the .safetensors format first."""
    if not name:
        raise TrainingError("no embedding selected")
    prefer = ".safetensors" if len(model.text_encoders) > 1 else ".pt"
    path = find_embedding_file(ctx.paths.embeddings_dir, name, prefer)
    if path is None:
        raise TrainingError(f"embedding {name!r} not found in {ctx.paths.embeddings_dir}; create it first")
    stored = read_embedding_for_training(path, safe=ctx.safe_unpickle)
    stored.file = replace(stored.file, name=name)
    return stored


def _main_file(ctx: TrainingContext, stored: StoredEmbedding, suffix: str) -> Path:
    if stored.path.suffix.lower() == suffix:
        return stored.path
    return ctx.paths.embeddings_dir / f"{stored.file.name}{suffix}"


def train_embedding(
    req: TrainEmbeddingRequest,
    control: JobControl,
    ctx: TrainingContext,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    fixed_noise: bool = False,
) -> TrainResult:
    """Train `req.embedding_name` on the dataset; runs inside a job (reports through `control`).

    `fixed_noise`: the same noise and timestep per image at every step (convergence checks).
    """
    model = ctx.model(req.checkpoint)
    stored = locate_embedding(ctx, req.embedding_name, model)
    suffix = embedding_suffix(stored.file.vectors)
    result = TrainResult(
        "embedding", stored.file.name, _main_file(ctx, stored, suffix), stored.step, stored.step, req.steps
    )
    if stored.step >= req.steps:
        result.note = "Model has already been trained beyond specified max steps"
        control.textinfo = result.note
        return result
    checked = check_request(req, ctx, stored.step)
    with ctx.models.use(model), frozen_model(model), seeded_torch(checked.seed, next(model.unet.parameters()).device):
        return _train(req, control, ctx, model, stored, checked, result, on_step=on_step, fixed_noise=fixed_noise)


def _train(
    req: TrainEmbeddingRequest,
    control: JobControl,
    ctx: TrainingContext,
    model: LoadedModel,
    stored: StoredEmbedding,
    checked: Checked,
    result: TrainResult,
    *,
    on_step: Callable[[StepReport], None] | None,
    fixed_noise: bool,
) -> TrainResult:
    device = next(model.unet.parameters()).device
    vectors = trainable_vectors(stored, device)
    lookup = training_lookup(model, stored, vectors)
    rng = random.Random(checked.seed)
    generator = torch.Generator().manual_seed(checked.seed)
    control.textinfo = f"Preparing dataset from {checked.scan.root}..."
    try:
        dataset = prepare_dataset(req, checked, model, stored.file.name, rng=rng, generator=generator, control=control)
    except JobInterrupted:
        result.interrupted = True
        result.note = "interrupted while preparing the dataset"
        return result
    result.warnings.extend(dataset.warnings)
    log_dir = log_root(req, ctx, stored.file.name)
    plan = loop_plan(
        req,
        checked,
        main_file=result.filename,
        log_dir=log_dir,
        files_folder="embeddings",
        csv_name="textual_inversion_loss.csv",
    )
    make_folders(plan)
    result.log_directory = plan.log_dir
    image_dir = (
        log_dir / "image_embeddings" if req.create_image_every and req.save_image_with_stored_embedding else None
    )
    target = EmbeddingTarget(
        stored, vectors, conditioner_for(model, checked.settings, lookup), model=model, settings=checked.settings,
        image_embeddings_dir=image_dir,
    )  # fmt: skip
    if checked.settings.save_settings and plan.log_dir is not None:
        extra = {"model_name": model.checkpoint.model_name, "model_hash": model.checkpoint.shorthash,
                 "num_of_dataset_images": len(dataset), "num_vectors_per_token": stored.file.vector_count,
                 "initial_step": stored.step}  # fmt: skip
        write_settings_file(plan.log_dir, req, extra)
    optimizer = torch.optim.AdamW(target.parameters(), lr=checked.learn_rate[0].rate, weight_decay=0.0)
    if checked.settings.save_optimizer_state:
        state = load_optimizer_state(stored.path, embedding_checksum(stored.file.vectors), safe=ctx.safe_unpickle)
        try:
            if state is not None:
                optimizer.load_state_dict(state)
        except (ValueError, RuntimeError, KeyError) as exc:
            result.warnings.append(f"cannot resume from the saved optimizer state: {exc}")
    renderer: PreviewRenderer | None = ctx.preview or (GenerationPreview(ctx.generation) if ctx.generation else None)
    run = TrainingRun(
        target, dataset, model, plan, req, control, optimizer,
        NoiseSource(generator, len(model.alphas_cumprod), fixed=fixed_noise, seed=checked.seed),
        rng, generator, result, renderer, on_step,
    )  # fmt: skip
    with vae_in_ram(model, checked.settings.unload_models):
        return run_training(run)
