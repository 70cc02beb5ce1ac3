import gradio as gr
from PIL import ImageOps

from modules import scripts_postprocessing


class ToyExtras(scripts_postprocessing.ScriptPostprocessing):
    name = "Toy extras"
    order = 2000

    def ui(self):
        return {"enable": gr.Checkbox(True, label="Toy extras"), "tag": gr.Textbox("toy", label="Tag")}

    def process_firstpass(self, pp, enable, tag):
        pp.shared.target_width = pp.image.width

    def process(self, pp, enable, tag):
        if enable:
            pp.image = ImageOps.invert(pp.image.convert("RGB"))
            pp.info["Toy extras"] = tag
