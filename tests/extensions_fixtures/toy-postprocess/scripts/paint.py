import gradio as gr
from PIL import Image

from modules import scripts


class PaintItRed(scripts.Script):
    def title(self):
        return "Paint it red"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(False, label="Paint it red")]

    def postprocess_image(self, p, pp, enabled):
        if enabled:
            pp.image = Image.new("RGB", pp.image.size, (255, 0, 0))
