"""Attacks on a shared instance (issue 17), each run against a real server with logins.

Model references that point at arbitrary files, the server fetching URLs for the extension
index, settings that break every job, oversized or over-nested prompts, spoofed client addresses,
other users' task ids, crash leftovers and a full disk.
"""

from __future__ import annotations

import base64
import errno
import http.server
import inspect
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import safetensors.torch
import torch
from PIL import Image

from modules.api.proxies import TrustedProxies
from modules.core.options import OptionError, Options, SettingsNotSaved, coerce_value
from modules.extension_host import facade
from modules.extension_host.index import MAX_INDEX_BYTES
from modules.generation import saving
from modules.server import build_app
from tests.api_server import TINY_TXT2IMG, BlockHooks, LiveServer, build_test_services, serve_app, start_server
from tests.fixtures_models import TinyModelFiles

ADMIN, ALICE, BOB = ("admin", "pw-admin"), ("alice", "pw-a"), ("bob", "pw-b")
LORA_LAYER = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"


class RunsCode:
    """Unpickling this opens (creates) `marker`: stands for any code an attacker's pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    """--listen-style shared server: UI + API, logins, one admin, unsafe unpickling on, extensions."""
    root = tmp_path_factory.mktemp("shared")
    services = build_test_services(
        root,
        tiny_models,
        "--api",
        "--gradio-auth",
        "admin:pw-admin,alice:pw-a,bob:pw-b",
        "--admin-users",
        "admin",
        "--disable-safe-unpickle",
    )
    host = facade.bind(services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None)
    server = serve_app(services, build_app(services, extension_host=host))
    yield server
    server.stop()
    facade.unbind()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    """The default start: no logins, API only."""
    server = start_server(tmp_path_factory.mktemp("open"), tiny_models, "--nowebui")
    yield server
    server.stop()


def detail(response: httpx.Response) -> str:
    return str(response.json().get("detail"))


# --- 1. model references resolve only to listed files ---------------------------------------------


def test_an_uploaded_pickle_cannot_be_loaded_as_a_model(shared: LiveServer, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    control = tmp_path / "control.ckpt"
    torch.save({"state_dict": RunsCode(tmp_path / "control-ran")}, control)
    torch.load(control, weights_only=False)  # the payload is real: loading it runs code
    assert (tmp_path / "control-ran").exists()
    payload = io.BytesIO()
    torch.save({"state_dict": RunsCode(marker)}, payload)
    with shared.client(auth=ALICE) as alice, shared.client(auth=ADMIN) as admin:
        upload = alice.post("/gradio_api/upload", files={"files": ("evil.ckpt", payload.getvalue())})
        assert upload.status_code == 200, upload.text
        uploaded = upload.json()[0]
        assert Path(uploaded).is_file()  # Gradio hands back the server-side path
        ckpt_dir = shared.services.paths.ckpt_dir
        relative = os.path.relpath(uploaded, ckpt_dir)
        attempts = [
            {"override_settings": {"sd_model_checkpoint": uploaded}},
            {"override_settings": {"sd_model_checkpoint": relative}},
            {"override_settings": {"sd_vae": uploaded}},
            {"enable_hr": True, "hr_scale": 1.5, "hr_checkpoint_name": uploaded},
            {"refiner_checkpoint": uploaded, "refiner_switch_at": 0.5},
        ]
        for extra in attempts:
            r = alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, **extra})
            assert r.status_code in (400, 404), (extra, r.status_code, r.text)
        assert alice.post("/sdapi/v1/options", json={"sd_model_checkpoint": uploaded}).status_code == 403
        for key in ("sd_model_checkpoint", "sd_vae", "sd_refiner_checkpoint"):
            r = admin.post("/sdapi/v1/options", json={key: uploaded})
            assert r.status_code == 400 and key in detail(r), (key, r.text)
        assert not marker.exists()  # no code ran, for anyone
        config = shared.services.paths.config_file
        assert not config.exists() or uploaded not in config.read_text()
        # the answer does not tell whether a file outside the model folders exists
        existing = admin.post("/sdapi/v1/options", json={"sd_vae": "/etc/passwd"})
        missing = admin.post("/sdapi/v1/options", json={"sd_vae": "/etc/no-such-file"})
        assert existing.status_code == missing.status_code == 400
        assert detail(existing).replace("/etc/passwd", "X") == detail(missing).replace("/etc/no-such-file", "X")
        ok = alice.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG)
        assert ok.status_code == 200 and len(ok.json()["images"]) == 1


# --- 2. the extension index: admins, POST + JSON, http(s) or the configured file, streamed ------------


def _index(names: list[str]) -> str:
    entries = [{"name": n, "url": f"https://example.org/{n}.git", "tags": ["script"]} for n in names]
    return json.dumps({"tags": {"script": "Scripts"}, "extensions": entries})


class _EndlessIndex(http.server.BaseHTTPRequestHandler):
    sent = 0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        chunk = b" " * 65536
        try:
            while True:  # no Content-Length, never ends: only a streamed cap stops the reader
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except OSError:
            return

    def log_message(self, *args: Any) -> None:
        return


def test_extension_index_fetch_is_admin_only_and_refuses_local_files(
    shared: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = "/internal/extensions/available"
    with shared.client(auth=ALICE) as alice, shared.client(auth=ADMIN) as admin:
        assert admin.get(route, params={"url": "file:///etc/passwd"}).status_code in (404, 405)  # no GET route
        assert alice.post(route, json={"url": "https://example.org/index.json"}).status_code == 403
        form = admin.post(route, data={"url": "file:///etc/passwd"})  # what a cross-site form can send
        assert form.status_code == 415
        cross = admin.post(route, json={}, headers={"origin": "http://evil.example"})
        assert cross.status_code == 403
        answers = {}
        for url in ("file:///etc/passwd", "/etc/passwd", "file:///etc/no-such-file", "/dev/zero"):
            r = admin.post(route, json={"url": url})
            assert r.status_code == 400 and "root:" not in r.text, (url, r.text)
            answers[url] = detail(r)
        assert len(set(answers.values())) == 1  # same refusal whether the file exists or not
        assert "http(s)" in answers["/etc/passwd"]

        index_file = tmp_path / "index.json"
        index_file.write_text(_index(["one", "two"]))
        monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", str(index_file))  # the owner's configured local index
        listed = admin.post(route, json={"hide_installed": False})
        assert listed.status_code == 200
        assert [e["name"] for e in listed.json()["extensions"]] == ["one", "two"]
        monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", "/dev/zero")  # even a configured one: regular files only
        assert "not a regular file" in detail(admin.post(route, json={}))
        big = tmp_path / "big.json"
        with big.open("wb") as handle:  # sparse: 40 MB on paper, nothing on disk
            handle.truncate(MAX_INDEX_BYTES + 8 * 1024 * 1024)
        monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", str(big))
        assert "larger than" in detail(admin.post(route, json={}))

        _EndlessIndex.sent = 0
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessIndex)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            endless = admin.post(route, json={"url": f"http://127.0.0.1:{server.server_address[1]}/index.json"})
        finally:
            server.shutdown()
            server.server_close()
        assert endless.status_code == 400 and "larger than" in detail(endless)
        assert _EndlessIndex.sent < MAX_INDEX_BYTES + 16 * 1024 * 1024  # reading stopped at the cap


def test_extensions_tab_actions_are_for_admins(
    shared: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradio as gr

    from modules.extension_host.ui_tab import ADMINS_ONLY, ExtensionsTab, admins_only

    index_file = tmp_path / "index.json"
    index_file.write_text(_index(["toy"]))
    monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", str(index_file))
    tab = ExtensionsTab(facade.current())
    load = admins_only(tab, tab.available_html, gr)
    assert list(inspect.signature(load).parameters) == ["url", "tag", "hide_installed", "search", "request"]
    assert "toy" in load("", "", False, "", SimpleNamespace(username="admin"))
    assert load("", "", False, "", SimpleNamespace(username="alice")) == ADMINS_ONLY
    assert "http(s)" in load("file:///etc/passwd", "", False, "", SimpleNamespace(username="admin"))
    install = admins_only(tab, tab.install, gr, (ADMINS_ONLY, ""))
    assert install("https://example.org/x.git", "", "", SimpleNamespace(username="alice")) == (ADMINS_ONLY, "")
    remove = admins_only(tab, tab.remove, gr)
    assert remove("toy", SimpleNamespace(username="alice")) == ADMINS_ONLY


@pytest.mark.browser
def test_load_from_in_the_extensions_tab_works_for_the_admin(
    shared: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.ui_harness import chromium, require_browser

    require_browser()
    index_file = tmp_path / "index.json"
    index_file.write_text(_index(["toy-from-index"]))
    monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", str(index_file))
    with chromium() as context:
        for (user, password), expected in ((ADMIN, "toy-from-index"), (ALICE, "Only administrators")):
            context.clear_cookies()
            page = context.new_page()
            page.goto(shared.url + "/")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_selector("#txt2img_prompt textarea", timeout=60000)
            page.locator("#tabs [role=tablist]").first.get_by_role("tab", name="Extensions", exact=True).click()
            page.locator("#tabs_extensions").get_by_role("tab", name="Available", exact=True).click()
            page.click("#extensions_load")
            page.wait_for_function(
                "text => document.querySelector('#extensions_available_html').innerText.includes(text)",
                arg=expected,
                timeout=30000,
            )
            page.close()


# --- 4. settings are validated before saving; odd network files never break a job -----------------


def test_settings_are_checked_against_their_choices_before_saving(shared: LiveServer) -> None:
    config = shared.services.paths.config_file
    before = config.read_text() if config.exists() else ""
    with shared.client(auth=ADMIN) as admin:
        for body in (
            {"sd_vae": "/etc/passwd"},
            {"sd_vae": "/etc/passwd", "CLIP_stop_at_last_layers": 3},  # all or nothing
            {"samples_format": "exe"},
            {"sd_model_checkpoint": "../../../../etc/passwd"},
        ):
            r = admin.post("/sdapi/v1/options", json=body)
            assert r.status_code == 400, (body, r.text)
        stored = admin.get("/sdapi/v1/options").json()
        assert stored["sd_vae"] == "Automatic" and stored["CLIP_stop_at_last_layers"] == 1
        assert stored["samples_format"] == "png"
        assert (config.read_text() if config.exists() else "") == before
        ok = admin.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG)
        assert ok.status_code == 200 and len(ok.json()["images"]) == 1


def test_odd_and_broken_network_files_break_no_listing_or_job(shared: LiveServer) -> None:
    paths = shared.services.paths
    g = torch.Generator().manual_seed(0)
    lora = {
        f"{LORA_LAYER}.lora_down.weight": torch.randn(4, 32, generator=g),
        f"{LORA_LAYER}.lora_up.weight": torch.randn(64, 4, generator=g),
        f"{LORA_LAYER}.alpha": torch.tensor(4.0),
    }
    safetensors.torch.save_file(lora, str(paths.lora_dir / "v1²2.safetensors"))
    safetensors.torch.save_file(lora, str(paths.lora_dir / "v12.safetensors"))
    (paths.lora_dir / "broken.safetensors").write_bytes(b"not a safetensors file")
    safetensors.torch.save_file(
        {"emb_params": torch.randn(1, 32, generator=g)}, str(paths.embeddings_dir / "²7.safetensors")
    )
    (paths.embeddings_dir / "junk.pt").write_bytes(b"\x00garbage")
    with shared.client(auth=ALICE) as alice:
        assert alice.post("/sdapi/v1/refresh-loras").status_code == 200
        loras = alice.get("/sdapi/v1/loras")
        assert loras.status_code == 200
        assert {"v1²2", "v12"} <= {item["name"] for item in loras.json()}
        embeddings = alice.get("/sdapi/v1/embeddings")
        assert embeddings.status_code == 200
        assert "²7" in embeddings.json()["loaded"]
        for prompt in ("a ²7 cat <lora:v1²2:0.5>", "a cat <lora:broken:1>"):
            r = alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "prompt": prompt})
            assert r.status_code == 200 and len(r.json()["images"]) == 1, (prompt, r.text)
        warning = json.loads(r.json()["info"])["comments"]  # the broken file is skipped, and the user told
        assert "broken" in warning  # "Failed to find networks: broken": not listed, not fatal


def test_invalid_values_stored_by_an_older_version_are_replaced_at_start(
    tmp_path: Path, tiny_models: TinyModelFiles
) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(
        json.dumps({"sd_vae": "/etc/passwd", "sd_model_checkpoint": "/etc/passwd", "samples_format": "exe", "x": 1})
    )
    server = start_server(tmp_path, tiny_models, "--nowebui")
    try:
        replaced = server.services.options.replaced
        assert set(replaced) == {"sd_vae", "sd_model_checkpoint", "samples_format"}
        with server.client() as client:
            stored = client.get("/sdapi/v1/options").json()
            assert stored["sd_vae"] == "Automatic" and stored["samples_format"] == "png" and stored["x"] == 1
            r = client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG)
            assert r.status_code == 200 and len(r.json()["images"]) == 1
    finally:
        server.stop()


# --- 5. limits: prompt length, body size, nesting ----------------------------------------------------


def test_prompt_and_body_limits_answer_4xx(shared: LiveServer) -> None:
    options = shared.services.options
    assert options.get("api_max_request_body_mb") == 32.0 and options.get("api_max_prompt_length") == 20_000
    with shared.client(auth=ALICE) as alice:
        for field in ("prompt", "negative_prompt"):
            r = alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, field: "a" * 20_001})
            assert r.status_code == 400 and "api_max_prompt_length" in detail(r), r.text
        for opener, closer in (("(", ")"), ("[", "]")):
            nested = opener * 500 + "cat" + closer * 500
            r = alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "prompt": nested})
            assert r.status_code == 400 and "nests brackets" in detail(r), r.text
        fine = alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "prompt": "(" * 20 + "cat" + ")" * 20})
        assert fine.status_code == 200
        options.set("api_max_request_body_mb", 1.0)
        try:
            big = alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "styles": ["x" * 2_000_000]})
            assert big.status_code == 413 and "api_max_request_body_mb" in detail(big)
        finally:
            options.set("api_max_request_body_mb", 32.0)


# --- 6. client addresses, 429, task ids ----------------------------------------------------------------


@contextmanager
def one_job_waiting(server: LiveServer, client_ip: str) -> Iterator[httpx.Client]:
    """With api_max_queued_per_user = 1: a job running (held) and one waiting, both sent with
    X-Forwarded-For `client_ip`; yields a client once the queue is in that state."""
    hooks = BlockHooks()
    server.services.script_hooks.attach(hooks)
    server.services.options.set("api_max_queued_per_user", 1)
    threads: list[threading.Thread] = []

    def submit(prompt: str) -> None:
        with server.client() as client:
            body = {**TINY_TXT2IMG, "prompt": prompt}
            client.post("/sdapi/v1/txt2img", json=body, headers={"x-forwarded-for": client_ip})

    try:
        threads.append(threading.Thread(target=submit, args=("block",)))
        threads[0].start()
        assert hooks.blocked.wait(60)
        threads.append(threading.Thread(target=submit, args=("waits",)))
        threads[1].start()
        with server.client() as client:
            wait_for_waiting(client, 1)
            yield client
    finally:
        hooks.gate.set()
        for thread in threads:
            thread.join(60)
        server.services.script_hooks.detach()
        server.services.options.set("api_max_queued_per_user", 10)


def wait_for_waiting(client: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + 60
    while client.get("/internal/pending-tasks").json()["size"] != count:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_spoofed_forwarded_for_gets_no_extra_quota(open_server: LiveServer) -> None:
    with one_job_waiting(open_server, "10.0.0.1") as client:
        refused = [
            client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG, headers={"x-forwarded-for": f"10.0.1.{i}"})
            for i in range(24)
        ]
    assert [r.status_code for r in refused] == [429] * 24  # one real address, one quota
    assert all(int(r.headers["retry-after"]) > 0 for r in refused)


def test_forwarded_for_is_read_only_from_configured_proxies() -> None:
    proxies = TrustedProxies.parse("127.0.0.1, 10.1.0.0/16")
    assert proxies.client_from("127.0.0.1", "203.0.113.9") == "203.0.113.9"
    assert proxies.client_from("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3") == "203.0.113.9"  # right-most untrusted
    assert proxies.client_from("198.51.100.7", "203.0.113.9") == "198.51.100.7"  # not a proxy: header ignored
    assert proxies.client_from("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert TrustedProxies.parse(None).client_from("127.0.0.1", "203.0.113.9") == "127.0.0.1"  # default: none
    with pytest.raises(ValueError, match="forwarded-allow-ips"):
        TrustedProxies.parse("localhost")


def test_forwarded_for_from_a_configured_proxy_keys_the_quota(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    server = start_server(tmp_path, tiny_models, "--nowebui", "--forwarded-allow-ips", "127.0.0.1")

    def another_client() -> None:
        with server.client() as client:
            client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG, headers={"x-forwarded-for": "203.0.113.2"})

    other = threading.Thread(target=another_client)
    try:
        with one_job_waiting(server, "203.0.113.1") as client:
            same = client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG, headers={"x-forwarded-for": "203.0.113.1"})
            assert same.status_code == 429
            other.start()  # another client behind the proxy has its own quota
            wait_for_waiting(client, 2)
    finally:
        if other.is_alive():
            other.join(60)
        server.stop()


def test_spoofed_forwarded_for_does_not_bypass_the_login_lockout(shared: LiveServer) -> None:
    options = shared.services.options
    options.set("api_login_max_failures", 3)
    options.set("api_login_lockout_seconds", 2.0)
    try:
        with shared.client() as client:
            for i in range(3):
                r = client.get(
                    "/sdapi/v1/progress", auth=("alice", "wrong"), headers={"x-forwarded-for": f"10.9.0.{i}"}
                )
                assert r.status_code == 401
            locked = client.get("/sdapi/v1/progress", auth=ALICE, headers={"x-forwarded-for": "10.9.1.1"})
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
            deadline = time.monotonic() + 30
            while client.get("/sdapi/v1/progress", auth=ALICE).status_code == 429:  # the lockout ends
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        options.set("api_login_max_failures", 5)
        options.set("api_login_lockout_seconds", 60.0)


def test_another_users_task_id_answers_404(shared: LiveServer) -> None:
    task = {**TINY_TXT2IMG, "force_task_id": "task(alice-owned)"}
    with shared.client(auth=ALICE) as alice, shared.client(auth=BOB) as bob:
        assert alice.post("/sdapi/v1/txt2img", json=task).status_code == 200
        taken = bob.post("/sdapi/v1/txt2img", json=task)
        assert taken.status_code == 404 and "in use" not in taken.text
        again = alice.post("/sdapi/v1/txt2img", json=task)
        assert again.status_code == 400 and "already in use" in detail(again)


# --- 7. crash leftovers, full disk ----------------------------------------------------------------------


def test_crash_leftovers_are_removed_at_start(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    outputs = tmp_path / "outputs" / "txt2img-images" / "2026-12-07"
    ckpt = tmp_path / "models" / "Stable-diffusion"
    outputs.mkdir(parents=True)
    ckpt.mkdir(parents=True)
    leftovers = [
        tmp_path / ".config.json.k2j3h4.tmp",
        tmp_path / ".ui-config.json.a8s7d6.tmp",
        outputs / ".saving-x7c9v.png.tmp",
        ckpt / ".merged.safetensors.4194303.partial",  # its process is gone
        ckpt / f".merged2.safetensors.{os.getpid()}.partial",  # our pid from an earlier life
    ]
    kept = [
        outputs / "00001-1.png",
        tmp_path / ".hidden-notes.txt",
        ckpt / ".busy.safetensors.1.partial",  # pid 1 is alive: another process may be merging
    ]
    for path in leftovers + kept:
        path.write_bytes(b"x" * 1024)
    services = build_test_services(tmp_path, tiny_models, "--nowebui")
    services.jobs.shutdown(timeout=5)
    assert [p for p in leftovers if p.exists()] == []
    assert all(p.exists() for p in kept)


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_still_delivers_the_images_with_a_warning(
    open_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = open_server.services.paths.outputs_dir
    options = open_server.services.options
    options.set("samples_save", True)
    options.set("grid_save", True)
    monkeypatch.setattr(saving, "write_image_with_geninfo", _disk_full)  # every image write hits ENOSPC
    try:
        with open_server.client() as client:
            r = client.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "batch_size": 2, "save_images": True})
        assert r.status_code == 200, r.text
        images = [Image.open(io.BytesIO(base64.b64decode(b))) for b in r.json()["images"]]
        assert len(images) >= 2 and all(i.size == (64, 64) for i in images[-2:])  # both images arrive
        assert "saving failed" in json.loads(r.json()["info"])["comments"]
        assert [p for p in outputs.rglob("*") if p.is_file() and p.suffix in (".png", ".tmp")] == []
    finally:
        options.set("samples_save", False)
        options.set("grid_save", False)


def test_a_failed_settings_write_keeps_the_running_value(
    open_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = open_server.services.paths.config_file
    before = config.read_text() if config.exists() else None
    monkeypatch.setattr("modules.core.options.atomic_write_text", _disk_full)
    with open_server.client() as client:
        r = client.post("/sdapi/v1/options", json={"samples_format": "jpg", "CLIP_stop_at_last_layers": 2})
        assert r.status_code == 507 and "unchanged" in detail(r)
        stored = client.get("/sdapi/v1/options").json()
    assert stored["samples_format"] == "png" and stored["CLIP_stop_at_last_layers"] == 1
    assert (config.read_text() if config.exists() else None) == before


def test_options_update_is_all_or_nothing(tmp_path: Path) -> None:
    from modules.core.shared_options import core_registry

    options = Options(core_registry(), tmp_path / "config.json")
    options.add_resolver("sd_vae", lambda v: v if v in ("Automatic", "None") else _refuse(v))
    with pytest.raises(ValueError, match="sd_vae"):
        options.update({"CLIP_stop_at_last_layers": 2, "sd_vae": "/etc/passwd"})
    assert options.get("CLIP_stop_at_last_layers") == 1 and not (tmp_path / "config.json").exists()
    assert options.update({"CLIP_stop_at_last_layers": 2}) == ["CLIP_stop_at_last_layers"]
    assert json.loads((tmp_path / "config.json").read_text()) == {"CLIP_stop_at_last_layers": 2}
    with pytest.raises(OptionError, match="not a listed VAE"):  # every validation path runs the resolver
        coerce_value(options.registry["sd_vae"], "/etc/passwd")


def test_a_failed_save_rolls_the_running_values_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.core.shared_options import core_registry

    options = Options(core_registry(), tmp_path / "config.json")
    options.update({"samples_format": "webp"})
    options.set("samples_format", "jpg")  # the set-then-save pattern of older callers
    options.set("CLIP_stop_at_last_layers", 3)
    monkeypatch.setattr("modules.core.options.atomic_write_text", _disk_full)
    with pytest.raises(SettingsNotSaved, match="unchanged.*No space left"):
        options.save()
    assert options.get("samples_format") == "webp" and options.get("CLIP_stop_at_last_layers") == 1
    assert json.loads((tmp_path / "config.json").read_text()) == {"samples_format": "webp"}


def _refuse(value: Any) -> Any:
    raise OptionError(f"setting 'sd_vae': {value!r} is not a listed VAE")
