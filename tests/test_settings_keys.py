"""Every setting the code reads by name exists in the settings registry (each setting is declared
once, as data: modules/core/shared_options.py and the option lists the bootstrap adds).

Found with `ast` over modules/ and scripts/: `opts["key"]`, `opts.get("key")` (also on objects
named `settings` or `options`, and `p.opts`), and `opts.key` where `opts` is A1111's
`modules.shared.opts`. A misspelt key would otherwise only fail when that code path runs."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules.app.bootstrap import build_registry
from modules.extension_host.host import register_extension_options

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
HOLDERS = frozenset({"opts", "settings", "options"})  # names of variables that hold settings
OPTS_METHODS = frozenset(dir(dict)) | {"data", "data_labels", "add_option", "set", "save", "onchange", "view"}
# Read by name but declared elsewhere on purpose: an extension's own option (tests/extensions_fixtures)
# is not in the registry until that extension registers it.
NOT_SETTINGS: frozenset[str] = frozenset()


def holder_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def imports_shared_opts(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "modules.shared"
        and any(a.name == "opts" for a in node.names)
        for node in ast.walk(tree)
    )


def keys_read(tree: ast.Module) -> Iterator[tuple[str, int]]:
    shared_opts = imports_shared_opts(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and holder_name(node.value) in HOLDERS:
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                yield node.slice.value, node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if holder_name(node.func.value) in HOLDERS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    yield first.value, node.lineno
        elif shared_opts and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            name = node.attr
            if node.value.id == "opts" and name not in OPTS_METHODS and not name.startswith("_"):
                yield name, node.lineno


def test_every_setting_read_by_name_is_registered() -> None:
    registry = build_registry()
    register_extension_options(registry)
    unknown = []
    for folder in ("modules", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for key, line in keys_read(tree):
                if key not in registry and key not in NOT_SETTINGS:
                    unknown.append(f"{path.relative_to(ROOT)}:{line}: {key!r}")
    assert unknown == [], "settings read by name but not declared:\n" + "\n".join(unknown)


def test_the_scan_finds_each_form() -> None:
    tree = ast.parse(
        "from modules.shared import opts\n"
        "a = p.opts['x1']\nb = settings.get('x2', 0)\nc = opts.x3\nd = opts.get('x4')\ne = self.options['x5']\n"
        "f = opts.data\ng = other['no']\noptions['written'] = 1\n"
    )
    assert sorted(key for key, _ in keys_read(tree)) == ["x1", "x2", "x3", "x4", "x5"]
