"""A1111 extension patterns around the core tabs: "Send to" buttons (`create_buttons` +
`bind_buttons`, `register_paste_params_button(ParamBinding(...))` from a Gallery and from another
tab), an extra networks page (`ui_extra_networks.register_page`), and request-time Gradio 3
updates from event handlers (`gr.Dropdown.update`, `gr.update`, a component returned with
Gradio 3 keywords)."""

import os

import gradio as gr
from PIL import Image

from modules import generation_parameters_copypaste as paste
from modules import script_callbacks, ui_extra_networks

INFOTEXT = "a red fox\nNegative prompt: blurry\nSteps: 7, Sampler: Euler a, CFG scale: 6, Seed: 1234, Size: 96x80"
CARDS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cards")


class ToyCardsPage(ui_extra_networks.ExtraNetworksPage):
    def __init__(self):
        super().__init__("Toy Cards")

    def refresh(self):
        self.refreshed = True

    def create_item(self, name, index=None, enable_filter=True):
        path = os.path.join(CARDS_DIR, name)
        return {
            "name": name,
            "filename": path + ".txt",
            "preview": self.find_preview(path),
            "description": self.find_description(path),
            "search_terms": [self.search_terms_from_path(path + ".txt")],
            "prompt": ui_extra_networks.quote_js(f"<toy:{name}:")
            + " + opts.extra_networks_default_multiplier + "
            + ui_extra_networks.quote_js(">"),
            "local_preview": path + ".png",
        }

    def list_items(self):
        for index, name in enumerate(["toy-alpha", "toy-beta"]):
            yield self.create_item(name, index)

    def allowed_directories_for_previews(self):
        return [CARDS_DIR]


def on_before_ui():
    ui_extra_networks.register_page(ToyCardsPage())


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.HTML("toy placeholder", elem_id="toy_send_html")  # javascript/toy_sendto.js replaces it
        image = gr.Image(Image.new("RGB", (96, 80), (200, 30, 30)), type="pil", elem_id="toy_send_image")
        text = gr.Textbox(INFOTEXT, label="Toy infotext", elem_id="toy_send_text")
        gallery = gr.Gallery([Image.new("RGB", (64, 48), (30, 30, 200))], elem_id="toy_send_gallery")
        with gr.Row():
            buttons = paste.create_buttons(["img2img", "txt2img", "extras"])
        paste.bind_buttons(buttons, image, text)
        to_inpaint = gr.Button("Toy gallery to inpaint", elem_id="toy_send_gallery_inpaint")
        paste.register_paste_params_button(
            paste.ParamBinding(paste_button=to_inpaint, tabname="inpaint", source_image_component=gallery)
        )
        from_txt2img = gr.Button("Toy txt2img to img2img", elem_id="toy_send_from_txt2img")
        paste.register_paste_params_button(
            paste.ParamBinding(paste_button=from_txt2img, tabname="img2img", source_tabname="txt2img")
        )
        # Gradio 3 at request time: handlers answer with X.update and build components with Gradio 3 keywords
        choice = gr.Dropdown(["a"], value="a", label="Toy choice", interactive=True, elem_id="toy_send_choice")
        note = gr.Textbox("", label="Toy note", visible=False, elem_id="toy_send_note")
        sketch = gr.Image(None, type="pil", visible=False, elem_id="toy_send_sketch")
        refresh = gr.Button("Toy refresh", elem_id="toy_send_refresh")
        refresh.click(
            fn=lambda: gr.Dropdown.update(choices=["a", "b", "c"], value="c"), inputs=[], outputs=[choice]
        ).then(fn=lambda: gr.Textbox(value="shown", visible=True, lines=2).style(container=True), outputs=[note]).then(
            fn=lambda: (gr.Image(source="upload", tool="sketch", visible=True), gr.update(label="Toy note!")),
            outputs=[sketch, note],
        ).then(fn=None, _js="() => { document.body.dataset.toySendThen = 'yes'; }")
    return [(tab, "Toy Send", "toy_send_tab")]


script_callbacks.on_before_ui(on_before_ui)
script_callbacks.on_ui_tabs(on_ui_tabs)
