"""A1111's `modules.timer` for extensions: Timer, a named stopwatch (record / summary)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Timer"]


class Timer:
    def __init__(self, print_log: bool = False):
        self.start = time.time()
        self.records: dict[str, float] = {}
        self.total = 0.0
        self.print_log = print_log

    def elapsed(self) -> float:
        end = time.time()
        res = end - self.start
        self.start = end
        return res

    def add_time_to_record(self, category: str, amount: float) -> None:
        self.records[category] = self.records.get(category, 0.0) + amount

    def record(self, category: str, extra_time: float = 0, disable_log: bool = False) -> None:
        e = self.elapsed()
        self.add_time_to_record(category, e + extra_time)
        self.total += e + extra_time
        if self.print_log and not disable_log:
            print(f"{category}: done in {e + extra_time:.3f}s")

    def subcategory(self, name: str) -> Any:
        self.elapsed()
        return _Sub(self, name)

    def summary(self) -> str:
        res = f"{self.total:.1f}s"
        additions = [(c, t) for c, t in self.records.items() if t >= 0.1 and "/" not in c]
        if additions:
            res += " (" + ", ".join(f"{c}: {t:.1f}s" for c, t in additions) + ")"
        return res

    def dump(self) -> dict[str, Any]:
        return {"total": self.total, "records": self.records}

    def reset(self) -> None:
        self.__init__(self.print_log)  # type: ignore[misc]


class _Sub:
    def __init__(self, timer: Timer, name: str):
        self.timer = timer
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        self.timer.add_time_to_record(self.name, self.timer.elapsed())
