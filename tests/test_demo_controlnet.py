"""The shipped demo ControlNet (issue 21): a small SD1 single file for the demo model, listed and
applied like any ControlNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modules.controlnet.library import DEMO_CONTROLNET
from modules.controlnet.units import ControlNetUnit
from modules.controlnet.weights import identify_controlnet
from modules.core.jobs import JobControl
from modules.generation.requests import Txt2ImgRequest
from modules.models.families import ModelFamily
from modules.models.safetensors_header import read_safetensors_header
from tools.demo.controlnet_eval import SEED, UnitHooks, control_for, demo_controlnet_env
from tools.demo.evaluate import SamplingSettings, images_of

SAMPLING = SamplingSettings(steps=12, sampler_name="DPM++ 2M", cfg_scale=7.0)


def test_committed_demo_controlnet_is_a_small_sd1_single_file() -> None:
    assert DEMO_CONTROLNET.stat().st_size <= 10 * 2**20
    kind = identify_controlnet(DEMO_CONTROLNET)
    assert (kind.layout, kind.family) == ("ldm", ModelFamily.SD1)
    meta = read_safetensors_header(DEMO_CONTROLNET)["__metadata__"]
    assert meta["trained_by"] == "tools/demo/controlnet.py" and meta["base"] == "demo-shapes"


def test_demo_controlnet_is_listed_and_steers_the_demo_model(tmp_path: Path) -> None:
    """The shipped unit changes the demo model's image and writes its infotext entry. (The placement
    judge, 3 shapes x 3 positions x 4 seeds, is `python -m tools.demo.controlnet_eval`.)"""
    env, service = demo_controlnet_env(tmp_path)
    title = next(t for t in service.model_titles() if t.startswith("demo-shapes-control ["))
    control, _ = control_for("circle", "top left", SAMPLING.size)
    request = Txt2ImgRequest(prompt="a red circle on a white background", seed=SEED, steps=SAMPLING.steps,
                             sampler_name=SAMPLING.sampler_name, width=SAMPLING.size, height=SAMPLING.size)  # fmt: skip
    plain = env.service.txt2img(request, JobControl(), hooks=UnitHooks(service, []))
    unit = ControlNetUnit(model=title, image=control, module="none")
    steered = env.service.txt2img(request, JobControl(), hooks=UnitHooks(service, [unit]))
    difference = np.abs(
        np.asarray(images_of(steered)[0], dtype=np.int16) - np.asarray(images_of(plain)[0], dtype=np.int16)
    )
    assert difference.mean() > 2.0
    assert f'ControlNet 0: "Module: none, Model: {title}, Weight: 1,' in steered.infotexts[0]
