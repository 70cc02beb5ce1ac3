"""Live previews during sampling follow the "Live preview method" setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.core.jobs import JobControl
from modules.generation.requests import Txt2ImgRequest
from modules.generation.speed.taesd import taesd_decoder
from tests.gen_env import SD1, GenEnv


def _preview_of(env: GenEnv, method: str) -> tuple[np.ndarray, np.ndarray]:
    control = JobControl()
    request = Txt2ImgRequest(
        prompt="a red circle",
        seed=7,
        width=64,
        height=64,
        steps=3,
        sampler_name="Euler",
        override_settings={"sd_model_checkpoint": SD1, "show_progress_type": method, "show_progress_every_n_steps": 1},
    )
    result = env.service.txt2img(request, control)
    assert control.preview is not None
    return np.asarray(control.preview.convert("RGB"), dtype=np.int16), np.asarray(result.images[0], dtype=np.int16)


def test_approx_cheap_is_latent_sized(env: GenEnv) -> None:
    preview, _ = _preview_of(env, "Approx cheap")
    assert preview.shape == (8, 8, 3)


def test_full_preview_of_the_last_step_is_the_image(env: GenEnv) -> None:
    preview, image = _preview_of(env, "Full")
    assert preview.shape == image.shape == (64, 64, 3)
    assert np.abs(preview - image).mean() < 2.0  # Euler's last denoised latent is the result


def test_taesd_uses_its_decoder_file_and_falls_back_without_it(env: GenEnv) -> None:
    folder = env.service.paths.vae_approx_dir
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "taesd_decoder.safetensors"
    try:
        assert _preview_of(env, "TAESD")[0].shape == (8, 8, 3)  # no file: the cheap preview
        torch.manual_seed(0)
        save_file({k: v.contiguous() for k, v in taesd_decoder().state_dict().items()}, str(target))
        preview, image = _preview_of(env, "TAESD")
        assert preview.shape == (64, 64, 3)
        assert np.abs(preview - image).mean() > 5.0  # random decoder weights: not the VAE's picture
    finally:
        target.unlink(missing_ok=True)


@pytest.mark.parametrize("every", [0, -1])
def test_no_preview_when_period_is_off(env: GenEnv, every: int) -> None:
    control = JobControl()
    request = Txt2ImgRequest(
        prompt="x",
        width=64,
        height=64,
        steps=3,
        override_settings={"sd_model_checkpoint": SD1, "show_progress_every_n_steps": every},
    )
    env.service.txt2img(request, control)
    assert control.preview is None


def test_taesd_final_decode_names_itself_or_falls_back_with_a_note(env: GenEnv) -> None:
    settings = {"sd_model_checkpoint": SD1, "sd_vae_decode_method": "TAESD"}
    full = env.txt2img(prompt="a red circle", seed=3, steps=2)
    missing = env.txt2img(prompt="a red circle", seed=3, steps=2, override_settings=settings)
    assert np.array_equal(np.asarray(missing.images[0]), np.asarray(full.images[0]))
    assert "VAE Decoder" not in missing.infotexts[0]
    assert "decoded with the full VAE" in missing.p.comments["vae_decoder"]
    target = env.service.paths.vae_approx_dir / "taesd_decoder.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.manual_seed(1)
        decoder = taesd_decoder()
        save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(target))
        fast = env.txt2img(prompt="a red circle", seed=3, steps=2, override_settings=settings)
    finally:
        target.unlink(missing_ok=True)
    assert fast.infotexts[0].count("VAE Decoder: TAESD") == 1
    assert fast.images[0].size == (64, 64)
    assert np.abs(np.asarray(fast.images[0], dtype=np.int16) - np.asarray(full.images[0], dtype=np.int16)).mean() > 5
