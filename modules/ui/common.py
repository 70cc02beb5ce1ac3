"""Things every tab shares: the UI context, request binding by field name, small helpers."""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.access.policy import Caller, caller_of
from modules.core.cmd_args import is_non_local
from modules.services import Services
from modules.ui.ui_config import UiConfig

log = logging.getLogger(__name__)

Fields = dict[str, Component]  # request field name -> the component holding its value


@dataclass
class SendTargets:
    """Components that "Send to ..." and "paste infotext" write into, per tab."""

    fields: dict[str, Fields] = field(default_factory=dict)  # "txt2img" / "img2img" -> fields
    override_settings: dict[str, Component] = field(default_factory=dict)
    images: dict[str, Component] = field(default_factory=dict)  # "img2img", "inpaint", "extras"
    img2img_mode_tabs: Any = None  # gr.Tabs of img2img's sub-tabs
    img2img_mode: Any = None  # hidden component holding the selected sub-tab's index
    main_tabs: Any = None  # the top-level gr.Tabs
    scripts: dict[str, Any] = field(default_factory=dict)  # tab -> modules.ui.scripts_ui.ScriptsUi
    extra_networks: dict[str, Any] = field(default_factory=dict)  # tab -> ExtraNetworksPanel


@dataclass
class UiContext:
    """What tab builders need: the services, ui-config defaults and the cross-tab targets."""

    services: Services
    ui_config: UiConfig
    targets: SendTargets = field(default_factory=SendTargets)
    output_panels: list[Any] = field(default_factory=list)
    extension_host: Any = None  # modules.extension_host.host.ExtensionHost (None: UI built without scripts)

    @property
    def settings(self) -> dict[str, Any]:
        return self.services.options.as_dict()

    @property
    def is_local(self) -> bool:
        return not is_non_local(self.services.args)

    def resolve_dir(self, folder: str) -> Path:
        path = Path(folder)
        return path if path.is_absolute() else self.services.paths.data_dir / path


def user_of(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def caller_of_gradio(request: gr.Request | None) -> Caller:
    """The caller of a Gradio event (a click in the page or a call to Gradio's API endpoints):
    the same user and client address the HTTP routes see, so the same policy and quota apply."""
    http = getattr(request, "request", None) if request is not None else None
    scope = getattr(http, "scope", None)
    if isinstance(scope, dict):
        caller = caller_of(scope)
        return caller if caller.user is not None else Caller(user_of(request), caller.address)
    client = getattr(request, "client", None)
    return Caller(user_of(request), str(getattr(client, "host", None) or "unknown"))


def bind_values(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """Pair component values with their request field names; None values are left out so the
    request's defaults apply (a cleared number box means "default", not an error)."""
    data = dict(zip(names, values, strict=True))
    return {k: v for k, v in data.items() if v is not None}


def infotext_html(text: str, comments: str = "") -> str:
    """A1111's generation info block: prompt lines, then the parameters line, escaped."""
    lines = [html.escape(line) for line in text.split("\n")]
    body = "<br>".join(lines)
    extra = f'<div class="comments">{html.escape(comments)}</div>' if comments else ""
    return f'<div class="infotext"><p>{body}</p>{extra}</div>'


def error_html(message: str) -> str:
    return f'<div class="error"><p><b>Error:</b> {html.escape(message)}</p></div>'


def tool_button(symbol: str, elem_id: str) -> gr.Button:
    """A1111's small square icon buttons (🎲, ♻️, 🔄, ↙ ...)."""
    return gr.Button(symbol, elem_id=elem_id, elem_classes=["tool"], min_width=40, scale=0, size="sm")


def updates_for(fields: Fields, values: Mapping[str, Any]) -> dict[Component, Any]:
    """Component updates for the given field values (unknown field names are ignored)."""
    return {fields[name]: gr.update(value=value) for name, value in values.items() if name in fields}
