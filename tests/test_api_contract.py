"""Contract tests for every /sdapi/v1 route against a live server (--api, UI mounted) on tiny models.

Status, field names and types as A1111 returns them; images decode and carry their infotext.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import save_file

from modules.api.context import ServerControl
from modules.generation.hooks import ScriptHooks
from modules.generation.image_io import read_info_from_image
from tests.api_server import SD1, TINY_TXT2IMG, LiveServer, b64_png, decode_b64, gradient, start_server
from tests.fixtures_models import TinyModelFiles

V1 = "/sdapi/v1"


class ProbeHooks(ScriptHooks):
    """Test hook points: a prompt can block its job (to watch progress) or fail it (out of memory)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.blocked = threading.Event()

    def before_process(self, p: Any) -> None:
        if p.prompt == "raise-cuda-oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if p.prompt == "raise-memory-error":
            raise MemoryError()

    def process_batch(self, p: Any, **kwargs: Any) -> None:
        if p.prompt == "block":
            self.blocked.set()
            assert self.gate.wait(30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("api"),
        tiny_models,
        "--api",
        settings={
            "api_max_steps": 20,
            "api_max_pixels_per_image": 256 * 256,
            "api_max_pixels_per_batch": 4 * 256 * 256,
        },
    )
    server.services.script_hooks.attach(ProbeHooks())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


def hooks(live: LiveServer) -> ProbeHooks:
    h = live.services.generation.hooks
    assert isinstance(h, ProbeHooks)
    return h


def check_fields(obj: dict[str, Any], fields: dict[str, type | tuple[type, ...]]) -> None:
    assert set(fields) <= set(obj), f"missing {set(fields) - set(obj)} in {sorted(obj)}"
    for name, kind in fields.items():
        assert isinstance(obj[name], kind), f"{name}={obj[name]!r} is not {kind}"


def check_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    check_fields(body, {"error": str, "detail": (str, list), "body": (str, dict, list), "errors": str})
    return body


# --- generation ------------------------------------------------------------------------------------


def test_txt2img_images_decode_and_carry_infotext(client: httpx.Client) -> None:
    r = client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "batch_size": 2, "negative_prompt": "blurry"})
    assert r.status_code == 200, r.text
    body = r.json()
    check_fields(body, {"images": list, "parameters": dict, "info": str})
    assert len(body["images"]) == 2  # save_images=false: no grid (A1111)
    info = json.loads(body["info"])
    check_fields(
        info,
        {
            "prompt": str,
            "all_prompts": list,
            "negative_prompt": str,
            "seed": int,
            "all_seeds": list,
            "width": int,
            "height": int,
            "sampler_name": str,
            "steps": int,
            "infotexts": list,
            "index_of_first_image": int,
            "sd_model_name": str,
            "job_timestamp": str,
            "version": str,
        },
    )
    assert info["all_seeds"] == [1, 2] and info["sampler_name"] == "Euler"  # API default sampler
    for data, text in zip(body["images"], info["infotexts"], strict=True):
        image = decode_b64(data)
        assert image.format == "PNG" and image.size == (64, 64)
        embedded = read_info_from_image(image).parameters or ""
        assert embedded == text and embedded.startswith("a red circle\nNegative prompt: blurry\nSteps: 2")
    assert body["parameters"]["prompt"] == "a red circle" and body["parameters"]["steps"] == 2


def test_txt2img_send_images_false_and_infotext_field(client: httpx.Client) -> None:
    r = client.post(
        f"{V1}/txt2img",
        json={
            "infotext": "a blue square\nSteps: 3, Sampler: Euler a, CFG scale: 5, Seed: 77, Size: 64x64",
            "steps": 2,
            "send_images": False,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["images"] == []
    info = json.loads(body["info"])
    assert (info["prompt"], info["seed"], info["steps"], info["cfg_scale"]) == ("a blue square", 77, 2, 5.0)
    assert info["sampler_name"] == "Euler a"


def test_img2img_with_mask_and_echo_rules(client: httpx.Client) -> None:
    init = b64_png(gradient())
    payload = {**TINY_TXT2IMG, "init_images": [init], "denoising_strength": 0.5, "mask": b64_png(gradient())}
    r = client.post(f"{V1}/img2img", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    check_fields(body, {"images": list, "parameters": dict, "info": str})
    assert body["parameters"]["init_images"] is None and body["parameters"]["mask"] is None
    image = decode_b64(body["images"][0])
    assert image.size == (64, 64) and "Denoising strength: 0.5" in (read_info_from_image(image).parameters or "")
    echoed = client.post(f"{V1}/img2img", json={**payload, "include_init_images": True, "mask": None}).json()
    assert echoed["parameters"]["init_images"] == [init]


def test_img2img_without_image_is_404(client: httpx.Client) -> None:
    check_error(client.post(f"{V1}/img2img", json=TINY_TXT2IMG), 404)


def test_extras_single_and_batch(client: httpx.Client) -> None:
    source = gradient(32)
    src_b64 = b64_png(source, text="original prompt\nSteps: 5")
    r = client.post(f"{V1}/extra-single-image", json={"image": src_b64, "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    check_fields(body, {"html_info": str, "image": str})
    image = decode_b64(body["image"])
    assert image.size == (64, 64)
    assert image.info["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"
    assert image.info["parameters"] == "original prompt\nSteps: 5"  # source infotext kept
    assert "Postprocess upscaler: Lanczos" in body["html_info"] and body["html_info"].startswith("<p>")
    batch = client.post(
        f"{V1}/extra-batch-images",
        json={
            "imageList": [{"data": src_b64, "name": "a"}, {"data": b64_png(gradient(16)), "name": "b"}],
            "upscaler_1": "Nearest",
            "resize_mode": 1,
            "upscaling_resize_w": 48,
            "upscaling_resize_h": 48,
        },
    )
    assert batch.status_code == 200, batch.text
    check_fields(batch.json(), {"html_info": str, "images": list})
    assert [decode_b64(i).size for i in batch.json()["images"]] == [(48, 48), (48, 48)]
    check_error(client.post(f"{V1}/extra-single-image", json={"image": src_b64, "upscaler_1": "Nope"}), 400)
    check_error(client.post(f"{V1}/extra-single-image", json={"image": ""}), 404)


def test_png_info_parses_parameters(client: httpx.Client) -> None:
    text = "a cat\nNegative prompt: dog\nSteps: 12, Sampler: Euler a, CFG scale: 6, Seed: 5, Size: 64x48"
    r = client.post(f"{V1}/png-info", json={"image": b64_png(gradient(8), text=text)})
    assert r.status_code == 200, r.text
    body = r.json()
    check_fields(body, {"info": str, "items": dict, "parameters": dict})
    assert body["info"] == text
    assert body["parameters"]["Prompt"] == "a cat" and body["parameters"]["Steps"] == "12"
    assert body["parameters"]["Size-1"] == "64" and body["parameters"]["Size-2"] == "48"
    check_error(client.post(f"{V1}/png-info", json={"image": "bm90IGFuIGltYWdl"}), 400)


def test_bad_requests_get_a1111_error_shape(client: httpx.Client) -> None:
    body = check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "sampler_name": "Nope"}), 400)
    assert "Nope" in body["detail"]
    check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "override_settings": {"no_such": 1}}), 400)
    check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "steps": "many"}), 422)
    check_error(client.post(f"{V1}/img2img", json={**TINY_TXT2IMG, "init_images": ["%%%"]}), 400)
    assert client.get(f"{V1}/no-such-route").status_code == 404  # falls through to the UI's 404


def test_limits_give_clear_400s(client: httpx.Client) -> None:
    too_big = check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "width": 512, "height": 512}), 400)
    assert "api_max_pixels_per_image" in too_big["detail"]
    batch = check_error(
        client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "width": 256, "height": 256, "batch_size": 8}), 400
    )
    assert "api_max_pixels_per_batch" in batch["detail"]
    steps = check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "steps": 21}), 400)
    assert "api_max_steps" in steps["detail"]
    hires = check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "enable_hr": True, "hr_scale": 8}), 400)
    assert "hires fix" in hires["detail"]
    upscale = {"image": b64_png(gradient(64)), "upscaler_1": "Lanczos", "upscaling_resize": 8}
    assert "upscaled image" in check_error(client.post(f"{V1}/extra-single-image", json=upscale), 400)["detail"]


def test_body_size_limit_is_413(live: LiveServer, client: httpx.Client) -> None:
    live.services.options.set("api_max_request_body_mb", 0.01)
    try:
        body = check_error(client.post(f"{V1}/png-info", json={"image": "A" * 20000}), 413)
        assert "api_max_request_body_mb" in body["detail"]
        chunked = client.post(f"{V1}/png-info", content=iter([b'{"image": "', b"A" * 20000, b'"}']))
        check_error(chunked, 413)
    finally:
        live.services.options.set("api_max_request_body_mb", 64.0)


# --- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["raise-cuda-oom", "raise-memory-error"])
def test_out_of_memory_job_returns_error_and_next_job_runs(client: httpx.Client, prompt: str) -> None:
    body = check_error(client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "prompt": prompt}), 500)
    assert body["error"] == "OutOfMemoryError" and "out of memory" in body["detail"]
    after = client.post(f"{V1}/txt2img", json=TINY_TXT2IMG)
    assert after.status_code == 200 and len(after.json()["images"]) == 1


# --- progress, interrupt, skip, task ids -----------------------------------------------------------


class Background:
    """A request sent from another thread (the API blocks until its job is done)."""

    def __init__(self, client: httpx.Client, path: str, payload: dict[str, Any]):
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._run, args=(client, path, payload))
        self.thread.start()

    def _run(self, client: httpx.Client, path: str, payload: dict[str, Any]) -> None:
        self.response = client.post(path, json=payload)

    def result(self) -> httpx.Response:
        self.thread.join(60)
        assert self.response is not None
        return self.response


def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_progress_pending_tasks_interrupt_and_cancel(live: LiveServer, client: httpx.Client) -> None:
    idle = client.get(f"{V1}/progress").json()
    check_fields(idle, {"progress": float, "eta_relative": float, "state": dict})
    assert idle["progress"] == 0 and idle["current_image"] is None and idle["state"]["job_count"] == 0
    h = hooks(live)
    h.gate.clear()
    h.blocked.clear()
    blocked = Background(client, f"{V1}/txt2img", {**TINY_TXT2IMG, "prompt": "block", "force_task_id": "task(b-1)"})
    assert h.blocked.wait(30)
    try:
        second = Background(client, f"{V1}/txt2img", {**TINY_TXT2IMG, "force_task_id": "task(n-1)"})
        wait_until(lambda: client.get("/internal/pending-tasks").json()["size"] == 1)
        third = Background(client, f"{V1}/txt2img", {**TINY_TXT2IMG, "force_task_id": "task(n-2)"})
        wait_until(lambda: client.get("/internal/pending-tasks").json()["size"] == 2)
        check_running_and_queued(live, client)
    finally:
        h.gate.set()
    interrupted = blocked.result()
    assert interrupted.status_code == 200 and interrupted.json()["images"] == []
    assert second.result().status_code == 200 and len(second.result().json()["images"]) == 1
    assert check_error(third.result(), 409)["error"] == "JobCancelled"
    done = client.post("/internal/progress", json={"id_task": "task(n-1)"}).json()
    assert done["completed"] and not done["active"]


def check_running_and_queued(live: LiveServer, client: httpx.Client) -> None:
    assert client.get("/internal/pending-tasks").json() == {"size": 2, "tasks": ["task(n-1)", "task(n-2)"]}

    live.services.jobs.get("task(b-1)").control.set_preview(gradient(32))
    running = client.get(f"{V1}/progress").json()
    assert running["state"]["job"] == "task(b-1)" and running["state"]["sampling_steps"] == 2
    assert decode_b64(running["current_image"]).size == (32, 32)
    assert client.get(f"{V1}/progress", params={"skip_current_image": True}).json()["current_image"] is None

    active = client.post("/internal/progress", json={"id_task": "task(b-1)"}).json()
    check_fields(active, {"active": bool, "queued": bool, "completed": bool, "id_live_preview": int})
    assert active["active"] and active["live_preview"].startswith("data:image/png;base64,")
    again = client.post(
        "/internal/progress", json={"id_task": "task(b-1)", "id_live_preview": active["id_live_preview"]}
    )
    assert again.json()["live_preview"] is None  # the client already has this preview
    waiting = client.post("/internal/progress", json={"id_task": "task(n-2)"}).json()
    assert waiting["queued"] and waiting["textinfo"] == "In queue: 2/2"
    unknown = client.post("/internal/progress", json={"id_task": "task(nope)"}).json()
    assert unknown == {**unknown, "active": False, "queued": False, "completed": False, "textinfo": "Waiting..."}

    assert client.post(f"{V1}/interrupt", params={"id_task": "task(n-2)"}).json() == {}
    assert client.post(f"{V1}/skip").status_code == 200
    assert client.post(f"{V1}/interrupt").json() == {}  # no logins: the running job, whoever sent it
    check_error(client.post(f"{V1}/interrupt", params={"id_task": "task(nope)"}), 404)


# --- settings and flags ----------------------------------------------------------------------------


def test_options_get_set_and_override_settings_do_not_leak(live: LiveServer, client: httpx.Client) -> None:
    options = client.get(f"{V1}/options").json()
    assert options["CLIP_stop_at_last_layers"] == 1 and options["sd_model_checkpoint"] == SD1
    r = client.post(f"{V1}/txt2img", json={**TINY_TXT2IMG, "override_settings": {"CLIP_stop_at_last_layers": 2}})
    assert json.loads(r.json()["info"])["clip_skip"] == 2
    assert client.get(f"{V1}/options").json()["CLIP_stop_at_last_layers"] == 1
    config = live.services.paths.config_file
    assert not config.exists() or json.loads(config.read_text()).get("CLIP_stop_at_last_layers", 1) == 1
    assert client.post(f"{V1}/options", json={"CLIP_stop_at_last_layers": 3, "api_max_steps": 999}).status_code == 200
    assert client.get(f"{V1}/options").json()["CLIP_stop_at_last_layers"] == 3
    stored = json.loads(config.read_text())
    assert stored["CLIP_stop_at_last_layers"] == 3
    assert client.get(f"{V1}/options").json()["api_max_steps"] == 20  # restrict_api: silently ignored
    check_error(client.post(f"{V1}/options", json={"CLIP_stop_at_last_layers": "x"}), 400)
    check_error(client.post(f"{V1}/options", json={"no_such_setting": 1}), 400)
    check_error(client.post(f"{V1}/options", json={"sd_model_checkpoint": "missing-model"}), 400)
    client.post(f"{V1}/options", json={"CLIP_stop_at_last_layers": 1})
    r = client.post(f"{V1}/options", json={"sd_model_checkpoint": SD1})
    assert r.status_code == 200 and live.services.models.active is not None


def test_nowebui_cmd_flags_hide_credentials_and_server_routes(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    calls: list[str] = []
    control = ServerControl(
        kill=lambda: calls.append("kill"), restart=lambda: calls.append("restart"), stop=lambda: calls.append("stop")
    )
    flags = ("--nowebui", "--api-auth", "bot:secret-pass", "--api-server-stop")
    server = start_server(tmp_path, tiny_models, *flags, server_control=control)
    try:
        with server.client(auth=("bot", "secret-pass")) as c:
            shown = c.get(f"{V1}/cmd-flags").json()
            assert shown["nowebui"] is True and shown["api_auth"] == "<hidden>"
            assert "secret-pass" not in c.get(f"{V1}/cmd-flags").text
            assert c.get("/").status_code == 404  # --nowebui: no UI
            assert c.get(f"{V1}/samplers").status_code == 200
            for route in ("server-kill", "server-restart", "server-stop"):
                assert c.post(f"{V1}/{route}").status_code == 200
        assert calls == ["kill", "restart", "stop"]
    finally:
        server.stop()


# --- listings --------------------------------------------------------------------------------------

LISTS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "samplers": {"name": str, "aliases": list, "options": dict},
    "schedulers": {"name": str, "label": str, "need_inner_model": bool},
    "upscalers": {"name": str, "scale": (int, float)},
    "latent-upscale-modes": {"name": str},
    "sd-models": {"title": str, "model_name": str, "filename": str},
    "sd-vae": {"model_name": str, "filename": str},
    "hypernetworks": {"name": str, "path": str},
    "face-restorers": {"name": str},
    "realesrgan-models": {"name": str, "path": str, "scale": int},
    "prompt-styles": {"name": str, "prompt": str, "negative_prompt": str},
    "loras": {"name": str, "alias": str, "path": str, "metadata": dict},
    "extensions": {"name": str, "remote": str, "branch": str, "commit_hash": str, "version": str, "enabled": bool},
    "script-info": {"name": str},
}


@pytest.fixture(scope="module")
def listed_files(live: LiveServer) -> None:
    """Something on disk for every listing."""
    paths = live.services.paths
    (paths.hypernetwork_dir / "hn.pt").write_bytes(b"\0" * 16)
    lora = {"lora_unet_x.lora_down.weight": torch.zeros(4, 8), "lora_unet_x.lora_up.weight": torch.zeros(8, 4)}
    save_file(lora, str(paths.lora_dir / "detail.safetensors"), metadata={"ss_output_name": "detail"})
    save_file({"emb_params": torch.zeros(2, 768)}, str(paths.embeddings_dir / "emb.safetensors"))
    (paths.realesrgan_dir / "RealESRGAN_x4plus.pth").write_bytes(b"\0")
    (paths.vae_dir / "tiny.vae.safetensors").write_bytes(b"\0")
    (paths.extensions_dir / "sd-ext").mkdir(exist_ok=True)
    paths.styles_files[0].write_text("name,prompt,negative_prompt\nfancy,{prompt} art,ugly\n")
    live.services.generation.styles.reload()
    api = live.app.state.api
    api.upscalers.refresh()


@pytest.mark.parametrize("route", sorted(LISTS))
def test_listing_routes(client: httpx.Client, listed_files: None, route: str) -> None:
    r = client.get(f"{V1}/{route}")
    assert r.status_code == 200, r.text
    items = r.json()
    assert isinstance(items, list)
    if route in ("face-restorers", "script-info"):
        assert items == []  # no face models / scripts installed in the test data folder
        return
    assert items, f"{route} listed nothing"
    for item in items:
        check_fields(item, LISTS[route])


def test_listing_contents(client: httpx.Client, listed_files: None) -> None:
    assert [m["model_name"] for m in client.get(f"{V1}/sd-models").json()][0] == "tiny-sd1"
    assert {"None", "Lanczos", "Nearest", "R-ESRGAN 4x+"} <= {u["name"] for u in client.get(f"{V1}/upscalers").json()}
    assert client.get(f"{V1}/realesrgan-models").json()[0]["name"] == "R-ESRGAN 4x+"
    assert client.get(f"{V1}/prompt-styles").json() == [
        {"name": "fancy", "prompt": "{prompt} art", "negative_prompt": "ugly"}
    ]
    embeddings = client.get(f"{V1}/embeddings").json()
    check_fields(embeddings, {"loaded": dict, "skipped": dict})
    found = {**embeddings["loaded"], **embeddings["skipped"]}  # skipped: the tiny model is not 768 wide
    assert found["emb"] == {**found["emb"], "shape": 768, "vectors": 2}
    assert client.get(f"{V1}/loras").json()[0]["name"] == "detail"
    assert client.get(f"{V1}/scripts").json() == {"txt2img": [], "img2img": []}
    memory = client.get(f"{V1}/memory").json()
    check_fields(memory, {"ram": dict, "cuda": dict})
    check_fields(memory["ram"], {"free": int, "used": int, "total": int})
    assert [e["name"] for e in client.get(f"{V1}/extensions").json()] == ["sd-ext"]


def test_refresh_unload_reload(live: LiveServer, client: httpx.Client) -> None:
    for route in ("refresh-checkpoints", "refresh-vae", "refresh-embeddings", "refresh-loras"):
        r = client.post(f"{V1}/{route}")
        assert r.status_code == 200 and r.json() is None, route
    assert client.post(f"{V1}/unload-checkpoint").json() == {}
    assert live.services.models.active is None
    assert client.post(f"{V1}/txt2img", json=TINY_TXT2IMG).status_code == 200  # loads again
    assert client.post(f"{V1}/reload-checkpoint").json() == {}
    assert live.services.models.active is not None


def test_server_routes_absent_without_flag(client: httpx.Client) -> None:
    assert client.post(f"{V1}/server-kill").status_code == 404


def test_docs_and_openapi_show_a1111_shapes(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"TextToImageResponse", "ProgressResponse", "SDModelItem", "Txt2ImgRequest"} <= set(schemas)
    assert set(schemas["TextToImageResponse"]["properties"]) == {"images", "parameters", "info"}
    assert f"{V1}/txt2img" in spec["paths"] and f"{V1}/extra-batch-images" in spec["paths"]


def test_ui_is_served_next_to_the_api(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
