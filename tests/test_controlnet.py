"""Built-in ControlNet (issue 21): files, preprocessors, units/infotext and pixels.

Tiny random ControlNets (tools/tiny_controlnets.py) of the tiny test models' UNets, written
in the single-file layouts users download; generation goes through GenerationService with the
units applied at the `p.unet_residuals` seam, as the always-on ControlNet script does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.controlnet.preprocessors import MissingAnnotator, PreprocessorError, run_preprocessor
from modules.controlnet.service import ControlNetDirs, ControlNetService
from modules.controlnet.units import ControlNetUnit, UnitError, infotext_entry, unit_from, units_from_infotext
from modules.controlnet.weights import identify_controlnet, load_controlnet
from modules.generation.hooks import ScriptHooks
from modules.generation.infotext import parse_generation_parameters
from modules.models.errors import ModelNotFound, WrongModelKind
from modules.models.families import ModelFamily
from tests.fixtures_models import *  # noqa: F403
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import SDXL, GenEnv, make_env, pixels

SD1_CN = "tiny-control-sd1"


@pytest.fixture(scope="module")
def tiny_cn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tools.tiny_controlnets import write_tiny_controlnets

    return write_tiny_controlnets(tmp_path_factory.mktemp("controlnets"))


@pytest.fixture(scope="module")
def cn_env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles, tiny_cn: dict[str, Path]) -> Any:
    env = make_env(tmp_path_factory.mktemp("cn-gen"), tiny_models)
    folder = env.root / "models" / "ControlNet"
    folder.mkdir(parents=True, exist_ok=True)
    for path in tiny_cn.values():
        (folder / path.name).symlink_to(path)
    dirs = ControlNetDirs(folder, env.root / "models" / "ControlNet-annotators")
    return env, ControlNetService(dirs, env.options, env.models, builtin=())


class UnitHooks(ScriptHooks):
    """What scripts/controlnet.py does in process(): the units' provider on p."""

    def __init__(self, service: ControlNetService, units: list[ControlNetUnit]) -> None:
        self.service, self.units = service, units

    def process(self, p: Any) -> None:
        p.unet_residuals = self.service.prepare(p, self.units)


def control_image(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(image).rectangle((size // 4, size // 8, size // 2, size * 3 // 4), fill="white")
    return image


def generate(cn_env: Any, units: list[ControlNetUnit], **fields: Any) -> tuple[np.ndarray, str]:
    env, service = cn_env
    from modules.core.jobs import JobControl
    from modules.generation.requests import Txt2ImgRequest

    fields = {"prompt": "a cat", "seed": 3, "width": 64, "height": 64, "steps": 4, "sampler_name": "Euler",
              "override_settings": {"sd_model_checkpoint": "tiny-sd1"}, **fields}  # fmt: skip
    result = env.service.txt2img(Txt2ImgRequest(**fields), JobControl(), hooks=UnitHooks(service, units))
    return pixels(result.images[0]), result.infotexts[0]


def unit(**fields: Any) -> ControlNetUnit:
    return ControlNetUnit(**{"model": SD1_CN, "image": control_image(), **fields})


# --- files ---------------------------------------------------------------------------------------


def test_layouts_are_identified_by_their_keys(tiny_cn: dict[str, Path], tiny_models: TinyModelFiles) -> None:
    assert identify_controlnet(tiny_cn["sd1"]).layout == "ldm"
    assert identify_controlnet(tiny_cn["sd1-fp16"]).family == ModelFamily.SD1
    assert identify_controlnet(tiny_cn["sd1-diffusers"]).layout == "diffusers"
    assert identify_controlnet(tiny_cn["sdxl"]).family == ModelFamily.SDXL
    with pytest.raises(WrongModelKind, match="not a ControlNet"):
        identify_controlnet(tiny_models.checkpoint("sd1"))


def test_every_layout_loads_the_same_weights(tiny_cn: dict[str, Path]) -> None:
    reference = load_controlnet(tiny_cn["sd1"]).state_dict()
    for key in ("sd1-fp16", "sd1-diffusers"):
        other = load_controlnet(tiny_cn[key]).state_dict()
        assert other.keys() == reference.keys()
        tolerance = 1e-2 if key == "sd1-fp16" else 0.0
        assert all(torch.allclose(other[k], reference[k], atol=tolerance) for k in reference)
    sdxl = load_controlnet(tiny_cn["sdxl"], base_unet={"addition_time_embed_dim": 8})
    assert sdxl.config.addition_embed_type == "text_time"


def test_library_lists_titles_and_caches(cn_env: Any) -> None:
    _, service = cn_env
    titles = service.model_titles()
    assert any(t.startswith("tiny-control-sd1 [") for t in titles)
    assert "tiny-control-sd1-diffusers" in titles  # a folder: no file hash
    with pytest.raises(ModelNotFound, match="not-there"):
        service.library.find("not-there")


# --- preprocessors -------------------------------------------------------------------------------


def test_canny_finds_the_outline_of_a_square() -> None:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="black")
    edges = np.asarray(run_preprocessor("canny", image, resolution=64))[..., 0] > 0
    assert edges[16:48, 14:19].any() and edges[14:19, 16:48].any()  # left and top sides
    assert not edges[24:40, 24:40].any() and not edges[:8, :8].any()  # inside and far outside: none


def test_weightless_preprocessors_and_missing_annotators(tmp_path: Path) -> None:
    image = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(image).line((0, 16, 31, 16), fill="black", width=2)
    inverted = np.asarray(run_preprocessor("invert (from white bg & black line)", image, resolution=32))
    assert inverted[16, 5, 0] == 255 and inverted[2, 5, 0] == 0
    binary = np.asarray(run_preprocessor("threshold", image, resolution=32, threshold_a=127))
    assert set(np.unique(binary)) <= {0, 255}
    assert run_preprocessor("canny", image, resolution=96).size == (96, 96)  # processor_res scales
    with pytest.raises(MissingAnnotator, match="openpose/body_pose_model.pth"):
        run_preprocessor("openpose", image, annotators_dir=tmp_path)
    with pytest.raises(PreprocessorError, match="unknown ControlNet preprocessor"):
        run_preprocessor("telepathy", image)


# --- units and infotext --------------------------------------------------------------------------


def test_units_from_api_fields_and_infotext_round_trip() -> None:
    parsed = unit_from({"module": "canny", "model": "m [abc]", "weight": "0.5", "control_mode": 2,
                        "resize_mode": "Just Resize", "pixel_perfect": True, "guidance_end": 0.7})  # fmt: skip
    assert parsed.control_mode == "ControlNet is more important" and parsed.weight == 0.5
    entry = infotext_entry(parsed, "m [abc]")
    back = units_from_infotext({"ControlNet 1": entry})[1]
    assert (back.module, back.model, back.weight, back.guidance_end) == ("canny", "m [abc]", 0.5, 0.7)
    assert back.control_mode == parsed.control_mode and back.resize_mode == "Just Resize" and back.pixel_perfect
    with pytest.raises(UnitError, match="control_mode"):
        unit_from({"control_mode": "loudest"})
    with pytest.raises(UnitError, match="guidance_start"):
        unit_from({"guidance_start": 2})


# --- pixels -------------------------------------------------------------------------------------


def test_controlnet_changes_the_image_and_weight_zero_does_not(cn_env: Any) -> None:
    plain, plain_info = generate(cn_env, [])
    controlled, info = generate(cn_env, [unit()])
    assert np.abs(controlled - plain).mean() > 2.0
    params = parse_generation_parameters(info)
    assert params["ControlNet 0"].startswith("Module: none, Model: tiny-control-sd1 [")
    assert "ControlNet 0" not in plain_info
    zero, zero_info = generate(cn_env, [unit(weight=0.0)])
    assert np.array_equal(zero, plain) and "ControlNet 0" not in zero_info
    disabled, _ = generate(cn_env, [unit(enabled=False)])
    assert np.array_equal(disabled, plain)


def test_guidance_range_and_control_modes(cn_env: Any) -> None:
    plain, _ = generate(cn_env, [])
    full, _ = generate(cn_env, [unit()])
    late, _ = generate(cn_env, [unit(guidance_start=0.5)])
    never, _ = generate(cn_env, [unit(guidance_start=0.99, guidance_end=1.0)])  # no step that late but the end
    diff = {name: np.abs(img - plain).mean() for name, img in (("full", full), ("late", late))}
    assert 0 < diff["late"] < diff["full"]
    assert np.abs(never - plain).mean() < diff["late"]
    prompt_mode, _ = generate(cn_env, [unit(control_mode="My prompt is more important")])
    cn_mode, _ = generate(cn_env, [unit(control_mode="ControlNet is more important")])
    # soft injection scales the residuals down: closer to the plain image than balanced
    assert np.abs(prompt_mode - plain).mean() < diff["full"]
    assert not np.array_equal(cn_mode, prompt_mode) and not np.array_equal(cn_mode, full)


def test_img2img_uses_the_input_image_and_hires_applies(cn_env: Any) -> None:
    env, service = cn_env
    from modules.core.jobs import JobControl
    from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest

    base = {"prompt": "a cat", "seed": 5, "width": 64, "height": 64, "steps": 4, "sampler_name": "Euler",
            "override_settings": {"sd_model_checkpoint": "tiny-sd1"}}  # fmt: skip
    init = control_image()
    outs = []
    for units in ([], [ControlNetUnit(model=SD1_CN)]):
        result = env.service.img2img(
            Img2ImgRequest(**base), JobControl(), init_images=[init], hooks=UnitHooks(service, units)
        )
        outs.append(pixels(result.images[0]))
    assert np.abs(outs[0] - outs[1]).mean() > 1.0
    hires = {**base, "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "denoising_strength": 0.6}
    results = []
    for option in ("Low res only", "Both"):
        units = [unit(hr_option=option)]
        result = env.service.txt2img(Txt2ImgRequest(**hires), JobControl(), hooks=UnitHooks(service, units))
        results.append(pixels(result.images[0]))
    assert results[0].shape == (96, 96, 3) and np.abs(results[0] - results[1]).mean() > 0.5


def test_sdxl_controlnet_changes_an_sdxl_image(cn_env: Any) -> None:
    plain, _ = generate(cn_env, [], override_settings={"sd_model_checkpoint": SDXL})
    controlled, _ = generate(cn_env, [unit(model="tiny-control-sdxl")], override_settings={"sd_model_checkpoint": SDXL})
    assert np.abs(controlled - plain).mean() > 1.0


def test_a_controlnet_of_another_family_is_a_clear_error(cn_env: Any) -> None:
    with pytest.raises(UnitError, match="made for this model's family"):
        generate(cn_env, [unit(model="tiny-control-sdxl")])


def test_cache_holds_at_most_the_setting(cn_env: Any) -> None:
    env, service = cn_env
    env.options.set("control_net_model_cache_size", 1)
    try:
        generate(cn_env, [unit()])
        generate(cn_env, [unit(model="tiny-control-sd1-diffusers")])
        assert [p.name for p in service.library.cached()] == ["tiny-control-sd1-diffusers"]
    finally:
        env.options.set("control_net_model_cache_size", 2)


_ = GenEnv


def test_pasting_an_infotext_restores_the_unit_controls() -> None:
    from modules.controlnet.ui import _paste

    entry = infotext_entry(
        unit_from({"module": "canny", "model": "m [1234abcd]", "weight": 0.6, "guidance_end": 0.8}), "m [1234abcd]"
    )
    params = parse_generation_parameters(f'a cat\nSteps: 3, Seed: 1, ControlNet 0: "{entry}"')
    assert _paste(0, "enabled")(params) is True and _paste(0, "module")(params) == "canny"
    assert _paste(0, "model")(params) == "m [1234abcd]" and _paste(0, "weight")(params) == 0.6
    assert _paste(0, "guidance_end")(params) == 0.8
    assert _paste(1, "enabled")(params) is False  # no entry: the unit is switched off
