import gradio as gr

from modules import script_callbacks, scripts


class PromptSuffix(scripts.Script):
    prompt_component = None  # the tab's prompt box, found by after_component (a common extension pattern)

    def title(self):
        return "Prompt suffix"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("Prompt suffix", open=False, elem_id=self.elem_id("accordion")):
            enabled = gr.Checkbox(False, label="Add suffix", elem_id=self.elem_id("enabled"))
            suffix = gr.Textbox("toy", label="Suffix", elem_id=self.elem_id("suffix"))
        self.infotext_fields = [(enabled, lambda params: "Toy suffix" in params), (suffix, "Toy suffix")]
        self.paste_field_names = ["Toy suffix"]
        return [enabled, suffix]

    def after_component(self, component, **kwargs):
        if kwargs.get("elem_id") == ("img2img" if self.is_img2img else "txt2img") + "_prompt":
            self.prompt_component = component

    def process(self, p, enabled, suffix):
        if not enabled:
            return
        p.all_prompts = [f"{prompt}, {suffix}" for prompt in p.all_prompts]
        p.extra_generation_params["Toy suffix"] = suffix


def _rename_old_key(infotext, params):
    """on_infotext_pasted: infotexts from an "older version" of this toy used another key."""
    if "Old toy suffix" in params:
        params["Toy suffix"] = params.pop("Old toy suffix")


script_callbacks.on_infotext_pasted(_rename_old_key)
