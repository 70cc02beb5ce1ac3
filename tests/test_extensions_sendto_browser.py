"""toy-sendto in a real browser: an extension's "Send to" buttons (A1111's bind_buttons /
register_paste_params_button) move its image and infotext into the core tabs, its extra networks
page shows as a tab of cards that insert their prompt, and its event handlers answer with Gradio 3
updates at request time."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui_harness import LiveServer, checked_page, chromium, require_browser, start_with_extensions

pytestmark = [pytest.mark.browser]

FIXTURES = Path(__file__).parent / "extensions_fixtures"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from modules.extension_host import facade

    require_browser()
    data = tmp_path_factory.mktemp("sendto-browser") / "data"
    shutil.copytree(FIXTURES / "toy-sendto", data / "extensions" / "toy-sendto")
    server = start_with_extensions(data, {"extra_networks_default_multiplier": 0.7})
    try:
        yield server
    finally:
        server.stop()
        facade.unbind()


@pytest.fixture
def page(live: LiveServer) -> Iterator[Any]:
    with chromium() as context:
        yield from checked_page(context, live.url)


def open_tab(page: Any, label: str) -> None:
    page.locator("#tabs [role=tablist]").first.get_by_role("tab", name=label, exact=True).click()


def image_size(page: Any, selector: str) -> list[int]:
    """Natural size of the image a component shows (waits until it shows one)."""
    img = page.locator(f"{selector} img").first
    img.wait_for(state="visible", timeout=20000)
    page.wait_for_function(
        "(sel) => { const i = document.querySelector(sel + ' img'); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=20000,
    )
    return list(
        page.evaluate(
            "(sel) => { const i = document.querySelector(sel + ' img'); return [i.naturalWidth, i.naturalHeight]; }",
            selector,
        )
    )


def test_send_to_img2img_moves_image_size_and_parameters(page: Any) -> None:
    open_tab(page, "Toy Send")
    page.locator("#tab_toy_send_tab #img2img_tab").click()
    page.locator("#img2img_image").wait_for(state="visible", timeout=20000)
    prompt = page.locator("#img2img_prompt textarea")
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value === 'a red fox'")
    assert page.locator("#img2img_neg_prompt textarea").input_value() == "blurry"
    assert page.locator("#img2img_steps input[type=number]").input_value() == "7"
    assert page.locator("#img2img_width input[type=number]").input_value() == "96"
    assert page.locator("#img2img_height input[type=number]").input_value() == "80"
    assert image_size(page, "#img2img_image") == [96, 80]
    assert prompt.is_visible()


def test_send_to_txt2img_pastes_the_infotext(page: Any) -> None:
    open_tab(page, "Toy Send")
    page.locator("#tab_toy_send_tab #txt2img_tab").click()
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === 'a red fox'")
    assert page.locator("#txt2img_prompt textarea").is_visible()
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "7"
    assert page.locator("#txt2img_seed input[type=number]").input_value() == "1234"


def test_gallery_binding_sends_selected_image_to_inpaint(page: Any) -> None:
    open_tab(page, "Toy Send")
    page.locator("#toy_send_gallery_inpaint").click()
    page.locator("#img2maskimg").wait_for(state="visible", timeout=20000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#img2maskimg canvas, #img2maskimg img')].length > 0", timeout=20000
    )
    assert page.locator("#img2img_inpaint_tab").is_visible()


def test_binding_from_txt2img_copies_prompt_and_steps_to_img2img(page: Any) -> None:
    box = page.locator("#txt2img_prompt textarea")
    box.fill("copied across tabs")
    box.blur()
    open_tab(page, "Toy Send")
    page.locator("#toy_send_from_txt2img").click()
    page.wait_for_function(
        "() => document.querySelector('#img2img_prompt textarea').value === 'copied across tabs'", timeout=20000
    )
    assert page.locator("#img2img_prompt textarea").is_visible()


def test_extension_extra_networks_page_shows_cards_that_insert_their_prompt(page: Any) -> None:
    page.locator("#txt2img_extra_networks .label-wrap").first.click()
    page.locator("#txt2img_extra_tabs").get_by_role("tab", name="Toy Cards", exact=True).click()
    cards = page.locator("#txt2img_ext_toy_cards_cards .card")
    cards.first.wait_for(state="visible", timeout=20000)
    assert cards.locator(".name").all_inner_texts() == ["toy-alpha", "toy-beta"]
    alpha = page.locator('#txt2img_ext_toy_cards_cards .card[data-name="toy-alpha"]')
    assert "Alpha card, from the toy extension" in alpha.inner_text()
    assert "data:image/jpeg;base64," in (alpha.get_attribute("style") or "")  # preview from the allowed folder
    assert "background-image" not in (
        page.locator('#txt2img_ext_toy_cards_cards .card[data-name="toy-beta"]').get_attribute("style") or ""
    )
    alpha.locator(".name").click()
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value.includes('<toy:toy-alpha:0.7>')"
    )


def test_request_time_gradio3_updates_from_extension_handlers(page: Any) -> None:
    open_tab(page, "Toy Send")
    page.locator("#toy_send_refresh").click()
    page.wait_for_function("() => document.body.dataset.toySendThen === 'yes'", timeout=20000)
    note = page.locator("#toy_send_note textarea")
    note.wait_for(state="visible", timeout=20000)
    assert note.input_value() == "shown"
    assert page.locator("#toy_send_note").get_by_text("Toy note!").is_visible()
    page.locator("#toy_send_sketch").wait_for(state="visible", timeout=20000)
    page.locator("#toy_send_choice input").click()
    options = [text.split("\n")[-1] for text in page.get_by_role("option").all_inner_texts()]  # "✓\nc": chosen
    assert options == ["a", "b", "c"]
    assert page.locator("#toy_send_choice input").input_value() == "c"
    assert not [e for e in page.console_errors if "toy" in e.lower()]


def test_extension_script_replacing_an_html_component_hides_its_old_content(page: Any) -> None:
    """infinite-image-browsing empties its gr.HTML's #elem_id and adds an iframe: the placeholder
    text must not stay on the page (A1111's DOM had the content directly under #elem_id)."""
    open_tab(page, "Toy Send")
    page.locator("#toy_send_own").wait_for(state="visible", timeout=20000)
    page.wait_for_function("() => !document.querySelector('#toy_send_html').innerText.includes('toy placeholder')")
    assert page.locator("#toy_send_html").inner_text().strip() == "toy own content"
