"""The GPU path on the CPU: NaN checks and the fp32 VAE fallback, fp8 weight storage, the byte budget
of the model cache, peak memory in the log. Half precision runs on the CPU (torch computes fp16
convolutions there), so what a GPU user meets in fp16 is reproduced here with tiny models."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from modules.api.errors import response_for
from modules.core.devices import DevicePolicy, NansException, VramMode
from modules.models.fp8 import FP8, dequantize, is_fp8_model, weight_bytes
from modules.models.offload import blocks_of
from tests.fixtures_models import *  # noqa: F403
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import SD1, GenEnv, make_env, pixels

CPU = torch.device("cpu")
HALF_VAE = DevicePolicy(CPU, torch.float32, torch.float16, torch.float32)
HALF_UNET = DevicePolicy(CPU, torch.float16, torch.float32, torch.float32)
# a conv followed by a GroupNorm without a residual in between: scaling it changes nothing in fp32
# (the norm divides the scale out) but overflows fp16 (max 65504)
SCALED_CONV = "decoder.mid.block_1.conv1"


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((pixels(a).astype(np.float64) - pixels(b)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype == FP8 else t


def overflowing_vae(tiny: TinyModelFiles, folder: Path) -> Path:
    state = safetensors.torch.load_file(str(tiny.vae))
    for suffix in ("weight", "bias"):
        state[f"{SCALED_CONV}.{suffix}"] = state[f"{SCALED_CONV}.{suffix}"] * 1e6
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "overflow.safetensors"
    safetensors.torch.save_file(state, str(path))
    return path


def env_with(tmp_path: Path, tiny: TinyModelFiles, policy: DevicePolicy | None = None, vae: bool = False) -> GenEnv:
    env = make_env(tmp_path, tiny, policy)
    if vae:
        overflowing_vae(tiny, env.service.paths.vae_dir)
    return env


def job(env: GenEnv, **settings: object) -> object:
    return env.txt2img(prompt="a red circle", seed=42, override_settings={"sd_model_checkpoint": SD1, **settings})


# --- NaN checks -------------------------------------------------------------------------------------


def test_vae_overflowing_in_fp16_decodes_again_in_fp32_and_says_so(
    tmp_path: Path,
    tiny_models: TinyModelFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reference = job(env_with(tmp_path / "fp32", tiny_models, vae=True), sd_vae="overflow.safetensors")
    half = env_with(tmp_path / "fp16", tiny_models, HALF_VAE, vae=True)
    with caplog.at_level(logging.WARNING):
        result = job(half, sd_vae="overflow.safetensors")
    assert psnr(result.images[0], reference.images[0]) >= 40  # the fp32 decode, not a black/grey square
    assert np.asarray(result.images[0]).std() > 5
    note = result.p.comments["vae_precision"]
    assert "NaN" in note and "float32" in note and "--no-half-vae" in note
    assert any("decoded again" in r.getMessage() for r in caplog.records)
    assert next(half.models.active.vae.parameters()).dtype == torch.float32  # stays fp32, as in A1111
    again = job(half, sd_vae="overflow.safetensors")  # no NaN now: no message
    assert "vae_precision" not in again.p.comments
    assert psnr(again.images[0], reference.images[0]) >= 40


def test_vae_nan_without_the_fallback_fails_with_advice(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    half = env_with(tmp_path, tiny_models, HALF_VAE, vae=True)
    with pytest.raises(NansException, match="produced in the VAE") as caught:
        job(half, sd_vae="overflow.safetensors", auto_vae_precision=False)
    assert "--no-half-vae" in str(caught.value) and "--disable-nan-check" in str(caught.value)
    # the plain VAE decodes fine in fp16: the check does not get in the way
    fine = job(half, sd_vae="None", auto_vae_precision=False)
    assert "vae_precision" not in fine.p.comments


def break_unet(env: GenEnv) -> None:
    model = env.models.load(SD1)
    with torch.no_grad():
        model.unet.conv_out.bias.fill_(float("nan"))


def test_unet_nan_fails_the_job_with_a1111s_advice(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    env = env_with(tmp_path, tiny_models, HALF_UNET)
    assert np.asarray(job(env).images[0]).std() > 5  # the tiny UNet runs in fp16 on the CPU
    break_unet(env)
    with pytest.raises(NansException) as caught:
        job(env)
    text = str(caught.value)
    assert "UNet" in text and "Upcast cross attention layer to float32" in text and "--no-half" in text
    response = response_for(caught.value)
    assert response.status_code == 500 and b"NansException" in response.body and b"--no-half" in response.body


def test_unet_nan_advice_skips_upcasting_in_fp32_and_disable_nan_check_lets_it_through(
    tmp_path: Path,
    tiny_models: TinyModelFiles,
) -> None:
    env = env_with(tmp_path / "a", tiny_models)
    break_unet(env)
    with pytest.raises(NansException) as caught:
        job(env)
    assert "Upcast" not in str(caught.value) and "--disable-nan-check" in str(caught.value)
    unchecked = env_with(tmp_path / "b", tiny_models, DevicePolicy(CPU, *[torch.float32] * 3, nan_check=False))
    break_unet(unchecked)
    assert len(job(unchecked).images) == 1  # --disable-nan-check: A1111 gives the (broken) image


def test_upcast_cross_attention_avoids_the_fp16_overflow_a_half_unet_hits(
    tmp_path: Path,
    tiny_models: TinyModelFiles,
) -> None:
    env = env_with(tmp_path, tiny_models, HALF_UNET)
    attn = env.models.load(SD1).unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    with torch.no_grad():  # q.k beyond fp16's 65504 (as in some SD2 layers); q and k themselves fit
        attn.to_q.weight.mul_(300)
        attn.to_k.weight.mul_(300)
    plain = {"cross_attention_optimization": "None"}  # fp16 scores (SDPA on the CPU accumulates in fp32)
    with pytest.raises(NansException, match="Upcast cross attention layer to float32"):
        job(env, **plain)
    fixed = job(env, **plain, upcast_attn=True)
    assert np.asarray(fixed.images[0]).std() > 5
    assert attn.upcast_attention is False and type(attn.processor).__name__ != "AttnProcessor"  # restored


# --- FP8 weight storage ------------------------------------------------------------------------------


def test_fp8_storage_halves_unet_weight_bytes_and_keeps_the_image(
    tmp_path: Path,
    tiny_models: TinyModelFiles,
) -> None:
    env = env_with(tmp_path, tiny_models)
    full = job(env)
    fp16_bytes = weight_bytes(env.models.active.unet) // 2  # the same weights in fp16
    stored = job(env, fp8_storage="Enable")
    model = env.models.active
    assert is_fp8_model(model.unet) and model.fp8
    assert model.unet.conv_in.weight.dtype == FP8
    ratio = weight_bytes(model.unet) / fp16_bytes
    assert 0.5 <= ratio < 0.502  # fp8 + one fp32 scale per layer
    assert psnr(stored.images[0], full.images[0]) >= 30
    assert psnr(stored.images[0], full.images[0]) < 99  # it really ran in fp8
    # "Enable for SDXL" leaves an SD1 model alone; turning fp8 off reads full weights again
    loads = env.models.disk_loads
    back = job(env, fp8_storage="Enable for SDXL")
    assert env.models.disk_loads == loads + 1 and not env.models.active.fp8
    assert np.array_equal(pixels(back.images[0]), pixels(full.images[0]))


def test_fp8_layers_take_lora_in_compute_precision_and_stay_unchanged(tokenizer_cache: Path, tmp_path: Path) -> None:
    from modules.core.paths import Paths
    from modules.generation.prompt_parser import parse_extra_network_tags
    from modules.models.families import ModelFamily
    from modules.models.fp8 import store_fp8
    from modules.models.hashes import HashCache
    from modules.networks.activation import NetworkActivator
    from modules.networks.catalogue import NetworkCatalogue
    from modules.networks.options import NetworkOptions
    from modules.networks.testing import TinyModel, save_safetensors, unet_output
    from tests.fixtures_models import models_home
    from tools.tiny_models import tiny_pipeline

    home: Paths = models_home(tmp_path)
    g = torch.Generator().manual_seed(3)
    layer = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"  # [64, 32] in tiny SD1
    state = {
        f"{layer}.lora_down.weight": torch.randn(4, 32, generator=g),
        f"{layer}.lora_up.weight": torch.randn(64, 4, generator=g),
    }
    save_safetensors(home.lora_dir / "style.safetensors", state)
    activator = NetworkActivator(NetworkCatalogue(home, HashCache(home.hash_cache_file)))
    tags = parse_extra_network_tags("<lora:style:1>").networks
    full = TinyModel(ModelFamily.SD1, tiny_pipeline(ModelFamily.SD1, tokenizer_cache, seed=4))
    fp8 = TinyModel(ModelFamily.SD1, tiny_pipeline(ModelFamily.SD1, tokenizer_cache, seed=4))
    store_fp8(fp8.unet)
    stored = {k: v.detach().clone() for k, v in fp8.unet.state_dict().items()}
    base_full, base_fp8 = unet_output(full), unet_output(fp8)
    with activator.activate(full, tags, opts=NetworkOptions()):
        lora_full = unet_output(full)
    to_k = fp8.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    with activator.activate(fp8, tags, opts=NetworkOptions()) as active:
        handle = to_k.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
        lora_fp8 = unet_output(fp8)
        handle.remove()
        assert active.layers_patched == 1
    # the layer computes with its fp8 weight plus the full-precision LoRA delta
    delta = state[f"{layer}.lora_up.weight"] @ state[f"{layer}.lora_down.weight"]
    x, out = seen[0]
    torch.testing.assert_close(out, torch.nn.functional.linear(x, dequantize(to_k, torch.float32) + delta))
    change_full, change_fp8 = (lora_full - base_full).flatten(), (lora_fp8 - base_fp8).flatten()
    assert change_full.abs().max() > 1e-3  # the LoRA matters
    assert torch.nn.functional.cosine_similarity(change_fp8, change_full, dim=0) > 0.9
    for key, value in fp8.unet.state_dict().items():  # fp8 weights bit for bit as stored
        assert torch.equal(bits(value), bits(stored[key])), key
    assert torch.equal(unet_output(fp8), base_fp8)


@pytest.mark.parametrize("mode", [VramMode.MEDVRAM, VramMode.LOWVRAM])
def test_medvram_and_lowvram_offload_give_the_same_image(
    mode: VramMode,
    env: GenEnv,
    tmp_path: Path,
    tiny_models: TinyModelFiles,
) -> None:
    """On the CPU the moves go from RAM to RAM, but the hooks run as on a GPU."""
    plain = job(env)
    offloaded = env_with(tmp_path, tiny_models, DevicePolicy(CPU, *[torch.float32] * 3, vram_mode=mode))
    result = job(offloaded)
    assert np.array_equal(pixels(result.images[0]), pixels(plain.images[0]))
    model = offloaded.models.active
    if mode == VramMode.MEDVRAM:
        assert "_hf_hook" in model.unet.__dict__  # diffusers' model offload (accelerate hooks)
        return
    state = model._offload
    blocks = len(blocks_of(model.unet)) + len(blocks_of(model.vae))
    assert state is not None and state.moves >= blocks  # every UNet and VAE block went to the device
    # one block per component: UNet, VAE, their ldm-shaped views (what generation calls), text
    assert len(state.resident) <= 4 + len(model.text_encoders)
    offloaded.models.unload()
    assert state.handles == [] and state.resident == {}


# --- the cache's byte budget -----------------------------------------------------------------------


def test_cache_keeps_within_its_byte_budget_over_20_loads_of_3_models(
    tmp_path: Path,
    tiny_models: TinyModelFiles,
) -> None:
    env = env_with(tmp_path, tiny_models)
    names = ["tiny-sd1", "tiny-sdxl", "tiny-sd1-inpaint"]
    sizes = {name: env.models.load(name).size_bytes for name in names}
    budget_mb = math.ceil((max(sizes.values()) + sorted(sizes.values())[1]) / 2**20)  # room for any two
    budget = budget_mb * 2**20
    assert sum(sizes.values()) > budget
    env.options.set("sd_checkpoint_cache", 10)  # the count never limits here: the bytes do
    env.options.set("sd_checkpoint_cache_ram_mb", budget_mb)
    order = [names[i] for i in (0, 1, 2, 0, 2, 1, 1, 0, 2, 2, 0, 1, 2, 0, 1, 0, 0, 2, 1, 2)]
    for name in order:
        env.models.load(name)
        assert env.models.bytes_in("ram") <= budget
        cached = [m.checkpoint.name.removesuffix(".safetensors") for m in env.models.cached]
        assert cached[-1] == name and len(cached) == 2
    # a pinned model is never dropped, even when the budget then holds only it and the active one
    with env.models.use("tiny-sd1") as pinned:
        for name in ("tiny-sdxl", "tiny-sd1-inpaint", "tiny-sdxl"):
            env.models.load(name)
            assert pinned in env.models.cached
    assert env.models.bytes_in("ram") <= budget


def test_each_job_logs_its_peak_memory(
    env: GenEnv,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="modules.generation.engine"):
        job(env)
    lines = [r.getMessage() for r in caplog.records if "peak memory" in r.getMessage()]
    assert len(lines) == 1 and "txt2img job peak memory: RAM" in lines[0]
    assert float(lines[0].split("RAM ")[1].split(" MiB")[0]) > 50  # torch and the model are resident


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> GenEnv:
    return make_env(tmp_path_factory.mktemp("gen"), tiny_models)
