"""Generation parameter controls shared by txt2img and img2img; dict keys are request field names."""

from __future__ import annotations

import json
import random
from typing import Any

import gradio as gr

from modules.generation import samplers
from modules.generation.latents import LATENT_UPSCALE_MODES
from modules.generation.txt2img import BUILTIN_IMAGE_UPSCALERS
from modules.models.errors import ModelNotFound
from modules.ui.common import Fields, UiContext, tool_button

UI_DEFAULT_SAMPLER = "DPM++ 2M"
UI_DEFAULT_STEPS = 20  # A1111's UI default (the API's is 50)
UI_DEFAULT_SIZE = 512


def visible_samplers(ctx: UiContext) -> list[str]:
    hidden = set(ctx.settings.get("hide_samplers") or [])
    return [name for name in samplers.sampler_names() if name not in hidden]


def sampler_controls(ctx: UiContext, tab: str) -> Fields:
    names = visible_samplers(ctx)
    f: Fields = {}
    with gr.Row(elem_id=f"{tab}_sampling_row"):
        f["sampler_name"] = gr.Dropdown(
            names,
            value=UI_DEFAULT_SAMPLER if UI_DEFAULT_SAMPLER in names else (names[0] if names else None),
            label="Sampling method",
            elem_id=f"{tab}_sampling",
        )
        f["scheduler"] = gr.Dropdown(
            [s.label for s in samplers.SCHEDULERS], value="Automatic", label="Schedule type", elem_id=f"{tab}_scheduler"
        )
        f["steps"] = gr.Slider(1, 150, value=UI_DEFAULT_STEPS, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
    return f


def size_controls(tab: str) -> Fields:
    f: Fields = {}
    with gr.Row(elem_id=f"{tab}_dimensions_row"):
        with gr.Column(scale=4, min_width=180):
            f["width"] = gr.Slider(64, 2048, value=UI_DEFAULT_SIZE, step=8, label="Width", elem_id=f"{tab}_width")
            f["height"] = gr.Slider(64, 2048, value=UI_DEFAULT_SIZE, step=8, label="Height", elem_id=f"{tab}_height")
        swap = tool_button("⇅", f"{tab}_res_switch_btn")
    swap.click(lambda w, h: (h, w), inputs=[f["width"], f["height"]], outputs=[f["width"], f["height"]], queue=False)
    return f


def start_at_native_size(ctx: UiContext, fields: Fields) -> None:
    """Width and Height start at the selected checkpoint's native size (the demo model 128, SD2-v
    768, SDXL 1024: at 512 the demo model draws blobs, it never saw that size). Called after
    ui-config registration and never stored: a size the user put in ui-config.json wins."""
    models = ctx.services.models
    wanted = str(ctx.settings.get("sd_model_checkpoint") or "")
    try:
        checkpoint = models.find_checkpoint(wanted) if wanted else models.list_checkpoints()[0]
    except (ModelNotFound, IndexError):
        return
    side = models.native_size(checkpoint)
    for key in ("width", "height"):
        if fields[key].value == UI_DEFAULT_SIZE:
            fields[key].value = side


def batch_and_cfg(tab: str) -> Fields:
    f: Fields = {}
    with gr.Row(elem_id=f"{tab}_batch_row"):
        f["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
        f["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
    f["cfg_scale"] = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
    return f


def seed_controls(tab: str, generation_info: gr.Textbox | None = None) -> tuple[Fields, dict[str, gr.Button]]:
    """Seed with 🎲 / ♻️ and the "Extra" variation controls (A1111's Seed script)."""
    f: Fields = {}
    with gr.Row(elem_id=f"{tab}_seed_row"):
        f["seed"] = gr.Number(-1, label="Seed", precision=0, elem_id=f"{tab}_seed", min_width=120, scale=4)
        random_seed = tool_button("🎲️", f"{tab}_random_seed")
        reuse_seed = tool_button("♻️", f"{tab}_reuse_seed")
        extra = gr.Checkbox(False, label="Extra", elem_id=f"{tab}_subseed_show", scale=0, min_width=80)
    with gr.Group(visible=False, elem_id=f"{tab}_seed_extras") as extras:
        with gr.Row():
            f["subseed"] = gr.Number(-1, label="Variation seed", precision=0, elem_id=f"{tab}_subseed", scale=4)
            random_subseed = tool_button("🎲️", f"{tab}_random_subseed")
            reuse_subseed = tool_button("♻️", f"{tab}_reuse_subseed")
            f["subseed_strength"] = gr.Slider(
                0.0, 1.0, value=0.0, step=0.01, label="Variation strength", elem_id=f"{tab}_subseed_strength", scale=4
            )
        with gr.Row():
            f["seed_resize_from_w"] = gr.Slider(
                0, 2048, value=0, step=8, label="Resize seed from width", elem_id=f"{tab}_seed_resize_from_w"
            )
            f["seed_resize_from_h"] = gr.Slider(
                0, 2048, value=0, step=8, label="Resize seed from height", elem_id=f"{tab}_seed_resize_from_h"
            )
    extra.change(lambda show: gr.update(visible=show), inputs=[extra], outputs=[extras], queue=False)
    random_seed.click(lambda: -1, outputs=[f["seed"]], queue=False)
    random_subseed.click(lambda: -1, outputs=[f["subseed"]], queue=False)
    buttons = {"seed": reuse_seed, "subseed": reuse_subseed}
    return f, buttons


def wire_reuse_seed(
    buttons: dict[str, gr.Button], fields: Fields, generation_info: gr.Textbox, selected: gr.Number
) -> None:
    """♻️: the seed of the selected (or first) image of the last result."""

    def reuse(info: str, index: float | None, key: str) -> int:
        try:
            data = json.loads(info or "{}")
        except ValueError:
            return -1
        seeds = data.get("all_seeds" if key == "seed" else "all_subseeds") or []
        if not seeds:
            return -1
        position = int(index if index is not None else -1) - int(data.get("index_of_first_image", 0))
        return int(seeds[position] if 0 <= position < len(seeds) else seeds[0])

    for key, button in buttons.items():
        button.click(
            lambda info, index, _k=key: reuse(info, index, _k),
            inputs=[generation_info, selected],
            outputs=[fields[key]],
            queue=False,
        )


def hires_upscaler_names() -> list[str]:
    return [*LATENT_UPSCALE_MODES, *BUILTIN_IMAGE_UPSCALERS]


def hires_controls(ctx: UiContext) -> Fields:
    """txt2img's Hires. fix accordion (checkbox #txt2img_hr-checkbox turns it on)."""
    f: Fields = {}
    settings = ctx.settings
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
        f["enable_hr"] = gr.Checkbox(False, label="Hires. fix", elem_id="txt2img_hr-checkbox")
        with gr.Row():
            f["hr_upscaler"] = gr.Dropdown(
                hires_upscaler_names(), value="Latent", label="Upscaler", elem_id="txt2img_hr_upscaler"
            )
            f["hr_second_pass_steps"] = gr.Slider(
                0, 150, value=0, step=1, label="Hires steps", elem_id="txt2img_hires_steps"
            )
            f["denoising_strength"] = gr.Slider(
                0.0, 1.0, value=0.7, step=0.01, label="Denoising strength", elem_id="txt2img_denoising_strength"
            )
        with gr.Row():
            f["hr_scale"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            f["hr_resize_x"] = gr.Slider(
                0, 2048, value=0, step=8, label="Resize width to", elem_id="txt2img_hr_resize_x"
            )
            f["hr_resize_y"] = gr.Slider(
                0, 2048, value=0, step=8, label="Resize height to", elem_id="txt2img_hr_resize_y"
            )
        if settings.get("hires_fix_show_sampler"):
            with gr.Row():
                checkpoints = ["Use same checkpoint", *(c.title for c in ctx.services.models.list_checkpoints())]
                f["hr_checkpoint_name"] = gr.Dropdown(
                    checkpoints, value="Use same checkpoint", label="Hires checkpoint", elem_id="hr_checkpoint"
                )
                f["hr_sampler_name"] = gr.Dropdown(
                    ["Use same sampler", *visible_samplers(ctx)],
                    value="Use same sampler",
                    label="Hires sampling method",
                    elem_id="hr_sampler",
                )
                f["hr_scheduler"] = gr.Dropdown(
                    ["Use same scheduler", *(s.label for s in samplers.SCHEDULERS)],
                    value="Use same scheduler",
                    label="Hires schedule type",
                    elem_id="hr_scheduler",
                )
        if settings.get("hires_fix_show_prompts"):
            f["hr_prompt"] = gr.Textbox(label="Hires prompt", lines=3, elem_id="hires_prompt")
            f["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt", lines=3, elem_id="hires_neg_prompt")
    return f


REFINER_NONE = "None"


def checkpoint_titles(ctx: UiContext) -> list[str]:
    return [c.title for c in ctx.services.models.list_checkpoints()]


def refiner_controls(ctx: UiContext, tab: str) -> Fields:
    """A1111 1.6+'s Refiner accordion (its built-in Refiner script): checkbox <tab>_enable-checkbox
    turns it on; "Switch at" is the fraction of the steps after which the second model samples."""
    f: Fields = {}
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab}_enable", elem_classes=["input-accordion"]) as accordion:
        enable = gr.Checkbox(False, label="Refiner", elem_id=f"{tab}_enable-checkbox")
        f["refiner_enable"] = enable
        with gr.Row():
            f["refiner_checkpoint"] = gr.Dropdown(
                [REFINER_NONE, *checkpoint_titles(ctx)],
                value=REFINER_NONE,
                label="Checkpoint",
                elem_id=f"{tab}_checkpoint",
                allow_custom_value=True,  # a pasted name the list does not hold yet
                scale=4,
            )
            refresh = tool_button("🔄", f"{tab}_checkpoint_refresh")
            f["refiner_switch_at"] = gr.Slider(
                0.01, 1.0, value=0.8, step=0.01, label="Switch at", elem_id=f"{tab}_switch_at", scale=4
            )

    def refreshed() -> Any:
        ctx.services.models.refresh()
        return gr.update(choices=[REFINER_NONE, *checkpoint_titles(ctx)])

    refresh.click(refreshed, outputs=[f["refiner_checkpoint"]], queue=False)
    # A1111's InputAccordion: turning it on (e.g. by pasting an infotext with a refiner) opens it
    enable.change(lambda on: gr.update(open=True) if on else gr.update(), inputs=[enable], outputs=[accordion])
    return f


def refiner_request_values(data: dict[str, Any]) -> None:
    """UI values -> request fields: no refiner unless enabled with a checkpoint chosen (A1111's setup)."""
    enabled = bool(data.pop("refiner_enable", False))
    if not enabled or data.get("refiner_checkpoint") in (None, "", REFINER_NONE):
        data.pop("refiner_checkpoint", None)
        data.pop("refiner_switch_at", None)


def override_settings_dropdown(tab: str) -> gr.Dropdown:
    """A1111's "Override settings": filled from pasted infotext, applied to the next job only."""
    return gr.Dropdown(
        [],
        value=[],
        multiselect=True,
        allow_custom_value=True,
        label="Override settings",
        visible=False,
        elem_id=f"{tab}_override_settings",
    )


def fixed_seed(value: Any) -> int:
    """-1 / empty -> a random seed, as the engine would pick (used where the UI must know it)."""
    try:
        seed = int(value)
    except (TypeError, ValueError):
        seed = -1
    return seed if seed != -1 else int(random.randrange(4294967294))
