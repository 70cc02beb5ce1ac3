"""What an extension's installer may do to the Python environment (A1111 let it do anything).

- A core package (torch, transformers, pydantic, gradio...) is never up- or downgraded.
- An installed package outside the core is never downgraded (one extension must not break another
  that needs the newer version, e.g. protobuf); upgrades and new packages are allowed.
- A requirement that would break either rule is left out, the others are installed, and each one
  left out is written to the report file with the reason, so the Extensions tab can say what was
  not installed and why (nothing fails silently, the core is never touched).

It runs inside the installer's interpreter (the one whose packages count) and uses only the
standard library and pip's own `packaging`:

    python -m modules.core.pip_policy install -r requirements.txt   (what the web UI runs)
    launch.run_pip("install x y<2")                                 (what install.py calls)

Environment: PIP_POLICY_CORE (comma-separated core names; default CORE_PACKAGES),
PIP_POLICY_REPORT (JSON-lines report file; none: no report).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare venv: pip vendors packaging
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement  # type: ignore[no-redef,assignment]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef,assignment]

# Packages an extension must never up- or downgrade under the running app.
CORE_PACKAGES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "safetensors",
    "accelerate",
    "peft",
    "gradio",
    "fastapi",
    "pydantic",
    "numpy",
    "pillow",
)
_UPPER_BOUNDS = ("<", "<=", "==", "===", "~=")


@dataclass(frozen=True)
class Skipped:
    """A requirement left out, and why (one line of the report)."""

    requirement: str
    reason: str


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def core_names() -> set[str]:
    raw = os.environ.get("PIP_POLICY_CORE")
    names = raw.split(",") if raw else CORE_PACKAGES
    return {canonical(n) for n in names if n.strip()}


def conflict(requirement: str, installed: dict[str, str], core: set[str]) -> str | None:
    """Why `requirement` may not be installed here, or None when it may."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return None  # not a plain requirement (a URL, a path): pip decides
    name = canonical(req.name)
    have = installed.get(name)
    if have is None or not req.specifier:
        return None
    try:
        version = Version(have)
    except InvalidVersion:
        return None
    if req.specifier.contains(version, prereleases=True):
        return None
    if name in core:
        return f"needs {req.name}{req.specifier}, but the web UI runs on {req.name} {have} (a core package extensions cannot change)"
    lowers = [c for c in req.specifier if c.operator in _UPPER_BOUNDS and not c.contains(version, prereleases=True)]
    if lowers:
        return f"would downgrade {req.name} {have} to {req.specifier} (installed packages are not downgraded: other extensions may need them)"
    return None


def constraints(installed: dict[str, str], core: set[str]) -> list[str]:
    """pip constraints: core packages stay at their version, others do not go below theirs."""
    lines = []
    for name, have in sorted(installed.items()):
        if name in core:
            lines.append(f"{name}=={have}")
        else:
            try:
                lines.append(f"{name}>={Version(have).public}")
            except InvalidVersion:
                continue
    return lines


def split_install_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(requirements, other pip options) of `pip install ...` arguments; `-r file` is read."""
    requirements: list[str] = []
    options: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if item in ("-r", "--requirement") and i + 1 < len(items):
            requirements += read_requirements(Path(items[i + 1]))
            i += 2
            continue
        if item.startswith("-"):
            options.append(item)
            if item in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint"):
                options.append(items[i + 1])
                i += 1
        else:
            requirements.append(item)
        i += 1
    return requirements, options


def read_requirements(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split(" #", 1)[0].strip()
        if text and not text.startswith("#"):
            lines.append(text)
    return lines


def report(skipped: Iterable[Skipped]) -> None:
    target = os.environ.get("PIP_POLICY_REPORT")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as handle:
        for item in skipped:
            handle.write(json.dumps(asdict(item)) + "\n")


def read_report(path: Path) -> list[Skipped]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
            out.append(Skipped(str(data["requirement"]), str(data["reason"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def install(args: Sequence[str], *, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    """`pip install <args>` under the policy: conflicting requirements left out (and reported),
    the rest installed with constraints that keep core versions and forbid downgrades."""
    requirements, options = split_install_args(args)
    installed = installed_versions()
    core = core_names()
    skipped = [Skipped(r, why) for r in requirements if (why := conflict(r, installed, core)) is not None]
    report(skipped)
    for item in skipped:
        print(f"not installing {item.requirement}: {item.reason}", flush=True)
    wanted = [r for r in requirements if r not in {s.requirement for s in skipped}]
    if not wanted and requirements:
        return subprocess.CompletedProcess([python], 0, "", "")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as handle:
        handle.write("\n".join(constraints(installed, core)) + "\n")
    try:
        command = [python, "-m", "pip", "install", *options, "-c", handle.name, *wanted]
        return subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        os.unlink(handle.name)


_CANNOT = re.compile(r"Cannot install (.+?) because", re.S)
_CAUSE = re.compile(r'^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])? \S+ depends on (.+?); extra == "([^"]+)"', re.M)


def rescue_plan(pip_output: str) -> tuple[list[str], list[Skipped]]:
    """After pip refused an install (ResolutionImpossible): the same requirements without the
    extras whose dependencies conflict (e.g. dynamicprompts[magicprompt] needs transformers<5),
    and what is left out. ([], []) when dropping extras cannot help."""
    cannot = _CANNOT.search(pip_output)
    causes = _CAUSE.findall(pip_output)
    if cannot is None or not causes:
        return [], []
    bad: dict[str, dict[str, str]] = {}
    for package, dependency, extra in causes:
        bad.setdefault(canonical(package), {})[extra] = dependency
    plan: list[str] = []
    skipped: list[Skipped] = []
    for text in re.split(r",\s+(?![^\[]*\])|\s+and\s+", cannot.group(1).strip()):
        try:
            req = Requirement(text.strip())
        except InvalidRequirement:
            return [], []
        drop = bad.get(canonical(req.name), {})
        if not drop.keys() & req.extras:
            return [], []  # the conflict is not in an optional extra: nothing to rescue
        keep = sorted(req.extras - drop.keys())
        extras = f"[{','.join(keep)}]" if keep else ""
        plan.append(f"{req.name}{extras}{req.specifier}")
        for extra in sorted(drop.keys() & req.extras):
            skipped.append(
                Skipped(
                    f"{req.name}[{extra}]", f"its extra needs {drop[extra]}, which conflicts with the web UI's packages"
                )
            )
    return plan, skipped


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "constraints":  # the PIP_CONSTRAINT file for this interpreter
        Path(argv[1]).write_text("\n".join(constraints(installed_versions(), core_names())) + "\n", encoding="utf-8")
        return 0
    if not argv or argv[0] != "install":
        print(
            "usage: python -m modules.core.pip_policy install [pip install arguments] | constraints FILE",
            file=sys.stderr,
        )
        return 2
    result = install(argv[1:])
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
