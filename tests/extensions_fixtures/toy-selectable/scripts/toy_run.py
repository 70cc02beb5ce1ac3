import gradio as gr

from modules import processing, scripts
from modules.processing import StableDiffusionProcessingTxt2Img, process_images


class ToyRun(scripts.Script):
    def title(self):
        return "Toy run"

    def ui(self, is_img2img):
        return [gr.Textbox("default label", label="Label", elem_id=self.elem_id("label"))]

    def run(self, p, label):
        p.extra_generation_params["Toy run"] = label
        p.extra_generation_params["Toy kind"] = (
            "txt2img" if isinstance(p, StableDiffusionProcessingTxt2Img) else "other"
        )
        processed = process_images(p)
        assert isinstance(processed, processing.Processed)
        processed.comments = f"ran toy with {label}"
        return processed
