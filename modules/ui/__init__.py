"""Gradio tabs (modules/ui/*.py), and A1111's `modules.ui` names extensions import.

A1111's `modules.ui` is one module; ours is this package. The names extensions use from it
(gr_show, create_refresh_button, plaintext_to_html, wrap_gradio_call, the symbols) are offered
here without importing Gradio, a tab module or the extension facades at import time: the
helpers that live in the facade layer (modules.ui_common, modules.call_queue) are looked up when
an extension first reads them, so the UI package never depends on the layer above it.
"""

from __future__ import annotations

import html
import importlib
from typing import Any

__all__ = [
    "create_refresh_button",
    "gr_show",
    "gr_show_value_none",
    "plaintext_to_html",
    "refresh_symbol",
    "wrap_gradio_call",
    "wrap_gradio_gpu_call",
    "wrap_queued_call",
]

random_symbol = "\U0001f3b2\ufe0f"  # 🎲️
reuse_symbol = "\u267b\ufe0f"  # ♻️
paste_symbol = "\u2199\ufe0f"  # ↙
save_style_symbol = "\U0001f4be"  # 💾
apply_style_symbol = "\U0001f4cb"  # 📋
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
extra_networks_symbol = "\U0001f3b4"  # 🎴
switch_values_symbol = "\u21c5"  # ⇅
restore_progress_symbol = "\U0001f300"  # 🌀
detect_image_size_symbol = "\U0001f4d0"  # 📐


# name -> the facade module that defines it (resolved on first access, see module docstring)
_FROM_FACADES = {
    "create_refresh_button": "modules.ui_common",
    "wrap_gradio_call": "modules.call_queue",
    "wrap_gradio_gpu_call": "modules.call_queue",
    "wrap_queued_call": "modules.call_queue",
}
refresh_symbol = "\U0001f504"  # 🔄


def __getattr__(name: str) -> Any:
    if name in _FROM_FACADES:
        return getattr(importlib.import_module(_FROM_FACADES[name]), name)
    raise AttributeError(f"module 'modules.ui' has no attribute {name!r}")


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """Text as a <p> with <br> line breaks, HTML-escaped (A1111)."""
    content = "<br>\n".join(html.escape(x) for x in text.split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def gr_show(visible: bool = True) -> dict[str, Any]:
    """A Gradio update that shows or hides a component (A1111's helper)."""
    return {"visible": visible, "__type__": "update"}


def gr_show_value_none(visible: bool = True) -> dict[str, Any]:
    return {"value": None, "visible": visible, "__type__": "update"}
