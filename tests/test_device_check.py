"""bench/device_check.py --cpu-smoke: the GPU check's code runs end to end on tiny models on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_device_check_cpu_smoke_prints_one_table_with_every_row(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "device_check.py"), "--cpu-smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,  # < 60 s on an idle 2-core machine; the shared test machine is slower
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = [line for line in run.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5  # header, rule, five checks
    assert "CPU (smoke: tiny models)" in run.stdout
    rows = json.loads(out.read_text())

    def row(prefix: str, model: str = "sdxl") -> dict:
        return next(r for r in rows if r["check"].startswith(prefix) and r["model"] == model)

    for family in ("sd1", "sdxl"):
        versus = row("txt2img", family)
        assert versus["data"]["ours_s"] > 0 and versus["data"]["diffusers_s"] > 0
    vae = row("SDXL")
    assert vae["value"] == "no" and vae["data"]["nan_escaped"] is False
    fp8 = row("fp8")
    assert fp8["data"]["psnr"] >= 30 and 0.5 <= fp8["data"]["weight_ratio"] < 0.51
    assert row("--medvram")["data"]["psnr"] > 40  # offload changes where weights sit, not the image
