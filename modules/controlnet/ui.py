"""The ControlNet accordion of txt2img and img2img: one tab per unit with the extension's controls
and element ids (`<tab>_controlnet_ControlNet-<i>_...`), a preprocessor preview, and paste fields
that restore units from `ControlNet N` infotext entries.

Built by the always-on ControlNet script's ui(); gradio is imported only here and only then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from modules.controlnet.preprocessors import PREPROCESSORS, PreprocessorError, find
from modules.controlnet.units import CONTROL_MODES, HR_OPTIONS, RESIZE_MODES, ControlNetUnit, units_from_infotext


def _paste(index: int, name: str) -> Callable[[dict[str, Any]], Any]:
    """Infotext params -> the value of unit `index`'s control `name` (unchanged when absent)."""
    import gradio as gr

    def value(params: dict[str, Any]) -> Any:
        unit = units_from_infotext(params).get(index)
        if unit is None:
            return False if name == "enabled" else gr.update()
        return True if name == "enabled" else getattr(unit, name)

    return value


def _threshold_updates(module: str) -> tuple[Any, Any]:
    import gradio as gr

    try:
        pre = find(module)
    except PreprocessorError:
        return gr.update(visible=False), gr.update(visible=False)
    out = []
    for slider in (pre.threshold_a, pre.threshold_b):
        if slider is None:
            out.append(gr.update(visible=False))
        else:
            out.append(
                gr.update(
                    visible=True,
                    label=slider.label,
                    value=slider.value,
                    minimum=slider.minimum,
                    maximum=slider.maximum,
                    step=slider.step,
                )
            )
    return out[0], out[1]


def build_unit(tab: str, index: int, service: Any, fields: Sequence[str]) -> tuple[list[Any], list[Any]]:
    import gradio as gr

    prefix = f"{tab}_controlnet_ControlNet-{index}_"
    defaults = ControlNetUnit(enabled=False)
    c: dict[str, Any] = {}
    with gr.Row():
        c["image"] = gr.Image(
            label="Control image", type="pil", sources=["upload", "clipboard"], elem_id=prefix + "input_image"
        )
        preview = gr.Image(
            label="Preprocessor preview", type="pil", interactive=False, elem_id=prefix + "generated_image"
        )
    with gr.Row():
        c["enabled"] = gr.Checkbox(label="Enable", value=False, elem_id=prefix + "controlnet_enable_checkbox")
        c["low_vram"] = gr.Checkbox(label="Low VRAM", value=False, elem_id=prefix + "controlnet_low_vram_checkbox")
        c["pixel_perfect"] = gr.Checkbox(
            label="Pixel Perfect", value=False, elem_id=prefix + "controlnet_pixel_perfect_checkbox"
        )
    with gr.Row():
        c["module"] = gr.Dropdown(
            label="Preprocessor",
            choices=list(PREPROCESSORS),
            value="none",
            elem_id=prefix + "controlnet_preprocessor_dropdown",
        )
        trigger = gr.Button(value="\U0001f4a5 Preview", elem_id=prefix + "controlnet_trigger_preprocessor")
        models = ["None", *service.model_titles()]
        c["model"] = gr.Dropdown(
            label="Model", choices=models, value="None", elem_id=prefix + "controlnet_model_dropdown"
        )
        refresh = gr.Button(value="\U0001f504", elem_id=prefix + "controlnet_refresh_models")
    with gr.Row():
        c["weight"] = gr.Slider(label="Control Weight", value=1.0, minimum=0.0, maximum=2.0, step=0.05,
                                elem_id=prefix + "controlnet_control_weight_slider")  # fmt: skip
        c["guidance_start"] = gr.Slider(label="Starting Control Step", value=0.0, minimum=0.0, maximum=1.0, step=0.01,
                                        elem_id=prefix + "controlnet_start_control_step_slider")  # fmt: skip
        c["guidance_end"] = gr.Slider(label="Ending Control Step", value=1.0, minimum=0.0, maximum=1.0, step=0.01,
                                      elem_id=prefix + "controlnet_ending_control_step_slider")  # fmt: skip
    with gr.Row():
        c["processor_res"] = gr.Slider(label="Preprocessor Resolution", value=512, minimum=64, maximum=2048, step=1,
                                       elem_id=prefix + "controlnet_preprocessor_resolution_slider")  # fmt: skip
        c["threshold_a"] = gr.Slider(label="Threshold A", value=-1, minimum=-1, maximum=255, step=1, visible=False,
                                     elem_id=prefix + "controlnet_threshold_A_slider")  # fmt: skip
        c["threshold_b"] = gr.Slider(label="Threshold B", value=-1, minimum=-1, maximum=255, step=1, visible=False,
                                     elem_id=prefix + "controlnet_threshold_B_slider")  # fmt: skip
    c["control_mode"] = gr.Radio(label="Control Mode", choices=list(CONTROL_MODES), value=defaults.control_mode,
                                 elem_id=prefix + "controlnet_control_mode_radio")  # fmt: skip
    c["resize_mode"] = gr.Radio(label="Resize Mode", choices=list(RESIZE_MODES), value=defaults.resize_mode,
                                elem_id=prefix + "controlnet_resize_mode_radio")  # fmt: skip
    c["hr_option"] = gr.Radio(label="Hires-Fix Option", choices=list(HR_OPTIONS), value=defaults.hr_option,
                              elem_id=prefix + "controlnet_hr_option_radio")  # fmt: skip

    def run_preview(image: Any, module: str, res: float, a: float, b: float) -> Any:
        if image is None:
            raise gr.Error("ControlNet: upload a control image first")
        try:
            return service.detect(str(module), image, resolution=int(res), threshold_a=float(a), threshold_b=float(b))
        except (PreprocessorError, ValueError) as exc:
            raise gr.Error(f"ControlNet: {exc}") from None

    trigger.click(
        run_preview,
        inputs=[c["image"], c["module"], c["processor_res"], c["threshold_a"], c["threshold_b"]],
        outputs=[preview],
    )
    c["module"].change(_threshold_updates, inputs=[c["module"]], outputs=[c["threshold_a"], c["threshold_b"]])

    def refresh_models() -> Any:
        service.library.refresh()
        return gr.update(choices=["None", *service.model_titles()])

    refresh.click(refresh_models, outputs=[c["model"]])
    controls = [c[name] for name in fields]
    paste = [(c[name], _paste(index, name)) for name in fields if name != "image"]
    return controls, paste


def build_accordion(tab: str, service: Any, fields: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """Every unit's controls in `fields` order, unit after unit; and the paste fields."""
    import gradio as gr

    controls: list[Any] = []
    paste: list[Any] = []
    with (
        gr.Accordion("ControlNet (built in)", open=False, elem_id=f"{tab}_controlnet"),
        gr.Tabs(elem_id=f"{tab}_controlnet_tabs"),
    ):
        for index in range(service.unit_count()):
            with gr.Tab(f"ControlNet Unit {index}", elem_id=f"{tab}_controlnet_ControlNet-{index}_tab"):
                unit_controls, unit_paste = build_unit(tab, index, service, fields)
            controls += unit_controls
            paste += unit_paste
    return controls, paste
