"""The Train tab: its handlers without a browser (create embedding/hypernetwork, a bad dataset, a short
training run with progress), the built tab's A1111 element ids, and one real-browser run (Playwright +
Debian's Chromium): create an embedding, train it a few steps on generated images, see the result."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image, ImageDraw

from modules.access.policy import Caller
from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.models.safe_load import load_pickle
from modules.services import Services
from modules.train.requests import TrainEmbeddingRequest, TrainHypernetworkRequest, TrainResult
from modules.ui.common import UiContext
from modules.ui.train import build_train
from modules.ui.train_actions import (
    TrainView,
    create_embedding_action,
    create_hypernetwork_action,
    embedding_names,
    hypernetwork_names,
    interrupt_action,
    preprocess_action,
    train_action,
    train_request,
    wait_until_done,
)
from modules.ui.ui_config import UiConfig
from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import (
    ARTIFACTS,
    LiveServer,
    chromium,
    open_page,
    prepare_data_dir,
    require_browser,
    select_dropdown,
    set_number,
    start_server,
)

LOCAL = Caller(None, "127.0.0.1")  # the local user of a server without logins

SD1_TITLE_PREFIX = "tiny-sd1.safetensors"


def make_images(folder: Path, count: int = 4, size: int = 64) -> Path:
    """Small generated training images (coloured shapes), with caption files."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 200, 40), (160, 60, 200), (40, 200, 200)]
    for i in range(count):
        image = Image.new("RGB", (size, size), (235, 235, 225))
        ImageDraw.Draw(image).ellipse((6 + i, 8, 40 + i, 48), fill=colours[i % len(colours)])
        image.save(folder / f"{i:02d}-ball.png")
        (folder / f"{i:02d}-ball.txt").write_text(f"a ball, colour {i}", encoding="utf-8")
    return folder


def train_values(name: str, data: Path, **overrides: Any) -> dict[str, Any]:
    """What the Train sub-tab sends, by field name (UI defaults, made small)."""
    values: dict[str, Any] = {
        "train_embedding": name,
        "train_hypernetwork": None,
        "embedding_learn_rate": "0.005",
        "hypernetwork_learn_rate": "0.00001",
        "clip_grad_mode": "disabled",
        "clip_grad_value": "0.1",
        "batch_size": 1,
        "gradient_step": 1,
        "data_root": str(data),
        "log_directory": "textual_inversion",
        "template_filename": "subject_filewords.txt",
        "training_width": 64,
        "training_height": 64,
        "varsize": False,
        "steps": 3,
        "create_image_every": 0,
        "save_every": 0,
        "use_weight": False,
        "save_image_with_stored_embedding": True,
        "preview_from_txt2img": False,
        "shuffle_tags": False,
        "tag_drop_out": 0.0,
        "latent_sampling_method": "once",
    }
    return values | overrides


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[Services]:
    root = prepare_data_dir(tmp_path_factory.mktemp("ui-train"), tiny_models, families=("sd1",))
    built = build_services(parse_args(["--data-dir", str(root)]), policy=DevicePolicy.cpu())
    built.options.set("sd_model_checkpoint", SD1_TITLE_PREFIX)
    try:
        yield built
    finally:
        built.jobs.shutdown(timeout=5)


@pytest.fixture(scope="module")
def ui(services: Services) -> UiContext:
    ctx = UiContext(services, UiConfig.load(None))
    return ctx


# --- handlers ----------------------------------------------------------------------------------


def test_create_embedding_writes_a1111_file_and_lists_it(ui: UiContext, services: Services) -> None:
    outcome = create_embedding_action(
        ui, {"name": "uiemb", "init_text": "ball", "num_vectors_per_token": 2, "overwrite_old": False}
    )
    path = services.paths.embeddings_dir / "uiemb.pt"
    assert path.is_file(), outcome.outcome
    data = load_pickle(path)
    assert {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"} <= set(data)
    assert tuple(data["string_to_param"]["*"].shape)[0] == 2 and data["step"] == 0
    assert outcome.selected == "uiemb" and "uiemb" in outcome.choices
    assert outcome.output == f"create embedding filename: {path}"
    assert "uiemb" in embedding_names(ui)  # the Train dropdown's refresh lists it

    again = create_embedding_action(ui, {"name": "uiemb", "init_text": "*", "num_vectors_per_token": 1})
    assert again.selected is None and "already exists" in again.outcome and "Error" in again.outcome
    assert tuple(load_pickle(path)["string_to_param"]["*"].shape)[0] == 2  # not overwritten


def test_create_hypernetwork_from_ui_values(ui: UiContext, services: Services) -> None:
    values = {
        "name": "uihn",
        "enable_sizes": ["768", "320"],
        "layer_structure": "1, 2, 1",
        "activation_func": "relu",
        "weight_init": "Normal",
        "add_layer_norm": False,
        "use_dropout": False,
        "dropout_structure": "0, 0, 0",
        "overwrite_old": False,
    }
    outcome = create_hypernetwork_action(ui, values)
    path = services.paths.hypernetwork_dir / "uihn.pt"
    assert path.is_file(), outcome.outcome
    data = load_pickle(path)
    assert {768, 320} <= set(data) and data["activation_func"] == "relu" and data["layer_structure"] == [1, 2, 1]
    assert outcome.selected == "uihn" and "uihn" in hypernetwork_names(ui)
    bad = create_hypernetwork_action(ui, values | {"name": "uihn2", "layer_structure": "2, 1"})
    assert "Error" in bad.outcome and not (services.paths.hypernetwork_dir / "uihn2.pt").exists()


def test_bad_dataset_shows_clear_error_and_writes_nothing(ui: UiContext, services: Services, tmp_path: Path) -> None:
    create_embedding_action(ui, {"name": "badset", "init_text": "*", "num_vectors_per_token": 1})
    path = services.paths.embeddings_dir / "badset.pt"
    before = path.read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    log_root = services.paths.data_dir / "textual_inversion"
    logs_before = sorted(log_root.rglob("*")) if log_root.exists() else []
    for folder in (empty, tmp_path / "missing"):
        final = wait_until_done(train_action(ui, "embedding", train_values("badset", folder), LOCAL))
        assert final.done and final.outcome is not None and "Error" in final.outcome
        assert final.output is not None and final.output.startswith("train embedding error:")
        assert str(folder.name) in final.outcome or "image" in final.outcome.lower()
    assert path.read_bytes() == before
    assert (sorted(log_root.rglob("*")) if log_root.exists() else []) == logs_before
    unknown = wait_until_done(train_action(ui, "embedding", train_values("nosuch", make_images(tmp_path / "d")), LOCAL))
    assert unknown.outcome is not None and "not found" in unknown.outcome


def test_train_streams_progress_then_result(ui: UiContext, services: Services, tmp_path: Path) -> None:
    create_embedding_action(ui, {"name": "streamed", "init_text": "ball", "num_vectors_per_token": 1})
    data = make_images(tmp_path / "data")
    views: list[TrainView] = list(train_action(ui, "embedding", train_values("streamed", data, steps=4), LOCAL))
    assert views[0].task_id, "the first view carries the job id (for Interrupt)"
    final = views[-1]
    assert isinstance(final.result, TrainResult), final.outcome
    assert final.result.step == 4 and len(final.result.losses) == 4
    assert final.outcome is not None and "Training finished at 4 steps" in final.outcome
    assert final.output == f"train embedding complete: filename: {final.result.filename} error: None"
    assert load_pickle(services.paths.embeddings_dir / "streamed.pt")["step"] == 4


def test_train_hypernetwork_uses_its_own_rate_and_save_interval(
    ui: UiContext, services: Services, tmp_path: Path
) -> None:
    create_hypernetwork_action(
        ui, {"name": "hnrun", "enable_sizes": ["32", "64"], "layer_structure": "1, 2, 1", "activation_func": "linear"}
    )
    values = train_values("", make_images(tmp_path / "d"), train_hypernetwork="hnrun", steps=2, save_every=1)
    values["template_filename"] = "hypernetwork.txt"
    final = wait_until_done(train_action(ui, "hypernetwork", values, LOCAL))
    assert isinstance(final.result, TrainResult), final.outcome
    assert final.result.kind == "hypernetwork" and final.result.step == 2
    assert final.result.learn_rates[0] == pytest.approx(1e-5)  # the hypernetwork box, not the embedding one
    assert final.outcome is not None and "Hypernetwork saved to" in final.outcome
    assert load_pickle(services.paths.hypernetwork_dir / "hnrun.pt")["step"] == 2
    assert {p.name for p in final.result.saved_files} >= {"hnrun-1.pt", "hnrun-2.pt"}


def test_request_reads_txt2img_preview_fields_only_when_asked() -> None:
    txt2img = {"preview_prompt": "a red ball", "preview_steps": 7, "preview_sampler_name": "Euler", "preview_seed": 5}
    values = train_values("x", Path("/data")) | txt2img
    plain = train_request("embedding", values)
    assert isinstance(plain, TrainEmbeddingRequest)
    assert (plain.preview_prompt, plain.preview_steps, plain.learn_rate) == ("", 20, "0.005")
    asked = train_request("embedding", values | {"preview_from_txt2img": True, "save_every": 7})
    assert (asked.preview_prompt, asked.preview_steps, asked.preview_seed) == ("a red ball", 7, 5)
    assert isinstance(asked, TrainEmbeddingRequest) and asked.save_embedding_every == 7
    hyper = train_request("hypernetwork", values | {"train_hypernetwork": "h", "save_every": 9})
    assert isinstance(hyper, TrainHypernetworkRequest)
    assert (hyper.hypernetwork_name, hyper.learn_rate, hyper.save_hypernetwork_every) == ("h", "0.00001", 9)


def test_interrupt_stops_training_and_keeps_file(ui: UiContext, services: Services, tmp_path: Path) -> None:
    create_embedding_action(ui, {"name": "stopme", "init_text": "*", "num_vectors_per_token": 1})
    views = train_action(ui, "embedding", train_values("stopme", make_images(tmp_path / "d"), steps=5000), LOCAL)
    first = next(views)
    for view in views:
        if view.seen_steps and view.seen_steps[-1] >= 1:
            assert "Loss:" in view.progress and "ETA:" in view.progress and "step " in view.progress
            assert interrupt_action(ui, first.task_id, None)
            break
    final = wait_until_done(views)
    assert isinstance(final.result, TrainResult) and final.result.interrupted
    assert final.outcome is not None and "Training interrupted at" in final.outcome
    assert 1 <= load_pickle(services.paths.embeddings_dir / "stopme.pt")["step"] < 5000


def test_preprocess_writes_sized_images_and_captions(ui: UiContext, tmp_path: Path) -> None:
    src = make_images(tmp_path / "src", count=2, size=96)
    values = {"process_src": str(src), "process_dst": str(tmp_path / "dst"), "process_width": 64}
    final = wait_until_done(preprocess_action(ui, values | {"process_height": 64, "process_flip": True}, LOCAL))
    written = sorted((tmp_path / "dst").glob("*.png"))
    assert len(written) == 4, final.outcome  # two images + their flipped copies
    assert all(Image.open(p).size == (64, 64) for p in written)
    assert final.output is not None and "4 images written" in final.output


def test_tab_has_a1111_element_ids(ui: UiContext) -> None:
    create_embedding_action(ui, {"name": "listed", "init_text": "*", "num_vectors_per_token": 1})
    with gr.Blocks() as demo:
        parts = build_train(ui)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    for elem_id in (
        "train_tabs",
        "train_new_embedding_name",
        "train_initialization_text",
        "train_nvpt",
        "train_create_embedding",
        "train_new_hypernetwork_sizes",
        "train_create_hypernetwork",
        "train_process_src",
        "train_run_preprocess",
        "train_embedding",
        "train_hypernetwork",
        "refresh_train_embedding_name",
        "train_template_file",
        "train_dataset_directory",
        "train_training_width",
        "train_varsize",
        "train_steps",
        "train_latent_sampling_method",
        "train_train_embedding",
        "train_interrupt_training",
        "train_train_hypernetwork",
        "ti_output",
        "ti_gallery",
        "ti_progress",
        "ti_error",
    ):
        assert elem_id in ids, elem_id
    assert "listed" in str(parts["train"]["train_embedding"].choices)
    assert "subject.txt" in str(parts["train"]["template_filename"].choices)


# --- real browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    require_browser()
    data = prepare_data_dir(tmp_path_factory.mktemp("ui-train-live"), tiny_models, families=("sd1",))
    server = start_server(data)
    server.services.options.set("sd_model_checkpoint", SD1_TITLE_PREFIX)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.browser
def test_browser_create_and_train_embedding(live: LiveServer, tmp_path: Path) -> None:
    data = make_images(tmp_path / "dataset")
    with chromium() as context:
        errors: list[str] = []
        page = open_page(context, live.url, errors)
        page.locator("#tabs [role=tablist]").first.get_by_role("tab", name="Train", exact=True).click()
        page.locator("#train_tabs [role=tablist]").first.get_by_role("tab", name="Create embedding").click()
        page.locator("#train_new_embedding_name textarea, #train_new_embedding_name input").first.fill("browsertok")
        page.locator("#train_initialization_text textarea, #train_initialization_text input").first.fill("ball")
        page.locator("#train_create_embedding").click()
        page.wait_for_function("() => /browsertok/.test(document.querySelector('#ti_error').innerText)", timeout=60000)
        assert (live.services.paths.embeddings_dir / "browsertok.pt").is_file()

        page.locator("#train_tabs [role=tablist]").first.get_by_role("tab", name="Train", exact=True).click()
        page.locator("#refresh_train_embedding_name").click()
        select_dropdown(page, "train_embedding", "browsertok")
        page.locator("#train_dataset_directory textarea, #train_dataset_directory input").first.fill(str(data))
        select_dropdown(page, "train_template_file", "subject_filewords.txt")
        set_number(page, "train_training_width", 64)
        set_number(page, "train_training_height", 64)
        set_number(page, "train_steps", 6)
        set_number(page, "train_create_image_every", 3)
        set_number(page, "train_save_embedding_every", 3)
        # remember every progress text the page shows while training runs
        page.evaluate(
            "() => { window.__tiProgress = []; const el = document.querySelector('#ti_progress');"
            " new MutationObserver(() => window.__tiProgress.push(el.innerText))"
            ".observe(el, {subtree: true, childList: true, characterData: true}); }"
        )
        started = time.monotonic()
        page.locator("#train_train_embedding").click()
        page.wait_for_function(
            "() => /Training (finished|interrupted)|Error/.test(document.querySelector('#ti_error').innerText)",
            timeout=240000,
        )
        outcome = page.locator("#ti_error").inner_text()
        assert "Training finished at 6 steps" in outcome, outcome
        assert "complete" in page.locator("#ti_output textarea, #ti_output input").first.input_value()
        seen = page.evaluate("() => window.__tiProgress")
        assert any("Loss:" in t and "step" in t for t in seen), seen
        page.wait_for_selector("#ti_preview img", timeout=10000)  # the last preview image is shown
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tab_train.png"), full_page=True)
        assert not [e for e in errors if "favicon" not in e], errors
    saved = load_pickle(live.services.paths.embeddings_dir / "browsertok.pt")
    assert saved["step"] == 6 and saved["name"] == "browsertok"
    logs = list((live.services.paths.data_dir / "textual_inversion").rglob("browsertok-3.pt"))
    assert logs, "the save-every copy is in the log folder"
    assert time.monotonic() - started < 240


@pytest.mark.browser
def test_browser_stays_responsive_and_interrupt_stops_training(live: LiveServer, tmp_path: Path) -> None:
    data = make_images(tmp_path / "dataset")
    embeddings = live.services.paths.embeddings_dir
    with chromium() as context:
        errors: list[str] = []
        page = open_page(context, live.url, errors)
        page.locator("#tabs [role=tablist]").first.get_by_role("tab", name="Train", exact=True).click()
        _create_embedding(page, "longrun")
        page.locator("#train_tabs [role=tablist]").first.get_by_role("tab", name="Train", exact=True).click()
        select_dropdown(page, "train_embedding", "longrun")  # Create embedding selected it; pick it again from the list
        page.locator("#train_dataset_directory textarea, #train_dataset_directory input").first.fill(str(data))
        set_number(page, "train_training_width", 64)
        set_number(page, "train_training_height", 64)
        set_number(page, "train_steps", 100000)
        set_number(page, "train_create_image_every", 0)
        set_number(page, "train_save_embedding_every", 0)
        page.locator("#train_train_embedding").click()
        page.wait_for_function(
            "() => /Loss: .*/.test(document.querySelector('#ti_progress').innerText)", timeout=120000
        )
        # while it trains, other buttons still answer: create another embedding
        page.locator("#train_tabs [role=tablist]").first.get_by_role("tab", name="Create embedding").click()
        _create_embedding(page, "meanwhile")
        assert (embeddings / "meanwhile.pt").is_file()
        page.locator("#train_tabs [role=tablist]").first.get_by_role("tab", name="Train", exact=True).click()
        page.locator("#train_interrupt_training").click()
        page.wait_for_function(
            "() => /Training interrupted at \\d+ steps/.test(document.querySelector('#ti_error').innerText)",
            timeout=120000,
        )
        assert not [e for e in errors if "favicon" not in e], errors
    step = load_pickle(embeddings / "longrun.pt")["step"]
    assert 1 <= step < 100000
    assert not live.services.jobs.current_for(None), "no training job left running"


def _create_embedding(page: Any, name: str) -> None:
    page.locator("#train_new_embedding_name textarea, #train_new_embedding_name input").first.fill(name)
    page.locator("#train_create_embedding").click()
    page.wait_for_function(
        f"() => /Created embedding {name}/.test(document.querySelector('#ti_error').innerText)", timeout=60000
    )
