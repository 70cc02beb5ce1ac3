"""Issue 20 through Gradio's own API on a real server (demo model): Generate keeps working after
Settings → "Reload UI", the results show A1111's "Time taken" footer, and the Sysinfo report
(`/internal/sysinfo`) is there."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from modules.workflows import sysinfo
from tests.fixtures_models import TinyModelFiles
from tests.gradio_calls import event, gradio_client, named_event
from tests.ui_harness import LiveServer, prepare_data_dir, start_server

SMALL = {"txt2img_prompt": "a red circle", "txt2img_width": 64, "txt2img_height": 64, "txt2img_steps": 2}
TIME_TAKEN = re.compile(r"Time taken: <wbr><span class=\"measurement\">(\d+ min\. )?\d+\.\d sec\.</span>")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    data = prepare_data_dir(tmp_path_factory.mktemp("parity-http"), tiny_models, families=())  # demo model
    with start_server(data, "--api") as server:
        server.services.options.set("live_previews_enable", False)
        yield server


def generate(live: LiveServer, **values: Any) -> dict[str, Any]:
    return named_event(gradio_client(live.url), "txt2img_generate").call({**SMALL, **values})


def images(out: dict[str, Any]) -> list[Any]:
    value = out["txt2img_gallery"]
    return list(value) if isinstance(value, list) else []


def test_results_show_the_time_taken_under_the_infotext(live: LiveServer) -> None:
    out = generate(live)
    info = out["html_info_txt2img"]
    assert len(images(out)) == 1 and "Steps: 2" in info
    assert TIME_TAKEN.search(info), info
    assert info.index("Steps: 2") < info.index("Time taken")  # the footer comes last, as in A1111


def test_generate_after_reload_ui(live: LiveServer) -> None:
    host = live.server.config.app.state.ui_host
    before = host.blocks
    reload = event(gradio_client(live.url), "settings_restart_gradio", "click")
    # the Reload UI event's own answer is lost with the old queue (the page reloads itself then)
    with contextlib.suppress(Exception):
        reload.call({})
    assert host.blocks is not before  # a new UI serves now
    out = generate(live, txt2img_prompt="a blue square")
    assert len(images(out)) == 1, out["html_info_txt2img"]
    assert "a blue square" in out["html_info_txt2img"] and "Steps: 2" in out["html_info_txt2img"]
    again = generate(live, txt2img_steps=3)  # and again: the new queue keeps serving
    assert len(images(again)) == 1 and "Steps: 3" in again["html_info_txt2img"]


def test_sysinfo_report_and_download(live: LiveServer) -> None:
    report = httpx.get(live.url + "internal/sysinfo", timeout=60)
    assert report.status_code == 200
    info = report.json()
    assert info["Data path"] == str(live.services.paths.data_dir)
    assert info["Version"] == "v1.10.1" and info["Python"].count(".") == 2
    assert info["Config"]["sd_model_checkpoint"] == live.services.options.get("sd_model_checkpoint")
    assert any(p.lower().startswith("torch==") for p in info["Packages"])
    assert sysinfo.check(report.text)
    edited = report.text.replace(str(live.services.paths.data_dir), "/elsewhere")
    assert not sysinfo.check(edited)  # the checksum tells an edited report
    download = httpx.get(live.url + "internal/sysinfo-download", timeout=60)
    assert re.fullmatch(
        r'attachment; filename="sysinfo-\d{4}-\d\d-\d\d-\d\d-\d\d\.json"', download.headers["content-disposition"]
    )
    assert sysinfo.check(download.text)


def test_sysinfo_hides_credentials() -> None:
    flags = sysinfo.public_flags({"gradio_auth": "alice:secret", "api_auth": None, "port": 7860})
    assert flags == {"gradio_auth": "<hidden>", "api_auth": None, "port": 7860}


def test_actions_page_unloads_and_reloads_the_checkpoint(live: LiveServer) -> None:
    assert len(images(generate(live))) == 1  # the demo model is loaded
    models = live.services.models
    assert models.bytes_in("ram") > 0
    client = gradio_client(live.url)
    unloaded = event(client, "sett_unload_sd_model", "click").call({})
    assert "Checkpoint unloaded." in unloaded["settings_actions_result"]
    assert models.bytes_in("ram") == 0
    again = event(client, "sett_reload_sd_model", "click").call({})
    assert "the next job loads it" in again["settings_actions_result"]
    assert len(images(generate(live))) == 1
    loaded = event(client, "sett_reload_sd_model", "click").call({})
    assert "Checkpoint loaded." in loaded["settings_actions_result"] and models.bytes_in("ram") > 0


@pytest.mark.parametrize("original", [True, False])
def test_extras_batch_from_directory_names_outputs_after_inputs(
    live: LiveServer, tmp_path: Path, original: bool
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name, colour in (("cat", "red"), ("dog", "blue")):
        Image.new("RGB", (32, 32), colour).save(source / f"{name}.png")
    live.services.options.set("use_original_name_batch", original)
    try:
        values = {
            "extras_mode": 2,
            "extras_batch_input_dir": str(source),
            "extras_batch_output_dir": str(target),
            "extras_upscaler_1": "Lanczos",
            "extras_upscaling_resize": 2,
        }
        done = event(gradio_client(live.url), "extras_generate", "click").call(values)
        assert len(done["extras_gallery"]) == 2, done
    finally:
        live.services.options.set("use_original_name_batch", True)
    names = sorted(p.name for p in target.iterdir())
    if original:
        assert names == ["cat.png", "dog.png"]
    else:
        assert len(names) == 2 and not {"cat.png", "dog.png"} & set(names)
    with Image.open(target / names[0]) as saved:
        assert saved.size == (64, 64)


def test_api_interrupt_after_some_steps_returns_the_partial_image_with_infotext(live: LiveServer) -> None:
    body = {"prompt": "a green triangle", "width": 64, "height": 64, "steps": 150, "seed": 5}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, live.url + "sdapi/v1/txt2img", json=body, timeout=300)
        deadline = time.monotonic() + 120
        while httpx.get(live.url + "sdapi/v1/progress", timeout=30).json()["state"]["sampling_step"] < 3:
            assert time.monotonic() < deadline and not answer.done(), "sampling did not reach step 3"
            time.sleep(0.05)  # polling, as a client would
        assert httpx.post(live.url + "sdapi/v1/interrupt", timeout=30).status_code == 200
        response = answer.result()
    assert response.status_code == 200
    data = response.json()
    assert len(data["images"]) == 1  # the image as made so far, decoded
    info = json.loads(data["info"])
    assert "Steps: 150" in info["infotexts"][0] and "Seed: 5," in info["infotexts"][0]
    image = Image.open(io.BytesIO(base64.b64decode(data["images"][0])))
    assert image.size == (64, 64) and len(set(image.convert("L").getdata())) > 1
