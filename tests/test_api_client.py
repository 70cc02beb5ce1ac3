"""A third-party A1111 client from PyPI (webuiapi, pinned in requirements-test.txt) drives the server unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from modules.generation.image_io import read_info_from_image
from tests.api_server import SD1, LiveServer, gradient, start_server
from tests.fixtures_models import TinyModelFiles

webuiapi = pytest.importorskip("webuiapi")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("client"), tiny_models, "--nowebui", "--api-auth", "kim:pw-1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(live: LiveServer) -> Any:
    return webuiapi.WebUIApi(
        host="127.0.0.1", port=live.port, sampler="Euler a", steps=2, username="kim", password="pw-1"
    )


def test_txt2img(api: Any) -> None:
    result = api.txt2img(prompt="a lighthouse", negative_prompt="fog", seed=42, width=64, height=64, cfg_scale=6)
    assert len(result.images) == 1
    image = result.image
    assert isinstance(image, Image.Image) and image.size == (64, 64)
    assert result.info["seed"] == 42 and result.info["sampler_name"] == "Euler a"
    infotext = read_info_from_image(image).parameters or ""
    assert infotext.startswith("a lighthouse\nNegative prompt: fog\nSteps: 2, Sampler: Euler a")
    assert result.parameters["prompt"] == "a lighthouse"


def test_img2img_and_inpaint(api: Any) -> None:
    result = api.img2img(images=[gradient()], prompt="a boat", seed=3, width=64, height=64, denoising_strength=0.6)
    assert result.image.size == (64, 64)
    assert "Denoising strength: 0.6" in result.info["infotexts"][0]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpainted = api.img2img(images=[gradient()], mask_image=mask, prompt="x", seed=3, width=64, height=64)
    assert inpainted.image.size == (64, 64)


def test_extras_single_and_batch(api: Any) -> None:
    single = api.extra_single_image(image=gradient(32), upscaler_1="Lanczos", upscaling_resize=2)
    assert single.image.size == (64, 64) and "Postprocess upscaler: Lanczos" in single.info
    batch = api.extra_batch_images(images=[gradient(16), gradient(24)], upscaler_1="Nearest", upscaling_resize=2)
    assert [i.size for i in batch.images] == [(32, 32), (48, 48)]


def test_png_info(api: Any) -> None:
    made = api.txt2img(prompt="png info check", seed=5, width=64, height=64)
    info = api.png_info(made.image)
    assert info.info.startswith("png info check\nSteps: 2")
    assert info.parameters["Seed"] == "5"


def test_options_and_model_listing(api: Any) -> None:
    titles = api.util_get_model_names()
    assert any(t.startswith(f"{SD1}.safetensors") for t in titles)
    assert api.get_sd_models()[0]["model_name"] == SD1  # the user's models first
    assert "Euler a" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()
    assert {u["name"] for u in api.get_upscalers()} >= {"None", "Lanczos"}
    api.set_options({"CLIP_stop_at_last_layers": 2})
    assert api.get_options()["CLIP_stop_at_last_layers"] == 2
    api.set_options({"CLIP_stop_at_last_layers": 1})
    api.util_set_model("tiny-sd1")
    assert api.util_get_current_model().startswith(SD1)
    assert api.get_progress()["progress"] == 0
    assert api.get_cmd_flags()["nowebui"] is True
    assert api.get_memory()["ram"]["total"] > 0


def test_set_options_with_a1111_ui_settings(api: Any) -> None:
    """webuiapi's set_options with settings that only steer A1111's UI (were 'unknown setting')."""
    api.set_options({"send_seed": False, "send_size": False})
    options = api.get_options()
    assert options["send_seed"] is False and options["send_size"] is False
    api.set_options({"send_seed": True, "send_size": True})
    assert api.get_options()["send_seed"] is True
