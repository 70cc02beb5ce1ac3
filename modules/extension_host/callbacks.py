"""script_callbacks: every A1111 `on_*` category, its parameter objects, ordering and isolation.

Callbacks are registered by extension modules at import time (through the
`modules.script_callbacks` facade) and run by whoever owns the moment (UI build, server start,
saving, sampling). Each runs isolated: an exception is reported with the extension's name and
the others still run. Order: registration order, then metadata.ini [callbacks/...] Before/After,
then the user's `prioritized_callbacks_<category>` setting (A1111 1.8+).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from modules.extension_host.gradio_compat import gradio3_calls
from modules.extension_host.metadata import CallbackOrder, order_by_instructions
from modules.extension_host.problems import ProblemLog
from modules.generation.hooks import (
    AfterCFGCallbackParams,
    CFGDenoisedParams,
    CFGDenoiserParams,
    ExtraNoiseParams,
    ImageGridLoopParams,
    ImageSaveParams,
)

# The parameter objects the generation code builds live with its hook interface (it must not
# import the extension host); they are re-exported here under A1111's names.
__all__ = [
    "CATEGORIES",
    "AfterCFGCallbackParams",
    "BeforeTokenCounterParams",
    "CFGDenoisedParams",
    "CFGDenoiserParams",
    "CallbackRegistry",
    "ExtraNoiseParams",
    "ImageGridLoopParams",
    "ImageSaveParams",
    "ScriptCallback",
    "UiTrainTabParams",
]

# A1111's callback categories (script_callbacks.callback_map keys without "callbacks_").
CATEGORIES = (
    "app_started",
    "model_loaded",
    "ui_tabs",
    "ui_train_tabs",
    "ui_settings",
    "before_image_saved",
    "image_saved",
    "extra_noise",
    "cfg_denoiser",
    "cfg_denoised",
    "cfg_after_cfg",
    "before_component",
    "after_component",
    "image_grid",
    "infotext_pasted",
    "script_unloaded",
    "before_ui",
    "on_reload",
    "list_optimizers",
    "list_unets",
    "before_token_counter",
)
# Categories whose callbacks build Gradio UI: they run with Gradio 3 keywords accepted.
UI_CATEGORIES = frozenset(
    {"app_started", "ui_tabs", "ui_train_tabs", "ui_settings", "before_component", "after_component", "before_ui"}
)


class UiTrainTabParams:
    def __init__(self, txt2img_preview_params: Any):
        self.txt2img_preview_params = txt2img_preview_params


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list[str]
    is_positive: bool = True


@dataclass
class ScriptCallback:
    """One registration; `name` is the ordering id `<extension>/<file>/<category>[/<name>]`."""

    script: str  # file that registered it
    callback: Callable[..., Any]
    name: str = "unnamed"
    category: str = ""
    extension: str = "base"


class CallbackRegistry:
    """All registered callbacks of one app instance."""

    def __init__(
        self,
        problems: ProblemLog,
        *,
        extension_of: Callable[[str], str | None] = lambda _f: None,
        order_instructions: Callable[[], Sequence[CallbackOrder]] = tuple,
        prioritized: Callable[[str], Sequence[str]] = lambda _c: (),
    ):
        self.problems = problems
        self._extension_of = extension_of
        self._order_instructions = order_instructions
        self._prioritized = prioritized
        self._callbacks: dict[str, list[ScriptCallback]] = {c: [] for c in CATEGORIES}
        self._lock = threading.RLock()

    # --- registration ----------------------------------------------------------------------
    def add(
        self, category: str, callback: Callable[..., Any], *, filename: str, name: str | None = None
    ) -> ScriptCallback:
        if category not in self._callbacks:
            raise ValueError(f"unknown callback category {category!r}; known: {', '.join(CATEGORIES)}")
        if not callable(callback):
            raise TypeError(f"on_{category}: expected a function, got {type(callback).__name__}")
        extension = self._extension_of(filename) or "base"
        base = f"{extension}/{os.path.basename(filename)}/{category}" + (f"/{name}" if name else "")
        with self._lock:
            existing = {c.name for c in self._callbacks[category]}
            unique, index = base, 0
            while unique in existing:
                index += 1
                unique = f"{base}-{index}"
            entry = ScriptCallback(filename, callback, unique, category, extension)
            self._callbacks[category].append(entry)
        return entry

    def remove_for_file(self, filename: str) -> None:
        with self._lock:
            for category, entries in self._callbacks.items():
                self._callbacks[category] = [c for c in entries if c.script != filename]

    def remove_for_function(self, callback: Callable[..., Any]) -> None:
        with self._lock:
            for category, entries in self._callbacks.items():
                self._callbacks[category] = [c for c in entries if c.callback != callback]

    def clear(self) -> None:
        with self._lock:
            for entries in self._callbacks.values():
                entries.clear()

    # --- ordering and running --------------------------------------------------------------
    def ordered(self, category: str) -> list[ScriptCallback]:
        with self._lock:
            entries = list(self._callbacks[category])
        by_name = {c.name: c for c in entries}
        names = order_by_instructions(list(by_name), self._order_instructions(), self._prioritized(category))
        return [by_name[n] for n in names]

    def count(self, category: str) -> int:
        with self._lock:
            return len(self._callbacks[category])

    def run(self, category: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call every callback of `category`; failures are reported, results of the others returned."""
        results: list[Any] = []
        entries = self.ordered(category)
        if not entries:
            return results
        with gradio3_calls() if category in UI_CATEGORIES else nullcontext():
            for entry in entries:
                try:
                    results.append(entry.callback(*args, **kwargs))
                except Exception as exc:  # boundary: isolate extension code
                    self.problems.report(entry.extension, f"callback {category} ({entry.name})", exc)
        return results

    # --- typed entry points (what the app calls) ------------------------------------------
    def app_started(self, demo: Any, app: Any) -> None:
        self.run("app_started", demo, app)

    def model_loaded(self, sd_model: Any) -> None:
        self.run("model_loaded", sd_model)

    def ui_tabs(self) -> list[tuple[Any, str, str]]:
        """(blocks, title, elem_id) triples from on_ui_tabs; malformed entries are reported and dropped."""
        tabs: list[tuple[Any, str, str]] = []
        for entry in self.ordered("ui_tabs"):
            try:
                with gradio3_calls():
                    items = list(entry.callback() or [])
                for item in items:
                    blocks, title, elem_id = item[0], str(item[1]), str(item[2])
                    tabs.append((blocks, title, elem_id))
            except Exception as exc:  # boundary
                self.problems.report(entry.extension, f"callback ui_tabs ({entry.name})", exc)
        return tabs

    def ui_settings(self) -> None:
        self.run("ui_settings")

    def before_ui(self) -> None:
        self.run("before_ui")

    def before_image_saved(self, params: ImageSaveParams) -> None:
        self.run("before_image_saved", params)

    def image_saved(self, params: ImageSaveParams) -> None:
        self.run("image_saved", params)

    def extra_noise(self, params: ExtraNoiseParams) -> None:
        self.run("extra_noise", params)

    def cfg_denoiser(self, params: CFGDenoiserParams) -> None:
        self.run("cfg_denoiser", params)

    def cfg_denoised(self, params: CFGDenoisedParams) -> None:
        self.run("cfg_denoised", params)

    def cfg_after_cfg(self, params: AfterCFGCallbackParams) -> None:
        self.run("cfg_after_cfg", params)

    def image_grid(self, params: ImageGridLoopParams) -> None:
        self.run("image_grid", params)

    def infotext_pasted(self, infotext: str, params: dict[str, Any]) -> None:
        self.run("infotext_pasted", infotext, params)

    def script_unloaded(self) -> None:
        self.run("script_unloaded")

    def before_reload(self) -> None:
        self.run("on_reload")

    def list_optimizers(self) -> list[Any]:
        found: list[Any] = []
        self.run("list_optimizers", found)
        return found

    def list_unets(self) -> list[Any]:
        found: list[Any] = []
        self.run("list_unets", found)
        return found

    def before_token_counter(self, params: BeforeTokenCounterParams) -> None:
        self.run("before_token_counter", params)

    def before_component(self, component: Any, **kwargs: Any) -> None:
        self.run("before_component", component, **kwargs)

    def after_component(self, component: Any, **kwargs: Any) -> None:
        self.run("after_component", component, **kwargs)
