"""Installing, updating, disabling and removing extensions from a real git server (git daemon on
127.0.0.1), plus the security gates: --listen refuses changes, option-injection URLs are refused
before git runs, folder names cannot leave extensions/, credentials never reach messages."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.extension_host import facade
from modules.extension_host.api import register_extension_routes
from modules.extension_host.gitops import (
    ExtensionAccessDenied,
    ExtensionExists,
    GitOperationFailed,
    InvalidExtensionUrl,
    InvalidFolderName,
    folder_name_from_url,
    redact_url,
    sanitize_folder_name,
    validate_url,
)
from modules.extension_host.host import ExtensionHost
from modules.extension_host.installer import Installer

FIXTURES = Path(__file__).parent / "extensions_fixtures"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _git(cwd: Path, *args: str) -> str:
    import os

    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GitServer:
    base: Path
    port: int

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def publish(self, name: str, fixture: str) -> Path:
        repo = self.base / name
        shutil.copytree(FIXTURES / fixture, repo)
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "first")
        return repo

    def commit(self, name: str, relative: str, text: str) -> str:
        repo = self.base / name
        (repo / relative).write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"change {relative}")
        return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    base = tmp_path_factory.mktemp("git-served")
    port = _free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--export-all", f"--base-path={base}", f"--port={port}", "--listen=127.0.0.1", "--reuseaddr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)
        yield GitServer(base, port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _host(data_dir: Path, *flags: str) -> ExtensionHost:
    """A fresh app start over `data_dir` (what a restart does)."""
    services = build_services(parse_args(["--data-dir", str(data_dir), *flags]))
    return facade.bind(services, builtin_dir=data_dir / "no-builtins", core_scripts_dir=None)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    facade.unbind()


def _script_titles(host: ExtensionHost) -> list[str]:
    return [s.title() for s in host.runner.tab("txt2img").scripts]


def test_install_update_disable_remove(git_server: GitServer, data_dir: Path) -> None:
    repo = git_server.publish("toy-installer.git", "toy-installer")
    first = _git(repo, "rev-parse", "HEAD")
    host = _host(data_dir)

    outcome = host.install(git_server.url("toy-installer.git"))
    folder = data_dir / "extensions" / "toy-installer"
    assert outcome.name == "toy-installer" and outcome.path == folder
    assert outcome.info.commit_hash == first and outcome.info.version == first[:8]
    assert outcome.info.branch == "main"
    assert outcome.installer_ok, outcome.output
    assert "hello from toy install.py" in outcome.output
    assert (folder / "installed.marker").read_text() == "installed\n"
    assert not any((data_dir / "extensions" / ".tmp").iterdir())  # clone moved, temp cleaned
    with pytest.raises(ExtensionExists):
        host.install(git_server.url("toy-installer.git"))

    # restart: the extension's script is loaded
    host = _host(data_dir)
    assert "Installer toy" in _script_titles(host)
    row = next(i for i in host.installed() if i.name == "toy-installer")
    assert row.enabled and row.git.remote == git_server.url("toy-installer.git")
    assert host.check_updates() == {"toy-installer": "latest"}

    # a new upstream commit: seen, then pulled
    second = git_server.commit("toy-installer.git", "scripts/installer_toy.py", _toy_script(version=2))
    assert host.check_updates(["toy-installer"]) == {"toy-installer": "new commits"}
    info = host.update("toy-installer")
    assert info.commit_hash == second and info.version == second[:8]
    assert "VERSION = 2" in (folder / "scripts" / "installer_toy.py").read_text()
    assert host.check_updates() == {"toy-installer": "latest"}

    # disable: not loaded after restart; enable again: loaded
    host.set_enabled("toy-installer", False)
    host = _host(data_dir)
    assert "Installer toy" not in _script_titles(host)
    assert next(i for i in host.installed() if i.name == "toy-installer").enabled is False
    host.set_enabled("toy-installer", True)
    host = _host(data_dir)
    assert "Installer toy" in _script_titles(host)

    # remove
    host.remove("toy-installer")
    assert not folder.exists()
    assert [i.name for i in host.installed()] == []
    assert _host(data_dir).services.options.get("disabled_extensions") == []


def _toy_script(version: int) -> str:
    return (
        "from modules import scripts\n\n"
        f"VERSION = {version}\n\n\n"
        "class InstallerToy(scripts.Script):\n"
        "    def title(self):\n        return 'Installer toy'\n\n"
        "    def show(self, is_img2img):\n        return scripts.AlwaysVisible\n"
    )


def test_install_with_branch_and_folder_name(git_server: GitServer, data_dir: Path) -> None:
    repo = git_server.publish("toy-prompts.git", "toy-prompts")
    _git(repo, "checkout", "-q", "-b", "dev")
    git_server.commit("toy-prompts.git", "DEV.txt", "dev branch\n")
    _git(repo, "checkout", "-q", "main")
    host = _host(data_dir)
    outcome = host.install(git_server.url("toy-prompts.git"), branch="dev", folder="my prompts")
    assert outcome.name == "my_prompts"
    assert outcome.info.branch == "dev"
    assert (data_dir / "extensions" / "my_prompts" / "DEV.txt").is_file()


def test_listen_refuses_changes_with_clear_message(git_server: GitServer, data_dir: Path) -> None:
    git_server.publish("toy-listen.git", "toy-prompts")
    host = _host(data_dir, "--listen")
    with pytest.raises(ExtensionAccessDenied, match="--enable-insecure-extension-access"):
        host.install(git_server.url("toy-listen.git"))
    assert not (data_dir / "extensions" / "toy-listen").exists()
    with pytest.raises(ExtensionAccessDenied):
        host.remove("anything")

    app = FastAPI()
    register_extension_routes(app, host)
    client = TestClient(app)
    response = client.post("/internal/extensions/install", json={"url": git_server.url("toy-listen.git")})
    assert response.status_code == 403
    assert "--listen" in response.json()["detail"]
    listing = client.get("/internal/extensions").json()
    assert listing["access"]["allowed"] is False

    allowed = _host(data_dir, "--listen", "--enable-insecure-extension-access")
    assert allowed.access.allowed
    assert allowed.install(git_server.url("toy-listen.git")).name == "toy-listen"


@pytest.mark.parametrize(
    "url",
    [
        "--upload-pack=touch {marker}",
        "-u touch {marker}",
        "ext::sh -c touch% {marker}",
        "file://{marker}",
        "{marker}",
        "https://",
        "https://-oProxyCommand=touch {marker}/x",
        "ssh://-oProxyCommand=touch%20{marker}/x",
        "git@-oProxyCommand=touch:{marker}",
    ],
)
def test_injection_urls_are_refused_and_create_nothing(url: str, data_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    host = _host(data_dir)
    before = sorted(p.name for p in (data_dir / "extensions").iterdir())
    with pytest.raises(InvalidExtensionUrl):
        host.install(url.format(marker=marker))
    assert not marker.exists()
    assert sorted(p.name for p in (data_dir / "extensions").iterdir()) == before


def test_upload_pack_url_through_the_api(data_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "x"
    host = _host(data_dir)
    app = FastAPI()
    register_extension_routes(app, host)
    response = TestClient(app).post("/internal/extensions/install", json={"url": f"--upload-pack=touch {marker}"})
    assert response.status_code == 400
    assert "starts with '-'" in response.json()["detail"]
    assert not marker.exists()
    assert not list((data_dir / "extensions").glob("*upload*"))


def test_folder_names_are_sanitised() -> None:
    assert folder_name_from_url("https://github.com/a/sd-webui-foo.git") == "sd-webui-foo"
    assert folder_name_from_url("git@github.com:a/My Ext.git/") == "My_Ext"
    assert folder_name_from_url("https://example.org/a/b/%2e%2e") == "2e_2e"
    assert sanitize_folder_name("weird name!*") == "weird_name"
    for bad in ("../evil", "a/b", "..", "a\\b", ".", "...", ""):
        with pytest.raises(InvalidFolderName):
            sanitize_folder_name(bad)


def test_traversal_folder_refused_on_install(git_server: GitServer, data_dir: Path) -> None:
    host = _host(data_dir)
    with pytest.raises(InvalidFolderName):
        host.install(git_server.url("whatever.git"), folder="../outside")
    assert not (data_dir / "outside").exists()
    with pytest.raises(InvalidFolderName):
        host.remove("../extensions")


def test_credentials_never_in_messages(data_dir: Path) -> None:
    assert redact_url("https://user:s3cret@example.org/x.git") == "https://***@example.org/x.git"
    assert validate_url("https://user:s3cret@example.org/x.git").endswith("x.git")
    host = _host(data_dir)
    port = _free_port()  # nothing listens there: the clone fails fast
    with pytest.raises(GitOperationFailed) as failure:
        host.install(f"https://user:s3cret@127.0.0.1:{port}/repo.git")
    assert "s3cret" not in str(failure.value)
    assert "***@" in str(failure.value)
    assert not (data_dir / "extensions" / "repo").exists()


def test_installer_timeout_is_enforced(tmp_path: Path) -> None:
    folder = tmp_path / "slow-ext"
    folder.mkdir()
    (folder / "install.py").write_text("import time\nprint('starting', flush=True)\ntime.sleep(30)\n")
    started = time.monotonic()
    run = Installer(timeout=1.0).run(folder)
    assert time.monotonic() - started < 10
    assert run.ran and run.timed_out and not run.ok
    assert "starting" in run.output
    assert "timeout" in run.summary


def test_installer_failure_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "bad-ext"
    folder.mkdir()
    (folder / "install.py").write_text("import sys\nprint('oops')\nsys.exit(3)\n")
    run = Installer(timeout=30).run(folder)
    assert run.ran and not run.ok and run.returncode == 3 and "oops" in run.output
    empty = tmp_path / "no-installer"
    empty.mkdir()
    assert Installer().run(empty).ran is False


def test_installers_at_startup_run_only_when_changed(git_server: GitServer, data_dir: Path) -> None:
    git_server.publish("toy-installer-2.git", "toy-installer")
    host = _host(data_dir)
    host.install(git_server.url("toy-installer-2.git"))
    marker = data_dir / "extensions" / "toy-installer-2" / "installed.marker"
    marker.unlink()
    _host(data_dir)  # unchanged since the install: install.py does not run again
    assert not marker.exists()
    (data_dir / "extensions" / "toy-installer-2" / "install.py").write_text(
        (FIXTURES / "toy-installer" / "install.py").read_text() + "\n# changed\n"
    )
    _host(data_dir)
    assert marker.exists()
    marker.unlink()
    # a new commit pulled by hand, install.py and requirements.txt unchanged: the next start runs it
    folder = data_dir / "extensions" / "toy-installer-2"
    git_server.commit("toy-installer-2.git", "notes.txt", "new upstream notes\n")
    _git(folder, "pull", "-q", "--ff-only")
    _host(data_dir)
    assert marker.exists()
    marker.unlink()
    _host(data_dir)  # recorded: not again
    assert not marker.exists()
    # an update from the Extensions tab runs it at once
    git_server.commit("toy-installer-2.git", "notes.txt", "newer upstream notes\n")
    host = _host(data_dir)
    host.update("toy-installer-2")
    assert marker.exists()
    marker.unlink()
    (folder / "install.py").write_text((FIXTURES / "toy-installer" / "install.py").read_text() + "\n# changed again\n")
    _host(data_dir, "--skip-install")
    assert not marker.exists()
