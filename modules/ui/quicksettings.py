"""The top bar: quicksettings (A1111 default: checkpoint, VAE, clip skip), each with its refresh button.

Changing the checkpoint stores sd_model_checkpoint (the engine reads it for every job) and loads
the model in the job queue, streaming its state, so the page stays usable meanwhile.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.core.jobs import JobControl
from modules.core.options import OptionError
from modules.ui.common import UiContext, tool_button, user_of
from modules.ui.option_components import option_component, refresh_choices_update, runtime_choices
from modules.ui.outputs import POLL_SECONDS
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
    options = ctx.services.options

    def change(value: Any, request: gr.Request) -> Iterator[tuple[str, str]]:
        if value is None:
            return
        try:
            if key == CHECKPOINT:
                ctx.services.models.find_checkpoint(str(value))
            changed = bool(options.update({key: value}))  # a failed write changes nothing
        except (OptionError, KeyError, ValueError, OSError) as exc:
            yield f'<span class="error">{html.escape(str(exc))}</span>', settings_json(options)
            return
        if key != CHECKPOINT or not changed:
            yield "", settings_json(options)
            return
        for text in _load_in_background(ctx, str(value), user_of(request)):
            yield text, settings_json(options)

    component.change(
        change,
        inputs=[component],
        outputs=[status, json_box],
        show_progress="hidden",
        concurrency_limit=None,
        trigger_mode="always_last",
    )


def _load_in_background(ctx: UiContext, title: str, user: str | None) -> Iterator[str]:
    models = ctx.services.models

    def load(_control: JobControl) -> str:
        return models.load(title).checkpoint.title

    job = ctx.services.jobs.submit("load_model", load, owner=user)
    shown = html.escape(title)
    while not job.done_event.wait(POLL_SECONDS):
        position = ctx.services.jobs.position(job)
        waiting = f" (waiting for {position} job(s))" if position else ""
        yield f'<span class="loading">Loading {shown}...{waiting}</span>'
    try:
        loaded = job.wait()
    except Exception as exc:  # boundary: a model that fails to load is reported, the UI goes on
        yield f'<span class="error">Could not load {shown}: {html.escape(str(exc))}</span>'
        return
    yield f'<span class="loaded">Loaded {html.escape(str(loaded))}</span>'
