"""The UI in a real browser (Playwright + Debian's headless Chromium) against a live server on
127.0.0.1 over tiny models. Each test is one acceptance point of the front-end issue."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from modules.core.jobs import JobControl
from modules.generation.image_io import read_info_from_image
from modules.generation.requests import Txt2ImgRequest
from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LiveServer,
    browser_data_dir,
    open_page,
    select_dropdown,
    set_number,
    start_server,
    without_time_taken,
)

pytestmark = [pytest.mark.browser]

SD1_TITLE_PREFIX = "tiny-sd1.safetensors"
INPAINT_TITLE_PREFIX = "tiny-sd1-inpaint.safetensors"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    data = browser_data_dir(tmp_path_factory, tiny_models, "ui-live")
    _tiny_lora(data / "models" / "Lora" / "tinylora.safetensors")
    with start_server(data) as server:
        server.services.options.set("sd_model_checkpoint", SD1_TITLE_PREFIX)
        yield server


# --- helpers ---------------------------------------------------------------------------------------


def _tiny_lora(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
        },
        str(path),
    )


def set_prompt(page: Any, tab: str, text: str) -> None:
    page.locator(f"#{tab}_prompt textarea").fill(text)


def small_job(page: Any, tab: str, steps: int = 3, size: int = 64) -> None:
    set_number(page, f"{tab}_width", size)
    set_number(page, f"{tab}_height", size)
    set_number(page, f"{tab}_steps", steps)


def wait_for_result(page: Any, tab: str, timeout: float = 90) -> str:
    """Waits until the generation info shows a finished job; returns the info text."""
    page.wait_for_function(
        f"() => {{ const el = document.querySelector('#html_info_{tab}');"
        " return el && /Steps: |Error|Interrupted/.test(el.innerText); }",
        timeout=timeout * 1000,
    )
    return without_time_taken(str(page.locator(f"#html_info_{tab}").inner_text()))


def gallery_image_srcs(page: Any, tab: str) -> list[str]:
    return [str(s) for s in page.eval_on_selector_all(f"#{tab}_gallery img", "els => els.map(e => e.src)")]


def fetch_png(page: Any, url: str) -> Image.Image:
    import io

    body = page.request.get(url).body()
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


def open_tab(page: Any, label: str) -> None:
    page.locator("#tabs [role=tablist]").first.get_by_role("tab", name=label, exact=True).click()


def open_settings_page(page: Any, section: str) -> None:
    open_tab(page, "Settings")
    page.locator("#settings [role=tablist]").first.get_by_role("tab", name=section, exact=True).click()
    page.wait_for_selector("#setting_eta_noise_seed_delta input", timeout=30000)


def open_img2img_mode(page: Any, mode: str, elem_id: str) -> None:
    """Select an img2img sub-tab and wait until its editor is visible (a click made while the page
    is still busy can be lost: click again)."""
    open_tab(page, "img2img")
    for _attempt in range(5):
        page.locator("#mode_img2img [role=tablist]").first.get_by_role("tab", name=mode, exact=True).click()
        try:
            page.locator(f"#{elem_id}").first.wait_for(state="visible", timeout=5000)
            return
        except PlaywrightTimeoutError:
            continue
    raise AssertionError(f"the {mode} tab never showed #{elem_id}")


def upload_to_image_editor(page: Any, elem_id: str, path: Path) -> None:
    """Upload into a Gradio ImageEditor and wait until it shows the image (its "Upload an image"
    placeholder is gone). Under load the editor sometimes drops an upload: then upload again."""
    shown = f"() => {{ const el = document.querySelector('#{elem_id}'); return el && !/Upload an image/.test(el.innerText); }}"
    for _attempt in range(2):
        page.locator(f"#{elem_id} input[type=file]").first.set_input_files(str(path))
        try:
            page.wait_for_function(shown, timeout=15000)
            return
        except PlaywrightTimeoutError:
            continue
    raise AssertionError(f"#{elem_id} never showed the uploaded image")


def infotext_params(text: str) -> str:
    return text.strip().split("\n")[-1]


# --- tests -----------------------------------------------------------------------------------------


def test_txt2img_ctrl_enter_shows_image_and_infotext_saved_in_png(page: Any, live: LiveServer) -> None:
    small_job(page, "txt2img")
    set_prompt(page, "txt2img", "a red ball")
    page.locator("#txt2img_prompt textarea").press("Control+Enter")
    info = wait_for_result(page, "txt2img")
    assert "Seed: " in info and "Steps: 3" in info and "Size: 64x64" in info
    seed = int(info.split("Seed: ")[1].split(",")[0])
    srcs = gallery_image_srcs(page, "txt2img")
    assert srcs, "no image in the gallery"
    shown = fetch_png(page, srcs[0])
    assert shown.format == "PNG"
    outputs = sorted(
        (live.services.paths.outputs_dir / "txt2img-images").rglob("*.png"), key=lambda p: p.stat().st_mtime
    )
    assert outputs, "nothing saved in outputs/txt2img-images"
    saved_text = read_info_from_image(Image.open(outputs[-1])).parameters or ""
    assert f"Seed: {seed}," in saved_text
    assert saved_text.replace("\n", " ").split() == info.replace("\n", " ").split()
    assert read_info_from_image(shown).parameters == saved_text  # what the UI offers for download
    assert page.console_errors == []


def test_interrupt_stops_a_long_job(page: Any, live: LiveServer) -> None:
    small_job(page, "txt2img", steps=150)
    set_number(page, "txt2img_batch_count", 20)
    set_prompt(page, "txt2img", "a long job")
    started = time.monotonic()
    page.locator("#txt2img_generate").click()
    page.wait_for_selector("#txt2img_progress .progressDiv", timeout=30000)
    page.locator("#txt2img_interrupt").click()  # first click: stop after the current batch (batch count > 1)
    page.locator("#txt2img_interrupt").click()  # second click: now
    info = wait_for_result(page, "txt2img", timeout=120)
    elapsed = time.monotonic() - started
    assert "Interrupted" in info or "Steps: 150" in info
    data = json.loads(page.locator("#generation_info_txt2img textarea").input_value())
    assert len(data["all_seeds"]) == 20
    assert len(data["infotexts"]) < 20, "the job ran to the end"
    assert elapsed < 60
    set_number(page, "txt2img_batch_count", 1)


def _reference_png(live: LiveServer, path: Path) -> tuple[Image.Image, str]:
    req = Txt2ImgRequest(
        prompt="a blue square",
        negative_prompt="blurry",
        seed=4321,
        steps=3,
        width=64,
        height=64,
        sampler_name="Euler",
        cfg_scale=6.5,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    result = live.services.generation.txt2img(req, JobControl())
    image, text = result.images[0], result.infotexts[0]
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", text)
    image.save(path, pnginfo=info)
    return image, text


def test_pnginfo_send_to_txt2img_reproduces_image(page: Any, live: LiveServer, tmp_path: Path) -> None:
    original, text = _reference_png(live, tmp_path / "source.png")
    open_tab(page, "PNG Info")
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(tmp_path / "source.png"))
    page.wait_for_function("() => /Seed: 4321/.test(document.querySelector('#pnginfo_html').innerText)", timeout=30000)
    assert "Steps: 3" in page.locator("#pnginfo_html").inner_text()
    page.locator("#pnginfo_send_to_txt2img").click()
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === 'a blue square'", timeout=30000
    )
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == "blurry"
    assert page.locator("#txt2img_seed input").input_value() == "4321"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "3"
    assert page.locator("#txt2img_width input[type=number]").input_value() == "64"
    assert page.locator("#txt2img_height input[type=number]").input_value() == "64"
    assert page.locator("#txt2img_sampling input").input_value() == "Euler"
    page.locator("#txt2img_generate").click()
    info = wait_for_result(page, "txt2img")
    assert infotext_params(info) == infotext_params(text)
    made = fetch_png(page, gallery_image_srcs(page, "txt2img")[0])
    assert np.array_equal(np.asarray(made.convert("RGB")), np.asarray(original.convert("RGB")))


@pytest.fixture
def fresh_page(browser_context: Any, live: LiveServer) -> Iterator[Any]:
    """A page in a Chromium of its own: the image editor draws with WebGL, and late in a long
    suite a browser that already ran other tests sometimes never shows an upload in it."""
    browser = browser_context.browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        opened = open_page(context, live.url, errors)
        opened.console_errors = errors  # type: ignore[attr-defined]
        yield opened
    finally:
        browser.close()


def test_inpaint_mask_drawn_with_mouse_keeps_pixels_outside(fresh_page: Any, live: LiveServer, tmp_path: Path) -> None:
    page = fresh_page
    source = Image.new("RGB", (128, 128))
    pixels = np.indices((128, 128)).sum(axis=0) % 256
    source = Image.fromarray(np.stack([pixels, 255 - pixels, np.full_like(pixels, 90)], -1).astype(np.uint8))
    source.save(tmp_path / "init.png")
    for attempt in range(3):  # a page whose editor never shows the upload is reloaded and tried again
        open_img2img_mode(page, "Inpaint", "img2maskimg")
        try:
            upload_to_image_editor(page, "img2maskimg", tmp_path / "init.png")
            break
        except AssertionError:
            if attempt == 2:
                raise
            page.reload(wait_until="load")
            page.wait_for_selector("#txt2img_prompt textarea", timeout=30000)
    canvas = page.locator("#img2maskimg canvas").first
    canvas.wait_for(timeout=30000)
    page.wait_for_function(  # laid out at its size before the stroke is drawn on it
        "() => { const c = document.querySelector('#img2maskimg canvas');"
        " return !!c && c.width > 0 && c.getBoundingClientRect().width > 0; }",
        timeout=30000,
    )
    canvas.scroll_into_view_if_needed()  # the mouse only reaches what is inside the viewport
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 10, cy)
    page.mouse.down()
    for step in range(11):
        page.mouse.move(cx - 10 + 2 * step, cy + step % 3, steps=2)
    page.mouse.up()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "inpaint_mask_drawn.png"))
    small_job(page, "img2img", steps=2, size=128)
    set_number(page, "img2img_mask_blur", 0)
    set_prompt(page, "img2img", "a patch")
    # Gradio's ImageEditor sometimes submits before it has committed a fresh upload (the server
    # then gets no background and refuses); a person never clicks that fast, so click again until
    # a result shows. A refusal leaves the same text in the info box, so wait for the result itself.
    time.sleep(2.0)
    info = ""
    for _attempt in range(8):
        page.locator("#img2img_generate").click()
        try:
            page.wait_for_function(
                "() => /Steps: /.test((document.querySelector('#html_info_img2img') || {}).innerText || '')",
                timeout=20000,
            )
        except PlaywrightTimeoutError:
            page.evaluate("() => document.querySelectorAll('.toast-body, .toast-wrap').forEach(t => t.remove())")
            continue
        finally:
            info = str(page.locator("#html_info_img2img").inner_text())
        break
    assert "Steps: 2" in info, info
    made = np.asarray(fetch_png(page, gallery_image_srcs(page, "img2img")[0]).convert("RGB")).astype(int)
    original = np.asarray(source).astype(int)
    changed = np.abs(made - original).sum(axis=-1) > 0
    assert changed.any(), "nothing was inpainted"
    ys, xs = np.nonzero(changed)
    assert changed.mean() < 0.5, "more than half the picture changed: the mask was not used"
    # The stroke was drawn around the centre: everything well away from it is untouched.
    assert ys.min() > 20 and ys.max() < 108 and xs.min() > 20 and xs.max() < 108


def test_checkpoint_switch_from_top_bar(page: Any, live: LiveServer) -> None:
    titles = [c.title for c in live.services.models.list_checkpoints()]
    target = next(t for t in titles if t.startswith(INPAINT_TITLE_PREFIX))
    select_dropdown(page, "setting_sd_model_checkpoint", target)
    page.wait_for_function(
        "() => /Loaded /.test(document.querySelector('#quicksettings_status').innerText)", timeout=60000
    )
    small_job(page, "txt2img", steps=2)
    set_prompt(page, "txt2img", "after the switch")
    page.locator("#txt2img_generate").click()
    info = wait_for_result(page, "txt2img")
    assert "Model: tiny-sd1-inpaint" in info
    live.services.options.set("sd_model_checkpoint", SD1_TITLE_PREFIX)


def test_every_tab_renders_without_console_errors(page: Any, live: LiveServer) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    labels = ["txt2img", "img2img", "Extras", "PNG Info", "Checkpoint Merger", "Train", "Settings"]
    for label in labels:
        open_tab(page, label)
        page.wait_for_function("(label) => get_uiCurrentTab().textContent.trim() === label", arg=label, timeout=10000)
        page.screenshot(path=str(ARTIFACTS / f"tab_{label.replace(' ', '_').lower()}.png"), full_page=True)
    for elem_id in (
        "txt2img_prompt",
        "txt2img_generate",
        "img2img_gallery",
        "tab_txt2img",
        "setting_samples_format",
        "settings_json",
        "quicksettings",
    ):
        assert page.locator(f"#{elem_id}").count() >= 1, elem_id
    assert page.evaluate("() => typeof opts === 'object' && opts.samples_format === 'png'")
    assert (
        page.evaluate(
            "() => [typeof onUiLoaded, typeof onAfterUiUpdate, typeof onOptionsChanged, typeof get_uiCurrentTabContent]"
        )
        == ["function"] * 4
    )
    assert page.console_errors == []


def test_mobile_viewport_has_no_horizontal_scroll(browser_context: Any, live: LiveServer) -> None:
    context = browser_context.browser.new_context(viewport={"width": 390, "height": 844})
    try:
        errors: list[str] = []
        page = open_page(context, live.url, errors)
        page.wait_for_function(
            "() => document.readyState === 'complete' && !!document.querySelector('#txt2img_gallery')"
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mobile_txt2img.png"), full_page=True)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"page is {width}px wide in a 390px viewport"
        for elem_id in ("txt2img_prompt", "txt2img_generate", "txt2img_steps", "txt2img_gallery"):
            box = page.locator(f"#{elem_id}").first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 391, elem_id
        assert errors == []
    finally:
        context.close()


def test_settings_survive_reload_and_restart(
    browser_context: Any, tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles
) -> None:
    data = browser_data_dir(tmp_path_factory, tiny_models, "ui-settings", families=("sd1",))
    server = start_server(data)
    try:
        errors: list[str] = []
        page = open_page(browser_context, server.url, errors)
        open_settings_page(page, "Sampler parameters")
        set_number(page, "setting_eta_noise_seed_delta", 31337)
        page.locator("#settings_submit").click()
        page.wait_for_function(
            "() => /1 settings changed/.test(document.querySelector('#settings_result').innerText)", timeout=30000
        )
        assert json.loads((data / "config.json").read_text())["eta_noise_seed_delta"] == 31337
        page.reload(wait_until="load")
        page.wait_for_selector("#txt2img_prompt textarea", timeout=30000)
        open_settings_page(page, "Sampler parameters")
        assert page.locator("#setting_eta_noise_seed_delta input").first.input_value() == "31337"
        page.close()
    finally:
        server.stop()
    again = start_server(data)
    try:
        page = open_page(browser_context, again.url, [])
        open_settings_page(page, "Sampler parameters")
        assert page.locator("#setting_eta_noise_seed_delta input").first.input_value() == "31337"
        assert page.evaluate("() => opts.eta_noise_seed_delta") == 31337
        page.close()
    finally:
        again.stop()


def test_clicking_a_lora_card_inserts_its_tag(page: Any) -> None:
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_extra_tabs [role=tablist]").first.get_by_role("tab", name="Lora", exact=True).click()
    set_prompt(page, "txt2img", "a castle")
    card = page.locator('#txt2img_lora_cards .card[data-name="tinylora"]')
    card.click()
    assert page.locator("#txt2img_prompt textarea").input_value() == "a castle <lora:tinylora:1>"
    page.locator("#txt2img_extra_search input, #txt2img_extra_search textarea").first.fill("nothing-matches")
    page.wait_for_selector(
        "#txt2img_lora_cards.extra-network-empty, .extra-network-empty#txt2img_lora_cards", timeout=15000
    )
    assert page.console_errors == []


def _open_lora_page(page: Any) -> None:
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_extra_tabs [role=tablist]").first.get_by_role("tab", name="Lora", exact=True).click()


def test_lora_card_metadata_edit_changes_what_a_click_inserts(page: Any, live: LiveServer) -> None:
    lora = live.services.paths.lora_dir / "tinylora.safetensors"
    sidecar = lora.with_suffix(".json")
    _open_lora_page(page)
    try:
        page.locator('#txt2img_lora_cards .card[data-name="tinylora"] .edit-button').click()
        page.wait_for_selector("#txt2img_extra_edit_activation_text textarea", state="visible", timeout=30000)
        page.locator("#txt2img_extra_edit_description textarea").fill("a tiny test style")
        page.locator("#txt2img_extra_edit_activation_text textarea").fill("tinystyle")
        set_number(page, "txt2img_extra_edit_weight", 0.7)
        page.locator("#txt2img_extra_edit_save").click()
        page.wait_for_function(
            "() => /Saved tinylora.json/.test(document.querySelector('#txt2img_extra_status').innerText)",
            timeout=30000,
        )
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
        assert stored["activation text"] == "tinystyle" and stored["preferred weight"] == 0.7
        assert stored["description"] == "a tiny test style"
        card = page.locator('#txt2img_lora_cards .card[data-name="tinylora"]')
        assert "a tiny test style" in card.inner_text()
        set_prompt(page, "txt2img", "a castle")
        card.click()
        assert page.locator("#txt2img_prompt textarea").input_value() == "a castle <lora:tinylora:0.7> tinystyle"
        assert page.console_errors == []
    finally:
        sidecar.unlink(missing_ok=True)
        live.services.generation.networks.catalogue.refresh()


def test_replace_preview_uses_the_generated_image(page: Any, live: LiveServer) -> None:
    lora = live.services.paths.lora_dir / "tinylora.safetensors"
    preview = lora.with_name("tinylora.preview.png")
    small_job(page, "txt2img", steps=2)
    set_prompt(page, "txt2img", "preview source")
    page.locator("#txt2img_generate").click()
    wait_for_result(page, "txt2img")
    shown = fetch_png(page, gallery_image_srcs(page, "txt2img")[0])
    _open_lora_page(page)
    try:
        page.locator('#txt2img_lora_cards .card[data-name="tinylora"] .preview-button').click()
        page.wait_for_function(
            "() => /Preview saved as tinylora.preview.png/.test(document.querySelector('#txt2img_extra_status').innerText)",
            timeout=30000,
        )
        with Image.open(preview) as written:
            assert written.size == shown.size
            assert np.array_equal(np.asarray(written.convert("RGB")), np.asarray(shown.convert("RGB")))
        style = page.locator('#txt2img_lora_cards .card[data-name="tinylora"]').get_attribute("style") or ""
        assert "data:image/jpeg;base64" in style
        assert page.console_errors == []
    finally:
        preview.unlink(missing_ok=True)


def test_checkpoint_card_switches_the_model(page: Any, live: LiveServer) -> None:
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_extra_tabs [role=tablist]").first.get_by_role("tab", name="Checkpoints", exact=True).click()
    try:
        page.locator('#txt2img_checkpoints_cards .card[data-name="tiny-sd1-inpaint.safetensors"]').click()
        page.wait_for_function(
            "() => /Loaded /.test(document.querySelector('#quicksettings_status').innerText)", timeout=60000
        )
        assert str(live.services.options.get("sd_model_checkpoint")).startswith(INPAINT_TITLE_PREFIX)
        shown = page.locator("#setting_sd_model_checkpoint input").first.input_value()
        assert shown.startswith(INPAINT_TITLE_PREFIX)
        assert page.console_errors == []
    finally:
        live.services.options.set("sd_model_checkpoint", SD1_TITLE_PREFIX)
