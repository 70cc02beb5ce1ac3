"""The Checkpoint Merger tab (backend: modules.merger.merge_checkpoints), run through the job queue."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.access.policy import AccessDenied
from modules.core.jobs import JobControl, QueueFull
from modules.merger import InterpMethod, MergeRequest, MergeResult, merge_checkpoints
from modules.ui.common import UiContext, caller_of_gradio, error_html, tool_button
from modules.ui.option_components import checkpoint_choices
from modules.workflows.runner import JobKind

CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")


def merge_request(ctx: UiContext, values: dict[str, Any]) -> MergeRequest:
    """UI values -> MergeRequest, with checkpoint titles resolved to files (clear error if unknown)."""
    models = ctx.services.models

    def path_of(title: str | None) -> Path | None:
        return Path(models.find_checkpoint(title).filename) if title else None

    primary = path_of(values["primary"])
    if primary is None:
        raise ValueError("Failed: Merging requires a primary model.")
    vae = values.get("bake_in_vae")
    vae_path = None
    if vae and vae != "None":
        matches = [v.filename for v in models.list_vaes() if v.name == vae]
        if not matches:
            raise ValueError(f"unknown VAE {vae!r}")
        vae_path = Path(matches[0])
    return MergeRequest(
        primary_model_name=primary,
        secondary_model_name=path_of(values.get("secondary")),
        tertiary_model_name=path_of(values.get("tertiary")),
        interp_method=InterpMethod(values["interp_method"]),
        multiplier=float(values["multiplier"]),
        save_as_half=bool(values["save_as_half"]),
        custom_name=str(values.get("custom_name") or ""),
        checkpoint_format=values["checkpoint_format"],
        config_source=CONFIG_SOURCES.index(values["config_source"]),
        bake_in_vae=vae_path,
        discard_weights=str(values.get("discard_weights") or ""),
        save_metadata=bool(values["save_metadata"]),
        add_merge_recipe=bool(values["add_merge_recipe"]),
        copy_metadata_fields=bool(values["copy_metadata_fields"]),
        metadata_json=str(values.get("metadata_json") or ""),
        output_dir=ctx.services.paths.ckpt_dir,
    )


def build_merger(ctx: UiContext) -> None:
    titles = checkpoint_choices(ctx.services)
    vaes = ["None", *(v.name for v in ctx.services.models.list_vaes())]
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            gr.HTML(
                "<p>A merger of the two checkpoints will be generated in your <b>checkpoint</b> directory.</p>",
                elem_id="modelmerger_help",
            )
            with gr.Row():
                primary = gr.Dropdown(titles, label="Primary model (A)", elem_id="modelmerger_primary_model_name")
                secondary = gr.Dropdown(titles, label="Secondary model (B)", elem_id="modelmerger_secondary_model_name")
                tertiary = gr.Dropdown(titles, label="Tertiary model (C)", elem_id="modelmerger_tertiary_model_name")
                refresh = tool_button("🔄", "refresh_checkpoint_Z")
            custom_name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            multiplier = gr.Slider(
                0.0,
                1.0,
                value=0.3,
                step=0.05,
                label="Multiplier (M) - set to 0 to get model A",
                elem_id="modelmerger_interp_amount",
            )
            interp_method = gr.Radio(
                [m.value for m in InterpMethod],
                value=InterpMethod.WEIGHTED_SUM.value,
                label="Interpolation Method",
                elem_id="modelmerger_interp_method",
            )
            with gr.Row():
                checkpoint_format = gr.Radio(
                    ["ckpt", "safetensors"],
                    value="safetensors",
                    label="Checkpoint format",
                    elem_id="modelmerger_checkpoint_format",
                )
                save_as_half = gr.Checkbox(False, label="Save as float16", elem_id="modelmerger_save_as_half")
            config_source = gr.Radio(
                list(CONFIG_SOURCES),
                value=CONFIG_SOURCES[0],
                label="Copy config from",
                elem_id="modelmerger_config_method",
            )
            bake_in_vae = gr.Dropdown(vaes, value="None", label="Bake in VAE", elem_id="modelmerger_bake_in_vae")
            discard_weights = gr.Textbox(
                label="Discard weights with matching name", elem_id="modelmerger_discard_weights"
            )
            with gr.Accordion("Metadata", open=False):
                with gr.Row():
                    save_metadata = gr.Checkbox(True, label="Save metadata", elem_id="modelmerger_save_metadata")
                    add_merge_recipe = gr.Checkbox(
                        True, label="Add merge recipe metadata", elem_id="modelmerger_add_recipe"
                    )
                    copy_metadata_fields = gr.Checkbox(
                        True, label="Copy metadata from merged models", elem_id="modelmerger_copy_metadata"
                    )
                metadata_json = gr.TextArea("{}", label="Metadata in JSON format", elem_id="modelmerger_metadata_json")
            merge = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact"):
            result = gr.HTML(elem_id="modelmerger_result")
    named = {
        "primary": primary,
        "secondary": secondary,
        "tertiary": tertiary,
        "custom_name": custom_name,
        "multiplier": multiplier,
        "interp_method": interp_method,
        "checkpoint_format": checkpoint_format,
        "save_as_half": save_as_half,
        "config_source": config_source,
        "bake_in_vae": bake_in_vae,
        "discard_weights": discard_weights,
        "save_metadata": save_metadata,
        "add_merge_recipe": add_merge_recipe,
        "copy_metadata_fields": copy_metadata_fields,
        "metadata_json": metadata_json,
    }
    names = list(named)
    dropdowns = [primary, secondary, tertiary]

    def refresh_lists(*current: str | None) -> list[Any]:
        ctx.services.models.refresh()
        fresh = checkpoint_choices(ctx.services)
        return [gr.update(choices=fresh, value=c if c in fresh else None) for c in current]

    refresh.click(refresh_lists, inputs=dropdowns, outputs=dropdowns)

    def run(request: gr.Request, *values: Any) -> Iterator[dict[Component, Any]]:
        try:
            merge_req = merge_request(ctx, dict(zip(names, values, strict=True)))
        except (ValueError, KeyError) as exc:
            yield {result: error_html(str(exc))}
            return
        progress = {"done": 0, "total": 0}

        def job(control: JobControl) -> MergeResult:
            def report(done: int, total: int) -> None:
                control.check()
                progress.update(done=done, total=total)
                control.set_step(done, total)

            return merge_checkpoints(merge_req, progress=report)

        try:
            caller = caller_of_gradio(request)
            ctx.services.access.require_settings_access(caller)  # a new model file: a global change
            queued = ctx.services.runner.submit(caller, JobKind.MERGE, job)
        except (AccessDenied, QueueFull) as exc:
            yield {result: error_html(str(exc))}
            return
        for _ in ctx.services.runner.stream(queued):
            yield {result: f"<p>Merging... {progress['done']}/{progress['total']} tensors</p>"}
        try:
            merged: MergeResult = queued.wait()
        except Exception as exc:  # boundary: the merger's message is for the user
            yield {result: error_html(str(exc))}
            return
        ctx.services.models.refresh()
        fresh = checkpoint_choices(ctx.services)
        updates: dict[Component, Any] = {d: gr.update(choices=fresh) for d in dropdowns}
        updates[result] = f"<p>Checkpoint saved to {html.escape(str(merged.path))}</p>"
        yield updates

    merge.click(
        run,
        inputs=[named[n] for n in names],
        outputs=[result, *dropdowns],
        show_progress="hidden",
        concurrency_limit=None,
    )
