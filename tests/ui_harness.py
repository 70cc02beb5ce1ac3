"""Browser-test set-up: a live server over tiny models (uvicorn in a thread) and headless Chromium.

Chromium is Debian's (/usr/bin/chromium, driven by the `playwright` package); tests that need it
are skipped with a clear reason when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_models import TinyModelFiles, link_into, models_home

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
UI_LOADED_TIMEOUT_MS = 180000
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"


def browser_available() -> str | None:
    """None when browser tests can run, else why not."""
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -r requirements-test.txt)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_data_dir(root: Path, tiny: TinyModelFiles, families: tuple[str, ...] = ("sd1", "sd1-inpaint")) -> Path:
    paths = models_home(root)
    for family in families:
        target = paths.ckpt_dir / tiny.checkpoint(family).name
        if not target.exists():
            link_into(paths.ckpt_dir, tiny.checkpoint(family))
    return root


def browser_data_dir(
    tmp_path_factory: pytest.TempPathFactory,
    tiny: TinyModelFiles,
    name: str,
    families: tuple[str, ...] = ("sd1", "sd1-inpaint"),
) -> Path:
    """For a browser module's `live` fixture: skips without Chromium, else a fresh data dir with
    the tiny checkpoints of `families` (none: the built-in demo model only)."""
    require_browser()
    return prepare_data_dir(tmp_path_factory.mktemp(name), tiny, families)


@dataclass
class LiveServer:
    url: str
    services: Any
    server: Any
    thread: threading.Thread
    bound_extension_host: bool = False

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.services.jobs.shutdown(timeout=5)
        if self.bound_extension_host:
            from modules.extension_host import facade

            facade.unbind()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(data_dir: Path, *extra_args: str) -> LiveServer:
    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.server import build_app

    port = free_port()
    args = parse_args(["--data-dir", str(data_dir), "--port", str(port), *extra_args])
    services = build_services(args, policy=DevicePolicy.cpu())
    return serve(build_app(services), services, port)


def serve(app: Any, services: Any, port: int) -> LiveServer:
    """Run `app` on a real uvicorn server on 127.0.0.1:`port` in a thread, once it accepts requests."""
    import uvicorn

    from modules.api.proxies import UVICORN_OPTIONS

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        **UVICORN_OPTIONS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return LiveServer(f"http://127.0.0.1:{port}/", services, server, thread)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium; yields (context, console_errors)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context
        finally:
            browser.close()


def checked_page(context: Any, url: str) -> Iterator[Any]:
    """For a `page` fixture: the opened UI page with its console errors as `.console_errors`."""
    errors: list[str] = []
    opened = open_page(context, url, errors)
    opened.console_errors = errors
    yield opened
    opened.close()


def open_page(context: Any, url: str, errors: list[str], init_script: str | None = None) -> Any:
    """A new page on the UI once onUiLoaded ran; `init_script` runs before the page's own scripts."""
    page = context.new_page()
    if init_script is not None:
        page.add_init_script(init_script)
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url, wait_until="load")
    page.wait_for_selector("#txt2img_prompt textarea", state="attached", timeout=UI_LOADED_TIMEOUT_MS)
    # onUiLoaded ran (after every tab was drawn once: slow on a busy machine)
    page.wait_for_function("() => window.__uiLoadedFired === true", timeout=UI_LOADED_TIMEOUT_MS)
    return page


def start_with_extensions(data_dir: Path, options: dict[str, Any], core_scripts_dir: Path | None = None) -> LiveServer:
    """What webui.py does with the extensions in data_dir/extensions: preload flags, bind the
    extension host (no installers, no built-in extensions; A1111's scripts/ when
    `core_scripts_dir` names it), build the app, serve it; `options` set first. Stopping the
    server unbinds the host."""
    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.extension_host import facade
    from modules.extension_host.preload import collect_preload_hooks
    from modules.server import build_app

    port = free_port()
    preload = collect_preload_hooks(data_dir)
    args = parse_args(["--data-dir", str(data_dir), "--port", str(port)], preload_hooks=preload.hooks)
    services = build_services(args, policy=DevicePolicy.cpu())
    for key, value in options.items():
        services.options.set(key, value)
    host = facade.bind(
        services,
        run_installers=False,
        builtin_dir=data_dir / "no-builtins",
        core_scripts_dir=core_scripts_dir,
        preload=preload,
    )
    server = serve(build_app(services, extension_host=host), services, port)
    server.bound_extension_host = True
    return server


# --- fixtures for browser test modules (registered as a pytest plugin in conftest.py); each module
# defines its own module-scoped `live` server fixture.


@pytest.fixture(scope="module")
def browser_context(live: LiveServer) -> Iterator[Any]:
    """One Chromium context per test module, opened once the module's live server runs."""
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser_context: Any, live: LiveServer) -> Iterator[Any]:
    """A freshly loaded UI page per test, its console errors in `.console_errors`."""
    yield from checked_page(browser_context, live.url)


def require_browser() -> None:
    reason = browser_available()
    if reason is not None:
        pytest.skip(reason)


def set_number(page: Any, elem_id: str, value: float) -> None:
    """Type a value into a Gradio number/slider box and commit it."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def select_dropdown(page: Any, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=value, exact=True).first.click()


def without_time_taken(info: str) -> str:
    """The infotext shown under a result without A1111's "Time taken" footer after it."""
    return info.split("Time taken:")[0].rstrip()
