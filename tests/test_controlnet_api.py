"""sd-webui-controlnet's API surface, answered by the built-in ControlNet, through a real server:
webuiapi's ControlNetUnit drives a txt2img; the /controlnet routes; bad units are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.core.paths import REPO_ROOT
from modules.extension_host import facade
from modules.extension_host.discovery import discover
from modules.extension_host.problems import ProblemLog
from modules.generation.infotext import parse_generation_parameters
from tests.api_server import TINY_TXT2IMG, b64_png, running_server
from tests.fixtures_models import *  # noqa: F403
from tests.fixtures_models import TinyModelFiles

SCRIPTS = REPO_ROOT / "scripts"


def square(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="black")
    return image


def test_webuiapi_controlnet_unit_drives_txt2img(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    webuiapi = pytest.importorskip("webuiapi")
    from tools.tiny_controlnets import write_tiny_controlnets

    write_tiny_controlnets(tmp_path / "models" / "ControlNet")
    with running_server(tmp_path, tiny_models, "--nowebui") as live:
        facade.bind(live.services, run_installers=False, builtin_dir=tmp_path / "none", core_scripts_dir=SCRIPTS)
        try:
            api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port)
            assert api.controlnet_version() == 2
            models = api.controlnet_model_list()
            title = next(m for m in models if m.startswith("tiny-control-sd1 ["))
            assert "canny" in api.controlnet_module_list()
            detected = api.controlnet_detect(
                [square()], module="canny", processor_res=64, threshold_a=100, threshold_b=200
            )
            edges = np.asarray(detected.image.convert("L"))
            assert edges.shape == (64, 64) and edges[16:48, 14:19].max() == 255 and edges[30, 30] == 0

            common = {"prompt": "a cat", "seed": 4, "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler"}
            plain = api.txt2img(**common)
            unit = webuiapi.ControlNetUnit(image=square(), module="canny", model=title, processor_res=64,
                                           threshold_a=100, threshold_b=200)  # fmt: skip
            controlled = api.txt2img(**common, controlnet_units=[unit])
            difference = np.abs(np.asarray(controlled.image, dtype=np.int16) - np.asarray(plain.image, dtype=np.int16))
            assert difference.mean() > 1.0
            entry = parse_generation_parameters(controlled.info["infotexts"][0])["ControlNet 0"]
            assert entry.startswith(f"Module: canny, Model: {title}, Weight: 1,")
            assert "Resize Mode: Resize and Fill" in entry  # webuiapi's default, kept
        finally:
            facade.unbind()


def test_controlnet_routes_and_errors(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    from tools.tiny_controlnets import write_tiny_controlnets

    write_tiny_controlnets(tmp_path / "models" / "ControlNet")
    with running_server(tmp_path, tiny_models, "--nowebui") as live:
        facade.bind(live.services, run_installers=False, builtin_dir=tmp_path / "none", core_scripts_dir=SCRIPTS)
        client = live.client()
        try:
            types = client.get("/controlnet/control_types").json()["control_types"]
            assert "canny" in types["Canny"]["module_list"] and "All" in types
            assert client.get("/controlnet/settings").json()["control_net_unit_count"] == 3
            details = client.get("/controlnet/module_list").json()["module_detail"]
            assert details["openpose"]["annotator"] == "openpose/body_pose_model.pth"
            missing = client.post("/controlnet/detect", json={"controlnet_module": "openpose",
                                                              "controlnet_input_images": [b64_png(square())]})  # fmt: skip
            assert missing.status_code == 400 and "openpose/body_pose_model.pth" in missing.text
            unit = {"model": "no-such-controlnet", "image": b64_png(square()), "module": "canny"}
            body = {**TINY_TXT2IMG, "alwayson_scripts": {"controlnet": {"args": [unit]}}}
            reply = client.post("/sdapi/v1/txt2img", json=body)
            assert reply.status_code == 404 and "no-such-controlnet" in reply.text
            title = client.get("/controlnet/model_list").json()["model_list"][0]
            body["alwayson_scripts"]["controlnet"]["args"] = [{**unit, "model": title, "control_mode": "loud"}]
            bad = client.post("/sdapi/v1/txt2img", json=body)
            assert bad.status_code == 400 and "control_mode" in bad.text
            # the {"image", "mask"} form and a data URL are accepted
            good = {
                **unit,
                "model": title,
                "image": {"image": "data:image/png;base64," + b64_png(square()), "mask": None},
            }
            body["alwayson_scripts"]["controlnet"]["args"] = [good]
            ok = client.post("/sdapi/v1/txt2img", json=body)
            assert ok.status_code == 200, ok.text
            assert "ControlNet 0" in json.loads(ok.json()["info"])["infotexts"][0]
        finally:
            client.close()
            facade.unbind()


def test_the_extension_is_not_loaded_beside_the_built_in(tmp_path: Path) -> None:
    (tmp_path / "sd-webui-controlnet" / "scripts").mkdir(parents=True)
    (tmp_path / "other-extension").mkdir()
    problems = ProblemLog()
    found = discover([(tmp_path, False)], [], problems)
    assert [e.name for e in found] == ["other-extension"]
    notes = [p.error for p in problems.items() if p.extension == "sd-webui-controlnet"]
    assert notes and "ControlNet is built into this web UI" in notes[0]
