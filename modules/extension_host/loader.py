"""Imports extensions' scripts/*.py in A1111's order and collects their Script classes.

Order: core scripts (web UI root scripts/, if any) then each active extension's scripts sorted
by file name, reordered by metadata.ini Requires/Before/After (script ids `<ext>/<file>`,
built-ins `builtin/<ext>/<file>`; an extension name stands for all its scripts). While a file is
imported its extension folder is first on sys.path and `scripts.basedir()` returns it; the
folders stay on sys.path afterwards (extensions import their own packages lazily), until
`unload`. A file that fails to import is reported with its extension's name and skipped.
"""

from __future__ import annotations

import contextvars
import importlib.util
import inspect
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from modules.core.paths import REPO_ROOT
from modules.extension_host.discovery import Extension
from modules.extension_host.metadata import topological_sort
from modules.extension_host.postprocessing import ScriptPostprocessing
from modules.extension_host.problems import ProblemLog
from modules.extension_host.script_base import Script, ScriptBuiltinUI

# The folder `modules.scripts.basedir()` reports: the extension being imported, else the web UI root.
CURRENT_BASEDIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("extension_basedir", default=None)

# A1111's built-in Lora extension puts `lora` and `networks` on sys.path; ours sit here (see there).
A1111_BUILTIN_MODULES = REPO_ROOT / "a1111_builtin"
_BASE_CLASSES = (Script, ScriptBuiltinUI, ScriptPostprocessing)


def basedir() -> str:
    return str(CURRENT_BASEDIR.get() or REPO_ROOT)


@dataclass(frozen=True)
class ScriptFile:
    basedir: Path
    path: Path
    extension: str  # extension name, "core" for the web UI's own scripts/
    script_id: str  # ordering id <ext>/<file>

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ScriptClass:
    cls: type
    file: ScriptFile


@dataclass
class LoadedScripts:
    scripts: list[ScriptClass] = field(default_factory=list)  # Script subclasses, load order
    postprocessing: list[ScriptClass] = field(default_factory=list)
    modules: dict[str, ModuleType] = field(default_factory=dict)  # sys.modules name -> module
    added_sys_path: list[str] = field(default_factory=list)

    def unload(self) -> None:
        """Forget the modules and sys.path entries this load added."""
        for name in self.modules:
            sys.modules.pop(name, None)
        for entry in self.added_sys_path:
            while entry in sys.path:
                sys.path.remove(entry)
        self.modules.clear()
        self.added_sys_path.clear()


def list_script_files(
    extensions: Sequence[Extension], problems: ProblemLog, *, core_dir: Path | None = None, subdir: str = "scripts"
) -> list[ScriptFile]:
    """Script files of the active `extensions` (plus core_dir), ordered by metadata.ini."""
    files: dict[str, ScriptFile] = {}
    deps: dict[str, list[str]] = {}
    by_extension: dict[str, list[str]] = {e.canonical_name: [] for e in extensions}
    if core_dir is not None and core_dir.is_dir():
        for path in sorted(core_dir.glob("*.py")):
            files[path.name] = ScriptFile(core_dir.parent, path, "core", path.name)
            deps[path.name] = []
    requires: dict[str, list[str]] = {}
    befores: dict[str, list[str]] = {}
    for ext in extensions:
        for path in ext.files(subdir, {".py"}):
            script_id = ("builtin/" if ext.is_builtin else "") + f"{ext.canonical_name}/{path.name}"
            relative = f"{subdir}/{path.name}"
            meta = ext.metadata
            files[script_id] = ScriptFile(ext.path, path, ext.name, script_id)
            by_extension[ext.canonical_name].append(script_id)
            loaded = list(by_extension)
            requires[script_id] = meta.requirements("Requires", relative, subdir, loaded)
            befores[script_id] = meta.requirements("Before", relative, subdir, loaded)
            deps[script_id] = meta.requirements("After", relative, subdir, loaded)
    for script_id, before_list in befores.items():
        for target in before_list:
            for other in [target] if target in files else by_extension.get(target, []):
                deps.setdefault(other, []).append(script_id)
    for script_id, after_list in deps.items():
        expanded: list[str] = []
        for target in after_list:
            expanded.extend([target] if target in files else by_extension.get(target, [target]))
        deps[script_id] = expanded
    for script_id, required in requires.items():
        for name in required:
            if name not in files and name not in by_extension:
                problems.note(files[script_id].extension, script_id, f"requires {name!r}, which is not loaded")
    return [files[s] for s in topological_sort(deps) if s in files]


@contextmanager
def importing_from(folder: Path) -> Iterator[None]:
    token = CURRENT_BASEDIR.set(folder)
    try:
        yield
    finally:
        CURRENT_BASEDIR.reset(token)


def _module_name(file: ScriptFile) -> str:
    return "extscript_" + re.sub(r"\W", "_", f"{file.extension}_{file.path.stem}")


def load_script_files(files: Sequence[ScriptFile], problems: ProblemLog) -> LoadedScripts:
    """Import each file; collect Script / ScriptPostprocessing subclasses found in its namespace."""
    loaded = LoadedScripts()
    seen: set[type] = set()
    for folder in (str(A1111_BUILTIN_MODULES), *(str(file.basedir) for file in files)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
            loaded.added_sys_path.append(folder)
    for file in files:
        name = _module_name(file)
        try:
            with importing_from(file.basedir):
                module = _import(name, file.path)
        except BaseException as exc:  # boundary: SyntaxError, ImportError, SystemExit from a script
            if isinstance(exc, KeyboardInterrupt):
                raise
            sys.modules.pop(name, None)
            problems.report(file.extension, f"import {file.path.parent.name}/{file.filename}", exc)
            continue
        loaded.modules[name] = module
        for value in list(vars(module).values()):
            if not inspect.isclass(value) or value in _BASE_CLASSES or value in seen:
                continue
            if issubclass(value, Script):
                loaded.scripts.append(ScriptClass(value, file))
                seen.add(value)
            elif issubclass(value, ScriptPostprocessing):
                loaded.postprocessing.append(ScriptClass(value, file))
                seen.add(value)
    return loaded


def _import(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses / pickling look modules up here
    spec.loader.exec_module(module)
    return module
