"""The ControlNet accordion in a browser: upload a control image, pick canny, preview it, generate,
and the infotext has the unit."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from modules.extension_host import facade
from tests.fixtures_models import *  # noqa: F403
from tests.fixtures_models import TinyModelFiles
from tests.test_builtin_scripts import _live_app, _pick  # webui.py's start-up with the built-in scripts

UNIT = "txt2img_controlnet_ControlNet-0_"


@pytest.mark.browser
def test_controlnet_unit_from_the_page(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    from tests.ui_harness import ARTIFACTS, chromium, open_page, prepare_data_dir, require_browser
    from tools.tiny_controlnets import write_tiny_controlnets

    require_browser()
    data_dir = prepare_data_dir(tmp_path, tiny_models, families=("sd1",))
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    control = tmp_path / "control.png"
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="black")
    image.save(control)
    live = _live_app(data_dir)
    try:
        with chromium() as context:
            errors: list[str] = []
            page = open_page(context, live.url, errors)
            page.locator("#txt2img_controlnet").get_by_text("ControlNet (built in)").first.click()
            page.locator(f"#{UNIT}input_image input[type=file]").set_input_files(str(control))
            page.locator(f"#{UNIT}controlnet_enable_checkbox input").check()
            _pick(page, f"{UNIT}controlnet_preprocessor_dropdown", "canny")
            page.locator(f"#{UNIT}controlnet_threshold_A_slider").wait_for(state="visible", timeout=10000)
            title = next(t for t in live.services.controlnet.model_titles() if t.startswith("tiny-control-sd1 ["))
            _pick(page, f"{UNIT}controlnet_model_dropdown", title)
            page.locator(f"#{UNIT}controlnet_trigger_preprocessor").click()
            preview = page.locator(f"#{UNIT}generated_image img")
            preview.wait_for(state="visible", timeout=60000)
            src = preview.get_attribute("src") or ""
            assert src, "the preview shows the canny map"
            for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 3)):
                box = page.locator(f"#{elem_id} input[type=number]").first
                box.fill(str(value))
                box.press("Enter")
            page.locator("#txt2img_prompt textarea").fill("a cat")
            page.locator("#txt2img_generate").click()
            page.wait_for_function(
                "() => /Steps: |Error/.test(document.querySelector('#html_info_txt2img')?.innerText || '')",
                timeout=180000,
            )
            info = page.locator("#html_info_txt2img").inner_text()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "controlnet_unit.png"), full_page=True)
            assert f'ControlNet 0: "Module: canny, Model: {title}, Weight: 1,' in info
            assert "ControlNet 1" not in info  # the second unit stays off
            assert errors == []
    finally:
        live.stop()
        facade.unbind()
