"""Static audit: which A1111 module names does an extension use that our surface lacks?

    ./venv/bin/python tools/extension_audit.py extensions/some-extension [more folders...]
    ./venv/bin/python tools/extension_audit.py --all extensions/x   # every name used, not only gaps

It parses every .py file of the folder (no extension code runs), collects the `modules.*` and
`launch` names it references - imports (`import modules.x`, `from modules.x import a`,
`from modules import x`) and attribute use on those modules (`shared.opts`, `launch.args`,
`shared.cmd_opts.lora_dir`) - then imports our facades and reports each name they lack.

A name counts as present when the facade module has it, resolves it lazily (its `__getattr__`
answers FacadeNotBound: it exists but needs a running app), or it is a submodule. Imports inside
`try:` blocks that catch ImportError are reported as `optional` (the extension copes without).
Exit status: 0 when nothing is missing, 1 otherwise (so CI can run it on the test extensions).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", "node_modules", "__pycache__", "venv", ".venv"}


@dataclass(frozen=True, order=True)
class Ref:
    """One referenced name: `module` (e.g. modules.shared) and `name` ('' for the module itself)."""

    module: str
    name: str
    file: str
    line: int
    optional: bool = False

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module


@dataclass
class _FileScan(ast.NodeVisitor):
    file: str
    refs: list[Ref] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> module path
    objects: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)
    guarded: int = 0

    def add(self, module: str, name: str, line: int) -> None:
        self.refs.append(Ref(module, name, self.file, line, self.guarded > 0))

    def visit_Try(self, node: ast.Try) -> None:
        catches_import = any(_catches_import_error(h.type) for h in node.handlers)
        self.guarded += catches_import
        for stmt in node.body:
            self.visit(stmt)
        self.guarded -= catches_import
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _ours(alias.name):
                continue
            self.add(alias.name, "", node.lineno)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:  # `import modules.shared` binds `modules`; chains resolve through visit_Attribute
                self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or not _ours(module):
            return
        self.add(module, "", node.lineno)
        for alias in node.names:
            if alias.name == "*":
                continue
            self.add(module, alias.name, node.lineno)
            local = alias.asname or alias.name
            # `from modules import shared` gives a module; `from modules.shared import opts` an object
            self.aliases[local] = f"{module}.{alias.name}"
            self.objects[local] = (module, alias.name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain and chain[0] in self.aliases:
            base = self.aliases[chain[0]]
            parts = base.split(".") + chain[1:]
            self._record_chain(parts, node.lineno)
            return
        self.generic_visit(node)

    def _record_chain(self, parts: list[str], line: int) -> None:
        # modules.a.b.c: the module is the longest prefix that is a known module path; we don't
        # know that statically, so record each (prefix, next) pair and let the checker decide.
        for i in range(1, len(parts)):
            module, name = ".".join(parts[:i]), parts[i]
            if module == "modules" or _ours(module):
                self.add(module, name, line)
            if i >= 3:
                break


def _ours(module: str) -> bool:
    return module == "launch" or module == "modules" or module.startswith("modules.")


def _catches_import_error(node: ast.expr | None) -> bool:
    if node is None:
        return True
    names = [node] if not isinstance(node, ast.Tuple) else list(node.elts)
    return any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError", "Exception"} for n in names)


def _chain(node: ast.expr) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return []


def python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if not SKIP_DIRS.intersection(path.relative_to(folder).parts):
            yield path


def scan_folder(folder: Path) -> list[Ref]:
    """Every modules.* / launch reference in the folder's Python files (syntax errors skipped)."""
    refs: list[Ref] = []
    for path in python_files(folder):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), filename=str(path))
        except SyntaxError:
            continue
        scan = _FileScan(str(path.relative_to(folder)))
        scan.visit(tree)
        refs.extend(scan.refs)
    return refs


class Surface:
    """Our facades, imported once each; answers whether a referenced name exists."""

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        self._modules: dict[str, ModuleType | None] = {}

    def module(self, path: str) -> ModuleType | None:
        if path not in self._modules:
            try:
                self._modules[path] = importlib.import_module(path)
            except ImportError:
                self._modules[path] = None
            except Exception as exc:  # a facade that fails to import is a gap, said loudly
                print(f"warning: importing {path} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                self._modules[path] = None
        return self._modules[path]

    def has(self, module: str, name: str, flags: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
        if module in DEEP_TARGETS:
            return name in self.flag_names() or name in flags
        mod = self.module(module)
        if mod is None:
            return False
        if not name:
            return True
        try:
            getattr(mod, name)
            return True
        except AttributeError:
            return self.module(f"{module}.{name}") is not None
        except RuntimeError:  # FacadeNotBound: resolved lazily from the running app
            return True

    def known(self, module: str) -> bool:
        """Is `module` a module path we have (as opposed to an object inside one)?"""
        return self.module(module) is not None

    def flag_names(self) -> set[str]:
        """Destinations of our command-line flags (A1111's `shared.cmd_opts` attributes)."""
        cmd_args = self.module("modules.cmd_args")
        parser = getattr(cmd_args, "parser", None)
        return {a.dest for a in getattr(parser, "_actions", [])}


DEEP_TARGETS = {"modules.shared.cmd_opts"}  # objects whose attributes are audited too


def own_flags(folder: Path) -> set[str]:
    """Flags the extension adds itself (preload.py `parser.add_argument("--x-y")` -> x_y)."""
    found: set[str] = set()
    for path in python_files(folder):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                        found.add(arg.value[2:].replace("-", "_"))
                for kw in node.keywords:
                    if kw.arg == "dest" and isinstance(kw.value, ast.Constant):
                        found.add(str(kw.value.value))
    return found


def gaps(refs: Iterable[Ref], surface: Surface, flags: set[str] | None = None) -> list[Ref]:
    """References to our module paths whose name the surface lacks, one row per name."""
    refs = sorted(refs)
    imported = {r.module for r in refs if not r.name}
    seen: set[str] = set()
    out = []
    for ref in refs:
        if ref.dotted in seen or not _auditable(ref, surface, imported):
            continue
        seen.add(ref.dotted)
        if not surface.has(ref.module, ref.name, flags or set()):
            out.append(ref)
    return out


def _auditable(ref: Ref, surface: Surface, imported: set[str]) -> bool:
    """Names of module paths only: `modules.X.name`, names of modules the file imported, and
    the flags on `shared.cmd_opts`. `shared.opts.foo` (an object's attribute) is not audited."""
    if ref.module in DEEP_TARGETS or ref.module in ("modules", "launch"):
        return True
    parent = ref.module.rpartition(".")[0]
    return parent in ("modules", "") or ref.module in imported or surface.known(ref.module)


def audit(folder: Path, surface: Surface | None = None) -> list[Ref]:
    """The names `folder`'s extension references that our surface lacks."""
    return gaps(scan_folder(folder), surface or Surface(), own_flags(folder))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--all", action="store_true", help="list every referenced name, not only the gaps")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    surface = Surface()
    missing_any = False
    report: dict[str, list[dict[str, object]]] = {}
    for folder in (f for f in args.folders if f.is_dir()):
        refs = scan_folder(folder)
        missing = gaps(refs, surface, own_flags(folder))
        rows = sorted({r.dotted: r for r in refs}.values()) if args.all else missing
        missing_any |= bool(missing)
        report[folder.name] = [{"name": r.dotted, "file": r.file, "line": r.line, "optional": r.optional} for r in rows]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for name, listed in report.items():
            print(f"{name}: {len(listed)} {'names' if args.all else 'missing'}")
            for row in listed:
                flag = " (optional)" if row["optional"] else ""
                print(f"  {row['name']}  {row['file']}:{row['line']}{flag}")
    return 1 if missing_any else 0


if __name__ == "__main__":
    sys.exit(main())
