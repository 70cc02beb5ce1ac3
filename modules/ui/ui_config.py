"""ui-config.json: per-component defaults (value, minimum, maximum, step, visible), A1111's format.

Keys are "<tab>/<label>/<field>", e.g. "txt2img/Sampling steps/value". At UI build time every
registered component takes the stored values; keys missing from the file are added with the
component's own defaults (as A1111 does), so the file lists everything a user can change.
The Settings -> Defaults page writes the values currently shown in the UI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.core.options import atomic_write_text

log = logging.getLogger(__name__)

FIELDS = ("value", "minimum", "maximum", "step", "visible")


@dataclass
class UiConfig:
    """The stored defaults and the components registered under their keys."""

    path: Path | None
    data: dict[str, Any] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)  # "<tab>/<label>" -> component
    problems: list[str] = field(default_factory=list)  # stored defaults that were refused
    _dirty: bool = False

    @classmethod
    def load(cls, path: Path | None) -> UiConfig:
        config = cls(path)
        if path is None or not path.is_file():
            return config
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            config.data = data
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
        return config

    def register(self, prefix: str, component: Component) -> None:
        """Apply stored defaults to `component` (keyed by its label) and remember it."""
        label = getattr(component, "label", None)
        if not label:
            return
        base = f"{prefix}/{label}"
        if base in self.components:
            return  # the first component with a label owns the key, as in A1111
        self.components[base] = component
        defaults = {name: getattr(component, name) for name in FIELDS if hasattr(component, name)}
        for name, current in defaults.items():
            key = f"{base}/{name}"
            if key in self.data:
                if self.data[key] != current:
                    setattr(component, name, self.data[key])
            elif _json_safe(current):
                self.data[key] = current
                self._dirty = True
        self._refuse_invalid(base, component, defaults)

    def _refuse_invalid(self, base: str, component: Component, defaults: dict[str, Any]) -> None:
        """A stored default the component cannot take (a value no longer among the choices, out of
        range, of another type) would fail every generation: report it, naming the control, and
        go back to the component's own default (also in the file)."""
        for name in sorted(defaults, key=lambda n: n == "value"):  # the value last: its range may be stored too
            default = defaults[name]
            reason = invalid_reason(component, name, getattr(component, name))
            if reason is None:
                continue
            key = f"{base}/{name}"
            message = f"{key}: {reason}; using the default {default!r}"
            log.warning("ui-config.json: %s", message)
            self.problems.append(message)
            setattr(component, name, default)
            self.data[key] = default
            self._dirty = True

    def register_all(self, prefix: str, components: Sequence[Component]) -> None:
        for component in components:
            self.register(prefix, component)

    def save_if_changed(self) -> None:
        if self._dirty and self.path is not None:
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        atomic_write_text(self.path, json.dumps(self.data, indent=4, ensure_ascii=False))
        self._dirty = False

    def value_keys(self) -> list[str]:
        """Keys whose value the Defaults page compares and writes, in registration order."""
        return [f"{base}/value" for base, c in self.components.items() if _editable(c)]

    def value_components(self) -> list[Component]:
        return [c for c in self.components.values() if _editable(c)]

    def changes(self, values: Sequence[Any]) -> list[tuple[str, Any, Any]]:
        """(key, stored, shown) for each component whose shown value differs from the stored default."""
        out = []
        for key, component, shown in zip(self.value_keys(), self.value_components(), values, strict=True):
            value = stored_form(component, shown)
            stored = self.data.get(key)
            if _json_safe(value) and value != stored:
                out.append((key, stored, value))
        return out

    def apply(self, values: Sequence[Any]) -> int:
        """Store the shown values as the new defaults; returns how many changed."""
        changed = self.changes(values)
        for key, _old, new in changed:
            self.data[key] = new
        self.save()
        return len(changed)


def _editable(component: Component) -> bool:
    return hasattr(component, "value") and _json_safe(getattr(component, "value", None))


def _json_safe(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(isinstance(v, (bool, int, float, str)) for v in value)
    return False


def _choice_values(component: Component) -> list[Any]:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in getattr(component, "choices", None) or []]


def stored_form(component: Component, value: Any) -> Any:
    """The value to store for what a component sent: a component of type="index" sends the
    position of the choice, ui-config.json keeps the choice itself (as A1111 does)."""
    if getattr(component, "type", None) != "index":
        return value
    choices = _choice_values(component)

    def one(item: Any) -> Any:
        return choices[item] if isinstance(item, int) and 0 <= item < len(choices) else item

    return [one(v) for v in value] if isinstance(value, list) else one(value)


def invalid_reason(component: Component, name: str, value: Any) -> str | None:
    """Why `value` cannot be the component's `name` field, or None when it can."""
    if name == "visible":
        return None if isinstance(value, bool) or value == "hidden" else f"{value!r} is not true/false"
    if name in ("minimum", "maximum", "step"):
        return None if value is None or _number(value) else f"{value!r} is not a number"
    return _invalid_value(component, value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _invalid_value(component: Component, value: Any) -> str | None:
    if value is None:
        return None
    choices = _choice_values(component)
    if hasattr(component, "choices") and choices:
        many = bool(getattr(component, "multiselect", False)) or isinstance(component, gr.CheckboxGroup)
        if many and not isinstance(value, list):
            return f"{value!r} is not a list of choices"
        wanted = value if isinstance(value, list) else [value]
        custom = bool(getattr(component, "allow_custom_value", False))
        bad = [v for v in wanted if v not in choices and not (custom and isinstance(v, str))]
        return f"{bad[0]!r} is not one of the choices {choices}" if bad else None
    if isinstance(component, gr.Checkbox):
        return None if isinstance(value, bool) else f"{value!r} is not true/false"
    if isinstance(component, (gr.Slider, gr.Number)):
        if not _number(value):
            return f"{value!r} is not a number"
        low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value!r} is outside {low}..{high}"
        return None
    if isinstance(component, gr.Textbox):
        return None if isinstance(value, str) else f"{value!r} is not text"
    return None
