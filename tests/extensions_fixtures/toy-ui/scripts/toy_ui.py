import gradio as gr
from fastapi import FastAPI

from modules import script_callbacks, shared


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Textbox("toy tab content", elem_id="toy_tab_text")
    return [(tab, "Toy tab", "toy_tab")]


def on_ui_settings():
    section = ("toy", "Toy extension")
    shared.opts.add_option(
        "toy_option",
        shared.OptionInfo(3, "Toy option", gr.Slider, {"minimum": 1, "maximum": 10, "step": 1}, section=section).info(
            "a toy"
        ),
    )
    shared.opts.add_option(
        "toy_mode", shared.OptionInfo("a", "Toy mode", gr.Radio, {"choices": ["a", "b"]}, section=section)
    )


def on_app_started(demo, app: FastAPI):
    @app.get("/toy/ping")
    def ping():
        return {"flag": shared.cmd_opts.toy_flag, "option": shared.opts.toy_option, "demo": demo is not None}


script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
