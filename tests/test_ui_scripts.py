"""Scripts and the Refiner accordion in the txt2img/img2img tabs, without a browser: the built
Blocks (A1111 layout and element ids), the values the Generate handler hands to the scripts
(the same hooks as the API), and pasting infotext into the scripts' and refiner's fields.

The handlers are the real ones the page calls (found by their trigger's elem_id), run on tiny
models; the checks read the generated infotext."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.extension_host.preload import collect_preload_hooks
from modules.extension_host.problems import ProblemLog
from modules.services import Services
from modules.ui.app import create_ui
from modules.ui.params import refiner_request_values
from modules.ui.paste import with_refiner_toggle
from modules.ui.scripts_ui import ScriptPasteField, coerce_like, paste_script_updates
from tests.fixtures_models import TinyModelFiles
from tests.ui_harness import prepare_data_dir

FIXTURES = Path(__file__).parent / "extensions_fixtures"
SD1 = "tiny-sd1"
SDXL = "tiny-sdxl"


@dataclass
class BuiltUi:
    services: Services
    host: ExtensionHost
    demo: Any


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[BuiltUi]:
    root = prepare_data_dir(
        tmp_path_factory.mktemp("ui-scripts"), tiny_models, families=("sd1", "sdxl", "sdxl-refiner")
    )
    for name in ("toy-prompts", "toy-selectable"):
        shutil.copytree(FIXTURES / name, root / "extensions" / name)
    preload = collect_preload_hooks(root)
    args = parse_args(["--data-dir", str(root)], preload_hooks=preload.hooks)
    services = build_services(args, policy=DevicePolicy.cpu())
    for key, value in {"sd_model_checkpoint": SD1, "samples_save": False, "live_previews_enable": False}.items():
        services.options.set(key, value)
    host = facade.bind(
        services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None, preload=preload
    )
    try:
        yield BuiltUi(services, host, create_ui(services, extension_host=host))
    finally:
        facade.unbind()
        services.jobs.shutdown(timeout=5)


# --- helpers: the page's own handlers ----------------------------------------------------------------


def _component(demo: Any, elem_id: str) -> Any:
    found = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    assert len(found) == 1, f"{elem_id}: {len(found)} components"
    return found[0]


def _handler(demo: Any, elem_id: str, event: str = "click") -> Any:
    target = _component(demo, elem_id)
    matches = [f for f in demo.fns.values() if any(t[0] == target._id and t[1] == event for t in f.targets)]
    assert matches, f"no {event} handler on #{elem_id}"
    return matches[0]


def _elem_ids(demo: Any) -> list[str]:
    return [c["props"]["elem_id"] for c in demo.config["components"] if c.get("props", {}).get("elem_id")]


def _generate(demo: Any, tab: str, values: dict[str, Any]) -> str:
    """Click Generate with these values (by elem_id; the rest as built); returns the info HTML."""
    fn = _handler(demo, f"{tab}_generate")
    shown = {f"{tab}_prompt": "a red circle", f"{tab}_steps": 2, f"{tab}_width": 64, f"{tab}_height": 64}
    shown |= {f"{tab}_seed": 7, f"{tab}_script_list": 0, **values}
    args = [shown.get(getattr(c, "elem_id", None) or "", getattr(c, "value", None)) for c in fn.inputs]
    info = _component(demo, f"html_info_{tab}")
    last = ""
    for update in fn.fn(None, *args):
        last = update.get(info, last)
    return re.sub(r"<[^>]+>", "\n", str(last))


def _script_index(built: BuiltUi, tab: str, title: str) -> int:
    return built.host.runner.tab(tab).titles.index(title) + 1  # 0 is "None"


def _paste(demo: Any, tab: str, text: str) -> dict[str, Any]:
    """The ↙ button with `text` in the prompt box: {elem_id: pasted value}."""
    fn = _handler(demo, f"{tab}_paste")
    updates = fn.fn(text)
    assert set(updates) <= set(fn.outputs), "an update for a component that is not an output"
    return {c.elem_id: u.get("value") for c, u in updates.items() if isinstance(u, dict) and "value" in u}


# --- layout ------------------------------------------------------------------------------------------


def test_scripts_follow_a1111_layout_and_component_callbacks_fire(built: BuiltUi) -> None:
    ids = _elem_ids(built.demo)
    for tab in ("txt2img", "img2img"):
        always_on = ids.index(f"script_{tab}_prompt_suffix_enabled")
        dropdown = ids.index(f"{tab}_script_list")
        selectable = ids.index(f"script_{tab}_toy_run_label")
        assert ids.index(f"{tab}_enable") < always_on < dropdown < selectable  # refiner, always-on, dropdown
        for refiner_id in (f"{tab}_enable-checkbox", f"{tab}_checkpoint", f"{tab}_switch_at"):
            assert refiner_id in ids
        dropdown_props = _component(built.demo, f"{tab}_script_list")
        assert dropdown_props.choices[0][0] == "None" and "Toy run" in [c[0] for c in dropdown_props.choices]
        # Script.after_component saw the tab's prompt box (building_tab wraps the tab's building)
        suffix = built.host.runner.tab(tab).script("Prompt suffix")
        assert getattr(suffix, "prompt_component", None) is _component(built.demo, f"{tab}_prompt")
    assert len(ids) == len(set(ids)), "duplicate element ids"


def test_selected_script_controls_show_only_when_chosen(built: BuiltUi) -> None:
    toy = built.host.runner.tab("txt2img").script("Toy run")
    assert toy is not None and toy.group is not None and toy.group.visible is False
    fn = _handler(built.demo, "txt2img_script_list", "change")
    index = _script_index(built, "txt2img", "Toy run")
    position = [g._id for g in fn.outputs].index(toy.group._id)

    def updates(value: int) -> list[Any]:
        result = fn.fn(value)
        return list(result) if len(fn.outputs) > 1 else [result]  # Gradio's one-output convention

    assert updates(index)[position]["visible"] is True
    assert updates(0)[position]["visible"] is False


def test_bare_ui_builds_without_an_extension_host(built: BuiltUi) -> None:
    ids = _elem_ids(create_ui(built.services))
    assert "txt2img_prompt" in ids and "txt2img_enable" in ids and "img2img_switch_at" in ids
    assert "txt2img_script_list" not in ids and not any(i.startswith("script_") for i in ids)


def test_defaults_page_covers_the_script_controls(built: BuiltUi) -> None:
    fn = _handler(built.demo, "ui_defaults_view")
    values = [getattr(c, "value", None) for c in fn.inputs]
    assert "No changes" in fn.fn(*values)
    suffix = _component(built.demo, "script_txt2img_prompt_suffix_suffix")
    values[fn.inputs.index(suffix)] = "changed"
    assert "customscript/prompt_suffix.py/txt2img/Suffix/value" in fn.fn(*values)


# --- generate: the values shown reach the scripts ------------------------------------------------------


def test_generate_runs_the_chosen_script_with_its_shown_value(built: BuiltUi) -> None:
    info = _generate(
        built.demo,
        "txt2img",
        {"txt2img_script_list": _script_index(built, "txt2img", "Toy run"), "script_txt2img_toy_run_label": "from ui"},
    )
    assert "Toy run: from ui" in info and "Toy kind: txt2img" in info
    plain = _generate(built.demo, "txt2img", {})
    assert "Steps: 2" in plain and "Toy run" not in plain


def test_alwayson_script_gets_its_controls_values(built: BuiltUi) -> None:
    values = {"script_txt2img_prompt_suffix_enabled": True, "script_txt2img_prompt_suffix_suffix": "zebra"}
    info = _generate(built.demo, "txt2img", values)
    assert "a red circle, zebra" in info and "Toy suffix: zebra" in info
    assert "Toy suffix" not in _generate(built.demo, "txt2img", {})  # unchecked: the hook does nothing


def test_refiner_values_become_request_fields() -> None:
    data = {"refiner_enable": True, "refiner_checkpoint": "b.safetensors [1]", "refiner_switch_at": 0.6}
    refiner_request_values(data)
    assert data == {"refiner_checkpoint": "b.safetensors [1]", "refiner_switch_at": 0.6}
    for off in (
        {"refiner_enable": False, "refiner_checkpoint": "b"},
        {"refiner_enable": True, "refiner_checkpoint": "None"},
    ):
        refiner_request_values(off)
        assert off == {}


def test_enabled_refiner_switches_models_and_names_it_in_the_infotext(built: BuiltUi) -> None:
    refiner = _component(built.demo, "txt2img_checkpoint")
    title = next(c[0] for c in refiner.choices if str(c[0]).startswith("tiny-sdxl-refiner"))
    values = {"txt2img_enable-checkbox": True, "txt2img_checkpoint": title, "txt2img_switch_at": 0.5}
    options = built.services.options
    options.set("sd_model_checkpoint", SDXL)  # an SDXL base for the SDXL refiner
    try:
        info = _generate(built.demo, "txt2img", {**values, "txt2img_steps": 4})
        off = _generate(built.demo, "txt2img", {**values, "txt2img_enable-checkbox": False})
    finally:
        options.set("sd_model_checkpoint", SD1)
    assert "Model: tiny-sdxl, Refiner: tiny-sdxl-refiner" in info and "Refiner switch at: 0.5" in info
    assert "Steps: 2" in off and "Refiner" not in off


# --- paste -------------------------------------------------------------------------------------------


def test_paste_fills_script_fields_dropdown_and_refiner(built: BuiltUi) -> None:
    refiner = built.services.models.find_checkpoint("tiny-sdxl-refiner")
    text = (
        "a cat\nSteps: 9, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, Toy suffix: zebra, "
        f"Script: Toy run, Refiner: {refiner.short_title}, Refiner switch at: 0.6"
    )
    values = _paste(built.demo, "txt2img", text)
    assert values["txt2img_steps"] == 9
    assert values["script_txt2img_prompt_suffix_enabled"] is True
    assert values["script_txt2img_prompt_suffix_suffix"] == "zebra"
    assert values["txt2img_script_list"] == "Toy run"
    assert values["txt2img_enable-checkbox"] is True
    assert values["txt2img_checkpoint"] == refiner.title
    assert values["txt2img_switch_at"] == 0.6
    renamed = _paste(built.demo, "txt2img", "a cat\nSteps: 9, Seed: 3, Size: 64x64, Old toy suffix: bat")
    assert renamed["script_txt2img_prompt_suffix_suffix"] == "bat"  # the extension's on_infotext_pasted ran first
    plain = _paste(built.demo, "img2img", "a dog\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64")
    assert plain["script_img2img_prompt_suffix_enabled"] is False  # no "Toy suffix": unchecked
    assert plain["img2img_script_list"] == "None" and plain["img2img_enable-checkbox"] is False


def test_paste_helpers_coerce_and_isolate_failures() -> None:
    import gradio as gr

    with gr.Blocks():
        box, check, slider = gr.Textbox("x"), gr.Checkbox(False), gr.Slider(0, 10, value=1)

    def broken(_params: dict[str, Any]) -> Any:
        raise KeyError("no")

    fields = [
        ScriptPasteField(box, "Key"),
        ScriptPasteField(check, "Flag"),
        ScriptPasteField(slider, "Num"),
        ScriptPasteField(box, broken, "toy-x"),
    ]
    problems = ProblemLog()
    updates = paste_script_updates(fields, {"Key": 5, "Flag": "False", "Num": "2.5"}, problems)
    assert [updates[c]["value"] for c in (box, check, slider)] == ["5", False, 2.5]
    assert [(p.extension, p.where) for p in problems.items()] == [("toy-x", "infotext paste (function)")]
    assert paste_script_updates(fields[:1], {}) == {}  # absent key: left as it is
    assert coerce_like(True, "True") is True and coerce_like(3, "4") == 4.0
    assert with_refiner_toggle({"steps": 3}, lambda _n: None) == {"steps": 3, "refiner_enable": False}
    assert with_refiner_toggle({"refiner_checkpoint": "m [1]"}, lambda _n: "m.safetensors [1]") == {
        "refiner_checkpoint": "m.safetensors [1]",
        "refiner_enable": True,
    }


def _updates_by_id(fn: Any, updates: dict[Any, Any]) -> dict[str, Any]:
    assert set(updates) <= set(fn.outputs), "an update for a component that is not an output"
    return {c.elem_id: u.get("value") for c, u in updates.items() if isinstance(u, dict) and "value" in u}


def test_pnginfo_send_pastes_script_fields(built: BuiltUi) -> None:
    fn = _handler(built.demo, "pnginfo_send_to_txt2img")
    text = "a cat\nSteps: 5, Sampler: Euler, Seed: 3, Size: 64x64, Toy suffix: owl"
    values = _updates_by_id(fn, fn.fn(None, text))
    assert values["txt2img_steps"] == 5 and values["script_txt2img_prompt_suffix_suffix"] == "owl"
    assert values["script_txt2img_prompt_suffix_enabled"] is True


def test_send_to_img2img_pastes_only_the_scripts_paste_field_names(built: BuiltUi, tmp_path: Path) -> None:
    import json

    from PIL import Image

    picture = tmp_path / "made.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(picture)
    text = "a cat\nSteps: 5, Sampler: Euler, Seed: 3, Size: 64x64, Toy suffix: owl, Script: Toy run"
    info = json.dumps({"infotexts": [text], "index_of_first_image": 0})
    fn = _handler(built.demo, "txt2img_send_to_img2img")
    values = _updates_by_id(fn, fn.fn([(str(picture), None)], 0, info))
    assert values["img2img_steps"] == 5
    assert values["script_img2img_prompt_suffix_suffix"] == "owl"  # its paste_field_names has "Toy suffix"
    assert "img2img_script_list" not in values  # not named in paste_field_names: left as it is


def test_img2img_generate_runs_its_scripts_with_img2img_values(built: BuiltUi) -> None:
    from PIL import Image

    values = {
        "img2img_image": Image.new("RGB", (64, 64), (200, 40, 40)),
        "resize_mode": 0,  # type="index" radios: the page sends the index
        "img2img_mask_mode": 0,
        "img2img_inpainting_fill": 1,
        "img2img_inpaint_full_res": 0,
        "img2img_script_list": _script_index(built, "img2img", "Toy run"),
        "script_img2img_toy_run_label": "i2i",
        "script_img2img_prompt_suffix_enabled": True,
        "script_img2img_prompt_suffix_suffix": "owl",
    }
    info = _generate(built.demo, "img2img", values)
    assert "Toy run: i2i" in info and "Toy kind: other" in info  # an img2img p
    assert "a red circle, owl" in info and "Toy suffix: owl" in info


def test_a_ui_returning_non_components_is_reported_not_fatal() -> None:
    import gradio as gr

    from modules.ui.scripts_ui import _as_inputs

    class Bad:
        args_from, args_to = 1, 3

    class Scripts:
        tab = "txt2img"
        scripts = [Bad()]

        def extension(self, _script: Any) -> str:
            return "toy-bad"

    problems = ProblemLog()
    with gr.Blocks():
        dropdown = gr.Dropdown(["None"])
        inputs = _as_inputs([dropdown, 5, gr.Row()], Scripts(), problems)
    assert inputs[0] is dropdown and [type(i) for i in inputs[1:]] == [gr.State, gr.State]
    assert inputs[1].value == 5 and inputs[2].value is None
    assert [(p.extension, "not a component" in p.error) for p in problems.items()] == [("toy-bad", True)] * 2


def test_ui_config_defaults_reach_script_controls_and_api_defaults(built: BuiltUi) -> None:
    """Runs last: it rebuilds the UI with stored defaults (A1111's ui-config.json keys)."""
    import json

    config_file = built.services.paths.ui_config_file
    stored = json.loads(config_file.read_text()) if config_file.is_file() else {}
    assert stored.get("customscript/prompt_suffix.py/txt2img/Suffix/value") == "toy"  # recorded at first build
    assert "txt2img/Script/value" not in stored  # an index-type dropdown: not a storable default
    changed = {
        **stored,
        "customscript/prompt_suffix.py/txt2img/Suffix/value": "stored",
        "customscript/toy_run.py/txt2img/Label/value": "stored label",
    }
    config_file.write_text(json.dumps(changed))
    try:
        demo = create_ui(built.services, extension_host=built.host)
        assert _component(demo, "script_txt2img_prompt_suffix_suffix").value == "stored"
        assert _component(demo, "script_txt2img_toy_run_label").value == "stored label"
        hooks = built.host.runner.for_request("txt2img")  # an API request naming no script
        suffix = built.host.runner.tab("txt2img").script("Prompt suffix")
        assert suffix is not None
        assert hooks.args[suffix.args_from : suffix.args_to] == [False, "stored"]  # type: ignore[attr-defined]
    finally:
        config_file.write_text(json.dumps(stored))
        create_ui(built.services, extension_host=built.host)


def test_paste_points_lora_tags_at_the_local_file_with_the_same_hash(built: BuiltUi) -> None:
    import torch
    from safetensors.torch import save_file

    folder = built.services.paths.lora_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my-local-copy.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(2, 4), "lora_unet_x.lora_up.weight": torch.ones(4, 2)}, path)
    catalogue = built.services.generation.networks.catalogue  # type: ignore[union-attr]
    try:
        catalogue.refresh()
        info = catalogue.find_lora("my-local-copy")
        assert info is not None
        shorthash = catalogue.lora_shorthash(info)  # hashed once, as after a first use
        text = (
            "a cat <lora:downloaded_name:0.8> <lora:unknown:1>\n"
            f'Steps: 9, Seed: 3, Size: 64x64, Lora hashes: "downloaded_name: {shorthash}, unknown: 000000000000"'
        )
        values = _paste(built.demo, "txt2img", text)
        assert values["txt2img_prompt"] == "a cat <lora:my-local-copy:0.8> <lora:unknown:1>"
    finally:
        path.unlink()
        catalogue.refresh()


def test_token_counter_counts_what_before_token_counter_callbacks_leave(built: BuiltUi) -> None:
    count = _handler(built.demo, "txt2img_prompt", "change")
    plain = count.fn("a cat", [])
    assert "2/75" in plain

    def longer(params: Any) -> None:
        params.prompt += " sitting on a very long and winding road"

    entry = built.host.callbacks.add("before_token_counter", longer, filename=str(FIXTURES / "toy-x.py"))
    try:
        assert "10/75" in count.fn("a cat", [])
    finally:
        built.host.callbacks.remove_for_function(longer)
    assert entry.name and "2/75" in count.fn("a cat", [])
