"""Hostile input: Host header (DNS rebinding), cross-origin requests, path traversal, image URLs,
folder settings, security headers, local-only binding by default."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modules.api.files import resolve_served_file
from modules.api.security import HostPolicy, OriginPolicy, same_origin, split_host_port
from modules.api.url_inputs import UrlInputError, UrlPolicy, checked_address, fetch_url, is_public_address
from modules.core.cmd_args import bind_host, parse_args
from tests.api_server import TINY_TXT2IMG, LiveServer, gradient, start_server
from tests.fixtures_models import TinyModelFiles

GOOD_ORIGIN = "http://good.example"


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shared")
    (folder / "asset.txt").write_text("shared asset")
    return folder


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles, shared_dir: Path
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("hardening")
    server = start_server(
        root,
        tiny_models,
        "--api",
        "--cors-allow-origins",
        GOOD_ORIGIN,
        "--gradio-allowed-path",
        str(shared_dir),
        "--hide-ui-dir-config",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


# --- Host header -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/sdapi/v1/samplers", "/login", "/docs", "/file=x"])
def test_foreign_host_header_is_refused(client: httpx.Client, path: str) -> None:
    r = client.get(path, headers={"host": "evil.example"})
    assert r.status_code == 400 and r.json()["error"] == "InvalidHost"
    assert client.get(path, headers={"host": "evil.example:7860"}).status_code == 400


def test_local_names_and_ip_literals_are_accepted(live: LiveServer, client: httpx.Client) -> None:
    for host in (f"localhost:{live.port}", f"127.0.0.1:{live.port}", "[::1]", "192.168.1.20:7860"):
        assert client.get("/sdapi/v1/samplers", headers={"host": host}).status_code == 200, host


def test_host_policy_from_flags() -> None:
    local = HostPolicy.from_args(parse_args([]), hostname="gpu-box")
    assert local.allows("localhost:7860") and local.allows("127.0.0.1") and local.allows("[::1]:7860")
    assert not local.allows("gpu-box") and not local.allows("evil.example") and not local.allows(None)
    shared = HostPolicy.from_args(parse_args(["--listen", "--allowed-hosts", "sd.lan,.corp.example"]), "gpu-box")
    for ok in ("gpu-box:7860", "gpu-box.local", "sd.lan", "x.corp.example", "10.0.0.7:7860"):
        assert shared.allows(ok), ok
    for bad in ("evil.example", "corp.example.evil.example", "gpu-box.evil.example"):
        assert not shared.allows(bad), bad
    assert HostPolicy.from_args(parse_args(["--allowed-hosts", "*"])).allows("anything.example")
    named = HostPolicy.from_args(parse_args(["--server-name", "Studio.Home"]), "x")
    assert named.allows("studio.home:7860")
    assert split_host_port("[::1]:80") == ("::1", 80) and split_host_port("A.B:1") == ("a.b", 1)


# --- cross-origin ----------------------------------------------------------------------------------


def test_cross_origin_requests_are_refused(client: httpx.Client, live: LiveServer) -> None:
    evil = {"origin": "http://evil.example"}
    post = client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG, headers=evil)
    assert post.status_code == 403 and post.json()["error"] == "CrossOriginRefused"
    preflight = client.options("/sdapi/v1/txt2img", headers={**evil, "access-control-request-method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert client.get("/sdapi/v1/options", headers=evil).status_code == 403
    assert client.post("/login", data={"username": "a", "password": "b"}, headers={"origin": "null"}).status_code == 403


def test_same_origin_and_allowed_origins_pass(client: httpx.Client, live: LiveServer) -> None:
    same = client.get("/sdapi/v1/samplers", headers={"origin": live.url})
    assert same.status_code == 200
    allowed = client.options(
        "/sdapi/v1/txt2img", headers={"origin": GOOD_ORIGIN, "access-control-request-method": "POST"}
    )
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == GOOD_ORIGIN
    simple = client.get("/sdapi/v1/samplers", headers={"origin": GOOD_ORIGIN})
    assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == GOOD_ORIGIN


def test_origin_rules() -> None:
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same_origin("https://sd.example", "sd.example")  # TLS proxy: default ports
    assert not same_origin("http://127.0.0.1:7861", "127.0.0.1:7860")
    assert not same_origin("null", "127.0.0.1") and not same_origin("http://a", None)
    regex = OriginPolicy.from_args(parse_args(["--cors-allow-origins-regex", r"https://.*\.trusted\.example"]))
    assert regex.allows("https://app.trusted.example", "x") and not regex.allows("https://trusted.example.evil", "x")
    assert OriginPolicy().allows(None, "x")  # scripts send no Origin


# --- headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/sdapi/v1/samplers", "/sdapi/v1/no-such", "/docs"])
def test_security_headers_everywhere(client: httpx.Client, path: str) -> None:
    headers = client.get(path).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "SAMEORIGIN" and headers["referrer-policy"] == "same-origin"


# --- file serving ----------------------------------------------------------------------------------


def test_file_route_serves_outputs_and_allowed_folders_only(
    live: LiveServer, client: httpx.Client, shared_dir: Path
) -> None:
    outputs = live.services.paths.outputs_dir
    (outputs / "txt2img-images").mkdir(parents=True, exist_ok=True)
    image = outputs / "txt2img-images" / "00001.png"
    gradient(8).save(image)
    secret = live.services.paths.data_dir / "secret.txt"
    secret.write_text("do not serve")
    os.symlink(secret, outputs / "link.txt")
    assert client.get(f"/file={image}").status_code == 200
    assert client.get("/file=outputs/txt2img-images/00001.png").content == image.read_bytes()
    assert client.get(f"/file={shared_dir / 'asset.txt'}").text == "shared asset"
    refused = [
        "/file=../../../../etc/passwd",
        "/file=%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/file=outputs/../secret.txt",
        "/file=outputs/..%2fsecret.txt",
        f"/file={secret}",
        "/file=/etc/passwd",
        "/file=outputs/link.txt",  # a symlink out of the folder
        f"/file={live.services.paths.config_file}",
    ]
    for path in refused:
        status, body = raw_get(live, path)
        assert status == 403 and b"do not serve" not in body and b"root:" not in body, (path, status)
    assert client.get("/file=outputs/missing.png").status_code == 404


def raw_get(live: LiveServer, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (HTTP clients would normalise '..' away)."""
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../etc/passwd",
        "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/file=secret.txt",
    ],
)
def test_gradio_file_route_refuses_other_files(live: LiveServer, path: str) -> None:
    status, body = raw_get(live, path)
    assert status in (400, 403, 404) and b"root:" not in body and b"do not serve" not in body


def test_resolve_served_file_units(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    assert resolve_served_file("out/a.png", tmp_path, [root]) == root / "a.png"
    with pytest.raises(Exception, match="not in a folder"):
        resolve_served_file("out/../out2/a.png", tmp_path, [root])
    with pytest.raises(Exception, match="invalid file path"):
        resolve_served_file("out/a\x00.png", tmp_path, [root])


# --- image URLs ------------------------------------------------------------------------------------


def test_image_urls_are_disabled_by_default(client: httpx.Client, live: LiveServer) -> None:
    payload = {**TINY_TXT2IMG, "init_images": [f"{live.url}/file=outputs/x.png"]}
    r = client.post("/sdapi/v1/img2img", json=payload)
    assert r.status_code == 400 and "api_enable_requests" in r.json()["detail"]
    assert client.post("/sdapi/v1/options", json={"api_enable_requests": True}).status_code == 200
    assert live.services.options.get("api_enable_requests") is False  # not settable through the API


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/x.png",
        "http://localhost/x.png",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://10.1.2.3/x",
    ],
)
def test_enabled_image_urls_never_reach_private_addresses(client: httpx.Client, live: LiveServer, url: str) -> None:
    live.services.options.set("api_enable_requests", True)
    live.services.options.set("api_forbid_local_requests", False)  # cannot open local addresses either
    try:
        r = client.post("/sdapi/v1/img2img", json={**TINY_TXT2IMG, "init_images": [url]})
        assert r.status_code == 400 and "not a public address" in r.json()["detail"]
    finally:
        live.services.options.set("api_enable_requests", False)
        live.services.options.set("api_forbid_local_requests", True)


def test_address_checks() -> None:
    for private in (
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ):
        assert not is_public_address(private), private
    assert is_public_address("93.184.216.34") and is_public_address("2606:2800:220:1::1")
    resolver = {"rebind.example": ["93.184.216.34", "10.0.0.5"], "ok.example": ["93.184.216.34"]}
    with pytest.raises(UrlInputError, match="10.0.0.5"):
        checked_address("rebind.example", 80, lambda h, p: resolver[h])
    assert checked_address("ok.example", 80, lambda h, p: resolver[h]) == "93.184.216.34"
    with pytest.raises(UrlInputError, match="disabled"):
        fetch_url("http://ok.example/x.png", UrlPolicy(enabled=False))
    with pytest.raises(UrlInputError, match="not an http"):
        fetch_url("file:///etc/passwd", UrlPolicy(enabled=True))


# --- folder settings, binding ----------------------------------------------------------------------


def test_folder_settings_locked_through_the_api(client: httpx.Client, live: LiveServer) -> None:
    r = client.post("/sdapi/v1/options", json={"outdir_samples": "/tmp/anywhere"})
    assert r.status_code == 403 and "outdir_samples" in r.json()["detail"]
    payload = {**TINY_TXT2IMG, "override_settings": {"outdir_txt2img_samples": "/tmp/x"}, "save_images": True}
    assert client.post("/sdapi/v1/txt2img", json=payload).status_code == 403
    assert live.services.options.get("outdir_samples") == ""


def test_binds_to_localhost_unless_listen() -> None:
    assert bind_host(parse_args([])) == "127.0.0.1"
    assert bind_host(parse_args(["--listen"])) == "0.0.0.0"
    assert bind_host(parse_args(["--server-name", "10.0.0.2"])) == "10.0.0.2"
