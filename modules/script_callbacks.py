"""A1111's `modules.script_callbacks`: register `on_*` callbacks with the bound app.

Every `on_*(callback, *, name=None)` records the calling file, so ordering ids are
`<extension>/<file>/<category>[/<name>]` as in A1111, and `remove_current_script_callbacks()`
works. Parameter objects have A1111's attributes (modules.extension_host.callbacks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modules.extension_host.callbacks import (
    CATEGORIES,
    AfterCFGCallbackParams,
    BeforeTokenCounterParams,
    CFGDenoisedParams,
    CFGDenoiserParams,
    ExtraNoiseParams,
    ImageGridLoopParams,
    ImageSaveParams,
    ScriptCallback,
    UiTrainTabParams,
)
from modules.extension_host.facade import caller_file, current

__all__ = [
    "CATEGORIES",
    "AfterCFGCallbackParams",
    "BeforeTokenCounterParams",
    "CFGDenoisedParams",
    "CFGDenoiserParams",
    "ExtraNoiseParams",
    "ImageGridLoopParams",
    "ImageSaveParams",
    "ScriptCallback",
    "UiTrainTabParams",
]

Callback = Callable[..., Any]


def _add(category: str, callback: Callback, name: str | None) -> None:
    current().callbacks.add(category, callback, name=name, filename=caller_file(3))


def on_app_started(callback: Callback, *, name: str | None = None) -> None:
    _add("app_started", callback, name)


def on_before_reload(callback: Callback, *, name: str | None = None) -> None:
    _add("on_reload", callback, name)


def on_model_loaded(callback: Callback, *, name: str | None = None) -> None:
    _add("model_loaded", callback, name)


def on_ui_tabs(callback: Callback, *, name: str | None = None) -> None:
    _add("ui_tabs", callback, name)


def on_ui_train_tabs(callback: Callback, *, name: str | None = None) -> None:
    _add("ui_train_tabs", callback, name)


def on_ui_settings(callback: Callback, *, name: str | None = None) -> None:
    _add("ui_settings", callback, name)


def on_before_image_saved(callback: Callback, *, name: str | None = None) -> None:
    _add("before_image_saved", callback, name)


def on_image_saved(callback: Callback, *, name: str | None = None) -> None:
    _add("image_saved", callback, name)


def on_extra_noise(callback: Callback, *, name: str | None = None) -> None:
    _add("extra_noise", callback, name)


def on_cfg_denoiser(callback: Callback, *, name: str | None = None) -> None:
    _add("cfg_denoiser", callback, name)


def on_cfg_denoised(callback: Callback, *, name: str | None = None) -> None:
    _add("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback: Callback, *, name: str | None = None) -> None:
    _add("cfg_after_cfg", callback, name)


def on_before_component(callback: Callback, *, name: str | None = None) -> None:
    _add("before_component", callback, name)


def on_after_component(callback: Callback, *, name: str | None = None) -> None:
    _add("after_component", callback, name)


def on_image_grid(callback: Callback, *, name: str | None = None) -> None:
    _add("image_grid", callback, name)


def on_infotext_pasted(callback: Callback, *, name: str | None = None) -> None:
    _add("infotext_pasted", callback, name)


def on_script_unloaded(callback: Callback, *, name: str | None = None) -> None:
    _add("script_unloaded", callback, name)


def on_before_ui(callback: Callback, *, name: str | None = None) -> None:
    _add("before_ui", callback, name)


def on_list_optimizers(callback: Callback, *, name: str | None = None) -> None:
    _add("list_optimizers", callback, name)


def on_list_unets(callback: Callback, *, name: str | None = None) -> None:
    _add("list_unets", callback, name)


def on_before_token_counter(callback: Callback, *, name: str | None = None) -> None:
    _add("before_token_counter", callback, name)


def remove_current_script_callbacks() -> None:
    current().callbacks.remove_for_file(caller_file(2))


def remove_callbacks_for_function(callback_func: Callback) -> None:
    current().callbacks.remove_for_function(callback_func)


# A1111 also exposes the runners; a few extensions call them directly.
def app_started_callback(demo: Any, app: Any) -> None:
    current().callbacks.app_started(demo, app)


def model_loaded_callback(sd_model: Any) -> None:
    current().callbacks.model_loaded(sd_model)


def ui_tabs_callback() -> list[tuple[Any, str, str]]:
    return current().callbacks.ui_tabs()


def ui_settings_callback() -> None:
    current().callbacks.ui_settings()


def before_image_saved_callback(params: ImageSaveParams) -> None:
    current().callbacks.before_image_saved(params)


def image_saved_callback(params: ImageSaveParams) -> None:
    current().callbacks.image_saved(params)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    current().callbacks.cfg_denoiser(params)


def cfg_denoised_callback(params: CFGDenoisedParams) -> None:
    current().callbacks.cfg_denoised(params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams) -> None:
    current().callbacks.cfg_after_cfg(params)


def extra_noise_callback(params: ExtraNoiseParams) -> None:
    current().callbacks.extra_noise(params)


def image_grid_callback(params: ImageGridLoopParams) -> None:
    current().callbacks.image_grid(params)


def infotext_pasted_callback(infotext: str, params: dict[str, Any]) -> None:
    current().callbacks.infotext_pasted(infotext, params)


def before_token_counter_callback(params: BeforeTokenCounterParams) -> None:
    current().callbacks.before_token_counter(params)


def before_ui_callback() -> None:
    current().callbacks.before_ui()


def script_unloaded_callback() -> None:
    current().callbacks.script_unloaded()


def list_optimizers_callback() -> list[Any]:
    return current().callbacks.list_optimizers()


def list_unets_callback() -> list[Any]:
    return current().callbacks.list_unets()
