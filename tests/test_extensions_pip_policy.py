"""Extension installers under the pip policy (issue 18): a requirement that conflicts with a core
package or would downgrade an installed one is left out and reported in the Extensions tab, the
rest is installed, nothing in the environment is up- or downgraded behind the app's back.

Offline: a throw-away venv (no pip of its own: the shared venv's pip is put on its path) and a
folder of tiny wheels built here stand in for the app's environment and PyPI. `toycore` plays a
core package (transformers, pydantic...), `toyshared` a package another extension installed
(protobuf)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pip
import pytest

from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.pip_policy import conflict
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.extension_host.installer import Installer
from modules.extension_host.ui_tab import ExtensionsTab

FIXTURES = Path(__file__).parent / "extensions_fixtures"
PINNED = ("toy-pinned", "toy-pinned-req", "toy-pinned-raw", "toy-pinned-extra")


def _wheel(folder: Path, name: str, version: str, extras: dict[str, str] | None = None) -> None:
    """A minimal pure-Python wheel with one module `name` whose VERSION is `version`; `extras`:
    extra name -> the requirement it adds."""
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    for extra, requirement in (extras or {}).items():
        meta += f'Provides-Extra: {extra}\nRequires-Dist: {requirement}; extra == "{extra}"\n'
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": meta,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
        whl.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with toycore 2.0 and toyshared 2.0 installed; wheels of older/other versions at hand."""
    root = tmp_path_factory.mktemp("pip-policy")
    wheels = root / "wheels"
    wheels.mkdir()
    for name, version in [("toycore", "1.0"), ("toycore", "2.0"), ("toyshared", "1.0"), ("toyshared", "2.0")]:
        _wheel(wheels, name, version)
    _wheel(wheels, "toyextra", "1.0")
    _wheel(wheels, "toyextra2", "1.0")
    _wheel(wheels, "toyext", "1.0", {"heavy": "toycore<2", "light": "toyextra2"})
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip_home = root / "pip-home"
    pip_home.mkdir()
    (pip_home / "pip").symlink_to(Path(pip.__file__).parent)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz_shared_pip.pth").write_text(str(pip_home) + "\n")
    _pip(venv, "install", "--no-index", "--find-links", str(wheels), "toycore==2.0", "toyshared==2.0")
    return root


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _pip(venv: Path, *args: str) -> str:
    done = subprocess.run([_python(venv), "-m", "pip", *args], capture_output=True, text=True, check=True)
    return done.stdout


def _installed(venv: Path) -> dict[str, str]:
    rows = json.loads(_pip(venv, "list", "--format", "json"))
    return {r["name"]: r["version"] for r in rows if r["name"].startswith("toy")}


@pytest.fixture
def host(toy_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExtensionHost]:
    data = tmp_path / "data"
    for name in PINNED:
        shutil.copytree(FIXTURES / name, data / "extensions" / name)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(toy_env / "wheels"))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    venv = toy_env / "venv"
    constraints = tmp_path / "constraints.txt"
    subprocess.run(
        [_python(venv), "-m", "modules.core.pip_policy", "constraints", str(constraints)],
        check=True,
        env={"PYTHONPATH": str(Path(__file__).parent.parent), "PIP_POLICY_CORE": "toycore"},
    )
    installer = Installer(python=_python(venv), constraints=constraints, timeout=300, core=("toycore",))
    args = parse_args(["--data-dir", str(data), "--nowebui"])
    bound = facade.bind(
        build_services(args), builtin_dir=data / "no-builtins", core_scripts_dir=None, installer=installer
    )
    yield bound
    facade.unbind()


def test_conflicting_requirements_are_left_out_and_reported(host: ExtensionHost, toy_env: Path) -> None:
    venv = toy_env / "venv"
    # what could be installed was; the core and the other extension's package kept their versions
    assert _installed(venv) == {
        "toycore": "2.0",
        "toyshared": "2.0",
        "toyextra": "1.0",
        "toyextra2": "1.0",
        "toyext": "1.0",  # installed without its conflicting extra
    }
    problems = {(p.extension, p.error) for p in host.problem_list()}
    core = "needs toycore<2, but the web UI runs on toycore 2.0 (a core package extensions cannot change)"
    assert ("toy-pinned", f"toycore<2 was not installed: {core}") in problems
    assert (
        "toy-pinned",
        "toyshared<2 was not installed: would downgrade toyshared 2.0 to <2 "
        "(installed packages are not downgraded: other extensions may need them)",
    ) in problems
    assert any(
        e == "toy-pinned-req" and e_text.startswith("toycore<2.0 was not installed: needs toycore<2.0")
        for e, e_text in problems
    )
    # an install.py running pip itself cannot downgrade either: pip refuses, the failure says why
    raw = [text for ext, text in problems if ext == "toy-pinned-raw"]
    assert len(raw) == 1 and "installer failed" in raw[0] and "pip refused a requirement that conflicts" in raw[0]
    # raw pip with an extra that needs an older core package: installed without that extra
    extra = "toyext[heavy] was not installed: its extra needs toycore<2, which conflicts with the web UI's packages"
    assert ("toy-pinned-extra", extra) in problems
    assert not any(ext == "toy-pinned-extra" and "installer failed" in text for ext, text in problems)
    # the Extensions tab shows it, per extension and in the problems list
    html = ExtensionsTab(host).problems_html()
    assert "toycore&lt;2 was not installed" in html or "toycore<2 was not installed" in html
    rows = {i.name: i.problems for i in host.installed()}
    assert any("toyshared<2 was not installed" in p for p in rows["toy-pinned"])

    # next start: finished installers do not run again, and what they left out is still listed
    host.problems.clear()
    runs = host.run_installers(only_changed=True)
    assert [r.extension for r in runs] == ["toy-pinned-raw"]  # failed runs are retried, done ones not
    assert any(p.extension == "toy-pinned" and "toycore<2 was not installed" in p.error for p in host.problem_list())


@pytest.mark.parametrize(
    ("requirement", "verdict"),
    [
        ("toycore<2", "core"),
        ("toycore>=2", None),
        ("toycore==2.0", None),
        ("toycore>=3", "core"),  # an upgrade of a core package is refused too
        ("toyshared<2", "downgrade"),
        ("toyshared~=1.0", "downgrade"),
        ("toyshared>=3", None),  # upgrades of other packages are allowed
        ("newpkg<1", None),
        ("git+https://example.com/x.git", None),
    ],
)
def test_conflict_rules(requirement: str, verdict: str | None) -> None:
    reason = conflict(requirement, {"toycore": "2.0", "toyshared": "2.0"}, {"toycore"})
    if verdict is None:
        assert reason is None
    else:
        assert reason is not None and {"core": "core package", "downgrade": "would downgrade"}[verdict] in reason
