"""A1111's built-in img2img scripts (SD upscale, Loopback, Poor man's outpainting, Outpainting
mk2, img2img alternative test) through the real extension host and generation service on the
tiny SD1 model, and through the HTTP API with A1111's script_name/script_args."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.app.bootstrap import assemble_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl
from modules.core.paths import REPO_ROOT
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.generation.infotext import parse_generation_parameters
from modules.generation.outpaint import expansion
from modules.generation.processing import GenerationResult
from modules.generation.requests import Img2ImgRequest
from modules.generation.tile_grid import combine_grid, split_grid
from modules.models.builtin_checkpoints import builtin_checkpoints
from tests.api_server import b64_png, decode_b64, running_server
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import GenEnv, env_services, pixels
from tools.demo.dataset import Scene, render
from tools.demo.evaluate import demo_env
from tools.demo.judge import judge

SCRIPTS = REPO_ROOT / "scripts"
TITLES = ["SD upscale", "Loopback", "Poor man's outpainting", "Outpainting mk2", "img2img alternative test"]


@pytest.fixture
def host(env: GenEnv) -> Iterator[ExtensionHost]:
    args = parse_args(["--data-dir", str(env.root)])
    bound = facade.bind(
        env_services(env, args), run_installers=False, builtin_dir=env.root / "no-builtins", core_scripts_dir=SCRIPTS
    )
    yield bound
    facade.unbind()


def source_image(size: int = 64) -> Image.Image:
    """A picture with structure: a red disc on a blue-green gradient."""
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 3, 80 + y * 2, 200 - x * 2], axis=-1).clip(0, 255)
    rgb[(x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 4) ** 2] = (220, 30, 30)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def run(env: GenEnv, script: str, args: list[Any], **fields: Any) -> GenerationResult:
    fields.setdefault("prompt", "a red circle")
    fields.setdefault("seed", 7)
    fields.setdefault("steps", 3)
    fields.setdefault("denoising_strength", 0.5)
    return env.img2img([fields.pop("image", source_image())], script_name=script, script_args=args, **fields)


def params(text: str) -> dict[str, Any]:
    return parse_generation_parameters(text)


def diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def test_scripts_are_in_img2img_dropdown_only(host: ExtensionHost) -> None:
    img2img = [s.title() for s in host.runner.tab("img2img").selectable_scripts]
    txt2img = [s.title() for s in host.runner.tab("txt2img").selectable_scripts]
    assert all(title in img2img for title in TITLES), img2img
    assert not any(title in txt2img for title in TITLES)


def test_tile_grid_round_trip() -> None:
    image = source_image(100)
    grid = split_grid(image, 48, 40, 16)
    assert len(grid.tiles) > 1 and all(tile[2].size == (48, 40) for _y, _h, row in grid.tiles for tile in row)
    assert np.array_equal(np.asarray(combine_grid(grid)), np.asarray(image))


def test_sd_upscale_makes_scale_times_size(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "SD upscale", ["", 16, 1, 2], denoising_strength=0.3)  # 1 = Lanczos
    assert len(result.images) == 1 and result.images[0].size == (128, 128)
    info = params(result.infotexts[0])
    assert info["SD upscale overlap"] == "16" and info["SD upscale upscaler"] == "Lanczos"
    assert (info["Size-1"], info["Size-2"]) == ("64", "64")  # each tile is generated at Width x Height
    plain = source_image().resize((128, 128), Image.Resampling.LANCZOS)
    assert 1.0 < diff(result.images[0], plain) < diff(result.images[0], Image.new("RGB", (128, 128)))


def test_loopback_runs_n_loops_with_changing_denoising(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "Loopback", [3, 0.6, "Linear", "None"], denoising_strength=0.2)
    assert len(result.images) == 4 and result.index_of_first_image == 1  # grid, then the 3 loops
    assert result.images[0].size == (192, 64)
    loops = [params(t) for t in result.infotexts[1:]]
    assert [float(i["Denoising strength"]) for i in loops] == [0.2, 0.4, 0.6]
    assert [i["Seed"] for i in loops] == ["7", "8", "9"]
    assert loops[0]["Final denoising strength"] == "0.6" and loops[0]["Denoising curve"] == "Linear"
    # each loop starts from the one before: the image drifts further from the source every loop
    drift = [diff(image, source_image()) for image in result.images[1:]]
    assert drift[0] < drift[2] and diff(result.images[1], result.images[2]) > 0.5


def check_outpainted(image: Image.Image, left: int, up: int, margin: int) -> None:
    """The original picture is kept (away from the blurred seam); the new border was painted."""
    src = source_image()
    inner = image.crop((left + margin, up + margin, left + 64 - margin, up + 64 - margin))
    assert diff(inner, src.crop((margin, margin, 64 - margin, 64 - margin))) < 1.0
    border = pixels(image.crop((0, 0, max(left, 8), image.height)))
    assert border.mean() > 10 and border.std() > 2  # not the black canvas, not one flat colour


def test_poor_mans_outpainting_grows_the_chosen_sides(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "Poor man's outpainting", [32, 2, 0, ["left", "right"]], denoising_strength=0.8)
    assert len(result.images) == 1 and result.images[0].size == (128, 64)
    check_outpainted(result.images[0], 32, 0, 12)
    assert params(result.infotexts[0])["Masked content"] == "fill"


def test_outpainting_mk2_grows_every_side(host: ExtensionHost, env: GenEnv) -> None:
    assert expansion(64, 64, 32, ["left", "right", "up", "down"]) == expansion(
        64, 64, 32, ["up", "down", "left", "right"]
    )
    result = run(
        env, "Outpainting mk2", ["", 32, 1, ["left", "right", "up", "down"], 1.0, 0.05], denoising_strength=0.8
    )
    assert len(result.images) == 1 and result.images[0].size == (128, 128)
    check_outpainted(result.images[0], 32, 32, 12)
    only_down = run(env, "Outpainting mk2", ["", 32, 1, ["down"], 1.0, 0.05], denoising_strength=0.8)
    assert only_down.images[0].size == (64, 128)  # 64 + 32 rounds up to 128, all of it at the bottom
    assert diff(only_down.images[0].crop((0, 0, 64, 48)), source_image().crop((0, 0, 64, 48))) < 1.0


def test_img2img_alternative_finds_the_noise_of_the_image(tmp_path: Path) -> None:
    """On the demo model (trained, so its ODE can be run backwards meaningfully): sampling forward
    from the found noise gives the source back, a new prompt changes the colour but keeps the shape."""
    demo = demo_env(tmp_path, builtin_checkpoints())
    services = assemble_services(
        parse_args(["--data-dir", str(tmp_path)]),
        options=demo.options,
        policy=DevicePolicy.cpu(),
        generation=demo.service,
    )
    facade.bind(services, run_installers=False, builtin_dir=tmp_path / "none", core_scripts_dir=SCRIPTS)
    try:
        source = render(Scene("circle", "red", "large", "center", "white"), 128)
        caption = "a red circle on a white background"
        fields: dict[str, Any] = {"seed": 5, "steps": 20, "sampler_name": "Euler", "cfg_scale": 1.0}
        fields |= {"width": 128, "height": 128, "denoising_strength": 1.0}
        alt_args = [caption, "", 1.0, 20, 0.0, False]

        def img2img(prompt: str, **more: Any) -> Image.Image:
            request = Img2ImgRequest(prompt=prompt, **fields, **more)
            return demo.service.img2img(request, JobControl(), init_images=[source]).images[0]

        alt = img2img(caption, script_name="img2img alternative test", script_args=alt_args)
        plain = img2img(caption)
        blue = img2img(caption.replace("red", "blue"), script_name="img2img alternative test", script_args=alt_args)
    finally:
        facade.unbind()
    assert diff(alt, source) < 0.7 * diff(plain, source)
    centre = (40, 40, 88, 88)
    alt_rgb, blue_rgb = (pixels(im.crop(centre)).mean(axis=(0, 1)) for im in (alt, blue))
    assert blue_rgb[2] > alt_rgb[2] + 40  # the disc turned towards blue ...
    assert judge(blue).shape == "circle"  # ... and is still the circle in the middle


def test_img2img_scripts_through_the_http_api(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    with running_server(tmp_path, tiny_models, "--nowebui") as live:
        facade.bind(live.services, run_installers=False, builtin_dir=tmp_path / "none", core_scripts_dir=SCRIPTS)
        try:
            with live.client() as client:
                base = {"init_images": [b64_png(source_image())], "prompt": "a red circle", "steps": 2, "seed": 3}
                base |= {"width": 64, "height": 64, "denoising_strength": 0.5}
                cases: list[tuple[str, list[Any], tuple[int, int], int]] = [
                    ("sd upscale", ["", 0, 2, 2], (128, 128), 1),  # A1111's lower-case titles work too
                    ("Loopback", [2, 0.7, "Aggressive", "None"], (128, 64), 3),
                    ("Poor man's outpainting", [16, 2, 1, ["up"]], (64, 128), 1),
                    ("Outpainting mk2", ["", 16, 2, ["right"], 1.0, 0.05], (128, 64), 1),
                    ("img2img alternative test", ["a red circle", "", 1.0, 3, 0.5, True], (64, 64), 1),
                ]
                for name, args, size, count in cases:
                    reply = client.post("/sdapi/v1/img2img", json={**base, "script_name": name, "script_args": args})
                    assert reply.status_code == 200, (name, reply.text)
                    data = reply.json()
                    assert len(data["images"]) == count, name
                    assert decode_b64(data["images"][0]).size == size, name
                    assert len(json.loads(data["info"])["infotexts"]) == count
                bad = client.post(
                    "/sdapi/v1/img2img", json={**base, "script_name": "loopback", "script_args": [2, 0.5, "Wavy"]}
                )
                assert bad.status_code in (400, 422) and "Wavy" in bad.text
        finally:
            facade.unbind()
