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
from tests.ui_harness import LiveServer, browser_data_dir, select_dropdown, set_number, start_with_extensions
from tools.demo.dataset import Scene, render

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    data = browser_data_dir(tmp_path_factory, tiny_models, "ui-parity", families=())  # demo model only
    with start_with_extensions(data, {"live_previews_enable": False}, core_scripts_dir=REPO_ROOT / "scripts") as server:
        yield server


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
