"""The Settings tab: every registered option by section, search, apply (config.json), reload UI,
the Defaults page (ui-config.json) and "show all pages"."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.access.policy import AccessDenied
from modules.core.options import OptionInfo, Options
from modules.models.errors import ModelError
from modules.ui.common import UiContext, caller_of_gradio
from modules.ui.option_components import ChoicesFn, option_component, runtime_choices
from modules.ui.settings_pages import build_actions_page, build_sysinfo_page
from modules.workflows.settings import ApplyResult


def result_html(result: ApplyResult) -> str:
    parts = [
        f"<p>{len(result.changed)} settings changed"
        + (": " + ", ".join(result.changed) if result.changed else ".")
        + "</p>"
    ]
    for key, message in result.errors.items():
        parts.append(f'<p class="error">{html.escape(key)}: {html.escape(message)}</p>')
    if result.needs_reload_ui:
        parts.append('<p class="restart-notice">Reload UI to apply: ' + ", ".join(result.needs_reload_ui) + "</p>")
    if result.needs_restart:
        parts.append(
            '<p class="restart-notice">Restart the server to apply: ' + ", ".join(result.needs_restart) + "</p>"
        )
    return '<div id="settings_result_text">' + "".join(parts) + "</div>"


def refused_html(message: str) -> str:
    return f'<div id="settings_result_text"><p class="error">Nothing was changed: {html.escape(message)}</p></div>'


def settings_json(options: Options) -> str:
    return json.dumps(options.as_dict(), ensure_ascii=False, default=str)


@dataclass
class SettingsTab:
    components: dict[str, Component]
    json_box: gr.Textbox
    result: gr.HTML


def _visible_options(ctx: UiContext) -> dict[tuple[str, str], list[OptionInfo]]:
    return {
        section: [o for o in infos if not o.hidden]
        for section, infos in ctx.services.registry.sections().items()
        if any(not o.hidden for o in infos)
    }


def build_settings(
    ctx: UiContext, json_box: gr.Textbox, reload_ui: Callable[[], None] | None, skip: Sequence[str] = ()
) -> SettingsTab:
    """`skip`: options shown elsewhere (quicksettings own their `setting_<key>` element)."""
    options = ctx.services.options
    choices = runtime_choices(ctx.services)
    frozen = ctx.services.access.frozen_keys()
    components: dict[str, Component] = {}
    with gr.Row(elem_id="settings_top"):
        submit = gr.Button(
            "Apply settings",
            variant="primary",
            elem_id="settings_submit",
            interactive=len(frozen) < len(ctx.services.registry.options),
        )
        restart = gr.Button("Reload UI", elem_id="settings_restart_gradio", visible=reload_ui is not None)
        show_all = gr.Button("Show all pages", elem_id="settings_show_all_pages")
        gr.Textbox(placeholder="Search...", show_label=False, elem_id="settings_search", container=False, min_width=200)
    result = gr.HTML(elem_id="settings_result")
    with gr.Tabs(elem_id="settings"):
        for (section_id, title), infos in _visible_options(ctx).items():
            with gr.Tab(title, id=f"settings_{section_id}", elem_id=f"settings_{section_id}", render_children=True):
                for info in (i for i in infos if i.key not in skip):
                    with gr.Row(elem_classes=["setting-item"]):
                        component = _component(info, options.get(info.key), choices.get(info.key))
                    if info.key in frozen:
                        component.interactive = False
                    components[info.key] = component
        with gr.Tab("Defaults", id="settings_tab_defaults", elem_id="settings_tab_defaults", render_children=True):
            _defaults_page(ctx)
        with gr.Tab("Actions", id="settings_tab_actions", elem_id="settings_tab_actions", render_children=True):
            build_actions_page(ctx)
        with gr.Tab("Sysinfo", id="settings_tab_sysinfo", elem_id="settings_tab_sysinfo", render_children=True):
            build_sysinfo_page()
    keys = list(components)

    def apply(request: gr.Request, *values: Any) -> dict[Component, Any]:
        """The same path as quicksettings and POST /sdapi/v1/options (admin rule, folder lock)."""
        try:
            outcome = ctx.services.settings.apply(caller_of_gradio(request), dict(zip(keys, values, strict=True)))
        except (AccessDenied, ModelError) as exc:
            return {result: refused_html(str(exc)), json_box: settings_json(options)}
        return {result: result_html(outcome), json_box: settings_json(options)}

    submit.click(apply, inputs=[components[k] for k in keys], outputs=[result, json_box])
    show_all.click(None, js="() => { settingsShowAllPages(); }")
    if reload_ui is not None:
        restart.click(reload_ui, queue=False).then(
            None, js="() => { setTimeout(() => window.location.reload(), 1500); }"
        )
    return SettingsTab(components, json_box, result)


def _component(info: OptionInfo, value: Any, choices: ChoicesFn | None) -> Component:
    component = option_component(info, value, choices=choices)
    component.elem_classes = [*(component.elem_classes or []), "setting"]
    return component


def _defaults_page(ctx: UiContext) -> None:
    config = ctx.ui_config
    gr.HTML(
        "<p>This page allows you to change default values in UI elements on other tabs. Make your changes, "
        "press 'View changes' to review what will be changed, then press 'Apply' to save them. New defaults "
        "will take effect after you reload the UI.</p>"
    )
    with gr.Row():
        view = gr.Button("View changes", elem_id="ui_defaults_view")
        apply = gr.Button("Apply", elem_id="ui_defaults_apply", variant="primary")
    table = gr.HTML(elem_id="ui_defaults_review")
    components = config.value_components()

    def review(*values: Any) -> str:
        changes = config.changes(values)
        if not changes:
            return "<p>No changes.</p>"
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(repr(old))}</td><td>{html.escape(repr(new))}</td></tr>"
            for k, old, new in changes
        )
        return f"<table><thead><tr><th>Path</th><th>Old value</th><th>New value</th></tr></thead><tbody>{rows}</tbody></table>"

    def store(*values: Any) -> str:
        count = config.apply(values)
        return f"<p>Wrote {count} changes to {html.escape(str(config.path))}. Reload the UI to use them.</p>"

    view.click(review, inputs=components, outputs=[table])
    apply.click(store, inputs=components, outputs=[table])
