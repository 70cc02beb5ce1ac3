"""Benchmark: what drawing every tab before onUiLoaded costs the page load.

A1111 extensions bind to every tab's elements at onUiLoaded, so script.js draws each tab once
(hidden) before firing it. One page load measures both points, in the browser's clock from the
start of navigation:
- baseline: `#txt2img_prompt` is in the page (where onUiLoaded would fire without drawing tabs);
- drawn: `window.__uiLoadedFired` (every tab drawn, onUiLoaded callbacks run).
Ratio drawn / baseline, per load and the median over N loads (Chromium, empty models dir, the
demo model; no extensions).

    ./venv/bin/python bench/bench_page_load.py [--loads 3]

Writes bench/results/page_load.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from bench_server import free_port, server_env  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "page_load.json"
CHROMIUM = "/usr/bin/chromium"

# stamps both points in performance.now() (ms since navigation start)
MARKS = """
(() => {
  const mark = () => {
    if (!window.__benchPrompt && document.querySelector("#txt2img_prompt")) window.__benchPrompt = performance.now();
    if (!window.__benchLoaded && window.__uiLoadedFired === true) window.__benchLoaded = performance.now();
  };
  new MutationObserver(mark).observe(document, {childList: true, subtree: true, attributes: true});
  const timer = setInterval(() => { mark(); if (window.__benchLoaded) clearInterval(timer); }, 5);
})();
"""


def wait_for_server(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not answer")


def measure(url: str, loads: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for _ in range(loads + 1):  # the first load warms the server's caches and is dropped
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.add_init_script(MARKS)
                page.goto(url, wait_until="load")
                page.wait_for_function("() => window.__benchLoaded !== undefined", timeout=300000)
                prompt, loaded = page.evaluate("[window.__benchPrompt, window.__benchLoaded]")
                out.append({"prompt_ms": prompt, "ui_loaded_ms": loaded, "ratio": loaded / prompt})
                page.context.close()
        finally:
            browser.close()
    return out[1:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        proc = subprocess.Popen(
            [sys.executable, "webui.py", "--data-dir", data_dir, "--port", str(port)],
            cwd=REPO_ROOT,
            env=server_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for_server(url, proc)
            runs = measure(url, args.loads)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "runs": runs,
        "median_prompt_ms": statistics.median(r["prompt_ms"] for r in runs),
        "median_ui_loaded_ms": statistics.median(r["ui_loaded_ms"] for r in runs),
        "median_ratio": statistics.median(r["ratio"] for r in runs),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
