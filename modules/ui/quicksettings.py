"""The top bar: quicksettings (A1111 default: checkpoint, VAE, clip skip), each with its refresh button.

Changing the checkpoint loads the model in the job queue, streaming its state, so the page stays
usable meanwhile, and stores sd_model_checkpoint (the engine reads it for every job) once it loaded.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.access.policy import AccessDenied
from modules.core.jobs import Job
from modules.core.options import OptionError
from modules.models.errors import ModelError
from modules.ui.common import UiContext, caller_of_gradio, tool_button
from modules.ui.option_components import option_component, refresh_choices_update, runtime_choices
from modules.ui.settings import settings_json

CHECKPOINT = "sd_model_checkpoint"


def quicksettings_keys(ctx: UiContext) -> list[str]:
    listed = ctx.settings.get("quicksettings_list") or []
    return [key for key in listed if key in ctx.services.registry]


def build_quicksettings(ctx: UiContext, json_box: gr.Textbox) -> dict[str, Component]:
    """The row above the tabs; returns key -> component. `json_box` is the hidden #settings_json."""
    options = ctx.services.options
    choices = runtime_choices(ctx.services)
    components: dict[str, Component] = {}
    with gr.Row(elem_id="quicksettings", equal_height=True):
        for key in quicksettings_keys(ctx):
            info = ctx.services.registry[key]
            value = options.get(key)
            if key == CHECKPOINT and not value:
                value = _active_title(ctx)
            components[key] = option_component(info, value, choices=choices.get(key))
            if key in choices:
                button = tool_button("🔄", f"refresh_{key}")
                _wire_refresh(ctx, key, components[key], button)
    status = gr.HTML(elem_id="quicksettings_status", elem_classes=["quicksettings-status"])
    for key, component in components.items():
        _wire_change(ctx, key, component, status, json_box)
    return components


def _active_title(ctx: UiContext) -> str | None:
    active = ctx.services.models.active
    if active is not None:
        return active.checkpoint.title
    listed = ctx.services.models.list_checkpoints()
    return listed[0].title if listed else None


def _wire_refresh(ctx: UiContext, key: str, component: Component, button: gr.Button) -> None:
    choices = runtime_choices(ctx.services).get(key)
    info = ctx.services.registry[key]

    def refresh(value: Any) -> Any:
        if key in (CHECKPOINT, "sd_vae"):
            ctx.services.models.refresh()
        return refresh_choices_update(info, value, choices)

    button.click(refresh, inputs=[component], outputs=[component])


def _wire_change(ctx: UiContext, key: str, component: Any, status: gr.HTML, json_box: gr.Textbox) -> None:
    """The same path as the Settings tab and POST /sdapi/v1/options: validated, checked against the
    access policy (a refused change is not stored and the control goes back to the stored value),
    a new checkpoint loaded in the job queue first and stored once it loaded."""
    options = ctx.services.options
    settings = ctx.services.settings

    def change(value: Any, request: gr.Request) -> Iterator[tuple[str, str, Any]]:
        if value is None:
            return
        try:
            prepared = settings.prepare(caller_of_gradio(request), {key: value}, strict=True)
            settings.store(prepared)  # a failed write (OSError) changes nothing
        except (OptionError, ModelError, AccessDenied, OSError) as exc:
            yield f'<span class="error">{html.escape(str(exc))}</span>', settings_json(options), _stored(ctx, key)
            return
        job = settings.load_checkpoint(prepared)
        if job is None:
            yield "", settings_json(options), gr.update()
            return
        for text in _stream_load(ctx, job, str(value)):
            yield text, settings_json(options), gr.update()

    component.change(
        change,
        inputs=[component],
        outputs=[status, json_box, component],
        show_progress="hidden",
        concurrency_limit=None,
        trigger_mode="always_last",
    )


def _stored(ctx: UiContext, key: str) -> Any:
    """The control's stored value (the active checkpoint when none is stored)."""
    value = ctx.services.options.get(key)
    return _active_title(ctx) if key == CHECKPOINT and not value else value


def _stream_load(ctx: UiContext, job: Job, title: str) -> Iterator[str]:
    shown = html.escape(title)
    for position in ctx.services.runner.stream(job):
        waiting = f" (waiting for {position} job(s))" if position else ""
        yield f'<span class="loading">Loading {shown}...{waiting}</span>'
    try:
        loaded = job.wait()
    except Exception as exc:  # boundary: a model that fails to load is reported, the UI goes on
        yield f'<span class="error">Could not load {shown}: {html.escape(str(exc))}</span>'
        return
    yield f'<span class="loaded">Loaded {html.escape(str(loaded))}</span>'
