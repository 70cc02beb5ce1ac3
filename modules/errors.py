"""A1111's `modules.errors` for extensions: report an error to the console once, with context.

Messages go to the "extensions" logger (the web UI's console); recorded exceptions are kept by
the app's problem list when it is bound, so they show in the Extensions tab.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

from modules.extension_host.facade import caller_file, current, is_bound

__all__ = ["display", "display_once", "print_error_explanation", "record_exception", "report", "run"]

log = logging.getLogger("extensions")


def _extension_of(file: str) -> str:
    if is_bound():
        return current()._extension_name_of(file) or "core"
    return "core"


def record_exception() -> None:
    """Keep the exception being handled in the app's problem list."""
    exc = sys.exc_info()[1]
    if exc is not None and is_bound():
        current().problems.report(_extension_of(caller_file(3)), "errors.record_exception", exc)


def report(message: str, *, exc_info: bool = False) -> None:
    """Log `message` (and the exception being handled, with exc_info=True)."""
    if exc_info:
        record_exception()
    log.error("%s", message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    lines = message.strip().split("\n")
    width = max(len(line) for line in lines) if lines else 0
    log.error("%s", "\n".join(["=" * width, *lines, "=" * width]))


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    record_exception()
    text = "".join(traceback.format_exception(e))
    log.error("%s: %s\n%s", task, f"{type(e).__name__}: {e}", text)


def display_once(e: BaseException, task: str) -> None:
    """A1111 shows each task's error once; our problem log also de-duplicates what it logs."""
    display(e, task)


def run(code: Callable[[], Any], task: str) -> None:
    try:
        code()
    except Exception as e:  # boundary: A1111's errors.run reports and carries on
        display(e, task)
