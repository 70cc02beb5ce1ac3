"""speed_patches and its parts: attention backends, VAE tiling/slicing, channels-last, torch.compile,
batch cond/uncond. Every option must leave the model exactly as it found it."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from modules.generation.speed import SpeedSettings, speed_patches
from modules.generation.speed.attention import attention_backend, resolve_attention
from modules.generation.speed.vae import VaeMode, vae_mode
from modules.models.families import ModelFamily
from modules.models.ldm_views import diffusion_model_of
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import GenEnv, make_env, pixels
from tools.tiny_models import tiny_parts


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models gain nothing from a second thread; on a busy shared CPU it costs ~10x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> Any:
    parts = tiny_parts(ModelFamily.SD1)
    return SimpleNamespace(unet=parts.unet, vae=parts.vae)


@pytest.fixture(scope="module")
def speed_env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> GenEnv:
    env = make_env(tmp_path_factory.mktemp("speed-patches"), tiny_models)
    return env


def _unet_out(unet: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([400.0, 400.0]), encoder_hidden_states=context).sample


def _vae_out(vae: Any, size: int = 8) -> torch.Tensor:
    z = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return vae.decode(z).sample


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_weights(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = module.state_dict()
    return all(torch.equal(now[k], v) and now[k].is_contiguous() for k, v in saved.items())


# --- attention ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "processor"),
    [
        ("sdp", "AttnProcessor2_0"),
        ("sdp-no-mem", "AttnProcessor2_0"),
        ("sliced", "SlicedAttnProcessor"),
        ("None", "AttnProcessor"),
        ("Doggettx", "SlicedAttnProcessor"),  # A1111 name, mapped
    ],
)
def test_attention_backends_agree_and_restore_processors(model: Any, choice: str, processor: str) -> None:
    base = _unet_out(model.unet)
    before = dict(model.unet.attn_processors)
    with attention_backend([model.unet, model.vae], choice):
        out = _unet_out(model.unet)
        for modules in (model.unet, model.vae):
            assert {type(p).__name__ for p in modules.attn_processors.values()} == {processor}
    assert torch.allclose(out, base, atol=1e-4)
    after = model.unet.attn_processors
    assert all(after[k] is before[k] for k in before)
    assert torch.equal(_unet_out(model.unet), base)


def test_unknown_attention_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown cross attention optimization 'flash9'"):
        resolve_attention("flash9")


def test_unavailable_xformers_falls_back_to_automatic() -> None:
    import importlib.util

    expected = "xformers" if importlib.util.find_spec("xformers") else "Automatic"
    assert resolve_attention("xformers") == expected


def test_extension_processors_are_left_alone(model: Any) -> None:
    class Custom:
        def __call__(self, attn: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return hidden_states

    key = next(iter(model.unet.attn_processors))
    processors = dict(model.unet.attn_processors)
    original = processors[key]
    processors[key] = custom = Custom()
    model.unet.set_attn_processor(dict(processors))
    try:
        with attention_backend([model.unet], "None"):
            assert model.unet.attn_processors[key] is custom
    finally:
        processors[key] = original
        model.unet.set_attn_processor(dict(processors))


# --- VAE ----------------------------------------------------------------------------------------


def test_vae_tiling_takes_the_tiled_path_for_large_images_only(model: Any) -> None:
    vae = model.vae
    small = _vae_out(vae, size=8)
    large = _vae_out(vae, size=12)
    z = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(1))  # the latent _vae_out(12) uses
    with vae_mode(vae, VaeMode(tiling=True, tile_size=64)):
        assert torch.equal(_vae_out(vae, size=8), small)  # one tile: not tiled at all
        tiled = _vae_out(vae, size=12)
        with torch.no_grad():
            reference = vae.tiled_decode(z).sample
    assert tiled.shape == large.shape == (1, 3, 96, 96)
    assert torch.equal(tiled, reference)
    assert not torch.equal(tiled, large)
    assert (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size) == (False, 64, 8)
    assert torch.equal(_vae_out(vae, size=12), large)


def test_vae_slicing_gives_the_same_batch(model: Any) -> None:
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    batches: list[int] = []
    with torch.no_grad():
        whole = model.vae.decode(z).sample
        handle = model.vae.decoder.register_forward_pre_hook(lambda _m, args: batches.append(int(args[0].shape[0])))
        try:
            with vae_mode(model.vae, VaeMode(slicing=True)):
                sliced = model.vae.decode(z).sample
        finally:
            handle.remove()
    assert batches == [1, 1]
    assert torch.allclose(sliced, whole, atol=1e-4, rtol=1e-4)
    assert not model.vae.use_slicing


@pytest.mark.parametrize("size", [32, 100])
def test_bad_tile_size_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        VaeMode(tiling=True, tile_size=size)


# --- speed_patches ------------------------------------------------------------------------------


def test_all_options_together_restore_the_model_exactly(model: Any) -> None:
    unet_weights, vae_weights = _snapshot(model.unet), _snapshot(model.vae)
    base_unet, base_vae = _unet_out(model.unet), _vae_out(model.vae)
    processors = dict(model.unet.attn_processors)
    settings = SpeedSettings(
        token_merging_ratio=0.5, attention="None", channels_last=True, vae_tiling=True, vae_slicing=True
    )
    with speed_patches(model, settings) as report:
        assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        patched = _unet_out(model.unet)
    assert report.attention == "None" and report.channels_last and report.vae_tiling and report.vae_slicing
    assert report.token_merging is not None and report.token_merging.merged_calls > 0
    assert not torch.allclose(patched, base_unet, atol=1e-4)
    assert _same_weights(model.unet, unet_weights) and _same_weights(model.vae, vae_weights)
    assert all(model.unet.attn_processors[k] is v for k, v in processors.items())
    assert torch.equal(_unet_out(model.unet), base_unet)
    assert torch.equal(_vae_out(model.vae), base_vae)
    assert "_speed_patches_active" not in model.unet.__dict__


def test_channels_last_keeps_results(model: Any) -> None:
    base = _unet_out(model.unet)
    with speed_patches(model, SpeedSettings(channels_last=True)):
        out = _unet_out(model.unet)
    assert torch.allclose(out, base, atol=1e-4)


def test_nested_call_only_changes_token_merging(model: Any) -> None:
    with speed_patches(model, SpeedSettings(attention="None", token_merging_ratio=0.0)) as outer:
        processors = dict(model.unet.attn_processors)
        with speed_patches(model, SpeedSettings(attention="sdp", token_merging_ratio=0.5)) as inner:
            assert inner.token_merging is outer.token_merging
            assert outer.token_merging is not None and outer.token_merging.ratio == 0.5
            assert all(model.unet.attn_processors[k] is v for k, v in processors.items())
        assert outer.token_merging.ratio == 0.0


def test_torch_compile_is_skipped_on_cpu_with_a_note(model: Any) -> None:
    with speed_patches(model, SpeedSettings(torch_compile=True)) as report:
        assert model.unet._compiled_call_impl is None
    assert not report.compiled
    assert any("CUDA only" in note for note in report.notes)


def test_torch_compile_patch_routes_calls_and_restores() -> None:
    # A small module: what is tested is the routing through the compiled callable and its removal.
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        base = net(x)
        with speed_patches(
            SimpleNamespace(unet=net, vae=None),
            SpeedSettings(torch_compile=True),
            allow_compile_on_cpu=True,
            compile_backend="eager",
        ) as report:
            assert net._compiled_call_impl is not None
            out = net(x)
    assert report.compiled
    assert torch.allclose(out, base, atol=1e-6)
    assert net._compiled_call_impl is None


# --- settings in a job --------------------------------------------------------------------------


def test_batch_cond_uncond_off_splits_the_unet_call_and_keeps_the_image(speed_env: GenEnv) -> None:
    model = speed_env.models.load("tiny-sd1")
    batches: list[int] = []
    unet = diffusion_model_of(model.unet)  # what generation calls
    handle = unet.register_forward_pre_hook(lambda _m, args: batches.append(int(args[0].shape[0])))
    try:
        on = speed_env.txt2img(prompt="a boat", seed=3, steps=2)
        calls_on = list(batches)
        batches.clear()
        off = speed_env.txt2img(
            prompt="a boat",
            seed=3,
            steps=2,
            override_settings={"sd_model_checkpoint": "tiny-sd1", "batch_cond_uncond": False},
        )
    finally:
        handle.remove()
    assert calls_on == [2, 2]
    assert batches == [1, 1, 1, 1]
    assert np.abs(pixels(on.images[0]) - pixels(off.images[0])).max() <= 1


def test_vae_tiling_setting_reaches_the_decoder(speed_env: GenEnv) -> None:
    model = speed_env.models.load("tiny-sd1")
    seen: list[bool] = []
    handle = model.vae.decoder.register_forward_pre_hook(lambda _m, _a: seen.append(model.vae.use_tiling))
    try:
        speed_env.txt2img(
            prompt="a boat",
            seed=3,
            steps=1,
            width=96,
            height=96,
            override_settings={"sd_model_checkpoint": "tiny-sd1", "vae_tiling": True, "vae_tile_size": 64},
        )
    finally:
        handle.remove()
    assert seen and all(seen)
    assert not model.vae.use_tiling
