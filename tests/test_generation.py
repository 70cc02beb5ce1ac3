"""Generation core on tiny fixture models: reproducibility, seeds, samplers, infotext, img2img, inpaint."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from modules.core.jobs import JobControl, LocalJobQueue
from modules.generation import samplers
from modules.generation.image_io import read_info_from_image
from modules.generation.infotext import parse_generation_parameters
from modules.generation.infotext_fields import infotext_to_request_fields
from modules.generation.masking import MaskError
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.samplers import UnknownSamplerError
from modules.models.ldm_views import diffusion_model_of
from tests.gen_env import SD1, SD1_INPAINT, SDXL, SDXL_REFINER, GenEnv, pixels


def test_same_request_twice_is_identical(env: GenEnv) -> None:
    a = env.txt2img(prompt="a red circle", seed=1234)
    b = env.txt2img(prompt="a red circle", seed=1234)
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert a.images[0].size == (64, 64)
    assert a.infotexts[0] == b.infotexts[0]


def test_image_in_batch_equals_same_seed_alone(env: GenEnv) -> None:
    batch = env.txt2img(prompt="a cat", seed=500, batch_size=4)
    images = batch.images[batch.index_of_first_image :]
    assert len(images) == 4
    assert batch.p.all_seeds == [500, 501, 502, 503]
    alone = env.txt2img(prompt="a cat", seed=502)
    assert np.array_equal(pixels(images[2]), pixels(alone.images[0]))
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))


def test_variation_strength_zero_and_one(env: GenEnv) -> None:
    # A deterministic sampler: variation changes only the initial noise (ancestral noise stays
    # with the main seed, as in A1111).
    def run(**kw: object) -> Image.Image:
        return env.txt2img(prompt="x", sampler_name="Euler", **kw).images[0]

    seed_img, sub_img = run(seed=11), run(seed=22)
    zero = run(seed=11, subseed=22, subseed_strength=0.0)
    one = run(seed=11, subseed=22, subseed_strength=1.0)
    half = run(seed=11, subseed=22, subseed_strength=0.5)
    assert np.array_equal(pixels(zero), pixels(seed_img))
    assert np.abs(pixels(one) - pixels(sub_img)).max() <= 1  # slerp at 1.0 is exact up to float rounding
    assert not np.array_equal(pixels(half), pixels(seed_img))


def _check_image(image: Image.Image) -> None:
    arr = pixels(image)
    assert np.isfinite(arr).all()
    assert arr.std() > 0.5, "image is constant"


@pytest.mark.parametrize("model", [SD1, SDXL])
@pytest.mark.parametrize("sampler", [s.name for s in samplers.SAMPLERS])
def test_every_sampler_runs(env: GenEnv, model: str, sampler: str) -> None:
    result = env.txt2img(
        prompt="a star", seed=3, sampler_name=sampler, steps=4, override_settings={"sd_model_checkpoint": model}
    )
    _check_image(result.images[0])


@pytest.mark.parametrize("model", [SD1, SDXL])
@pytest.mark.parametrize("schedule", [s.label for s in samplers.SCHEDULERS])
def test_every_schedule_runs(env: GenEnv, model: str, schedule: str) -> None:
    result = env.txt2img(
        prompt="a star",
        seed=3,
        sampler_name="Euler",
        scheduler=schedule,
        steps=4,
        override_settings={"sd_model_checkpoint": model},
    )
    _check_image(result.images[0])
    if schedule != "Automatic":
        assert f"Schedule type: {schedule}" in result.infotexts[0]


def test_old_combined_sampler_name(env: GenEnv) -> None:
    result = env.txt2img(prompt="a", seed=1, sampler_name="DPM++ 2M Karras")
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in result.infotexts[0]


def test_infotext_round_trip_regenerates_the_image(env: GenEnv) -> None:
    first = env.txt2img(
        prompt="a blue (square:1.2)\nsecond line",
        negative_prompt="blurry, dark",
        seed=77,
        sampler_name="DPM++ 2M",
        scheduler="Karras",
        steps=4,
        cfg_scale=5.5,
    )
    text = first.infotexts[0]
    parsed = parse_generation_parameters(text)
    assert parsed["Prompt"] == "a blue (square:1.2)\nsecond line"
    assert parsed["Seed"] == "77"
    mapped = infotext_to_request_fields(parsed, env.options.registry)
    again = env.service.txt2img(
        Txt2ImgRequest(**mapped.fields, override_settings={"sd_model_checkpoint": SD1}), JobControl()
    )
    assert again.infotexts[0] == text
    assert np.array_equal(pixels(again.images[0]), pixels(first.images[0]))


def test_saved_png_carries_infotext(env: GenEnv, tmp_path) -> None:
    env.options.set("samples_save", True)
    try:
        result = env.txt2img(prompt="saved", seed=5)
    finally:
        env.options.set("samples_save", False)
    assert len(result.saved_paths) == 1
    saved = Image.open(result.saved_paths[0])
    assert read_info_from_image(saved).parameters == result.infotexts[0]
    assert result.saved_paths[0].endswith("-5.png")


def test_prompt_editing_and_emphasis_reach_the_image(env: GenEnv) -> None:
    def run(prompt: str) -> np.ndarray:
        return pixels(env.txt2img(prompt=prompt, seed=9, steps=4, sampler_name="Euler").images[0])

    red, blue = run("a red circle"), run("a blue circle")
    for edited in (run("a [red:blue:1] circle"), run("a [red|blue] circle")):
        assert not np.array_equal(edited, red)
        assert not np.array_equal(edited, blue)
    assert np.array_equal(run("a (red:1.0) circle"), red)  # weight 1 is neutral
    assert not np.array_equal(run("a (red:1.5) circle"), red)


def test_hires_fix_doubles_the_size(env: GenEnv) -> None:
    result = env.txt2img(
        prompt="hires",
        seed=2,
        enable_hr=True,
        hr_scale=2.0,
        hr_second_pass_steps=2,
        denoising_strength=0.5,
        hr_upscaler="Latent",
    )
    assert result.images[0].size == (128, 128)
    assert "Hires upscale: 2.0" in result.infotexts[0]
    assert "Denoising strength: 0.5" in result.infotexts[0]
    lanczos = env.txt2img(
        prompt="hires",
        seed=2,
        enable_hr=True,
        hr_resize_x=96,
        hr_resize_y=80,
        hr_second_pass_steps=2,
        hr_upscaler="Lanczos",
    )
    assert lanczos.images[0].size == (96, 80)


def test_tiling_is_seamless_and_reverted(env: GenEnv) -> None:
    tiled = env.txt2img(prompt="pattern", seed=4, tiling=True)
    plain_after = env.txt2img(prompt="pattern", seed=4)
    plain_again = env.txt2img(prompt="pattern", seed=4)
    assert "Tiling: True" in tiled.infotexts[0]
    assert np.array_equal(pixels(plain_after.images[0]), pixels(plain_again.images[0]))
    assert not np.array_equal(pixels(tiled.images[0]), pixels(plain_after.images[0]))


def _source_image() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 120, 200))
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=(220, 40, 40))
    return image


def test_img2img_changes_the_image_with_denoising(env: GenEnv) -> None:
    src = _source_image()
    low = env.img2img([src], seed=1, denoising_strength=0.2)
    assert low.images[0].size == (64, 64)
    assert "Denoising strength: 0.2" in low.infotexts[0]
    for mode in range(4):
        out = env.img2img([src.resize((80, 48))], seed=1, resize_mode=mode, denoising_strength=0.5)
        assert out.images[0].size == (64, 64)


def test_inpaint_keeps_pixels_outside_the_mask(env: GenEnv) -> None:
    src = _source_image()
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 40, 40), fill=255)
    result = env.img2img(
        [src], mask=mask, seed=3, denoising_strength=0.9, mask_blur=2, inpaint_full_res=False, inpainting_fill=1
    )
    out, original = pixels(result.images[0]), pixels(src)
    # outside the blurred mask (blur 2 -> kernel radius 5) the pixels are the original ones
    outside = np.ones((64, 64), bool)
    outside[24 - 6 : 41 + 6, 24 - 6 : 41 + 6] = False
    assert np.array_equal(out[outside], original[outside])
    assert not np.array_equal(out[30:34, 30:34], original[30:34, 30:34])
    assert "Mask blur: 2" in result.infotexts[0]


def test_inpaint_only_masked_in_a_corner(env: GenEnv) -> None:
    src = _source_image().resize((128, 128))
    mask = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(mask).rectangle((110, 110, 127, 127), fill=255)
    result = env.img2img(
        [src], mask=mask, seed=3, denoising_strength=0.9, mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=8
    )
    out = pixels(result.images[0])
    assert out.shape == (128, 128, 3)
    assert np.array_equal(out[:100, :100], pixels(src)[:100, :100])
    assert not np.array_equal(out[112:, 112:], pixels(src)[112:, 112:])


def test_inpainting_model_gets_nine_channels(env: GenEnv) -> None:
    seen: list[int] = []
    model = env.models.load(SD1_INPAINT, activate=False)
    # generation calls the UNet through its ldm-shaped view (sd_model.model.diffusion_model)
    handle = diffusion_model_of(model.unet).register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    try:
        mask = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(mask).rectangle((8, 8, 30, 30), fill=255)
        result = env.img2img(
            [_source_image()],
            mask=mask,
            seed=1,
            inpaint_full_res=False,
            override_settings={"sd_model_checkpoint": SD1_INPAINT},
        )
        env.txt2img(prompt="x", seed=1, override_settings={"sd_model_checkpoint": SD1_INPAINT})
    finally:
        handle.remove()
    assert seen and set(seen) == {9}
    assert "Conditional mask weight: 1.0" in result.infotexts[0]


def test_interrupt_returns_finished_images_and_next_job_runs(env: GenEnv) -> None:
    queue = LocalJobQueue()
    started = threading.Event()

    req = Txt2ImgRequest(
        prompt="long",
        seed=1,
        width=64,
        height=64,
        steps=6,
        n_iter=4,
        sampler_name="Euler",
        override_settings={"sd_model_checkpoint": SD1},
    )
    job = queue.submit("txt2img", lambda c: (started.set(), env.service.txt2img(req, c))[1])
    follow = queue.submit("txt2img", lambda c: env.service.txt2img(req.model_copy(update={"n_iter": 1}), c))
    started.wait(10)
    while job.control.job_no < 1:  # let the first batch finish
        threading.Event().wait(0.01)
    queue.interrupt(job.id)
    result = job.wait(60)
    assert result.interrupted
    assert 1 <= len(result.images) < 4
    other = follow.wait(60)
    assert not other.interrupted and len(other.images) == 1
    queue.shutdown()


def test_bad_input_gives_clear_errors(env: GenEnv) -> None:
    with pytest.raises(UnknownSamplerError) as err:
        env.txt2img(prompt="x", sampler_name="No Such Sampler")
    assert "Euler a" in str(err.value) and "DPM++ 2M" in str(err.value)
    for bad in ({"width": 100000}, {"steps": 0}, {"batch_size": 0}, {"cfg_scale": "high"}):
        with pytest.raises(ValidationError):
            Txt2ImgRequest(**bad)
    with pytest.raises(MaskError, match="does not match"):
        env.img2img([_source_image()], mask=Image.new("L", (32, 32), 255))
    with pytest.raises(ValueError, match="init image"):
        env.service.img2img(Img2ImgRequest(), JobControl(), init_images=[])


def test_interrupted_flag_stops_before_start(env: GenEnv) -> None:
    control = JobControl()
    control.interrupt()
    result = env.service.txt2img(
        Txt2ImgRequest(prompt="x", width=64, height=64, steps=2, override_settings={"sd_model_checkpoint": SD1}),
        control,
    )
    assert result.interrupted and result.images == []


def test_refiner_takes_over_at_the_switch_point(env: GenEnv) -> None:
    calls: list[str] = []
    refiner = env.models.load(SDXL_REFINER, activate=False)
    base = env.models.load(SDXL, activate=False)
    hooks = [
        diffusion_model_of(refiner.unet).register_forward_pre_hook(lambda _m, _a: calls.append("refiner")),
        diffusion_model_of(base.unet).register_forward_pre_hook(lambda _m, _a: calls.append("base")),
    ]
    fields = {
        "prompt": "a tree",
        "seed": 8,
        "steps": 6,
        "sampler_name": "Euler",
        "override_settings": {"sd_model_checkpoint": SDXL},
    }
    try:
        refined = env.txt2img(**fields, refiner_checkpoint=SDXL_REFINER, refiner_switch_at=0.5)
    finally:
        for hook in hooks:
            hook.remove()
    plain = env.txt2img(**fields)
    assert calls[0] == "base" and calls[-1] == "refiner"
    assert 1 <= calls.count("base") < 6 and calls.count("base") + calls.count("refiner") == 6
    assert "Refiner: tiny-sdxl-refiner [" in refined.infotexts[0]
    assert "Refiner switch at: 0.5" in refined.infotexts[0]
    assert not np.array_equal(pixels(refined.images[0]), pixels(plain.images[0]))


def test_override_settings_apply_to_that_request_only(env: GenEnv) -> None:
    skipped = env.txt2img(
        prompt="x", seed=1, override_settings={"sd_model_checkpoint": SD1, "CLIP_stop_at_last_layers": 2}
    )
    normal = env.txt2img(prompt="x", seed=1)
    assert "Clip skip: 2" in skipped.infotexts[0]
    assert "Clip skip" not in normal.infotexts[0]
    assert env.options.get("CLIP_stop_at_last_layers") == 1
    assert not np.array_equal(pixels(skipped.images[0]), pixels(normal.images[0]))


def test_hires_target_too_small_is_refused_before_work(env: GenEnv) -> None:
    with pytest.raises(ValueError, match="too small"):
        env.txt2img(prompt="x", enable_hr=True, hr_scale=0.5)
