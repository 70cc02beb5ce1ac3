"""The script_callbacks the generation code raises, forwarded to the registered `on_*` callbacks.

`GenerationCallbacks` is a mixin for the runner's `ScriptHooks` implementations (the per-job
`RequestScripts` and the `ScriptRunner` itself): it answers `wants(event)` so per-step points
cost nothing when nobody listens, and runs on_cfg_denoiser, on_cfg_denoised, on_cfg_after_cfg,
on_extra_noise, on_before_image_saved, on_image_saved and on_image_grid inside the job's
context (so `shared.opts` / `shared.state` read the job's values). Each callback is isolated by
`CallbackRegistry.run` (failures are reported with the extension's name; the job goes on).

`infotext_pasted` and `before_token_counter` are the entry points for the UI/API paste path and the token counter.
"""

from __future__ import annotations

from typing import Any

from modules.extension_host.callbacks import BeforeTokenCounterParams, CallbackRegistry
from modules.extension_host.job_context import job_context
from modules.generation.hooks import (
    AfterCFGCallbackParams,
    CFGDenoisedParams,
    CFGDenoiserParams,
    ExtraNoiseParams,
    ImageGridLoopParams,
    ImageSaveParams,
)

# ScriptHooks events that are script_callbacks categories (the others are Script hooks).
CALLBACK_EVENTS = frozenset(
    {"cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "extra_noise", "before_image_saved", "image_saved", "image_grid"}
)


class GenerationCallbacks:
    """Mixin: the callback half of `ScriptHooks` for the extension runner."""

    callbacks: CallbackRegistry | None = None

    def wants(self, event: str) -> bool:
        if event in CALLBACK_EVENTS:
            return self.callbacks is not None and self.callbacks.count(event) > 0
        # RequestScripts: the job's TabScripts (ScriptRunner.tab is a method: no job, no scripts)
        ordered = getattr(self, "_ordered", None) or getattr(getattr(self, "tab", None), "ordered", None)
        return callable(ordered) and bool(ordered(event))

    def _callback(self, category: str, params: Any, p: Any = None) -> None:
        registry = self.callbacks
        if registry is None or registry.count(category) == 0:
            return
        if p is None:  # keep whatever job context is current
            registry.run(category, params)
            return
        with job_context(p, getattr(self, "control", None)):
            registry.run(category, params)

    def cfg_denoiser(self, params: CFGDenoiserParams) -> None:
        self._callback("cfg_denoiser", params, getattr(params.denoiser, "p", None))

    def cfg_denoised(self, params: CFGDenoisedParams, p: Any = None) -> None:
        self._callback("cfg_denoised", params, p)

    def cfg_after_cfg(self, params: AfterCFGCallbackParams, p: Any = None) -> None:
        self._callback("cfg_after_cfg", params, p)

    def extra_noise(self, params: ExtraNoiseParams, p: Any = None) -> None:
        self._callback("extra_noise", params, p)

    def before_image_saved(self, params: ImageSaveParams) -> None:
        self._callback("before_image_saved", params, params.p)

    def image_saved(self, params: ImageSaveParams) -> None:
        self._callback("image_saved", params, params.p)

    def image_grid(self, params: ImageGridLoopParams, p: Any = None) -> None:
        self._callback("image_grid", params, p)


def infotext_pasted(callbacks: CallbackRegistry, infotext: str, params: dict[str, Any]) -> dict[str, Any]:
    """A1111 parse_generation_parameters' last step: on_infotext_pasted callbacks edit `params`
    (the parsed infotext fields) in place; returns it for chaining."""
    if callbacks.count("infotext_pasted"):
        callbacks.infotext_pasted(infotext, params)
    return params


def before_token_counter(
    callbacks: CallbackRegistry, prompt: str, steps: int, styles: list[str], *, is_positive: bool = True
) -> BeforeTokenCounterParams:
    """A1111 update_token_counter: callbacks may change the prompt, steps and styles counted."""
    params = BeforeTokenCounterParams(prompt, steps, list(styles), is_positive)
    if callbacks.count("before_token_counter"):
        callbacks.before_token_counter(params)
    return params
