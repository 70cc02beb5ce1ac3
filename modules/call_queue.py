"""A1111's `modules.call_queue` for extensions: wrappers for Gradio handlers and `queue_lock`.

Generation here runs through the app's job queue, which serialises GPU work itself; `queue_lock`
is a lock extensions may take around their own work (one per app), and the wrappers turn an
exception in the handler into an error message in the output HTML, as A1111's do.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import Any

from modules.extension_host.facade import Lazy, current

__all__ = ["queue_lock", "wrap_gradio_call", "wrap_gradio_gpu_call", "wrap_queued_call"]

log = logging.getLogger("extensions")

queue_lock = Lazy(lambda: current().queue_lock)


def wrap_queued_call(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        with current().queue_lock:
            return func(*args, **kwargs)

    return f


def wrap_gradio_call(
    func: Callable[..., Any], extra_outputs: Any = None, add_stats: bool = False
) -> Callable[..., Any]:
    """On an exception: log it and return `extra_outputs` + an error HTML (A1111's shape)."""

    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as e:  # boundary: a handler's error becomes a message in the page
            log.exception("error in %s", getattr(func, "__name__", "handler"))
            outputs = list(extra_outputs) if extra_outputs is not None else [None, ""]
            return (*outputs, f"<div class='error'>{html.escape(type(e).__name__ + ': ' + str(e))}</div>")

    return f


def wrap_gradio_gpu_call(func: Callable[..., Any], extra_outputs: Any = None) -> Callable[..., Any]:
    return wrap_gradio_call(wrap_queued_call(func), extra_outputs=extra_outputs)
