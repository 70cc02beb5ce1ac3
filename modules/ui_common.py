"""A1111's `modules.ui_common` for extensions: small UI helpers (refresh button, text as HTML).

Gradio is imported when a helper is called, not at import (this module is imported by
extension scripts before any UI exists).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modules.ui import plaintext_to_html, refresh_symbol

__all__ = ["create_refresh_button", "plaintext_to_html", "refresh_symbol"]

folder_symbol = "\U0001f4c2"  # 📂


def create_refresh_button(
    refresh_component: Any, refresh_method: Callable[[], Any], refreshed_args: Any, elem_id: str | None
) -> Any:
    """A 🔄 ToolButton: calls `refresh_method`, then updates the component(s) with
    `refreshed_args` (a dict of properties, or a function returning one), as in A1111."""
    import gradio as gr

    from modules.ui_components import ToolButton

    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = next((c for c in components if getattr(c, "label", None)), None)

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(
        value=refresh_symbol, elem_id=elem_id, tooltip=f"{getattr(label, 'label', '')}: refresh" if label else None
    )
    button.click(fn=refresh, inputs=[], outputs=components)
    return button
