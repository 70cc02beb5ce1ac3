"""before_component / after_component while the UI is built (A1111 calls them for every component).

A1111 patches Gradio's component constructors for the whole process. Here the patch exists only
inside `component_callbacks(...)`, which the UI wraps around building a tab; outside it Gradio
is untouched. Callbacks get the component and the constructor's keyword arguments (elem_id,
label, value ...), like A1111's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ComponentHook = Callable[..., None]

_PATCH_LOCK = threading.RLock()


@contextmanager
def component_callbacks(before: ComponentHook, after: ComponentHook) -> Iterator[None]:
    """Call before(component, **kwargs) / after(component, **kwargs) around each Gradio component
    and layout block constructed in this block of code."""
    from gradio.blocks import BlockContext
    from gradio.components.base import Component

    with _PATCH_LOCK:
        originals: dict[type, Any] = {cls: cls.__dict__["__init__"] for cls in (Component, BlockContext)}

        def wrap(original: Any) -> Any:
            def init(self: Any, *args: Any, **kwargs: Any) -> None:
                before(self, **kwargs)
                original(self, *args, **kwargs)
                after(self, **kwargs)

            init.__wrapped__ = original  # type: ignore[attr-defined]
            return init

        for cls, original in originals.items():
            setattr(cls, "__init__", wrap(original))  # noqa: B010
        try:
            yield
        finally:
            for cls, original in originals.items():
                setattr(cls, "__init__", original)  # noqa: B010
