"""Hypernetwork training on the tiny SD1 model: create, train (loss goes down), A1111 files read by the
networks loader, the trained hypernetwork changes UNet output and images, previews run with it
applied in eval mode, interrupt + resume with optimizer state, clear errors.

Tiny SD1 attention inputs are 32 wide (text context and first-level hidden states), 64 and 128;
the hypernetworks here have modules for 32 and 64. The convergence check uses fixed noise (see
tests/test_train_embedding.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.app.bootstrap import build_generation_service
from modules.core.jobs import JobControl
from modules.core.options import Options
from modules.core.shared_options import core_registry
from modules.generation.requests import Txt2ImgRequest
from modules.models.safe_load import load_pickle
from modules.networks.hypernetworks import attention_modules, hypernetworks_applied, load_hypernetwork
from modules.train.context import TrainingContext
from modules.train.create import create_hypernetwork
from modules.train.errors import TrainingError
from modules.train.hypernetwork import train_hypernetwork
from modules.train.loop import StepReport
from modules.train.options import TRAIN_OPTIONS
from modules.train.preview import PreviewImage
from modules.train.requests import CreateHypernetworkRequest, TrainHypernetworkRequest
from tests.gen_env import SD1, GenEnv, pixels

HEADER_KEYS = {
    "step", "name", "layer_structure", "activation_func", "is_layer_norm", "weight_initialization", "sd_checkpoint",
    "sd_checkpoint_name", "activate_output", "use_dropout", "dropout_structure", "last_layer_dropout", "optional_info",
}  # fmt: skip


@pytest.fixture(scope="module")
def options() -> Options:
    registry = core_registry()
    registry.extend(TRAIN_OPTIONS)
    return Options(registry, None)


@pytest.fixture(scope="module")
def ctx(env: GenEnv, options: Options) -> TrainingContext:
    return TrainingContext(paths=env.service.paths, models=env.models, options=options, generation=env.service)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hn-data")
    for i in range(8):
        image = Image.new("RGB", (64, 64), (30 * i, 200 - 20 * i, 120))
        ImageDraw.Draw(image).ellipse((6 + 3 * i, 8, 40 + 3 * i, 44), fill=(250, 250, 250))
        image.save(folder / f"{i:02d}-disc.png")
    return folder


def create(ctx: TrainingContext, name: str, **fields: object) -> Path:
    values: dict[str, object] = {"name": name, "enable_sizes": [32, 64], "activation_func": "relu", "seed": 2}
    values.update(fields)
    return create_hypernetwork(CreateHypernetworkRequest.model_validate(values), ctx).filename


def request(name: str, data: Path, logs: Path, **fields: object) -> TrainHypernetworkRequest:
    values: dict[str, object] = {
        "hypernetwork_name": name,
        "learn_rate": "0.001",
        "batch_size": 8,
        "data_root": str(data),
        "log_directory": str(logs),
        "training_width": 64,
        "training_height": 64,
        "steps": 30,
        "save_hypernetwork_every": 0,
        "create_image_every": 0,
        "template_filename": "hypernetwork.txt",
        "seed": 4,
        "checkpoint": SD1,
    }
    values.update(fields)
    return TrainHypernetworkRequest.model_validate(values)


def unet_output(env: GenEnv) -> torch.Tensor:
    model = env.models.load(SD1)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, 32, generator=generator)
    with torch.no_grad():
        return model.unet(x, torch.tensor([400]), encoder_hidden_states=context).sample


def test_training_lowers_the_loss_and_changes_outputs(
    env: GenEnv, ctx: TrainingContext, data: Path, tmp_path: Path
) -> None:
    path = create(ctx, "hn-learn")
    untrained = load_hypernetwork(path)
    result = train_hypernetwork(
        request("hn-learn", data, tmp_path, save_hypernetwork_every=15), JobControl(), ctx, fixed_noise=True
    )
    assert (result.step, len(result.losses)) == (30, 30)
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]), result.losses
    data_saved = load_pickle(path)
    model = env.models.load(SD1)
    assert set(data_saved) >= HEADER_KEYS and {k for k in data_saved if isinstance(k, int)} == {32, 64}
    assert data_saved["step"] == 30 and data_saved["name"] == "hn-learn"
    assert data_saved["sd_checkpoint"] == model.checkpoint.shorthash and data_saved["sd_checkpoint_name"] == "tiny-sd1"
    assert sorted(data_saved[32][0]) == ["linear.0.bias", "linear.0.weight", "linear.2.bias", "linear.2.weight"]
    assert result.log_directory is not None
    assert load_pickle(result.log_directory / "hypernetworks" / "hn-learn-15.pt")["name"] == "hn-learn-15"
    trained = load_hypernetwork(path)  # the networks loader reads what training wrote
    assert trained.step == 30 and trained.widths == [32, 64]
    base = unet_output(env)
    with hypernetworks_applied(model.unet, [(untrained, 1.0)]):
        before = unet_output(env)
    with hypernetworks_applied(model.unet, [(trained, 1.0)]):
        after = unet_output(env)
    assert not torch.allclose(after, before) and not torch.allclose(after, base)
    assert torch.equal(unet_output(env), base)  # hooks gone: the model is as it was
    assert all(p.requires_grad for p in model.unet.parameters())  # flags restored after training
    # used by name in a prompt, through the generation engine's extra networks
    paths = env.service.paths
    engine = build_generation_service(models=env.models, options=env.options, paths=paths, device=torch.device("cpu"))

    def render(prompt: str) -> np.ndarray:
        req = Txt2ImgRequest(prompt=prompt, steps=2, width=64, height=64, seed=9, sampler_name="Euler")
        req.override_settings = {"sd_model_checkpoint": SD1}
        return pixels(engine.txt2img(req, JobControl()).images[0])

    plain, with_net = render("a disc"), render("a disc <hypernet:hn-learn:1>")
    assert np.abs(plain - with_net).max() > 0
    assert np.array_equal(render("a disc <hypernet:hn-learn:0>"), plain)


def test_previews_run_with_the_hypernetwork_in_eval_mode(
    env: GenEnv, ctx: TrainingContext, data: Path, tmp_path: Path
) -> None:
    create(ctx, "hn-preview", use_dropout=True, dropout_structure=[0, 0.3, 0])
    seen: list[dict[str, object]] = []

    def renderer(req: Txt2ImgRequest, control: JobControl) -> PreviewImage:
        model = ctx.models.load(SD1)
        block = attention_modules(model.unet)[0]
        seen.append({
            "hooked": len(block.to_k._forward_pre_hooks) > 0,
            "disable_extra_networks": req.disable_extra_networks,
            "prompt": req.prompt,
            "interrupt_shared": control.interrupted is outer.interrupted,
            "no_dropout": torch.equal(unet_output(env), unet_output(env)),  # eval mode: dropout off
        })  # fmt: skip
        return PreviewImage(Image.new("RGB", (64, 64), (1, 2, 3)), "infotext")

    outer = JobControl()
    preview_ctx = TrainingContext(
        paths=ctx.paths, models=ctx.models, options=ctx.options, generation=None, preview=renderer
    )
    result = train_hypernetwork(
        request("hn-preview", data, tmp_path, steps=2, batch_size=2, create_image_every=2), outer, preview_ctx
    )
    assert len(seen) == 1
    assert seen[0]["hooked"] and seen[0]["disable_extra_networks"] and seen[0]["interrupt_shared"]
    assert seen[0]["no_dropout"]
    assert "disc" in str(seen[0]["prompt"])  # the latest training prompt (A1111 without txt2img settings)
    assert result.log_directory is not None and (result.log_directory / "images" / "hn-preview-2.png").is_file()


def test_dropout_training_is_reproducible_with_a_seed(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    losses = []
    for run in range(2):
        create(ctx, "hn-dropout", use_dropout=True, dropout_structure=[0, 0.3, 0], overwrite_old=True)
        result = train_hypernetwork(
            request("hn-dropout", data, tmp_path / str(run), steps=2, batch_size=2), JobControl(), ctx
        )
        losses.append(result.losses)
    assert losses[0] == losses[1]


def test_interrupt_and_resume_with_optimizer_state(
    ctx: TrainingContext, options: Options, data: Path, tmp_path: Path
) -> None:
    path = create(ctx, "hn-resume")
    options.set("save_optimizer_state", True)
    try:
        control = JobControl()

        def stop(report: StepReport) -> None:
            if report.step == 2:
                control.interrupt()

        req = request("hn-resume", data, tmp_path, steps=4, batch_size=2, save_hypernetwork_every=1)
        first = train_hypernetwork(req, control, ctx, on_step=stop)
        assert first.interrupted and first.step == 2
        assert load_hypernetwork(path).step == 2
        optim = load_pickle(Path(f"{path}.optim"))
        assert optim["optimizer_name"] == "AdamW" and set(optim) == {"hash", "optimizer_state_dict", "optimizer_name"}
        resumed = train_hypernetwork(req.model_copy(update={"steps": 3}), JobControl(), ctx)
        assert (resumed.initial_step, resumed.step, resumed.warnings) == (2, 3, [])
        assert load_pickle(path)["step"] == 3
    finally:
        options.set("save_optimizer_state", False)


def test_hypernetwork_without_matching_widths_is_refused(ctx: TrainingContext, data: Path, tmp_path: Path) -> None:
    create(ctx, "hn-wide", enable_sizes=[768, 1280])
    with pytest.raises(TrainingError, match=r"widths \[768, 1280\].*take widths \[32, 64, 128\]"):
        train_hypernetwork(request("hn-wide", data, tmp_path, steps=1), JobControl(), ctx)
    with pytest.raises(TrainingError, match="not found"):
        train_hypernetwork(request("hn-missing", data, tmp_path, steps=1), JobControl(), ctx)
