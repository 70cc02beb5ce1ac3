"""UI logic without a browser: pasting infotext, settings apply, ui-config defaults, tab order,
masks from the editor, token counter, progress text, and the built Blocks' element ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.core.jobs import Job, JobControl
from modules.core.options import OptionError
from modules.core.shared_options import core_registry
from modules.services import Services
from modules.ui.app import create_ui, order_tabs
from modules.ui.common import bind_values
from modules.ui.img2img import init_from_mode, mask_from_layers
from modules.ui.outputs import progress_html
from modules.ui.paste import infotext_to_ui_values, looks_like_infotext, override_settings_from_entries
from modules.ui.toprow import TokenCounter
from modules.ui.ui_config import UiConfig
from tests.fixtures_models import TinyModelFiles, link_into
from tools.demo.model import IMAGE_SIZE

INFOTEXT = (
    "a cat, (sitting:1.2)\nNegative prompt: blurry\n"
    "Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5, Clip skip: 2, Version: v1.10.1"
)


def _defaults() -> dict[str, Any]:
    return {k: o.default for k, o in core_registry().options.items()}


def test_paste_fills_fields_by_request_name_and_splits_old_sampler_names() -> None:
    pasted = infotext_to_ui_values(INFOTEXT, tab="txt2img", registry=core_registry(), settings=_defaults())
    f = pasted.fields
    assert f["prompt"] == "a cat, (sitting:1.2)" and f["negative_prompt"] == "blurry"
    assert (f["steps"], f["seed"], f["cfg_scale"], f["width"], f["height"]) == (25, 1234, 6.5, 512, 768)
    assert (f["sampler_name"], f["scheduler"]) == ("DPM++ 2M", "Automatic")  # Karras is its default
    assert pasted.override_entries == ["Clip skip: 2"]  # the model is never swapped (disable_weights_auto_swap)


def test_paste_keeps_only_fields_the_tab_has_and_respects_skip_setting() -> None:
    settings = _defaults() | {"infotext_skip_pasting": ["Seed"]}
    pasted = infotext_to_ui_values(
        INFOTEXT,
        tab="txt2img",
        registry=core_registry(),
        settings=settings,
        accepted_fields=["prompt", "seed", "steps"],
    )
    assert pasted.fields == {"prompt": "a cat, (sitting:1.2)", "steps": 25}


def test_override_entries_round_trip_and_bad_entries_are_clear_errors() -> None:
    registry = core_registry()
    assert override_settings_from_entries(["Clip skip: 2", "ENSD: 31337"], registry) == {
        "CLIP_stop_at_last_layers": 2,
        "eta_noise_seed_delta": 31337,
    }
    with pytest.raises(OptionError, match="known label"):
        override_settings_from_entries(["Nonsense: 3"], registry)
    with pytest.raises(OptionError, match="expects int"):
        override_settings_from_entries(["Clip skip: lots"], registry)


def test_looks_like_infotext() -> None:
    assert looks_like_infotext(INFOTEXT)
    assert not looks_like_infotext("a cat sitting on a mat, best quality")


def test_ui_config_applies_stored_defaults_and_records_new_ones(tmp_path: Path) -> None:
    import gradio as gr

    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"txt2img/Sampling steps/value": 30, "txt2img/Sampling steps/maximum": 80}))
    config = UiConfig.load(path)
    with gr.Blocks():
        steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
        width = gr.Slider(64, 2048, value=512, step=8, label="Width")
    config.register_all("txt2img", [steps, width])
    assert (steps.value, steps.maximum) == (30, 80)
    config.save_if_changed()
    stored = json.loads(path.read_text())
    assert stored["txt2img/Width/value"] == 512 and stored["txt2img/Width/step"] == 8
    assert config.changes([30, 640]) == [("txt2img/Width/value", 512, 640)]
    assert config.apply([30, 640]) == 1
    assert json.loads(path.read_text())["txt2img/Width/value"] == 640


def test_tab_order_and_hidden_tabs() -> None:
    labels = ["txt2img", "img2img", "Extras", "PNG Info", "Settings"]
    assert order_tabs(labels, ["Extras", "nonexistent"], ["PNG Info"]) == ["Extras", "txt2img", "img2img", "Settings"]
    assert order_tabs(labels, [], []) == labels


def test_mask_from_editor_layers_and_missing_inputs() -> None:
    background = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    layer.putpixel((3, 4), (255, 255, 255, 255))
    mask = mask_from_layers({"background": background, "layers": [layer], "composite": background})
    assert mask is not None and mask.mode == "L"
    expected = np.zeros((16, 16), dtype=np.uint8)
    expected[4, 3] = 255
    assert np.array_equal(np.asarray(mask), expected)
    assert mask_from_layers({"background": background, "layers": [Image.new("RGBA", (16, 16))]}) is None
    with pytest.raises(Exception, match="Draw a mask"):
        init_from_mode("inpaint", {"inpaint": {"background": background, "layers": []}})
    with pytest.raises(Exception, match="Upload an image"):
        init_from_mode("img2img", {"img2img": None})
    with pytest.raises(Exception, match="both the image and its mask"):
        init_from_mode("inpaint_upload", {"inpaint_base": background, "inpaint_mask": None})
    init = init_from_mode("inpaint", {"inpaint": {"background": background, "layers": [layer]}})
    assert init.image is background and init.mask is not None


def test_token_counter_counts_chunks_like_a1111(tokenizer_cache: Path) -> None:
    counter = TokenCounter(tokenizer_cache)
    one = counter.count("a photo of a cat", 20)
    assert (one.count, one.limit) == (5, 75)
    long = counter.count(", ".join(["red"] * 40), 20)
    assert long.count == 79 and long.limit == 150
    assert counter.count("a cat # a very long comment " + "x " * 100, 20).count == 2
    assert counter.count("a cat <lora:thing:0.5>", 20).count == 2
    assert counter.count("[a photo of a:cat:5]", 20).count == 4  # the longest text of the schedule


def test_progress_text_shows_queue_position_percent_and_eta() -> None:
    job = Job("task(x)", "txt2img", None, lambda c: None)
    assert "In queue: 2" in progress_html(job, 2, None)
    job.control = JobControl(started_at=None)
    job.control.begin_batch(0, 2, 10)
    job.control.set_step(5)
    text = progress_html(job, 0, "data:image/jpeg;base64,AAAA")
    assert "25%" in text and "batch 1/2" in text and "step 5/10" in text and 'src="data:image/jpeg' in text


def test_bind_values_pairs_by_name_and_leaves_out_empty() -> None:
    assert bind_values(["seed", "steps", "prompt"], [None, 20, "a"]) == {"steps": 20, "prompt": "a"}
    with pytest.raises(ValueError):
        bind_values(["seed"], [1, 2])


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    root = tmp_path_factory.mktemp("ui-services")
    (root / "config.json").write_text(json.dumps({"hidden_tabs": ["Extras"], "ui_tab_order": ["PNG Info"]}))
    return build_services(parse_args(["--data-dir", str(root)]), policy=DevicePolicy.cpu())


def _elem_ids(demo: Any) -> list[str]:
    return [c["props"].get("elem_id") for c in demo.config["components"] if c.get("props", {}).get("elem_id")]


def test_built_ui_has_a1111_element_ids_and_follows_tab_settings(services: Services) -> None:
    demo = create_ui(services)
    ids = _elem_ids(demo)
    for elem_id in (
        "tabs",
        "tab_txt2img",
        "tab_img2img",
        "tab_pnginfo",
        "tab_modelmerger",
        "tab_settings",
        "txt2img_prompt",
        "txt2img_neg_prompt",
        "txt2img_generate",
        "txt2img_interrupt",
        "txt2img_skip",
        "txt2img_styles",
        "txt2img_token_counter",
        "txt2img_sampling",
        "txt2img_scheduler",
        "txt2img_steps",
        "txt2img_width",
        "txt2img_height",
        "txt2img_batch_count",
        "txt2img_batch_size",
        "txt2img_cfg_scale",
        "txt2img_seed",
        "txt2img_subseed",
        "txt2img_subseed_strength",
        "txt2img_hr",
        "txt2img_gallery",
        "html_info_txt2img",
        "generation_info_txt2img",
        "img2img_gallery",
        "img2img_image",
        "img2maskimg",
        "img2img_sketch",
        "inpaint_sketch",
        "img_inpaint_base",
        "img_inpaint_mask",
        "mode_img2img",
        "img2img_denoising_strength",
        "resize_mode",
        "pnginfo_image",
        "settings_json",
        "settings_submit",
        "settings_search",
        "setting_samples_format",
        "setting_sd_model_checkpoint",
        "quicksettings",
    ):
        assert elem_id in ids, elem_id
    assert "tab_extras" not in ids  # hidden_tabs
    tab_ids = [i for i in ids if i in ("tab_txt2img", "tab_pnginfo", "tab_settings")]
    assert tab_ids[0] == "tab_pnginfo"  # ui_tab_order puts PNG Info first
    assert len(ids) == len(set(ids)), "duplicate element ids"
    assert (services.paths.ui_config_file).is_file()


def _component_value(demo: Any, elem_id: str) -> Any:
    return next(c["props"]["value"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == elem_id)


def test_size_starts_at_the_demo_models_own_size_only_while_it_is_the_only_model(
    tmp_path: Path, tiny_models: TinyModelFiles
) -> None:
    services = build_services(parse_args(["--data-dir", str(tmp_path)]), policy=DevicePolicy.cpu())
    assert [c.name for c in services.models.list_checkpoints()] == ["demo-shapes.safetensors"]
    demo = create_ui(services)
    sizes = [_component_value(demo, f"{tab}_{d}") for tab in ("txt2img", "img2img") for d in ("width", "height")]
    assert sizes == [IMAGE_SIZE] * 4
    stored = json.loads((tmp_path / "ui-config.json").read_text())
    assert stored["txt2img/Width/value"] == 512  # shown, not stored: it must not outlive the demo's turn

    link_into(services.paths.ckpt_dir, tiny_models.checkpoint("sd1"))
    services.models.refresh()
    assert _component_value(create_ui(services), "txt2img_width") == 512

    stored["img2img/Height/value"] = 256  # a size of the user's own wins over the demo's
    (tmp_path / "ui-config.json").write_text(json.dumps(stored))
    (services.paths.ckpt_dir / "tiny-sd1.safetensors").unlink()
    services.models.refresh()
    shown = create_ui(services)
    assert (_component_value(shown, "img2img_height"), _component_value(shown, "img2img_width")) == (256, IMAGE_SIZE)
