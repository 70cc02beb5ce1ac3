import gradio as gr

from modules import scripts


class PromptSuffix(scripts.Script):
    def title(self):
        return "Prompt suffix"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        enabled = gr.Checkbox(False, label="Add suffix", elem_id=self.elem_id("enabled"))
        suffix = gr.Textbox("toy", label="Suffix", elem_id=self.elem_id("suffix"))
        return [enabled, suffix]

    def process(self, p, enabled, suffix):
        if not enabled:
            return
        p.all_prompts = [f"{prompt}, {suffix}" for prompt in p.all_prompts]
        p.extra_generation_params["Toy suffix"] = suffix
