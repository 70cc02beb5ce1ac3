"""Isolation: what went wrong in which extension, kept for the UI and the log.

An extension that fails to import, or raises in a hook or callback, is recorded here with its
name; the caller carries on. The log gets the full traceback once per (extension, place,
error type) so a hook failing on every sampling step does not flood it.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger("extensions")


@dataclass(frozen=True)
class Problem:
    extension: str  # extension name ("core" for scripts outside extensions)
    where: str  # e.g. "import scripts/toy.py", "process (ToyScript)", "callback ui_tabs"
    error: str  # "ValueError: boom"
    traceback: str = ""
    at: float = field(default_factory=time.time)

    @property
    def message(self) -> str:
        return f"[{self.extension}] {self.where}: {self.error}"


class ProblemLog:
    """Bounded, thread-safe record of extension failures."""

    def __init__(self, limit: int = 200):
        self._items: deque[Problem] = deque(maxlen=limit)
        self._logged: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def report(self, extension: str, where: str, exc: BaseException) -> Problem:
        error = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(exc))
        problem = Problem(extension, where, error, tb)
        key = (extension, where, type(exc).__name__)
        with self._lock:
            self._items.append(problem)
            first = key not in self._logged
            self._logged.add(key)
        if first:
            log.error("extension %s failed in %s: %s\n%s", extension, where, error, tb)
        else:
            log.error("extension %s failed in %s: %s", extension, where, error)
        return problem

    def note(self, extension: str, where: str, message: str) -> Problem:
        """A problem without an exception (missing requirement, duplicate name...); noted once."""
        with self._lock:
            for known in self._items:
                if (known.extension, known.where, known.error) == (extension, where, message):
                    return known
            problem = Problem(extension, where, message)
            self._items.append(problem)
        log.warning("extension %s: %s: %s", extension, where, message)
        return problem

    def items(self) -> list[Problem]:
        with self._lock:
            return list(self._items)

    def for_extension(self, extension: str) -> list[Problem]:
        return [p for p in self.items() if p.extension == extension]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._logged.clear()
