"""The OpenVINO CPU backend (setting cpu_compute_backend) on tiny models: the same images as PyTorch
within the PSNR goals, LoRA changes reach the compiled graph, hooks and failed compiles fall back
to PyTorch with a clear log line, the setting and the --cpu-backend flag round-trip."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from modules.app.bootstrap import build_registry
from modules.core.cmd_args import ArgumentError, parse_args
from modules.core.options import OptionError, Options
from modules.generation.speed import SpeedSettings
from modules.generation.speed.openvino import import_openvino, openvino_available
from modules.generation.speed.settings import resolve_cpu_backend
from modules.models.ldm_views import called_unet
from modules.networks.testing import save_safetensors
from tests.fixtures_models import TinyModelFiles, models_home
from tests.gen_env import SD1, GenEnv, make_env

pytestmark = pytest.mark.skipif(not openvino_available(), reason="the openvino package is not installed")

LAYER = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"  # [64, 32] in tiny SD1


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only costs on a shared CPU
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> GenEnv:
    return make_env(tmp_path_factory.mktemp("openvino"), tiny_models)


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(i, dtype=np.float64) for i in (a, b))
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def run(env: GenEnv, backend: str, **fields: Any) -> Image.Image:
    fields.setdefault("prompt", "a red house")
    fields.setdefault("seed", 11)
    fields["override_settings"] = {"sd_model_checkpoint": SD1, "cpu_compute_backend": backend}
    return env.txt2img(**fields).images[0]


def converted_files(env: GenEnv) -> list[Path]:
    return sorted((env.root / "data" / "cache" / "openvino").glob("*.xml")) or sorted(env.root.rglob("openvino/*.xml"))


@pytest.mark.parametrize(("backend", "goal"), [("openvino", 35.0), ("openvino-bf16", 30.0)])
@pytest.mark.parametrize(
    "job", [{}, {"enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 2, "denoising_strength": 0.5}]
)
def test_openvino_image_matches_pytorch(env: GenEnv, backend: str, goal: float, job: dict[str, Any]) -> None:
    unet = env.models.load(SD1).unet
    torch_calls: list[int] = []
    handle = called_unet(unet).register_forward_hook(lambda *_: torch_calls.append(1))
    try:
        reference = run(env, "torch", **job)
    finally:
        handle.remove()
    calls = env.service.speed_cache.openvino.calls
    before = dict(calls)
    image = run(env, backend, **job)
    assert calls["unet"] - before.get("unet", 0) == len(torch_calls)  # every UNet call ran in OpenVINO
    assert calls["vae_decoder"] - before.get("vae_decoder", 0) >= 1
    assert image.size == reference.size
    assert psnr(image, reference) >= goal
    assert {p.name.split("-")[0] for p in converted_files(env)} >= {"unet", "vae_decoder"}
    assert unet._compiled_call_impl is None and called_unet(unet)._compiled_call_impl is None  # left as it was


def test_img2img_encodes_and_denoises_through_openvino(env: GenEnv) -> None:
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    images = {}
    for backend in ("torch", "openvino"):
        over = {"sd_model_checkpoint": SD1, "cpu_compute_backend": backend}
        images[backend] = env.img2img([init], prompt="a cat", seed=5, override_settings=over).images[0]
    assert psnr(images["openvino"], images["torch"]) >= 35.0


def test_a_lora_change_changes_the_compiled_image(env: GenEnv) -> None:
    g = torch.Generator().manual_seed(3)
    state = {
        f"{LAYER}.lora_down.weight": torch.randn(4, 32, generator=g),
        f"{LAYER}.lora_up.weight": torch.randn(64, 4, generator=g),
    }
    save_safetensors(models_home(env.root).lora_dir / "style.safetensors", state)
    plain = run(env, "openvino")
    styled = run(env, "openvino", prompt="a red house <lora:style:1>")
    stronger = run(env, "openvino", prompt="a red house <lora:style:2>")
    styled_torch = run(env, "torch", prompt="a red house <lora:style:1>")
    stronger_torch = run(env, "torch", prompt="a red house <lora:style:2>")
    assert psnr(styled, plain) < 30.0
    assert psnr(styled, styled_torch) >= 35.0
    assert psnr(stronger, stronger_torch) >= 35.0
    # a stale graph would give `styled` again: further from PyTorch's weight-2 image than the new one
    assert psnr(stronger, styled) < psnr(stronger, stronger_torch)
    assert psnr(run(env, "openvino"), plain) == float("inf")  # LoRA gone: the base graph again


def test_a_failed_compile_falls_back_to_pytorch_with_a_clear_message(
    tmp_path: Path, tiny_models: TinyModelFiles, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    openvino = import_openvino()
    fresh = make_env(tmp_path, tiny_models)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unsupported operation aten::frobnicate")

    monkeypatch.setattr(openvino, "convert_model", broken)
    reference = run(fresh, "torch")
    with caplog.at_level(logging.WARNING, logger="modules.generation.speed.openvino"):
        image = run(fresh, "openvino")
    assert psnr(image, reference) == float("inf")
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "OpenVINO could not compile the unet (RuntimeError: unsupported operation aten::frobnicate); "
        "it runs in PyTorch instead" in m
        for m in messages
    )
    assert sum("could not compile the unet" in m for m in messages) == 1  # once, not per step


def test_a_forward_hook_runs_the_unet_in_pytorch_with_a_log_line(env: GenEnv, caplog: pytest.LogCaptureFixture) -> None:
    unet = env.models.load(SD1).unet
    calls: list[int] = []
    handle = unet.mid_block.resnets[0].conv1.register_forward_hook(lambda *_: calls.append(1))
    try:
        reference = run(env, "torch")
        calls.clear()
        with caplog.at_level(logging.INFO, logger="modules.generation.speed.openvino"):
            image = run(env, "openvino")
    finally:
        handle.remove()
    assert calls  # the extension's hook ran
    assert psnr(image, reference) >= 35.0
    assert any(
        "the unet runs in PyTorch for this call: a forward hook on middle_block.0.in_layers.2" in r.getMessage()
        for r in caplog.records
    )


def test_setting_and_flag_round_trip(tmp_path: Path) -> None:
    default = Options(build_registry(parse_args([])), tmp_path / "a.json")
    assert default.get("cpu_compute_backend") == "torch"
    flagged = Options(build_registry(parse_args(["--cpu-backend", "openvino-bf16"])), tmp_path / "b.json")
    assert flagged.get("cpu_compute_backend") == "openvino-bf16"
    assert SpeedSettings.from_options(flagged.view({})).cpu_backend == "openvino-bf16"
    flagged.update({"cpu_compute_backend": "openvino"})
    again = Options(build_registry(parse_args(["--cpu-backend", "openvino-bf16"])), tmp_path / "b.json")
    again.load()
    assert again.get("cpu_compute_backend") == "openvino"  # the stored value wins over the flag
    with pytest.raises(OptionError):
        again.set("cpu_compute_backend", "tensorrt")
    assert resolve_cpu_backend("auto") in ("torch", "openvino", "openvino-bf16")
    with pytest.raises(ValueError, match="cpu_compute_backend must be one of"):
        resolve_cpu_backend("tensorrt")
    with pytest.raises(ArgumentError, match="invalid choice: 'tensorrt'"):
        parse_args(["--cpu-backend", "tensorrt"])
