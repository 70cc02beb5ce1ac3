"""Extras-tab scripts (`modules.scripts_postprocessing.ScriptPostprocessing`) and their runner.

Our Extras backend does upscaling and face restoration natively (modules/postprocessing); the
extension scripts run after it, A1111's way: sorted by `order`, every script's
`process_firstpass(pp, **args)`, then every script's `process(pp, **args)`. `args` are the
values of the components the script's `ui()` returned (a dict name -> component), defaults
unless the caller gives values.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modules.extension_host.problems import ProblemLog


class PostprocessedImageSharedInfo:
    def __init__(self, target_width: int | None = None, target_height: int | None = None):
        self.target_width = target_width
        self.target_height = target_height


class PostprocessedImage:
    """The image passing through the Extras scripts; `info` entries go into the infotext."""

    def __init__(self, image: Any):
        self.image = image
        self.info: dict[str, Any] = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images: list[Any] = []
        self.nametags: list[str] = []
        self.disable_processing = False
        self.caption: str | None = None

    def get_suffix(self, used_suffixes: dict[str, int] | None = None) -> str:
        used = {} if used_suffixes is None else used_suffixes
        suffix = "-".join(self.nametags)
        if suffix:
            count = used.get(suffix, 0) + 1
            used[suffix] = count
            suffix = "-" + suffix + (f"-{count}" if count > 1 else "")
        return suffix

    def create_copy(
        self, new_image: Any, *, nametags: Sequence[str] | None = None, disable_processing: bool = False
    ) -> PostprocessedImage:
        copy = PostprocessedImage(new_image)
        copy.nametags = self.nametags + list(nametags or [])
        copy.disable_processing = disable_processing
        copy.shared = self.shared
        copy.info = dict(self.info)
        return copy


class ScriptPostprocessing:
    filename: str | None = None
    controls: dict[str, Any] | None = None
    args_from: int | None = None
    args_to: int | None = None
    order = 1000
    name: str | None = None
    group: Any = None

    def ui(self) -> dict[str, Any] | None:
        """Create Gradio components; return {argument name: component}."""
        return None

    def process_firstpass(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def process(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def image_changed(self) -> None:
        pass


def enable_if_process(enable: Any) -> bool:
    return bool(enable)


@dataclass
class _Entry:
    script: ScriptPostprocessing
    extension: str
    defaults: dict[str, Any] = field(default_factory=dict)


class PostprocessingScripts:
    """The Extras scripts of one app instance, A1111's ScriptPostprocessingRunner."""

    def __init__(self, classes: Sequence[tuple[type, str, str]], problems: ProblemLog):
        """`classes`: (class, file, extension name) in load order."""
        self.problems = problems
        self._entries: list[_Entry] = []
        self._laid_out = False
        self._lock = threading.Lock()
        for cls, filename, extension in classes:
            try:
                script = cls()
            except Exception as exc:  # boundary
                problems.report(extension, f"create {cls.__name__}", exc)
                continue
            script.filename = filename
            self._entries.append(_Entry(script, extension))

    @property
    def scripts(self) -> list[ScriptPostprocessing]:
        return [e.script for e in sorted(self._entries, key=lambda e: e.script.order)]

    def create_ui(self) -> list[Any]:
        """Build every script's components (inside the caller's Gradio Blocks); returns them flat."""
        inputs: list[Any] = []
        for entry in sorted(self._entries, key=lambda e: e.script.order):
            script = entry.script
            try:
                controls = script.ui() or {}
            except Exception as exc:  # boundary
                self.problems.report(entry.extension, f"ui ({type(script).__name__})", exc)
                controls = {}
            script.controls = dict(controls)
            script.name = script.name or type(script).__name__
            script.args_from = len(inputs)
            inputs.extend(controls.values())
            script.args_to = len(inputs)
            entry.defaults = {k: getattr(c, "value", None) for k, c in controls.items()}
        self._laid_out = True
        return inputs

    def _ensure_layout(self) -> None:
        with self._lock:
            if self._laid_out or not self._entries:
                return
            import gradio as gr

            with gr.Blocks():
                self.create_ui()

    def run(self, pp: PostprocessedImage, args: Mapping[str, Mapping[str, Any]] | None = None) -> PostprocessedImage:
        """Run all scripts on `pp`; `args` maps script name -> {argument: value} (defaults otherwise)."""
        self._ensure_layout()
        given = {k.lower(): v for k, v in (args or {}).items()}
        ordered = sorted(self._entries, key=lambda e: e.script.order)
        for stage in ("process_firstpass", "process"):
            for entry in ordered:
                values = {**entry.defaults, **given.get((entry.script.name or "").lower(), {})}
                try:
                    getattr(entry.script, stage)(pp, **values)
                except Exception as exc:  # boundary
                    self.problems.report(entry.extension, f"{stage} ({type(entry.script).__name__})", exc)
        return pp

    def run_ui_values(self, pp: PostprocessedImage, values: Sequence[Any]) -> PostprocessedImage:
        """Run with the flat component values, in the order `create_ui` returned the components."""
        args: dict[str, dict[str, Any]] = {}
        for entry in self._entries:
            s = entry.script
            if s.args_from is None or s.args_to is None or s.controls is None:
                continue
            args[(s.name or "").lower()] = dict(zip(s.controls, values[s.args_from : s.args_to], strict=False))
        return self.run(pp, args)
