"""A real uvicorn server on 127.0.0.1 (free port, own thread) over tiny models, for API tests."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from PIL import Image

from modules.api.context import ServerControl
from modules.api.proxies import UVICORN_OPTIONS
from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.generation.hooks import ScriptHooks
from modules.server import build_app
from modules.services import Services
from tests.fixtures_models import TinyModelFiles, link_into, models_home

SD1 = "tiny-sd1"
FAST_SETTINGS: dict[str, Any] = {
    "sd_model_checkpoint": SD1,
    "sd_checkpoint_cache": 2,
    "samples_save": False,
    "grid_save": False,
    "live_previews_enable": False,
}


class BlockHooks(ScriptHooks):
    """Script hooks that hold a job whose prompt is "block" until `gate` is set (to fill a queue)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.blocked = threading.Event()

    def process_batch(self, p: Any, **kwargs: Any) -> None:
        if p.prompt == "block":
            self.blocked.set()
            assert self.gate.wait(60)


@dataclass
class LiveServer:
    url: str
    services: Services
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, auth: tuple[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth, timeout=120, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def make_data_dir(root: Path, tiny: TinyModelFiles, families: Sequence[str] = ("sd1",)) -> Path:
    paths = models_home(root)
    for family in families:
        link_into(paths.ckpt_dir, tiny.checkpoint(family))
    return root


def start_server(
    root: Path,
    tiny: TinyModelFiles,
    *flags: str,
    settings: dict[str, Any] | None = None,
    server_control: ServerControl | None = None,
    hostname: str | None = None,
    extension_host: Any = None,
) -> LiveServer:
    services = build_test_services(root, tiny, *flags, settings=settings)
    app = build_app(services, server_control=server_control, hostname=hostname, extension_host=extension_host)
    return serve_app(services, app)


def build_test_services(
    root: Path, tiny: TinyModelFiles, *flags: str, settings: dict[str, Any] | None = None
) -> Services:
    """The services of a test server over `root` (tiny models linked in), with FAST_SETTINGS."""
    make_data_dir(root, tiny)
    args = parse_args(["--data-dir", str(root), "--port", "0", *flags])
    services = build_services(args, policy=DevicePolicy.cpu())
    for key, value in {**FAST_SETTINGS, **(settings or {})}.items():
        services.options.set(key, value)
    return services


def serve_app(services: Services, app: FastAPI) -> LiveServer:
    """Run `app` on a real uvicorn server (free port, own thread) once it accepts requests."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        **UVICORN_OPTIONS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(f"http://127.0.0.1:{port}", services, app, server, thread)


@contextmanager
def running_server(root: Path, tiny: TinyModelFiles, *flags: str, **kwargs: Any) -> Iterator[LiveServer]:
    live = start_server(root, tiny, *flags, **kwargs)
    try:
        yield live
    finally:
        live.stop()


def b64_png(image: Image.Image, text: str | None = None) -> str:
    buffer = io.BytesIO()
    if text is not None:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode_b64(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def gradient(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size))
    image.putdata([(x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256) for y in range(size) for x in range(size)])
    return image


TINY_TXT2IMG: dict[str, Any] = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": 1}
