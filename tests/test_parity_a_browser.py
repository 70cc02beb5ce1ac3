"""Issue 20 in a real browser: what an A1111 user sees on the Settings page, the gallery while a
job runs and after Interrupt, and with stored defaults that are no longer valid."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import (
    ARTIFACTS,
    LiveServer,
    browser_data_dir,
    open_page,
    set_number,
    start_server,
)

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    data = browser_data_dir(tmp_path_factory, tiny_models, "parity-ui", families=("sd1",))
    # stored values no longer valid: a ui-config index where a choice belongs, a setting's old value
    (data / "ui-config.json").write_text(
        json.dumps({"img2img/Resize mode/value": 1, "txt2img/Sampling steps/value": -5})
    )
    (data / "config.json").write_text(json.dumps({"samples_format": "bmp-gone", "notification_volume": 40}))
    (data / "notification.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00")  # played by a stub below
    with start_server(data) as server:
        server.services.options.set("sd_model_checkpoint", "tiny-sd1.safetensors")
        yield server


def open_tab(page: Any, label: str) -> None:
    page.locator("#tabs [role=tablist]").first.get_by_role("tab", name=label, exact=True).click()


def settings_page(page: Any, label: str) -> None:
    """A settings page by its label, also one in the tab bar's overflow ("...") menu. Clicked in
    one step in the page: Gradio redraws the tab bar while it measures the overflow."""
    open_tab(page, "Settings")
    page.wait_for_function(
        """label => {
            const buttons = document.querySelectorAll('#settings [role=tablist] button, #settings .overflow-dropdown button');
            const tab = Array.from(buttons).find(b => b.textContent.trim() === label);
            if (tab) { tab.click(); }
            return Boolean(tab);
        }""",
        arg=label,
        timeout=30000,
    )


def visible_setting_ids(page: Any) -> list[str]:
    return list(
        page.evaluate(
            "() => Array.from(document.querySelectorAll('#settings .setting-item'))"
            ".filter(e => e.offsetParent !== null)"
            ".map(e => (e.querySelector('[id^=setting_]') || {id: ''}).id)"
        )
    )


def wait_for_result(page: Any, tab: str, timeout: float = 180) -> str:
    page.wait_for_function(
        f"() => {{ const el = document.querySelector('#html_info_{tab}');"
        " return el && /Steps: |Error|Interrupted|No images/.test(el.innerText); }",
        timeout=timeout * 1000,
    )
    return str(page.locator(f"#html_info_{tab}").inner_text())


# --- tests ----------------------------------------------------------------------------------------


def test_stored_values_no_longer_valid_are_named_replaced_and_generation_works(page: Any, live: LiveServer) -> None:
    notice = page.locator("#stored_value_problems").inner_text()
    assert "img2img/Resize mode/value" in notice and "txt2img/Sampling steps/value" in notice
    assert "samples_format" in notice and "File format for images" in notice
    stored = json.loads((live.services.paths.ui_config_file).read_text())
    assert stored["img2img/Resize mode/value"] == "Just resize" and stored["txt2img/Sampling steps/value"] == 20
    set_number(page, "txt2img_width", 64)
    set_number(page, "txt2img_height", 64)
    set_number(page, "txt2img_steps", 2)
    page.locator("#txt2img_generate").click()
    info = wait_for_result(page, "txt2img")
    assert "Steps: 2" in info and "Size: 64x64" in info
    assert page.locator("#txt2img_gallery img").count() >= 1


def test_settings_search_and_show_all_see_every_page(page: Any) -> None:
    open_tab(page, "Settings")
    page.locator("#settings_search textarea, #settings_search input").first.fill("noise seed delta")
    page.wait_for_function("() => document.querySelector('#settings.all-pages-rendered')", timeout=60000)
    page.wait_for_function("() => document.querySelector('#setting_eta_noise_seed_delta') !== null")
    assert visible_setting_ids(page) == ["setting_eta_noise_seed_delta"]  # a page never opened before
    page.locator("#settings_search textarea, #settings_search input").first.fill("")
    page.locator("#settings_show_all_pages").click()
    page.wait_for_function("() => document.querySelector('#settings.show-all-pages')")
    shown = set(visible_setting_ids(page))
    for key in ("samples_format", "eta_noise_seed_delta", "show_progress_every_n_steps", "grid_format"):
        assert f"setting_{key}" in shown, key


def test_live_preview_shows_at_the_output_size_over_the_results_column(page: Any, live: LiveServer) -> None:
    live.services.options.set("show_progress_every_n_steps", 1)
    set_number(page, "txt2img_width", 128)
    set_number(page, "txt2img_height", 96)
    set_number(page, "txt2img_steps", 150)
    set_number(page, "txt2img_batch_count", 10)
    page.locator("#txt2img_generate").click()
    page.wait_for_function(  # a preview where the result will be, while the job runs
        "() => { const img = document.querySelector('#txt2img_progress .livePreview img');"
        " return img && img.complete && img.naturalWidth > 0; }",
        timeout=120000,
    )
    try:
        size = page.evaluate(
            "() => { const img = document.querySelector('#txt2img_progress .livePreview img');"
            " const r = img.getBoundingClientRect(); return [img.naturalWidth, img.naturalHeight, r.width, r.height]; }"
        )
        gallery_width = page.evaluate("() => document.querySelector('#txt2img_gallery').getBoundingClientRect().width")
        assert size[:2] == [128, 96]  # the output's size, not the 16x12 latent preview
        assert size[2] >= 0.9 * gallery_width  # as wide as the gallery it stands over
    finally:  # the ten long batches never outlive the test
        page.evaluate("() => document.querySelector('#txt2img_interrupt').click()")
    wait_for_result(page, "txt2img")  # the job ends (stopped after its batch, or all ten made)
    assert page.locator("#txt2img_gallery img").count() >= 1


def test_extra_network_card_titles_are_light_on_the_dark_strip(page: Any, live: LiveServer) -> None:
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_extra_tabs [role=tablist]").first.get_by_role("tab", name="Checkpoints", exact=True).click()
    name = page.locator("#txt2img_extra_tabs .card .name").first
    name.wait_for(state="visible", timeout=30000)
    colour = page.evaluate("el => getComputedStyle(el).color", name.element_handle())
    channels = [int(c) for c in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3]]
    assert min(channels) >= 200, colour  # white text on the rgba(0,0,0,.55) strip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#txt2img_extra_tabs .card").first.screenshot(path=str(ARTIFACTS / "parity-card-title.png"))


def test_defaults_apply_stores_choices_not_indexes_and_reload_ui_works(page: Any, live: LiveServer) -> None:
    settings_page(page, "Defaults")
    page.locator("#ui_defaults_apply").click()
    page.wait_for_function("() => /Wrote/.test(document.querySelector('#ui_defaults_review').innerText)")
    stored = json.loads((live.services.paths.ui_config_file).read_text())
    assert stored["img2img/Resize mode/value"] == "Just resize"
    assert stored["img2img/Mask mode/value"] == "Inpaint masked"
    assert stored["img2img/Inpaint area/value"] == "Whole picture"
    assert all(not isinstance(v, int) or isinstance(v, bool) for k, v in stored.items() if k.endswith("Script/value"))
    failed: list[int] = []
    page.on("response", lambda r: failed.append(r.status) if r.status >= 500 else None)
    with page.expect_navigation(timeout=120000):
        page.locator("#settings_restart_gradio").click()
    page.wait_for_selector("#txt2img_prompt textarea", timeout=120000)
    assert failed == []
    # the reloaded UI generates (it failed with "'Gallery' object has no attribute 'info'")
    set_number(page, "txt2img_width", 64)
    set_number(page, "txt2img_height", 64)
    set_number(page, "txt2img_steps", 3)
    page.locator("#txt2img_generate").click()
    info = wait_for_result(page, "txt2img")
    assert "Steps: 3" in info and "Size: 64x64" in info and "Time taken:" in info
    assert page.locator("#txt2img_gallery img").count() >= 1


def test_clear_prompt_asks_first_and_cancel_keeps_the_prompts(page: Any) -> None:
    prompt, negative = page.locator("#txt2img_prompt textarea"), page.locator("#txt2img_neg_prompt textarea")
    prompt.fill("a red circle")
    negative.fill("blurry")
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.locator("#txt2img_clear_prompt").click()
    deadline = time.monotonic() + 30
    while not asked and time.monotonic() < deadline:  # the dialog is answered on Playwright's side
        page.wait_for_timeout(50)
    assert asked == ["Delete prompt?"]
    assert (prompt.input_value(), negative.input_value()) == ("a red circle", "blurry")
    page.once("dialog", lambda d: answer(d, True))
    page.locator("#txt2img_clear_prompt").click()
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === ''"
        " && document.querySelector('#txt2img_neg_prompt textarea').value === ''"
    )
    assert asked == ["Delete prompt?", "Delete prompt?"]


# The page's completion signals, recorded: audio play() calls and notifications, with the page
# unfocused and notifications allowed (what the user granted from Settings -> Actions).
SIGNAL_RECORDER = """
window.__played = []; window.__notified = [];
HTMLMediaElement.prototype.play = function () { window.__played.push([this.id, this.volume]); return Promise.resolve(); };
window.Notification = class { constructor(title, o) { window.__notified.push([title, o.body]); } };
window.Notification.permission = "granted";
window.Notification.requestPermission = () => Promise.resolve("granted");
document.hasFocus = () => false;
"""


def test_completion_plays_the_sound_and_notifies(browser_context: Any, live: LiveServer) -> None:
    errors: list[str] = []
    page = open_page(browser_context, live.url, errors, init_script=SIGNAL_RECORDER)
    try:
        assert page.locator("#audio_notification").count() == 1  # notification.mp3 is in the data folder
        assert page.evaluate("() => window.__played.length + window.__notified.length") == 0
        set_number(page, "txt2img_width", 64)
        set_number(page, "txt2img_height", 64)
        set_number(page, "txt2img_steps", 2)
        set_number(page, "txt2img_batch_size", 2)
        page.locator("#txt2img_generate").click()
        wait_for_result(page, "txt2img")
        page.wait_for_function("() => window.__notified.length > 0", timeout=30000)
        assert page.evaluate("() => window.__played") == [["audio_notification", 0.4]]
        assert page.evaluate("() => window.__notified") == [["Stable Diffusion", "Generated 2 images"]]
    finally:
        page.close()


def test_interrupt_after_some_steps_shows_the_partial_image_with_its_infotext(page: Any) -> None:
    set_number(page, "txt2img_width", 128)
    set_number(page, "txt2img_height", 128)
    set_number(page, "txt2img_steps", 150)
    set_number(page, "txt2img_batch_count", 1)
    page.locator("#txt2img_prompt textarea").fill("a green triangle")
    page.locator("#txt2img_generate").click()
    page.wait_for_function(  # at step k of 150 (k >= 3) Interrupt is clicked, in the page: no round trip
        "() => { const m = /step (\\d+)\\/150/.exec(document.querySelector('#txt2img_progress').innerText);"
        " if (!m || Number(m[1]) < 3) return false;"
        " document.querySelector('#txt2img_interrupt').click(); return true; }",
        timeout=120000,
    )
    info = wait_for_result(page, "txt2img")
    assert "Interrupted" in info and "a green triangle" in info and "Steps: 150" in info
    data = json.loads(page.locator("#generation_info_txt2img textarea").input_value())
    assert len(data["infotexts"]) == 1 and "Steps: 150" in data["infotexts"][0]
    assert page.locator("#txt2img_gallery img").count() == 1  # the image as made so far


def choose_from_generate_menu(page: Any, entry: str) -> None:
    page.locator("#txt2img_generate").click(button="right")
    page.locator("#context-menu a", has_text=entry).first.click()


def test_generate_forever_from_the_right_click_menu_and_cancel(page: Any, live: LiveServer) -> None:
    jobs = live.services.jobs
    set_number(page, "txt2img_width", 64)
    set_number(page, "txt2img_height", 64)
    set_number(page, "txt2img_steps", 2)
    set_number(page, "txt2img_batch_count", 1)
    choose_from_generate_menu(page, "Generate forever")
    seeds: set[str] = set()
    deadline = time.monotonic() + 240
    while len(seeds) < 3:  # results keep coming, each a new job with its own seed
        assert time.monotonic() < deadline, f"only {len(seeds)} results"
        seeds.update(re.findall(r"Seed: (\d+)", page.locator("#html_info_txt2img").inner_text()))
        page.wait_for_timeout(100)
    choose_from_generate_menu(page, "Cancel generate forever")
    assert page.evaluate("() => Object.keys(generateForeverTimers).length") == 0  # the loop is off
    wait_until_idle(page, jobs)
    page.locator("#txt2img_generate").click()  # and Generate by hand works as before
    page.wait_for_function(
        "seen => { const m = /Seed: (\\d+),/.exec(document.querySelector('#html_info_txt2img').innerText);"
        " return m && !seen.includes(m[1]); }",
        arg=sorted(seeds),
        timeout=120000,
    )


def wait_until_idle(page: Any, jobs: Any) -> None:
    deadline = time.monotonic() + 120
    while jobs.pending() or jobs.current() is not None or page.locator("#txt2img_task_id textarea").input_value():
        assert time.monotonic() < deadline, "the jobs did not end"
        page.wait_for_timeout(100)
