"""The import-layer rule (docs/architecture.md, "Layers"), checked over the source with `ast`.

Every `import` counts: module level, inside functions (lazy imports) and under TYPE_CHECKING, so a
cycle cannot hide behind a deferred import. The rule:
- no cycle between packages of modules/ (and none between the files of one package);
- a package imports only packages of a lower layer or its own; nothing imports upward into
  modules/core or modules/models; no package imports the composition root (modules/app) or the
  A1111 facade files at the top of modules/.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "modules"

# Bottom to top (the picture in docs/architecture.md). A package imports only packages of lower
# layers; packages in one tuple are beside each other and must not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),  # ground floor: paths, settings, jobs, devices, flags, users
    ("models",),  # checkpoints: identify, load, cache
    ("networks", "postprocessing", "merger"),  # LoRA/TI/hypernetworks; upscalers, faces; merging
    ("generation",),  # requests -> Processing -> images
    (
        "train",
        "interrogate",
        "access",
        "scaleout",
        "controlnet",
    ),  # training; interrogators; access policy; workers over a broker; ControlNet
    ("workflows",),  # what UI and API both run: submit a generation, switch the checkpoint, settings
    ("services",),  # the Services container type the adapters receive
    ("extension_host",),  # A1111 extensions: discovery, scripts, callbacks, git
    ("api", "ui"),  # adapters: HTTP routes, Gradio tabs
    ("app",),  # the composition root
)
FACADES = "<facades>"  # modules/*.py: A1111's module paths (modules.shared, ...) and the server
A1111_PACKAGES = frozenset({"processing_scripts"})  # A1111 facade paths that are packages
TOP = len(LAYERS)  # the facade files sit above every package


def layer_of(package: str) -> int:
    if package == FACADES:
        return TOP
    for level, names in enumerate(LAYERS):
        if package in names:
            return level
    raise AssertionError(f"modules/{package} is in no layer: add it to LAYERS (and docs/architecture.md)")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and (MODULES / parts[1]).is_dir() and parts[1] not in A1111_PACKAGES:
        return parts[1]
    return FACADES


def imported_modules(path: Path, module: str, known: set[str]) -> Iterable[str]:
    """Modules under modules/ that `path` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for name in names:
            # `import modules.a.b` also imports modules.a: count the longest known prefix
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("modules."):
                yield name


@functools.cache
def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in MODULES.rglob("*.py")}
    known = set(files)
    return {m: set(imported_modules(p, m, known)) for m, p in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(from package, to package) -> the imports that make the edge (file -> module)."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, targets in graph.items():
        for target in targets:
            a, b = package_of(source), package_of(target)
            if a != b:
                out[a, b].append(f"{source} -> {target}")
    return out


def test_no_cycles_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for a, b in package_edges(import_graph()):
        edges[a].add(b)
    assert cycles(edges) == []


def test_no_cycles_between_the_files_of_a_package() -> None:
    graph = import_graph()
    # the A1111 facade files mirror A1111's own module graph (modules.shared <-> modules.sd_models),
    # cycles included; they hold no logic, so only our packages are held to this rule
    ours = {m: ts for m, ts in graph.items() if package_of(m) != FACADES}
    inside = {m: {t for t in ts if package_of(t) == package_of(m)} for m, ts in ours.items()}
    assert cycles(inside) == []


def test_packages_import_only_lower_layers() -> None:
    upward = []
    for (a, b), where in sorted(package_edges(import_graph()).items()):
        if layer_of(b) >= layer_of(a):
            upward.extend(where)
    assert upward == [], "imports that go up or sideways:\n" + "\n".join(upward)


def test_check_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    """The checker itself: imports inside functions and TYPE_CHECKING blocks are edges too."""
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from modules.api.auth import Authenticator\n"
        "def f():\n    import modules.ui.common\n    from . import sibling\n",
        encoding="utf-8",
    )
    known = {"modules.api.auth", "modules.ui.common", "modules.core.sibling", "modules.api", "modules.ui"}
    found = set(imported_modules(source, "modules.core.sample", known))
    assert found == {"modules.api.auth", "modules.ui.common", "modules.core.sibling"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def absolute_imports(path: Path) -> Iterable[str]:
    """The modules a file imports by absolute name (relative imports stay inside its package)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module or ""


# A1111's third-party module paths offered to extensions as our own thin packages at the top level;
# they sit above everything, like the facade files: nothing under modules/ imports them.
A1111_TOP_PACKAGES = ("k_diffusion",)


def test_nothing_in_modules_imports_the_a1111_top_level_packages() -> None:
    found = []
    for path in MODULES.rglob("*.py"):
        names = absolute_imports(path)
        found += [f"{path.relative_to(ROOT)} -> {n}" for n in names if n.split(".")[0] in A1111_TOP_PACKAGES]
    assert found == []
    assert all((ROOT / name / "__init__.py").is_file() for name in A1111_TOP_PACKAGES)


# ldm/ and sgm/ (A1111's module paths, our ldm-shaped views of the diffusers models) sit below
# modules/core: generation calls them, they import torch only, never `modules`; sgm builds on ldm.
BELOW_CORE = {"ldm": ("ldm",), "sgm": ("ldm", "sgm")}


def test_ldm_and_sgm_import_only_torch_and_each_other() -> None:
    wrong = []
    for package, allowed in BELOW_CORE.items():
        for path in (ROOT / package).rglob("*.py"):
            for name in absolute_imports(path):
                top = name.split(".")[0]
                if top in ("modules", "ldm", "sgm", "k_diffusion", "webui", "tools") and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} -> {name}")
    assert wrong == []
