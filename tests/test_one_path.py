"""One path for UI and API (issue 15): the access policy, the job runner and the checkpoint and
settings changes hold the same way through HTTP, the Gradio page's events and Gradio's own API
(`/gradio_api/...`, as `gradio_client` calls it), on a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.access.limits import hires_size_of
from modules.generation.requests import Txt2ImgRequest
from tests.api_server import TINY_TXT2IMG, BlockHooks, LiveServer, decode_b64, start_server
from tests.fixtures_models import TinyModelFiles, link_into, models_home
from tests.gradio_calls import event, gradio_client, named_event

pytestmark = pytest.mark.slow

ALICE, ROOT = ("alice", "pw-a"), ("root", "pw:r")


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    """No logins, API and UI, two checkpoints (sd1 and sd1-inpaint)."""
    root = tmp_path_factory.mktemp("open")
    link_into(models_home(root).ckpt_dir, tiny_models.checkpoint("sd1-inpaint"))
    server = start_server(root, tiny_models, "--api")
    server.services.script_hooks.attach(BlockHooks())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    """Logins with an admin list, on the network (--listen): the shared-instance set-up."""
    root = tmp_path_factory.mktemp("guarded")
    link_into(models_home(root).ckpt_dir, tiny_models.checkpoint("sd1-inpaint"))
    auth_file = root / "users.txt"
    auth_file.write_text("root:pw:r\n@admins: root\n")
    server = start_server(
        root, tiny_models, "--api", "--listen", "--gradio-auth", "alice:pw-a", "--gradio-auth-path", str(auth_file)
    )
    server.services.options.save()
    yield server
    server.stop()


def gallery(out: dict[str, Any]) -> list[Any]:
    """The images a Gradio answer put into the txt2img gallery (none for a no-op update)."""
    value = out["txt2img_gallery"]
    return list(value) if isinstance(value, list) else []


UI_TXT2IMG = {"txt2img_prompt": "a red circle", "txt2img_width": 64, "txt2img_height": 64, "txt2img_steps": 2}


def txt2img_ui(server: LiveServer, auth: tuple[str, str] | None = None, **values: Any) -> dict[str, Any]:
    """Gradio's published `txt2img_generate` endpoint with these UI values (by elem_id)."""
    client = gradio_client(server.url, auth)
    return named_event(client, "txt2img_generate").call({**UI_TXT2IMG, **values})


# --- limits and quota through the Gradio path -----------------------------------------------------


def test_gradio_generate_endpoint_applies_the_generation_limits(open_server: LiveServer) -> None:
    options = open_server.services.options
    jobs_before = len(open_server.services.jobs.finished())
    options.set("api_max_steps", 5)
    try:
        refused = txt2img_ui(open_server, txt2img_steps=6)
        assert "api_max_steps" in refused["html_info_txt2img"] and not gallery(refused)
        options.set("api_max_pixels_per_image", 100 * 100)
        hires = txt2img_ui(open_server, **{"txt2img_hr-checkbox": True, "txt2img_hr_scale": 2})
        assert "hires fix image of 128x128" in hires["html_info_txt2img"]
        assert len(open_server.services.jobs.finished()) == jobs_before  # nothing was queued
        allowed = txt2img_ui(open_server, txt2img_steps=5)
        assert len(gallery(allowed)) == 1 and "Steps: 5" in allowed["html_info_txt2img"]
    finally:
        options.set("api_max_steps", 150)
        options.set("api_max_pixels_per_image", 2048 * 2048)


def test_gradio_jobs_count_against_the_client_queue_limit_without_logins(open_server: LiveServer) -> None:
    services = open_server.services
    hooks = services.generation.hooks
    assert isinstance(hooks, BlockHooks)
    hooks.gate.clear()
    hooks.blocked.clear()
    services.options.set("api_max_queued_per_user", 1)
    with open_server.client() as http:
        running = threading.Thread(
            target=lambda: http.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "prompt": "block"})
        )
        running.start()
        try:
            assert hooks.blocked.wait(60)
            client = gradio_client(open_server.url)
            generate = named_event(client, "txt2img_generate")
            waiting = client.submit(*generate.args(UI_TXT2IMG), fn_index=generate.fn_index)
            wait_until(lambda: len(services.jobs.pending()) == 1)
            assert services.jobs.pending()[0].quota_key == "addr:127.0.0.1"
            full = txt2img_ui(open_server)
            assert "api_max_queued_per_user" in full["html_info_txt2img"] and "127.0.0.1" in full["html_info_txt2img"]
            over_http = http.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG)  # the same quota as the API's
            assert over_http.status_code == 429
        finally:
            hooks.gate.set()
            services.options.set("api_max_queued_per_user", 10)
            running.join(60)
        waiting.result(timeout=120)


# --- settings and checkpoint from the UI: the admin rule and the folder lock ---------------------


def config_text(server: LiveServer) -> str:
    return Path(server.services.paths.config_file).read_text(encoding="utf-8")


def settings_apply(server: LiveServer, auth: tuple[str, str], values: dict[str, Any]) -> str:
    client = gradio_client(server.url, auth)
    out = event(client, "settings_submit", "click").call({f"setting_{k}": v for k, v in values.items()})
    return str(out["settings_result"])


def quicksetting(server: LiveServer, auth: tuple[str, str], key: str, value: Any) -> dict[str, Any]:
    client = gradio_client(server.url, auth)
    return event(client, f"setting_{key}", "change").call({f"setting_{key}": value})


def test_non_admin_cannot_switch_the_checkpoint_or_change_settings_from_the_ui(guarded: LiveServer) -> None:
    services = guarded.services
    models = services.models
    inpaint = models.find_checkpoint("tiny-sd1-inpaint").title
    stored_before = config_text(guarded)
    checkpoint_before = services.options.get("sd_model_checkpoint")

    refused = quicksetting(guarded, ALICE, "sd_model_checkpoint", inpaint)
    assert "only admins" in refused["quicksettings_status"]
    assert refused["setting_sd_model_checkpoint"] == checkpoint_before  # the control goes back
    attack = {
        "outdir_samples": "/tmp/elsewhere",
        "api_max_steps": 1000,
        "api_max_queued_per_user": 0,
        "api_queue_fairness": "round-robin",
        "jpeg_quality": 50,
    }
    result = settings_apply(guarded, ALICE, attack)
    assert "Nothing was changed" in result and "only admins" in result
    assert services.options.get("sd_model_checkpoint") == checkpoint_before
    assert models.active is None or models.active.checkpoint.model_name != "tiny-sd1-inpaint"
    assert config_text(guarded) == stored_before
    assert [services.options.get(k) for k in attack] == [services.registry[k].default for k in attack]

    # an admin may change settings, the limits too; folders stay locked on a --listen server
    folder = settings_apply(guarded, ROOT, {"outdir_samples": "/tmp/elsewhere", "jpeg_quality": 50})
    assert "folder settings cannot be changed" in folder and services.options.get("jpeg_quality") != 50
    changed = settings_apply(guarded, ROOT, {"api_max_steps": 120, "jpeg_quality": 50})
    assert "2 settings changed" in changed
    stored = json.loads(config_text(guarded))
    assert stored["api_max_steps"] == 120 and stored["jpeg_quality"] == 50

    loaded = quicksetting(guarded, ROOT, "sd_model_checkpoint", inpaint)
    assert "Loaded" in loaded["quicksettings_status"]
    assert models.active is not None and models.active.checkpoint.model_name == "tiny-sd1-inpaint"
    assert json.loads(config_text(guarded))["sd_model_checkpoint"] == models.active.checkpoint.title  # after the load


def test_checkpoint_switch_through_the_api_uses_the_same_rule(guarded: LiveServer) -> None:
    sd1 = guarded.services.models.find_checkpoint("tiny-sd1").title
    with guarded.client(auth=ALICE) as alice, guarded.client(auth=ROOT) as root:
        assert alice.post("/sdapi/v1/options", json={"sd_model_checkpoint": sd1}).status_code == 403
        assert root.post("/sdapi/v1/options", json={"outdir_samples": "/tmp/x"}).status_code == 403
        assert root.post("/sdapi/v1/options", json={"sd_model_checkpoint": sd1}).status_code == 200
    active = guarded.services.models.active
    assert active is not None and active.checkpoint.model_name == "tiny-sd1"
    assert json.loads(config_text(guarded))["sd_model_checkpoint"] == active.checkpoint.title


# --- hires fix --------------------------------------------------------------------------------------

HIRES_CASES = {
    "crop": {"width": 64, "height": 128, "hr_resize_x": 128, "hr_resize_y": 128},
    "fill-width": {"width": 64, "height": 96, "hr_resize_x": 100},
    "fill-height": {"width": 96, "height": 64, "hr_resize_y": 100},
    "scale": {"width": 64, "height": 64, "hr_scale": 1.3},
}


@pytest.mark.parametrize("case", list(HIRES_CASES))
def test_hires_size_checked_is_the_size_generated(open_server: LiveServer, case: str) -> None:
    body = {**TINY_TXT2IMG, **HIRES_CASES[case], "enable_hr": True, "hr_second_pass_steps": 1}
    size = hires_size_of(Txt2ImgRequest(**body))
    largest = max(size.upscale_w * size.upscale_h, size.final_w * size.final_h)
    options = open_server.services.options
    try:
        options.set("api_max_pixels_per_image", largest)
        with open_server.client() as client:
            r = client.post("/sdapi/v1/txt2img", json=body)
            assert r.status_code == 200, r.text
            assert decode_b64(r.json()["images"][0]).size == (size.final_w, size.final_h)
            options.set("api_max_pixels_per_image", largest - 1)
            refused = client.post("/sdapi/v1/txt2img", json=body)
        assert refused.status_code == 400
        shown = f"{size.upscale_w}x{size.upscale_h}" if size.crops else f"{size.final_w}x{size.final_h}"
        assert shown in refused.json()["detail"]
    finally:
        options.set("api_max_pixels_per_image", 2048 * 2048)


def test_hires_with_another_checkpoint_leaves_the_active_model_alone(open_server: LiveServer) -> None:
    models = open_server.services.models
    sd1 = models.find_checkpoint("tiny-sd1").title
    inpaint = models.find_checkpoint("tiny-sd1-inpaint").title
    open_server.services.options.set("sd_model_checkpoint", sd1)
    activated: list[str] = []
    remove = models.add_loaded_listener(lambda model: activated.append(model.checkpoint.title))
    body = {**TINY_TXT2IMG, "enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 1}
    try:
        with open_server.client() as client:
            assert client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG).status_code == 200  # sd1 is active
            activated.clear()
            r = client.post("/sdapi/v1/txt2img", json={**body, "hr_checkpoint_name": inpaint})
            assert r.status_code == 200, r.text
            info = json.loads(r.json()["info"])
            assert "Hires checkpoint: tiny-sd1-inpaint" in info["infotexts"][0]
            after = client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG).json()
    finally:
        remove()
    assert activated == []  # the hires checkpoint was pinned for the job, never made the active model
    assert models.active is not None and models.active.checkpoint.model_name == "tiny-sd1"
    assert "Model: tiny-sd1," in json.loads(after["info"])["infotexts"][0]


def test_hires_with_denoising_strength_zero_answers_200(open_server: LiveServer) -> None:
    """The request shape A1111's own CI sends (enable_hr with its default denoising_strength 0)."""
    body = {**TINY_TXT2IMG, "enable_hr": True, "denoising_strength": 0, "hr_scale": 2}
    with open_server.client() as client:
        r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    image = decode_b64(r.json()["images"][0])
    assert image.size == (128, 128) and len(set(image.convert("L").getdata())) > 1


def test_extras_tab_applies_the_api_size_limit(open_server: LiveServer, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from tests.api_server import gradient

    source = tmp_path / "source.png"
    gradient(64).save(source)
    client = gradio_client(open_server.url)
    extras = event(client, "extras_generate", "click")
    values = {"extras_image": handle_file(str(source)), "extras_upscaler_1": "Lanczos", "extras_upscaling_resize": 4}
    options = open_server.services.options
    options.set("api_max_pixels_per_image", 200 * 200)
    try:
        refused = client.predict(*extras.args(values), fn_index=extras.fn_index)
        assert "upscaled image of 256x256" in str(refused) and "api_max_pixels_per_image" in str(refused)
    finally:
        options.set("api_max_pixels_per_image", 2048 * 2048)
    done = extras.call(values)
    assert len(done["extras_gallery"]) == 1
