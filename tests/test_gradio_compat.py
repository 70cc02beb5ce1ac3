"""The Gradio 3/4 layer for extension UI code (modules/extension_host/gradio_compat.py) and A1111's
ui_components: what an extension's controls send to the page (their Gradio config), and that the
translation exists only for extension code."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest

from modules.extension_host.gradio_compat import gradio3_calls, install_aliases
from modules.ui_components import DropdownMulti, FormRow, InputAccordion, ToolButton


@pytest.fixture
def aliases() -> Iterator[None]:
    remove = install_aliases()
    try:
        yield
    finally:
        remove()


def config(block: Any) -> dict[str, Any]:
    """What the page receives for `block` (Gradio's per-block config)."""
    result: dict[str, Any] = block.get_config()
    return result


def test_ui_components_keep_the_props_of_their_gradio_component() -> None:
    with gr.Blocks():
        with FormRow(variant="compact", elem_id="row"):
            button = ToolButton(value="\U0001f504", elem_id="refresh")
        multi = DropdownMulti(choices=["a", "b"], value=["a"], label="Many")
        with InputAccordion(True, label="Feature", elem_id="feature") as accordion:
            gr.Textbox("inside")
    assert config(button)["value"] == "\U0001f504" and "tool" in config(button)["elem_classes"]
    assert button.get_block_name() == "button"
    assert config(multi)["multiselect"] is True and config(multi)["label"] == "Many"
    assert config(accordion)["value"] is True and accordion.elem_id == "feature-checkbox"
    assert accordion.accordion.open is True


def test_gradio3_constructor_and_event_keywords_work_in_extension_code(aliases: None) -> None:
    class HandMade(gr.Button):  # A1111-era subclass: **kwargs, no get_block_name
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)

    with gr.Blocks() as demo, gradio3_calls():
        with gr.Box(), gr.Row(variant="compact"):
            image = gr.Image(source="upload", tool="sketch", type="pil", shape=(8, 8)).style(height=99)
            video = gr.Video(source="webcam")
            choice = gr.Dropdown(["a", "b"], "b", "value")
            gallery = gr.Gallery().style(grid=[3], height="auto")
            made = HandMade(value="Made", elem_id="made")
        made.click(fn=lambda: gr.Dropdown.update(value="a"), outputs=[choice], _js="() => []", show_progress=False)
        made.click(None, None, None, None, None, False, False).then(fn=None, _js="() => 1")
    assert image.sources == ["upload"] and image.height == 99 and video.sources == ["webcam"]
    assert choice.value == "b" and choice.type == "value" and gallery.columns == 3
    assert made.get_block_name() == "button" and config(made)["value"] == "Made"
    js = [dep.get("js") for dep in demo.config["dependencies"]]
    assert "() => []" in js and "() => 1" in js
    assert gr.Dropdown.update(choices=["x"]) == {"__type__": "update", "choices": ["x"]}


def test_our_code_never_sees_the_translation_or_the_aliases() -> None:
    remove = install_aliases()
    remove()
    assert not hasattr(gr, "Box") and not hasattr(gr.Dropdown, "update") and not hasattr(gr.Button, "style")
    with gr.Blocks():
        with gradio3_calls():
            pass
        with pytest.raises(TypeError):
            gr.Button("x", _js="() => 1")  # type: ignore[call-arg]
        button = gr.Button("x")
        with pytest.raises(TypeError):
            button.click(fn=None, _js="() => 1")  # type: ignore[call-arg]


def test_extension_made_input_accordion_as_regional_prompter_writes_it(aliases: None) -> None:
    """An extension's own InputAccordion: a gr.Checkbox subclass whose `__init__` is decorated with
    `@wraps(gr.Checkbox.__init__)` (hiding its own `setup` keyword from the signature), that calls
    `.change(_js=...)` on itself and moves its class into a module that is not loaded (Forge's
    Gradio 4 trick, `__module__ = "modules.ui_components"`)."""

    class OwnAccordion(gr.Checkbox):
        @functools.wraps(gr.Checkbox.__init__)
        def __init__(self, value: Any = None, setup: bool = False, **kwargs: Any):
            if not setup:
                super().__init__(value=value, **kwargs)
                return
            super().__init__(value=value, **{**kwargs, "elem_id": "own-checkbox", "visible": False})
            self.change(fn=None, _js="(on) => on", inputs=[self])
            self.accordion = gr.Accordion(**{**kwargs, "elem_id": "own", "open": False})

        def __enter__(self) -> Any:
            self.accordion.__enter__()
            return self

        def __exit__(self, *exc: Any) -> None:
            self.accordion.__exit__(*exc)

        def get_block_name(self) -> str:
            return "checkbox"

    OwnAccordion.__module__ = "an_extension_module_that_is_not_loaded"
    with gr.Blocks() as demo, gradio3_calls(), OwnAccordion(value=False, setup=True, label="Regional") as active:
        inside = gr.Textbox("inside")
    assert isinstance(active, OwnAccordion) and active.accordion.elem_id == "own"
    assert config(active)["elem_id"] == "own-checkbox" and config(active)["value"] is False
    components = {c["id"]: c for c in demo.config["components"]}
    assert components[active._id]["type"] == "checkbox" and components[active._id]["component_class_id"]
    assert components[inside._id]["props"]["value"] == "inside"
    assert "(on) => on" in [dep.get("js") for dep in demo.config["dependencies"]]
