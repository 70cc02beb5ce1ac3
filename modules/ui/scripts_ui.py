"""Scripts in the txt2img/img2img tabs (A1111 layout): the always-on scripts' sections, then the
"Script" dropdown with the chosen script's controls below it.

The components come from the extension host (`host.script_ui(tab)`); their values go to the job
as the script hooks of `host.runner.for_ui(tab, values)`, the same hooks the API builds from
script_name/script_args/alwayson_scripts. Scripts' `infotext_fields` (and extensions'
`add_paste_fields`) become `ScriptPasteField`s that the paste buttons apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.generation.hooks import ScriptHooks
from modules.ui.common import UiContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScriptPasteField:
    """One script component filled from a pasted infotext: `target` is an infotext key or a
    function(params) -> value (A1111's PasteField / (component, target) tuple)."""

    component: Component
    target: Any
    owner: str = "core"  # the extension whose code `target` is (named when it fails)

    @property
    def label(self) -> str | None:
        return self.target if isinstance(self.target, str) else None

    def value_from(self, params: Mapping[str, Any]) -> Any:
        """The component's value for these infotext params; None leaves the component as it is."""
        target = self.target
        value = target(params) if callable(target) else params.get(str(target))
        if value is None or isinstance(value, dict):  # a dict is already a gr.update(...)
            return value
        return coerce_like(getattr(self.component, "value", None), value)


def coerce_like(current: Any, value: Any) -> Any:
    """Convert an infotext value to the type the component holds (A1111: type(component.value)(v))."""
    if current is None or callable(current) or isinstance(value, type(current)):
        return value
    if isinstance(current, bool):
        return str(value).strip().lower() not in ("false", "0", "")
    if isinstance(current, (int, float)):
        return float(value)  # a slider shows 3.0 as 3; int("0.5") would fail
    if isinstance(current, str):
        return str(value)
    return value


@dataclass
class ScriptsUi:
    """The script inputs of one tab (position 0 = the Script dropdown) and their paste fields."""

    tab: str
    inputs: list[Component]
    paste_fields: list[ScriptPasteField] = field(default_factory=list)
    paste_field_names: list[str] = field(default_factory=list)
    runner: Any = None  # modules.extension_host.runner.ScriptRunner

    def hooks(self, values: Sequence[Any]) -> ScriptHooks:
        """The hooks of one job for the values the inputs showed when Generate was clicked."""
        hooks: ScriptHooks = self.runner.for_ui(self.tab, list(values))
        return hooks

    def send_fields(self) -> list[ScriptPasteField]:
        """Fields a "Send to" button pastes (A1111: only those named in paste_field_names)."""
        wanted = set(self.paste_field_names)
        return [f for f in self.paste_fields if f.label in wanted]


def build_scripts_ui(ctx: UiContext, tab: str) -> ScriptsUi | None:
    """Builds the tab's script sections and dropdown here; None without an extension host."""
    host = ctx.extension_host
    if host is None:
        return None
    with gr.Column(elem_id=f"{tab}_script_container"):
        inputs = list(host.script_ui(tab))
    scripts = host.runner.tab(tab)
    inputs = _as_inputs(inputs, scripts, host.problems)
    _register_defaults(ctx, tab, scripts)
    paste = [f for s in scripts.scripts for f in _paste_fields(s.infotext_fields or [], scripts.extension(s))]
    paste += _dropdown_paste(inputs[0], scripts)
    paste += _paste_fields((host.paste_fields.get(tab) or {}).get("fields") or [], "extensions")
    ui = ScriptsUi(tab, inputs, paste, [str(n) for n in scripts.paste_field_names], host.runner)
    ctx.targets.scripts[tab] = ui
    return ui


def _register_defaults(ctx: UiContext, tab: str, scripts: Any) -> None:
    """The scripts' controls get ui-config.json defaults under A1111's keys
    ("customscript/<file>/<tab>/<label>/value"); API requests then default to them too. The Script
    dropdown is left out: it passes an index, so the Defaults page would store a number."""
    for script in scripts.scripts:
        prefix = f"customscript/{Path(script.filename or 'unknown').name}/{tab}"
        ctx.ui_config.register_all(prefix, [c for c in script.controls or [] if isinstance(c, Component)])
    scripts.refresh_defaults()


def _as_inputs(inputs: list[Any], scripts: Any, problems: Any) -> list[Component]:
    """A ui() that returned something other than components (a layout, a plain value) must not
    break the page: that value is passed as is through a gr.State, and the script is reported."""
    out: list[Component] = []
    for position, item in enumerate(inputs):
        if isinstance(item, Component):
            out.append(item)
            continue
        owner = next((s for s in scripts.scripts if (s.args_from or 0) <= position < (s.args_to or 0)), None)
        if owner is not None:
            where = f"ui ({type(owner).__name__}, {scripts.tab})"
            problems.note(scripts.extension(owner), where, f"returned {type(item).__name__}, not a component")
        out.append(gr.State(None if isinstance(item, gr.blocks.Block) else item))
    return out


def _paste_fields(items: Iterable[Any], owner: str) -> list[ScriptPasteField]:
    out = []
    for item in items:
        try:
            component, target = item[0], item[1]
        except (TypeError, IndexError, KeyError):
            log.warning("ignoring paste field %r: not (component, infotext key or function)", item)
            continue
        if isinstance(component, Component):
            out.append(ScriptPasteField(component, target, owner))
    return out


def _dropdown_paste(dropdown: Any, scripts: Any) -> list[ScriptPasteField]:
    """Infotext "Script: <title>" selects that script (A1111 pastes it into the dropdown)."""
    if not isinstance(dropdown, Component) or not scripts.selectable_scripts:
        return []
    titles = set(scripts.titles)
    return [
        ScriptPasteField(dropdown, lambda params: params.get("Script") if params.get("Script") in titles else "None")
    ]


def paste_script_updates(
    fields: Sequence[ScriptPasteField], params: Mapping[str, Any], problems: Any = None
) -> dict[Component, Any]:
    """Component updates for pasted infotext params; a failing field (extension code) is skipped."""
    updates: dict[Component, Any] = {}
    for item in fields:
        try:
            value = item.value_from(params)
        except Exception as exc:  # boundary: a script's paste function must not break pasting
            log.warning("paste field %r failed: %s", item.target, exc)
            if problems is not None:
                problems.report(item.owner, f"infotext paste ({item.label or 'function'})", exc)
            continue
        if value is None:
            continue
        updates[item.component] = value if isinstance(value, dict) else gr.update(value=value)
    return updates


def unique_components(fields: Iterable[ScriptPasteField]) -> list[Component]:
    """Each component once (Gradio refuses duplicate outputs)."""
    seen: dict[int, Component] = {}
    for item in fields:
        seen.setdefault(id(item.component), item.component)
    return list(seen.values())
