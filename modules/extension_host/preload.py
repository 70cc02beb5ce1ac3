"""preload.py support: extensions add command-line flags before the command line is parsed.

webui.py does:

    preload = collect_preload_hooks(argv)
    args = parse_args(argv, preload_hooks=preload.hooks)

A1111's rule: preload.py of every enabled user extension and of every built-in one runs, sorted
by folder name; `--disable-all-extensions` skips all, `--disable-extra-extensions` keeps the
built-ins. Which extensions are disabled is read from config.json (`disabled_extensions`,
`disable_all_extensions`), found the same way Paths finds it (--data-dir, --ui-settings-file).
A preload.py that fails is reported and skipped; the others still run.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extension_host.discovery import DisableMode, active, discover
from modules.extension_host.problems import ProblemLog

log = logging.getLogger("extensions")

BUILTIN_DIR = REPO_ROOT / "extensions-builtin"

PreloadHook = Callable[[argparse.ArgumentParser], None]

# The command line a preload.py runs for (set while it runs): modules.paths_internal derives
# models_path & co. from it, since the app that knows the folders does not exist yet.
PRELOAD_ARGV: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("preload_argv", default=None)


@dataclass
class PreloadHooks:
    hooks: list[PreloadHook] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # extension of each hook, same order
    problems: ProblemLog = field(default_factory=ProblemLog)


@dataclass(frozen=True)
class _Where:
    extensions_dir: Path
    config_file: Path
    disable_all: bool
    disable_extra: bool


def _locate(source: Sequence[str] | Path) -> _Where:
    if isinstance(source, Path):
        return _Where(source / "extensions", source / "config.json", False, False)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--data-dir", default=None)
    pre.add_argument("--ui-settings-file", default=None)
    pre.add_argument("--disable-all-extensions", action="store_true")
    pre.add_argument("--disable-extra-extensions", action="store_true")
    known, _ = pre.parse_known_args(list(source))
    data_dir = Path(known.data_dir).resolve() if known.data_dir else REPO_ROOT
    config = Path(known.ui_settings_file).resolve() if known.ui_settings_file else data_dir / "config.json"
    return _Where(data_dir / "extensions", config, known.disable_all_extensions, known.disable_extra_extensions)


def _read_settings(config_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def disable_mode(setting: Any, *, disable_all_flag: bool, disable_extra_flag: bool) -> DisableMode:
    """Flags win over the `disable_all_extensions` setting (A1111)."""
    if disable_all_flag:
        return DisableMode.ALL
    if disable_extra_flag:
        return DisableMode.EXTRA
    try:
        return DisableMode(str(setting or "none"))
    except ValueError:
        return DisableMode.NONE


def collect_preload_hooks(source: Sequence[str] | Path, *, builtin_dir: Path = BUILTIN_DIR) -> PreloadHooks:
    """Hooks calling each active extension's `preload(parser)`; `source` is argv or a data dir."""
    where = _locate(source)
    settings = _read_settings(where.config_file)
    disabled = [str(x) for x in settings.get("disabled_extensions", []) or []]
    mode = disable_mode(
        settings.get("disable_all_extensions"),
        disable_all_flag=where.disable_all,
        disable_extra_flag=where.disable_extra,
    )
    result = PreloadHooks()
    found = discover([(builtin_dir, True), (where.extensions_dir, False)], disabled, result.problems)
    for ext in sorted(active(found, mode), key=lambda e: e.name):
        path = ext.file("preload.py")
        if path is not None:
            result.hooks.append(_hook(ext.name, path, result.problems, _argv_of(source)))
            result.names.append(ext.name)
    return result


def _argv_of(source: Sequence[str] | Path) -> tuple[str, ...]:
    return ("--data-dir", str(source)) if isinstance(source, Path) else tuple(source)


def _hook(name: str, path: Path, problems: ProblemLog, argv: tuple[str, ...]) -> PreloadHook:
    def run(parser: argparse.ArgumentParser) -> None:
        token = PRELOAD_ARGV.set(argv)
        try:
            spec = importlib.util.spec_from_file_location(f"preload_{name}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            preload = getattr(module, "preload", None)
            if callable(preload):
                preload(parser)
        except Exception as exc:  # boundary: a broken preload.py must not stop the app
            problems.report(name, "preload.py", exc)
        finally:
            PRELOAD_ARGV.reset(token)

    return run
