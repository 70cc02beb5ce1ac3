"""One Gradio component per setting (Settings page and quicksettings), built from its OptionInfo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.core.options import OptionInfo
from modules.generation import samplers
from modules.services import Services

ChoicesFn = Callable[[], list[Any]]


def tab_labels() -> list[str]:
    """Labels of the built-in tabs, for ui_tab_order / hidden_tabs."""
    return ["txt2img", "img2img", "Extras", "PNG Info", "Checkpoint Merger", "Settings"]


def vae_choices(services: Services) -> list[str]:
    return ["Automatic", "None", *(v.name for v in services.models.list_vaes())]


def checkpoint_choices(services: Services) -> list[str]:
    return [c.title for c in services.models.list_checkpoints()]


def runtime_choices(services: Services) -> dict[str, ChoicesFn]:
    """Choices that depend on what is installed (A1111 fills these from the loaded lists)."""
    return {
        "sd_model_checkpoint": lambda: checkpoint_choices(services),
        "sd_vae": lambda: vae_choices(services),
        "hide_samplers": samplers.sampler_names,
        "quicksettings_list": lambda: sorted(services.registry.options),
        "ui_tab_order": tab_labels,
        "hidden_tabs": tab_labels,
        "infotext_skip_pasting": lambda: sorted({o.infotext for o in services.registry.options.values() if o.infotext}),
    }


def _kind(info: OptionInfo) -> str:
    if info.component != "auto":
        return info.component
    default = info.default
    if isinstance(default, bool):
        return "checkbox"
    if isinstance(default, (int, float)):
        return "number"
    if isinstance(default, list):
        return "multiselect"
    return "textbox"


def option_component(
    info: OptionInfo, value: Any, *, choices: ChoicesFn | None = None, elem_id: str | None = None
) -> Component:
    """The widget for one option, showing `value`. `choices` overrides the declared ones."""
    kind = _kind(info)
    listed = choices() if choices is not None else info.choice_list()
    label = info.label
    elem_id = elem_id or f"setting_{info.key}"
    common: dict[str, Any] = {"label": label, "elem_id": elem_id, "info": info.comment or None}
    if kind == "checkbox":
        return gr.Checkbox(bool(value), **common)
    if kind == "slider":
        return gr.Slider(
            info.minimum or 0, info.maximum if info.maximum is not None else 100, value=value, step=info.step, **common
        )
    if kind == "number":
        return gr.Number(value, precision=0 if isinstance(info.default, int) else None, **common)
    if kind == "color":
        return gr.ColorPicker(str(value), **common)
    if kind == "radio" and listed:
        # (label, value) pairs keep numeric choices numeric: the browser sends them back typed
        return gr.Radio([(str(c), c) for c in listed], value=value, **common)
    if kind in ("dropdown", "radio"):
        options = [str(c) for c in (listed or [])]
        shown = str(value) if value is not None else None
        if shown and shown not in options:
            options.append(shown)  # keep a stored value visible even if it is not installed now
        return gr.Dropdown(options, value=shown, allow_custom_value=True, **common)
    if kind == "multiselect":
        options = [str(c) for c in (listed or [])]
        current = [str(v) for v in (value or [])]
        options += [v for v in current if v not in options]
        return gr.Dropdown(options, value=current, multiselect=True, allow_custom_value=True, **common)
    return gr.Textbox(str(value), lines=1, **common)


def refresh_choices_update(info: OptionInfo, value: Any, choices: ChoicesFn | None) -> Any:
    """A component update with fresh choices (for the refresh buttons)."""
    if choices is None:
        return gr.update()
    listed = [str(c) for c in choices()]
    if isinstance(value, list):
        return gr.update(choices=listed + [v for v in value if v not in listed])
    if value and str(value) not in listed:
        listed.append(str(value))
    return gr.update(choices=listed)
