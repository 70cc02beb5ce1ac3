"""./webui.sh on a fresh clone starts the server and prints the URL once / answers 200."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_webui_sh_on_a_fresh_clone_serves_the_ui(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    port = free_port()
    env = dict(os.environ, venv_dir=str(Path(sys.executable).parents[1]), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        ["bash", "webui.sh", "--skip-install", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Running on local URL" in line:
                break
        announced = [line for line in lines if "Running on local URL" in line]
        assert announced, "".join(lines)
        assert f"http://127.0.0.1:{port}/" in announced[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
            assert b"gradio" in response.read().lower()
        assert (tmp_path / "data" / "models" / "Stable-diffusion").is_dir()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
