"""Textual-inversion training on tiny fixture models: create, train (loss goes down), A1111 files that
the networks loaders read, the trained name changes conditioning and images, queue job with
progress and previews, interrupt + resume, gradient accumulation, bad datasets write nothing.

The convergence check uses `fixed_noise=True` (each image keeps its noise and timestep at every
step, see modules/train/diffusion.py): on a random tiny model the loss is otherwise dominated by
the random draws. Training itself uses fresh draws."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
from PIL import Image, ImageDraw

from modules.app.bootstrap import build_generation_service
from modules.core.jobs import JobControl, LocalJobQueue
from modules.core.options import Options
from modules.core.shared_options import core_registry
from modules.generation.conditioning import TextConditioner
from modules.generation.engine import GenerationService
from modules.generation.requests import Txt2ImgRequest
from modules.models.safe_load import load_pickle
from modules.networks.embeddings import EmbeddingDatabase, encoder_widths, read_embedding
from modules.train.context import TrainingContext
from modules.train.create import create_embedding
from modules.train.embedding import train_embedding
from modules.train.errors import DatasetError, TrainingError
from modules.train.files import read_embedding_for_training
from modules.train.loop import StepReport
from modules.train.options import TRAIN_OPTIONS
from modules.train.requests import CreateEmbeddingRequest, TrainEmbeddingRequest
from modules.train.service import TrainingService
from tests.gen_env import SD1, SD1_INPAINT, SDXL, GenEnv, pixels

COLORS = [
    (220, 40, 40),
    (40, 200, 60),
    (50, 70, 230),
    (230, 200, 40),
    (160, 60, 200),
    (40, 200, 200),
    (240, 140, 30),
    (90, 90, 90),
]


def make_dataset(folder: Path, count: int = 8, size: tuple[int, int] = (64, 64)) -> Path:
    """`count` generated images (a coloured shape on a light background), half with caption files."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", size, (235, 235, 225))
        draw = ImageDraw.Draw(image)
        box = (8 + 2 * i, 10, 40 + 2 * i, 50)
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=COLORS[i % len(COLORS)])
        image.save(folder / f"{i:02d}-{'circle' if i % 2 else 'square'}.png")
        if i < count // 2:
            (folder / f"{i:02d}-{'circle' if i % 2 else 'square'}.txt").write_text(
                f"shape {i}, bright", encoding="utf-8"
            )
    return folder


@pytest.fixture(scope="module")
def engine(env: GenEnv) -> GenerationService:
    """The generation service with extra networks: embeddings are found by name in the prompt."""
    return build_generation_service(
        models=env.models, options=env.options, paths=env.service.paths, device=torch.device("cpu")
    )


@pytest.fixture(scope="module")
def ctx(env: GenEnv, engine: GenerationService) -> TrainingContext:
    registry = core_registry()
    registry.extend(TRAIN_OPTIONS)
    options = Options(registry, None)
    options.set("training_write_csv_every", 10)
    return TrainingContext(paths=env.service.paths, models=env.models, options=options, generation=engine)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ti-data"))


def request(name: str, data: Path, logs: Path, **fields: object) -> TrainEmbeddingRequest:
    values: dict[str, object] = {
        "embedding_name": name,
        "learn_rate": "0.05",
        "batch_size": 8,
        "gradient_step": 1,
        "data_root": str(data),
        "log_directory": str(logs),
        "training_width": 64,
        "training_height": 64,
        "steps": 30,
        "save_embedding_every": 0,
        "create_image_every": 0,
        "template_filename": "subject_filewords.txt",
        "seed": 1,
        "checkpoint": SD1,
    }
    values.update(fields)
    return TrainEmbeddingRequest.model_validate(values)


def create(ctx: TrainingContext, name: str, checkpoint: str = SD1, init_text: str = "red", vectors: int = 2) -> Path:
    req = CreateEmbeddingRequest(name=name, num_vectors_per_token=vectors, init_text=init_text, checkpoint=checkpoint)
    return create_embedding(req, ctx).filename


def conditioner(env: GenEnv, path: Path | None) -> TextConditioner:
    model = env.models.load(SD1)
    lookup = None
    if path is not None:
        file = read_embedding(path)
        assert file is not None
        lookup = EmbeddingDatabase([file], model.tokenizers[0], encoder_widths(model.family, model.text_encoders))
    return TextConditioner(model.tokenizers, model.text_encoders, embeddings=lookup)


def render(engine: GenerationService, prompt: str) -> np.ndarray:
    req = Txt2ImgRequest(prompt=prompt, steps=2, width=64, height=64, seed=3, sampler_name="Euler")
    req.override_settings = {"sd_model_checkpoint": SD1}
    return pixels(engine.txt2img(req, JobControl()).images[0])


# --- create -----------------------------------------------------------------------------------


def test_create_embedding_copies_the_init_text_vectors(env: GenEnv, ctx: TrainingContext) -> None:
    path = create(ctx, "init/red cat?", init_text="red cat", vectors=3)
    assert path == ctx.paths.embeddings_dir / "initred cat.pt"
    data = load_pickle(path)
    assert set(data) == {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}
    assert data["name"] == "initred cat" and data["step"] == 0 and data["sd_checkpoint"] is None
    model = env.models.load(SD1)
    ids = model.tokenizers[0]("red cat", add_special_tokens=False)["input_ids"]
    table = model.text_encoders[0].get_input_embeddings().weight.detach()
    expected = table[[ids[0], ids[0], ids[1]]]  # vector i copies token i * 2 // 3
    assert torch.equal(data["string_to_param"]["*"], expected)
    zeros = load_pickle(create(ctx, "blank", init_text=""))
    assert float(zeros["string_to_param"]["*"].abs().max()) == 0.0
    with pytest.raises(TrainingError, match="already exists"):
        create(ctx, "initred cat")
    with pytest.raises(TrainingError, match="no usable characters"):
        create(ctx, "///")


def test_create_sdxl_embedding_has_both_parts(ctx: TrainingContext) -> None:
    path = create(ctx, "xl-emb", checkpoint=SDXL, vectors=2)
    assert path.suffix == ".safetensors"
    file = read_embedding(path)
    assert file is not None and isinstance(file.vectors, dict)
    assert {k: tuple(v.shape) for k, v in file.vectors.items()} == {"clip_l": (2, 32), "clip_g": (2, 64)}
    with safetensors.safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"name": "xl-emb", "step": "0"}


# --- training ---------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_saves_a1111_files(
    env: GenEnv, ctx: TrainingContext, data: Path, tmp_path: Path
) -> None:
    path = create(ctx, "learned")
    initial = load_pickle(path)["string_to_param"]["*"].clone()
    result = train_embedding(
        request("learned", data, tmp_path, save_embedding_every=10), JobControl(), ctx, fixed_noise=True
    )
    assert (result.initial_step, result.step, len(result.losses)) == (0, 30, 30)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < first, result.losses
    assert all(np.isfinite(result.losses))
    saved = load_pickle(path)
    model = env.models.load(SD1)
    assert saved["step"] == 30 and saved["name"] == "learned"
    assert saved["sd_checkpoint"] == model.checkpoint.shorthash and saved["sd_checkpoint_name"] == "tiny-sd1"
    assert saved["string_to_token"] == {"*": 265}
    trained = saved["string_to_param"]["*"]
    assert trained.shape == initial.shape and not torch.equal(trained, initial)
    log = result.log_directory
    assert log is not None and log.parent.parent == tmp_path
    for step in (10, 20, 30):
        every = load_pickle(log / "embeddings" / f"learned-{step}.pt")
        assert every["step"] == step and every["name"] == f"learned-{step}"
    assert torch.equal(load_pickle(log / "embeddings" / "learned-30.pt")["string_to_param"]["*"], trained)
    rows = (log / "textual_inversion_loss.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "step,epoch,epoch_step,loss,learn_rate" and [r.split(",")[0] for r in rows[1:]] == [
        "10",
        "20",
        "30",
    ]
    assert rows[1].split(",")[1:3] == ["9", "0"]  # one step per epoch (8 images, batch 8)
    assert len(list(log.glob("settings-*.json"))) == 1
    loaded = read_embedding(path)  # the networks loader reads what training wrote
    assert loaded is not None and loaded.step == 30 and torch.equal(loaded.vectors, trained)  # type: ignore[arg-type]


def test_the_trained_name_changes_conditioning_and_image(
    env: GenEnv, engine: GenerationService, ctx: TrainingContext, data: Path, tmp_path: Path
) -> None:
    path = create(ctx, "namedthing")
    untrained = tmp_path / "namedthing.pt"
    untrained.write_bytes(path.read_bytes())
    image_before, house_before = render(engine, "a photo of namedthing"), render(engine, "a photo of a house")
    train_embedding(request("namedthing", data, tmp_path / "logs", steps=5), JobControl(), ctx)
    image_after, house_after = render(engine, "a photo of namedthing"), render(engine, "a photo of a house")
    assert np.abs(image_after - image_before).max() > 0  # the name in a prompt uses the trained vectors
    assert np.array_equal(house_after, house_before)  # prompts without it are unchanged
    prompt = ["a photo of namedthing"]
    trained_ctx = conditioner(env, path).encode(prompt).context
    before_ctx = conditioner(env, untrained).encode(prompt).context
    plain_ctx = conditioner(env, None).encode(prompt).context  # the name as ordinary words
    assert not torch.allclose(trained_ctx, before_ctx) and not torch.allclose(trained_ctx, plain_ctx)


def test_training_as_a_queue_job_reports_progress_and_previews(
    env: GenEnv, ctx: TrainingContext, data: Path, tmp_path: Path
) -> None:
    service = TrainingService(ctx)
    create(ctx, "queued")
    create(ctx, "solo")
    queue = LocalJobQueue()
    try:
        fields = {"steps": 3, "save_embedding_every": 3, "create_image_every": 3, "preview_from_txt2img": True,
                  "preview_prompt": "a photo of queued", "preview_steps": 2, "preview_width": 64,
                  "preview_height": 64, "preview_seed": 5, "batch_size": 2}  # fmt: skip
        job = service.submit_train_embedding(queue, request("queued", data, tmp_path, **fields))
        seen: dict[str, bool] = {}

        def generate(control: JobControl) -> object:
            seen["training_done_first"] = job.done
            return env.service.txt2img(Txt2ImgRequest(prompt="x", steps=1, width=64, height=64), control)

        other = queue.submit("txt2img", generate)
        result = job.wait(timeout=600)
        other.wait(timeout=600)
    finally:
        queue.shutdown()
    assert seen == {"training_done_first": True}  # the generation waited for the training job
    control = job.control
    assert control.progress() == 1.0 and control.sampling_step == 3 and control.sampling_steps == 3
    assert "step 3/3" in control.textinfo and "Loss: " in control.textinfo and "ETA: " in control.textinfo
    assert isinstance(control.preview, Image.Image)
    assert result.step == 3 and result.info.startswith("train embedding complete: filename: ")
    log = result.log_directory
    assert log is not None
    assert (log / "images" / "queued-3.png").is_file()
    stored = read_embedding(log / "image_embeddings" / "queued-3.png")  # embedding inside the preview PNG
    assert stored is not None and stored.name == "queued-3" and stored.step == 3
    # the same training alone gives the same vectors: the queued generation changed nothing
    solo = train_embedding(request("solo", data, tmp_path / "solo", steps=3, batch_size=2), JobControl(), ctx)
    assert solo.losses == result.losses
    queued_vectors = load_pickle(result.filename)["string_to_param"]["*"]
    assert torch.equal(load_pickle(solo.filename)["string_to_param"]["*"], queued_vectors)


def test_interrupt_keeps_a_valid_file_and_resume_continues(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    path = create(ctx, "resumable")
    control = JobControl()

    def stop_at_three(report: StepReport) -> None:
        if report.step == 3:
            control.interrupt()

    req = request("resumable", data, tmp_path, steps=6, save_embedding_every=2, batch_size=2)
    first = train_embedding(req, control, ctx, on_step=stop_at_three)
    assert first.interrupted and first.step == 3 and len(first.losses) == 3
    stored = read_embedding(path)
    assert stored is not None and stored.step == 3
    assert first.log_directory is not None
    assert load_pickle(first.log_directory / "embeddings" / "resumable-2.pt")["step"] == 2
    resumed = train_embedding(req.model_copy(update={"steps": 5}), JobControl(), ctx)
    assert (resumed.initial_step, resumed.step, len(resumed.losses), resumed.interrupted) == (3, 5, 2, False)
    assert load_pickle(path)["step"] == 5
    before = path.read_bytes()
    done = train_embedding(req.model_copy(update={"steps": 5}), JobControl(), ctx)
    assert done.note == "Model has already been trained beyond specified max steps" and not done.losses
    assert path.read_bytes() == before


def test_gradient_accumulation_equals_one_large_batch(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    create(ctx, "bigbatch")
    create(ctx, "accumulated")
    common = {"steps": 1, "learn_rate": "0.001"}
    big = train_embedding(
        request("bigbatch", data, tmp_path, batch_size=8, **common), JobControl(), ctx, fixed_noise=True
    )
    small = train_embedding(
        request("accumulated", data, tmp_path, batch_size=2, gradient_step=4, **common),
        JobControl(),
        ctx,
        fixed_noise=True,
    )
    assert small.losses[0] == pytest.approx(big.losses[0], rel=1e-5)
    a = load_pickle(big.filename)["string_to_param"]["*"]
    b = load_pickle(small.filename)["string_to_param"]["*"]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("checkpoint", [SD1_INPAINT, SDXL])
def test_inpainting_and_sdxl_models_train(ctx: TrainingContext, data: Path, tmp_path: Path, checkpoint: str) -> None:
    name = f"fam-{checkpoint}"
    path = create(ctx, name, checkpoint=checkpoint)
    result = train_embedding(
        request(name, data, tmp_path, steps=2, batch_size=2, checkpoint=checkpoint), JobControl(), ctx
    )
    assert result.step == 2 and all(np.isfinite(result.losses))
    file = read_embedding(path)
    assert file is not None
    assert isinstance(file.vectors, dict) == (checkpoint == SDXL)
    if checkpoint == SDXL:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            assert handle.metadata()["step"] == "2"


def test_variable_size_random_latents_weights_and_schedule_end(ctx: TrainingContext, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "mixed", count=3)
    make_dataset(tmp_path / "tall", count=2, size=(64, 96))
    for image in (tmp_path / "tall").glob("*.png"):
        rgba = Image.open(image).convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
        rgba.save(folder / f"tall-{image.name}")
    create(ctx, "mixed")
    req = request(
        "mixed", folder, tmp_path / "logs", steps=6, learn_rate="0.01:2", batch_size=2, varsize=True,
        latent_sampling_method="random", use_weight=True, shuffle_tags=True, tag_drop_out=0.3,
    )  # fmt: skip
    result = train_embedding(req, JobControl(), ctx)
    assert result.step == 2 and result.note == "the learning rate schedule ends at step 2"
    assert all(np.isfinite(result.losses))


def test_an_embedding_for_another_model_is_refused(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    create(ctx, "sd1only")
    with pytest.raises(TrainingError, match="cannot be trained on tiny-sdxl"):
        train_embedding(request("sd1only", data, tmp_path, checkpoint=SDXL, steps=1), JobControl(), ctx)


# --- bad input writes nothing -----------------------------------------------------------------


def _bad_folder(kind: str, root: Path) -> Path:
    folder = root / kind
    folder.mkdir()
    if kind == "non-images":
        (folder / "notes.md").write_text("hello", encoding="utf-8")
        (folder / "list.csv").write_text("1,2", encoding="utf-8")
    elif kind == "broken-image":
        make_dataset(folder, count=2)
        (folder / "99-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    elif kind == "bad-caption":
        make_dataset(folder, count=2)
        (folder / "00-square.txt").write_bytes(b"\xff\xfe\x00garbage \xe9")
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "is empty"),
        ("non-images", "no images found"),
        ("broken-image", "cannot be read: 99-broken.jpg"),
        ("bad-caption", "caption file.*00-square.txt"),
    ],
)
def test_bad_dataset_is_a_clear_error_and_writes_nothing(
    ctx: TrainingContext, tmp_path: Path, kind: str, message: str
) -> None:
    path = create(ctx, f"untouched-{kind}")
    before, mtime = path.read_bytes(), os.stat(path).st_mtime_ns
    logs = tmp_path / "logs"
    req = request(path.stem, _bad_folder(kind, tmp_path), logs, save_embedding_every=1, create_image_every=1)
    with pytest.raises(DatasetError, match=message):
        train_embedding(req, JobControl(), ctx)
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == mtime
    assert not logs.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"embedding_name": "does-not-exist"}, "not found"),
        ({"learn_rate": "fast"}, "invalid learning rate"),
        ({"clip_grad_mode": "norm", "clip_grad_value": "big"}, "gradient clipping value"),
        ({"template_filename": "nope.txt"}, "nope.txt' not found"),
        ({"create_image_every": 5, "preview_from_txt2img": True, "preview_sampler_name": "Warp"}, "preview settings"),
        ({"save_embedding_every": 5, "log_directory": " "}, "log directory is empty"),
        ({"training_width": 60}, "multiple of 8"),
    ],
)
def test_bad_requests_are_clear_errors(
    ctx: TrainingContext, data: Path, tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    if not (ctx.paths.embeddings_dir / "requests.pt").exists():
        create(ctx, "requests")
    with pytest.raises(TrainingError, match=message):
        train_embedding(request("requests", data, tmp_path / "logs", **fields), JobControl(), ctx)
    assert not (tmp_path / "logs").exists()


def test_sdxl_training_prefers_the_sdxl_file_of_a_name(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    sd1_file, xl_file = create(ctx, "dual"), create(ctx, "dual", checkpoint=SDXL)
    result = train_embedding(request("dual", data, tmp_path, steps=1, batch_size=2, checkpoint=SDXL), JobControl(), ctx)
    assert result.filename == xl_file and read_embedding_for_training(xl_file).step == 1
    assert load_pickle(sd1_file)["step"] == 0


def test_a_diverging_loss_stops_and_keeps_the_last_saved_file(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    path = create(ctx, "diverging")
    req = request("diverging", data, tmp_path, steps=4, batch_size=2, learn_rate="1e30", save_embedding_every=1)
    with pytest.raises(TrainingError, match="the loss became nan at step 2"):
        train_embedding(req, JobControl(), ctx)
    assert load_pickle(path)["step"] == 1
