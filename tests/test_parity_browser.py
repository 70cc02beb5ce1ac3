"""In a real browser on the built-in demo model: img2img's Interrogate CLIP button writes the
demo interrogator's caption into the prompt, and an A1111 img2img script (Loopback) chosen in the
Script dropdown runs with its controls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.core.paths import REPO_ROOT
from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import (
    LiveServer,
    checked_page,
    chromium,
    free_port,
    prepare_data_dir,
    require_browser,
    select_dropdown,
    serve,
    set_number,
)
from tools.demo.dataset import Scene, render

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.extension_host import facade
    from modules.server import build_app

    require_browser()
    data = prepare_data_dir(tmp_path_factory.mktemp("ui-parity"), tiny_models, families=())  # demo model only
    port = free_port()
    services = build_services(parse_args(["--data-dir", str(data), "--port", str(port)]), policy=DevicePolicy.cpu())
    services.options.set("live_previews_enable", False)
    host = facade.bind(
        services, run_installers=False, builtin_dir=data / "none", core_scripts_dir=REPO_ROOT / "scripts"
    )
    server = serve(build_app(services, extension_host=host), services, port)
    try:
        yield server
    finally:
        server.stop()
        facade.unbind()


@pytest.fixture(scope="module")
def browser_context(live: LiveServer) -> Iterator[Any]:
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser_context: Any, live: LiveServer) -> Iterator[Any]:
    yield from checked_page(browser_context, live.url)


def upload_red_circle(page: Any, tmp_path: Path) -> None:
    path = tmp_path / "red-circle.png"
    render(Scene("circle", "red", "large", "center", "white"), 128).save(path)
    page.locator("#tabs [role=tablist]").first.get_by_role("tab", name="img2img", exact=True).click()
    page.locator("#img2img_image input[type=file]").first.set_input_files(str(path))
    page.wait_for_selector("#img2img_image img", timeout=20000)


def test_interrogate_clip_button_fills_the_prompt(page: Any, tmp_path: Path) -> None:
    upload_red_circle(page, tmp_path)
    prompt = page.locator("#img2img_prompt textarea")
    prompt.fill("")
    page.locator("#interrogate").click()
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value !== ''", timeout=120000)
    assert prompt.input_value() == "a red circle"
    page.locator("#deepbooru").click()
    page.wait_for_function(
        "() => document.querySelector('#img2img_prompt textarea').value.includes(',')", timeout=120000
    )
    assert {"circle", "red"} <= {t.strip() for t in prompt.input_value().split(",")}
    assert page.locator("#txt2img_paste").count() == 1 and page.locator("#img2img_paste").count() == 1
    assert page.console_errors == []


def test_loopback_script_runs_from_the_dropdown(page: Any, tmp_path: Path) -> None:
    upload_red_circle(page, tmp_path)
    page.locator("#img2img_prompt textarea").fill("a red circle")
    select_dropdown(page, "img2img_script_list", "Loopback")
    page.locator("#script_loopback_loops").wait_for(state="visible", timeout=10000)
    set_number(page, "script_loopback_loops", 2)
    set_number(page, "img2img_steps", 4)
    page.locator("#img2img_generate").click()
    page.wait_for_function(
        "() => /Denoising curve|Error/.test(document.querySelector('#html_info_img2img')?.innerText || '')",
        timeout=180000,
    )
    info = page.locator("#html_info_img2img").inner_text()
    assert "Final denoising strength: 0.5" in info and "Denoising curve: Linear" in info
    assert page.locator("#img2img_gallery .thumbnail-item").count() == 3  # the grid and both loops
    assert page.console_errors == []
