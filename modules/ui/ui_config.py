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
        for name in FIELDS:
            if not hasattr(component, name):
                continue
            key = f"{base}/{name}"
            current = getattr(component, name)
            if key in self.data:
                if self.data[key] != current:
                    setattr(component, name, self.data[key])
            elif _json_safe(current):
                self.data[key] = current
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
        for key, value in zip(self.value_keys(), values, strict=True):
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
