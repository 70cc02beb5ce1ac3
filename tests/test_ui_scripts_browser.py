"""Extensions in a real browser (Playwright + Debian's headless Chromium) against a live server with
toy extensions installed in a temp data dir: their JavaScript, tab and Extensions-tab rows, the
Script dropdown and always-on script sections in txt2img, and the Refiner accordion."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.generation.image_io import read_info_from_image
from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import (
    ARTIFACTS,
    UI_LOADED_TIMEOUT_MS,
    LiveServer,
    browser_data_dir,
    select_dropdown,
    set_number,
    start_with_extensions,
    without_time_taken,
)

pytestmark = [pytest.mark.browser]

FIXTURES = Path(__file__).parent / "extensions_fixtures"
INSTALLED = ("toy-ui", "toy-prompts", "toy-selectable", "toy-postprocess")
DISABLED = "toy-postprocess"
SD1, SDXL = "tiny-sd1", "tiny-sdxl"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    data = browser_data_dir(tmp_path_factory, tiny_models, "ui-ext", families=("sd1", "sdxl", "sdxl-refiner"))
    for name in INSTALLED:
        shutil.copytree(FIXTURES / name, data / "extensions" / name)
    (data / "config.json").write_text(json.dumps({"disabled_extensions": [DISABLED]}))
    with start_with_extensions(data, {"sd_model_checkpoint": SD1, "live_previews_enable": False}) as server:
        yield server


# --- helpers -----------------------------------------------------------------------------------------


def open_accordion(page: Any, elem_id: str) -> None:
    page.locator(f"#{elem_id} .label-wrap").first.click()


def open_tab(page: Any, label: str) -> None:
    page.locator("#tabs [role=tablist]").first.get_by_role("tab", name=label, exact=True).click()


def generate(page: Any, prompt: str, steps: int = 2) -> str:
    """A small txt2img job from the page; returns the generation info text once finished."""
    for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", steps)):
        set_number(page, elem_id, value)
    seed = time.monotonic_ns() % 1_000_000  # a new seed each time: the info text changes when the job ends
    set_number(page, "txt2img_seed", seed)
    page.locator("#txt2img_prompt textarea").fill(prompt)
    page.locator("#txt2img_generate").click()
    page.wait_for_function(
        "seed => { const el = document.querySelector('#html_info_txt2img');"
        " return el && (el.innerText.includes(`Seed: ${seed},`) || /Error/.test(el.innerText)); }",
        arg=seed,
        timeout=120000,
    )
    return without_time_taken(str(page.locator("#html_info_txt2img").inner_text()))


def last_saved_infotext(live: LiveServer) -> str:
    files = sorted((live.services.paths.outputs_dir / "txt2img-images").rglob("*.png"), key=lambda p: p.stat().st_mtime)
    assert files, "nothing saved in outputs/txt2img-images"
    from PIL import Image

    return read_info_from_image(Image.open(files[-1])).parameters or ""


# --- tests -------------------------------------------------------------------------------------------


def test_extension_javascript_runs_and_its_tab_shows(page: Any) -> None:
    assert page.evaluate("() => document.body.getAttribute('data-toy-ui-loaded')") == "yes"  # onUiLoaded ran
    assert page.locator("#toy_js_marker").count() == 1
    open_tab(page, "Toy tab")
    page.wait_for_selector("#toy_tab_text textarea", state="visible", timeout=10000)
    assert page.locator("#toy_tab_text textarea").input_value() == "toy tab content"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tab_toy_extension.png"), full_page=True)
    assert page.console_errors == []


def test_extensions_tab_lists_installed_extensions_with_their_state(page: Any) -> None:
    open_tab(page, "Extensions")
    table = page.locator("#extensions_installed_table")
    table.wait_for(state="visible", timeout=10000)
    rows = table.locator("tr").all_inner_texts()
    state = {r.split("\t")[0].strip(): r.split("\t")[1].strip() for r in rows[1:]}
    assert state == {"toy-postprocess": "no", "toy-prompts": "yes", "toy-selectable": "yes", "toy-ui": "yes"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tab_extensions.png"), full_page=True)
    assert page.console_errors == []


def test_choosing_a_script_shows_its_controls_and_generate_runs_it(page: Any, live: LiveServer) -> None:
    label = page.locator("#script_txt2img_toy_run_label textarea")
    assert not label.is_visible()  # hidden until chosen
    select_dropdown(page, "txt2img_script_list", "Toy run")
    label.wait_for(state="visible", timeout=10000)
    label.fill("from the browser")
    info = generate(page, "a red circle")
    assert "Toy run: from the browser" in info and "Toy kind: txt2img" in info
    assert "Toy run: from the browser" in last_saved_infotext(live)
    select_dropdown(page, "txt2img_script_list", "None")
    label.wait_for(state="hidden", timeout=10000)
    assert "Toy run" not in generate(page, "a red circle")
    assert page.console_errors == []


def test_alwayson_script_control_changes_the_result(page: Any) -> None:
    plain = generate(page, "a red circle")
    assert "Toy suffix" not in plain
    open_accordion(page, "script_txt2img_prompt_suffix_accordion")
    page.locator("#script_txt2img_prompt_suffix_enabled input").check()
    page.locator("#script_txt2img_prompt_suffix_suffix textarea").fill("zebra")
    info = generate(page, "a red circle")
    assert info.strip().startswith("a red circle, zebra") and "Toy suffix: zebra" in info
    assert page.console_errors == []


def test_refiner_accordion_switches_models_and_pastes_back(page: Any, live: LiveServer) -> None:
    live.services.options.set("sd_model_checkpoint", SDXL)  # an SDXL base for the SDXL refiner
    try:
        open_accordion(page, "txt2img_enable")
        page.locator("#txt2img_enable-checkbox input").check()
        title = next(c.title for c in live.services.models.list_checkpoints() if c.title.startswith(f"{SDXL}-refiner"))
        select_dropdown(page, "txt2img_checkpoint", title)
        set_number(page, "txt2img_switch_at", 0.5)
        info = generate(page, "a tree", steps=4)
    finally:
        live.services.options.set("sd_model_checkpoint", SD1)
    assert f"Model: {SDXL}, Refiner: {SDXL}-refiner" in info and "Refiner switch at: 0.5" in info
    page.reload(wait_until="load")
    page.wait_for_function("() => window.__uiLoadedFired === true", timeout=UI_LOADED_TIMEOUT_MS)
    page.locator("#txt2img_prompt textarea").fill(info.strip())
    page.locator("#txt2img_paste").click()  # the accordion opens by itself once the checkbox turns on
    page.wait_for_function(
        "() => document.querySelector('#txt2img_enable-checkbox input')?.checked === true", timeout=10000
    )
    current_title = live.services.models.find_checkpoint(f"{SDXL}-refiner").title  # now with its hash
    assert page.locator("#txt2img_checkpoint input").first.input_value() == current_title
    assert page.locator("#txt2img_switch_at input[type=number]").first.input_value() == "0.5"
    assert page.console_errors == []
