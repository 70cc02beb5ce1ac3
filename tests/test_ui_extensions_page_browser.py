"""The page A1111 extensions expect, in a real browser (Playwright + Debian's Chromium), with the
toy-gradio3 extension installed: every tab panel and A1111's selectors and JS globals at
onUiLoaded, its Gradio 3 UI code rendered and working (ToolButton labels, `_js=` + `gr.X.update`,
`.then(_js=...)`, `Blocks.load(_js=...)`), its hover titles."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import (
    ARTIFACTS,
    LiveServer,
    browser_data_dir,
    checked_page,
    chromium,
    start_with_extensions,
)

pytestmark = [pytest.mark.browser]

FIXTURES = Path(__file__).parent / "extensions_fixtures"
A1111_PANELS = ("txt2img", "img2img", "extras", "pnginfo", "modelmerger", "train", "settings", "extensions")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    data = browser_data_dir(tmp_path_factory, tiny_models, "ui-page")
    shutil.copytree(FIXTURES / "toy-gradio3", data / "extensions" / "toy-gradio3")
    with start_with_extensions(data, {"live_previews_enable": False}) as server:
        yield server


@pytest.fixture(scope="module")
def page(live: LiveServer) -> Iterator[Any]:
    with chromium() as context:
        yield from checked_page(context, live.url)


def open_tab(page: Any, label: str) -> None:
    page.locator("#tabs [role=tablist]").first.get_by_role("tab", name=label, exact=True).click()


def test_every_tab_selector_and_global_is_there_at_ui_loaded(page: Any) -> None:
    found = page.evaluate("() => window.toyGradio3AtLoad")
    assert found["panels"] == {**dict.fromkeys(A1111_PANELS, True), "toy_g3_tab": True}
    assert all(found["selectors"].values()), found["selectors"]
    assert {name: kind for name, kind in found["globals"].items() if kind not in ("function", "object")} == {}
    assert found["currentTab"] == "txt2img" and found["modelOption"] == "string"  # opts were read
    # the other panels are there but hidden, as in A1111; the page shows txt2img
    assert page.locator("#img2img_prompt").count() == 1 and not page.locator("#img2img_prompt").is_visible()
    assert page.locator("#txt2img_prompt > label > textarea").is_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page_at_ui_loaded.png"))
    assert page.console_errors == []


def test_gradio3_controls_render_with_their_labels_and_run(page: Any) -> None:
    page.locator("#toy_g3_txt2img .label-wrap").first.click()  # the InputAccordion
    tool = page.locator("#toy_g3_tool_txt2img")
    tool.wait_for(state="visible", timeout=10000)
    assert (
        tool.inner_text().strip() == "Toy swap" and page.locator("#toy_g3_handmade_txt2img").inner_text() == "Toy shout"
    )
    page.wait_for_function("() => document.querySelector('#toy_g3_tool_txt2img').title === 'Toy: pick a'")
    assert page.locator("#toy_g3_box_txt2img").count() >= 1 and page.locator("#toy_g3_row_txt2img").count() >= 1
    assert page.locator("#toy_g3_multi_txt2img").inner_text().count("x") >= 1
    page.locator("#toy_g3_words_txt2img textarea").fill("hello there")
    page.locator("#toy_g3_handmade_txt2img").click()  # _js upper-cases, the Python fn adds "!"
    result = page.locator("#toy_g3_result_txt2img textarea")
    page.wait_for_function("() => document.querySelector('#toy_g3_result_txt2img textarea').value === 'HELLO THERE!'")
    page.wait_for_function("() => document.body.dataset.toyG3Then === 'yes'")  # .then(_js=...)
    assert result.input_value() == "HELLO THERE!"
    tool.click()  # gr.Dropdown.update(value="a") from the handler
    page.wait_for_function("() => document.querySelector('#toy_g3_choice_txt2img input').value === 'a'")
    page.screenshot(path=str(ARTIFACTS / "extension_gradio3_controls.png"))
    assert page.console_errors == []


def test_gradio3_tab_of_an_extension_shows(page: Any) -> None:
    assert page.evaluate("() => document.body.dataset.toyG3Load") == "yes"  # Blocks.load(_js=...)
    open_tab(page, "Toy Gradio 3")
    text = page.locator("#toy_g3_tab_text textarea")
    text.wait_for(state="visible", timeout=10000)
    assert text.input_value() == "gradio 3 tab"
    open_tab(page, "img2img")
    page.locator("#img2img_prompt > label > textarea").wait_for(state="visible", timeout=10000)
    page.screenshot(path=str(ARTIFACTS / "extension_gradio3_img2img.png"))
    assert page.console_errors == []
