"""A1111 extension UI code written for Gradio 3 (as most real extensions are): `_js=`, `gr.X.update`,
`gr.Box`, `.style()`, `source=`/`tool=`, positional Gradio 3 arguments, A1111's ui_components and
a hand-made ToolButton subclass, in an always-on script and in an on_ui_tabs tab."""

import gradio as gr

from modules import script_callbacks, scripts
from modules.ui_components import DropdownMulti, FormColumn, FormGroup, FormHTML, FormRow, InputAccordion, ToolButton


class HandMadeToolButton(gr.Button):
    """As extensions copy it from A1111 1.x: **kwargs only, no get_block_name."""

    def __init__(self, **kwargs):
        super().__init__(variant="secondary", **kwargs)


class ToyGradio3(scripts.Script):
    def title(self):
        return "Toy Gradio 3"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        tab = "img2img" if is_img2img else "txt2img"
        with InputAccordion(False, label="Toy Gradio 3", elem_id=f"toy_g3_{tab}") as enabled:  # noqa: SIM117
            with gr.Box(elem_id=f"toy_g3_box_{tab}"):
                with FormRow(variant="compact", elem_id=f"toy_g3_row_{tab}"):
                    swap = ToolButton(value="Toy swap", elem_id=f"toy_g3_tool_{tab}", tooltip="swap")
                    shout = HandMadeToolButton(value="Toy shout", elem_id=f"toy_g3_handmade_{tab}")
                with FormColumn(elem_id=f"toy_g3_column_{tab}"), FormGroup():
                    words = gr.Textbox("hello", label="Toy words", elem_id=f"toy_g3_words_{tab}").style(container=True)
                    result = gr.Textbox(label="Toy result", elem_id=f"toy_g3_result_{tab}")
                    choice = gr.Dropdown(["a", "b"], "b", label="Toy choice", elem_id=f"toy_g3_choice_{tab}")
                    DropdownMulti(choices=["x", "y"], value=["x"], label="Toy multi", elem_id=f"toy_g3_multi_{tab}")
                    FormHTML("<b>toy html</b>", elem_id=f"toy_g3_html_{tab}")
                gr.Image(source="upload", tool="editor", type="pil", elem_id=f"toy_g3_image_{tab}").style(height=120)
                gr.Video(source="upload", elem_id=f"toy_g3_video_{tab}")
                gr.Gallery(elem_id=f"toy_g3_gallery_{tab}").style(grid=4, height="auto")
        # Gradio 3: _js runs first in the browser, its result goes to fn; fn answers with X.update
        shout.click(
            fn=lambda text: gr.Textbox.update(value=f"{text}!"),
            inputs=[words],
            outputs=[result],
            _js="(text) => text.toUpperCase()",
            show_progress=False,
        ).then(fn=None, _js="() => { document.body.dataset.toyG3Then = 'yes'; }")
        swap.click(fn=lambda: gr.Dropdown.update(value="a"), inputs=[], outputs=[choice])
        return [enabled, words, choice]


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row(variant="compact"), gr.Box():
            gr.Textbox("gradio 3 tab", elem_id="toy_g3_tab_text").style(show_copy_button=True)
        tab.load(fn=None, _js="() => { document.body.dataset.toyG3Load = 'yes'; }")
    return [(tab, "Toy Gradio 3", "toy_g3_tab")]


script_callbacks.on_ui_tabs(on_ui_tabs)
