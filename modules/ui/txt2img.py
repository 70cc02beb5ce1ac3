"""The txt2img tab."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from modules.core.jobs import JobControl
from modules.generation.hooks import ScriptHooks
from modules.generation.requests import Txt2ImgRequest
from modules.ui import params
from modules.ui.common import Fields, UiContext
from modules.ui.extra_networks_panel import build_extra_networks
from modules.ui.outputs import output_panel
from modules.ui.scripts_ui import build_scripts_ui
from modules.ui.toprow import TokenCounter, build_toprow, wire_interrupt_skip
from modules.ui.wiring import JobFactory, wire_generate, wire_paste
from modules.workflows.generate import check_generation_request


def build_txt2img(ctx: UiContext, counter: TokenCounter) -> Fields:
    """Builds the tab content (inside the caller's gr.Tab); returns its fields by request name."""
    toprow = build_toprow(ctx, "txt2img", counter)
    build_extra_networks(ctx, "txt2img", ctx.services.networks)
    with gr.Row(equal_height=False, elem_id="txt2img_settings_and_results", elem_classes=["settings-and-results"]):
        with gr.Column(elem_id="txt2img_settings", scale=1, min_width=300):
            fields: Fields = {}
            fields.update(params.sampler_controls(ctx, "txt2img"))
            fields.update(params.size_controls("txt2img"))
            fields.update(params.batch_and_cfg("txt2img"))
            seed_fields, reuse = params.seed_controls("txt2img")
            fields.update(seed_fields)
            fields.update(params.hires_controls(ctx))
            fields.update(params.refiner_controls(ctx, "txt2img"))
            fields["tiling"] = gr.Checkbox(False, label="Tiling", elem_id="txt2img_tiling")
            override = params.override_settings_dropdown("txt2img")
            scripts = build_scripts_ui(ctx, "txt2img")
        with gr.Column(scale=1, min_width=300):
            panel = output_panel(ctx, "txt2img")
    fields["prompt"] = toprow.prompt
    fields["negative_prompt"] = toprow.negative_prompt
    fields["styles"] = toprow.styles
    params.wire_reuse_seed(reuse, fields, panel.generation_info, panel.selected)
    wire_interrupt_skip(ctx, toprow, panel.task_id)
    wire_generate(ctx, toprow, fields, override, panel, _job_factory(ctx), scripts=scripts)
    wire_paste(ctx, "txt2img", toprow, fields, override, scripts)
    ctx.targets.fields["txt2img"] = fields
    ctx.targets.override_settings["txt2img"] = override
    ctx.ui_config.register_all("txt2img", list(fields.values()))
    params.start_at_native_size(ctx, fields)
    return fields


def _job_factory(ctx: UiContext) -> JobFactory:
    generation = ctx.services.generation

    def make(
        data: dict[str, Any], _extra: Sequence[Any], user: str | None, hooks: ScriptHooks | None
    ) -> Callable[[JobControl], Any]:
        request = Txt2ImgRequest(**data, save_images=True)
        check_generation_request(ctx.services.access, ctx.services.options, request)
        return lambda control: generation.txt2img(request, control, user=user, hooks=hooks)

    return make
