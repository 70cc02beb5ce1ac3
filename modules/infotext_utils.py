"""A1111's `modules.infotext_utils` (old name: generation_parameters_copypaste) for extensions.

Parsing and quoting are ours (modules.generation.infotext). Paste registration records what
scripts declare (`Script.infotext_fields`, `add_paste_fields`) on the bound app for the UI's
paste buttons; `on_infotext_pasted` callbacks run through `infotext_pasted_callback`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modules.core.options import coerce_value
from modules.extension_host.facade import Lazy, current
from modules.generation import infotext as _infotext

__all__ = [
    "ParamBinding",
    "bind_buttons",
    "create_buttons",
    "create_override_settings_dict",
    "PasteField",
    "add_paste_fields",
    "get_override_settings",
    "parse_generation_parameters",
    "quote",
    "register_paste_params_button",
    "registered_param_bindings",
    "unquote",
]

quote = _infotext.quote
unquote = _infotext.unquote


class PasteField(tuple):
    """(component, target[, api]): `target` is an infotext key or a function(params) -> value."""

    def __new__(cls, component: Any, target: Any, *, api: str | None = None) -> PasteField:
        return super().__new__(cls, (component, target))

    def __init__(self, component: Any, target: Any, *, api: str | None = None):
        super().__init__()
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None
        self.api = api


class ParamBinding:
    def __init__(
        self,
        paste_button: Any,
        tabname: str,
        source_text_component: Any = None,
        source_image_component: Any = None,
        source_tabname: str | None = None,
        override_settings_component: Any = None,
        paste_field_names: list[str] | None = None,
    ):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


def parse_generation_parameters(x: str, skip_fields: Iterable[str] | None = None) -> dict[str, Any]:
    styles = current().services.generation.styles
    return _infotext.parse_generation_parameters(
        x,
        list(skip_fields or []),
        extract_styles=styles.extract_styles_from_prompt if styles.styles else None,
    )


def add_paste_fields(tabname: str, init_img: Any, fields: Any, override_settings_component: Any = None) -> None:
    """Record extra paste fields for a tab (the UI reads `host.paste_fields`)."""
    entry = current().paste_fields.setdefault(tabname, {"init_img": init_img, "fields": []})
    entry["fields"].extend(
        PasteField(*f) if isinstance(f, tuple) and not isinstance(f, PasteField) else f for f in fields or []
    )
    if override_settings_component is not None:
        entry["override_settings_component"] = override_settings_component


def register_paste_params_button(binding: ParamBinding) -> None:
    """Record a "send to <tab>" binding on the app (A1111's registered_param_bindings)."""
    current().paste_bindings.append(binding)


registered_param_bindings = Lazy(lambda: current().paste_bindings)


def create_buttons(tabs_list: Iterable[str]) -> dict[str, Any]:
    """A "Send to <tab>" button per tab (A1111 ids: <tab>_tab)."""
    import gradio as gr

    buttons = {}
    for tab in tabs_list:
        name = "Extras" if tab == "extras" else tab
        buttons[tab] = gr.Button(f"Send to {name}", elem_id=f"{tab}_tab")
    return buttons


def bind_buttons(buttons: dict[str, Any], send_image: Any, send_generate_info: Any) -> None:
    """Old API: one ParamBinding per button (source text from a component, or another tab's)."""
    for tabname, button in buttons.items():
        text = send_generate_info if not isinstance(send_generate_info, str) else None
        source_tab = send_generate_info if isinstance(send_generate_info, str) else None
        register_paste_params_button(
            ParamBinding(
                button,
                tabname,
                source_text_component=text,
                source_image_component=send_image,
                source_tabname=source_tab,
            )
        )


def create_override_settings_dict(text_pairs: Iterable[str]) -> dict[str, Any]:
    """["Clip skip: 2", ...] -> {"CLIP_stop_at_last_layers": 2, ...} for the settings that have an
    infotext label (values converted to the setting's type)."""
    params = {}
    for pair in text_pairs:
        key, _, value = pair.partition(":")
        params[key.strip()] = value.strip()
    options = current().services.registry.options
    out: dict[str, Any] = {}
    for _label, key, value in get_override_settings(params):
        try:
            out[key] = coerce_value(options[key], value, check_choices=False)
        except (TypeError, ValueError):
            continue  # A1111 skips values that do not convert too
    return out


def get_override_settings(
    params: dict[str, Any], *, skip_fields: Iterable[str] | None = None
) -> list[tuple[str, str, Any]]:
    """(infotext key, setting name, value) for every infotext key that maps to a setting."""
    skip = set(skip_fields or [])
    out = []
    for info in current().services.registry.options.values():
        if info.infotext and info.infotext in params and info.infotext not in skip:
            out.append((info.infotext, info.key, params[info.infotext]))
    return out


def infotext_pasted_callback(infotext: str, params: dict[str, Any]) -> None:
    current().callbacks.infotext_pasted(infotext, params)
