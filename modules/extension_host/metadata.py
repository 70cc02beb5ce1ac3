"""metadata.ini (A1111 format) and the ordering rules built on it.

    [Extension]
    Name = my-extension          ; informational: A1111 uses the lower-cased folder name as id
    Requires = other-ext         ; extensions that must be installed and enabled

    [scripts/main.py]
    Requires = other-ext/helper.py
    Before = third-ext           ; load (and run hooks) before these scripts / extensions
    After = other-ext

    [callbacks/my-extension/main.py/ui_tabs]
    Before = other-ext/tab.py/ui_tabs

Lists are separated by commas and/or spaces; `a|b` means "whichever of a, b is loaded".
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FILENAME = "metadata.ini"


def parse_list(text: str) -> list[str]:
    """'a b, c ' -> ['a', 'b', 'c'] (commas and whitespace both separate)."""
    return [item for item in re.split(r"[,\s]+", text.strip()) if item]


@dataclass(frozen=True)
class CallbackOrder:
    """One [callbacks/<name>] section: run the callback `name` before/after the listed ones."""

    name: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass
class ExtensionMetadata:
    canonical_name: str
    config: configparser.ConfigParser = field(default_factory=configparser.ConfigParser)
    read_error: str | None = None

    @classmethod
    def read(cls, folder: Path, canonical_name: str) -> ExtensionMetadata:
        meta = cls(canonical_name.lower().strip())
        path = folder / FILENAME
        if path.is_file():
            try:
                meta.config.read(path, encoding="utf-8")
            except (configparser.Error, OSError, UnicodeDecodeError) as exc:
                meta.read_error = f"{type(exc).__name__}: {exc}"
        return meta

    @property
    def display_name(self) -> str:
        return self.config.get("Extension", "Name", fallback=self.canonical_name)

    def requirements(
        self, key: str, section: str, extra_section: str | None = None, loaded: Iterable[str] = ()
    ) -> list[str]:
        """Names listed under `key` in `section` (+ `extra_section`), lower-cased; `a|b` resolved
        to the first alternative that is loaded (or `a` when none is)."""
        text = self.config.get(section, key, fallback="")
        if extra_section:
            text += ", " + self.config.get(extra_section, key, fallback="")
        loaded_set = set(loaded)
        result = []
        for item in parse_list(text.lower()):
            options = item.split("|")
            result.append(next((o for o in options if o in loaded_set), options[0]))
        return result

    def callback_orders(self) -> tuple[list[CallbackOrder], list[str]]:
        """[callbacks/...] sections of this extension, and complaints about sections naming another one."""
        orders, complaints = [], []
        for section in self.config.sections():
            if not section.startswith("callbacks/"):
                continue
            name = section[len("callbacks/") :]
            if not name.startswith(self.canonical_name):
                complaints.append(f"section [{section}] refers to another extension")
                continue
            before = tuple(parse_list(self.config.get(section, "Before", fallback="")))
            after = tuple(parse_list(self.config.get(section, "After", fallback="")))
            orders.append(CallbackOrder(name, before, after))
        return orders, complaints


def topological_sort(dependencies: Mapping[str, Sequence[str]]) -> list[str]:
    """Names ordered so each comes after its dependencies; otherwise the input order is kept.

    Missing dependencies and cycles are ignored (A1111's rule: never refuse to start).
    """
    visited: set[str] = set()
    result: list[str] = []

    def visit(name: str) -> None:
        visited.add(name)
        for dep in dependencies.get(name, ()):
            if dep in dependencies and dep not in visited:
                visit(dep)
        result.append(name)

    for name in dependencies:
        if name not in visited:
            visit(name)
    return result


def order_by_instructions(
    names: Sequence[str], instructions: Iterable[CallbackOrder], prioritized: Sequence[str] = ()
) -> list[str]:
    """Order callback names by metadata Before/After, then move user-prioritised names to the front."""
    present = set(names)
    relevant = [i for i in instructions if i.name in present]
    ordered = list(names)
    if relevant:
        deps: dict[str, list[str]] = {name: [] for name in names}
        for instruction in relevant:
            deps[instruction.name].extend(a for a in instruction.after if a in present)
            for before in instruction.before:
                if before in present:
                    deps[before].append(instruction.name)
        ordered = topological_sort(deps)
    for name in reversed(list(prioritized)):
        if name in ordered:
            ordered.remove(name)
            ordered.insert(0, name)
    return ordered
