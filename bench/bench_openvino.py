"""Benchmark: the OpenVINO CPU backend (cpu_compute_backend) vs PyTorch vs plain diffusers, txt2img.

SD1.5-size random weights (bench/sdcheckpoints.py: built from the shipped SD1 config, seed 0, no
download), Euler a, CFG 7, seed 1234, 2 torch threads; by default 512x512 and 10 steps
(BENCH_SIZE / BENCH_STEPS or --size / --steps change them; --smoke = 64x64, 2 steps). Modes, each
its own subprocess (so peak RSS is that run's alone), interleaved round by round:

- diffusers: plain StableDiffusionPipeline on the same weights (bench_txt2img.run_diffusers);
- torch: ours, cpu_compute_backend=torch (the fp32 PyTorch image every other mode is compared to);
- openvino / openvino-bf16: ours with OpenVINO at fp32 / bf16 inference precision. Converted
  models are kept in bench/.cache/openvino-data (by weight fingerprint): the first round reports
  the conversion + compile time ("compile_s"), later rounds reuse the IR and compiled blobs.

Per run: generation wall time and process CPU time (the machine is shared: CPU time is the
steadier figure), UNet seconds per step (wall), compile time, peak RSS (VmHWM). Against diffusers
and torch: time ratios and PSNR. The matmul peak (fp32 and bf16 GFLOP/s, 2 threads, best of 5)
and the UNet FLOPs per step (torch.utils.flop_counter on the meta device) give the fraction of
peak each mode reaches per step. Output: bench/results/openvino.json.

    ./venv/bin/python bench/bench_openvino.py [--repeat 1] [--modes diffusers torch openvino openvino-bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BENCH_STEPS", "10")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

RESULTS = REPO_ROOT / "bench" / "results" / "openvino.json"
MODES = ("diffusers", "torch", "openvino", "openvino-bf16")
THREADS = 2


def _settings() -> tuple[int, int]:
    return int(os.environ.get("BENCH_SIZE", "512")), int(os.environ.get("BENCH_STEPS", "10"))


def run_ours(checkpoint: Path, out: Path, backend: str) -> dict[str, Any]:
    import bench_txt2img as common

    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.jobs import JobControl
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.speed import openvino as ov_backend
    from modules.models.ldm_views import called_unet

    size, steps = _settings()
    data_dir = REPO_ROOT / "bench" / ".cache" / "openvino-data"
    if backend == "torch":
        data_dir = Path(tempfile.mkdtemp(prefix="bench-openvino-"))
    services = build_services(parse_args(["--data-dir", str(data_dir)]))
    services.paths.ckpt_dir.mkdir(parents=True, exist_ok=True)
    link = services.paths.ckpt_dir / checkpoint.name
    if not link.exists():
        os.symlink(checkpoint, link)
    services.models.refresh()
    services.options.set("samples_save", False)
    services.options.set("grid_save", False)
    model = services.models.load(checkpoint.stem)
    timers = common.Timers()
    if backend == "torch":
        timers.watch("unet", called_unet(model.unet))  # what generation calls
    else:  # hooks on the UNet would send it back to PyTorch: time the backend's call instead
        _time_routes(ov_backend, timers)
    request = Txt2ImgRequest(
        prompt=common.PROMPT,
        negative_prompt="",
        seed=common.SEED,
        steps=steps,
        sampler_name="Euler a",
        width=size,
        height=size,
        cfg_scale=common.CFG,
        override_settings={"cpu_compute_backend": backend},
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = services.generation.txt2img(request, JobControl())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result.images[0].save(out)
    compiles = services.generation.speed_cache.openvino.compile_seconds  # conversion + compile, first use
    compile_s = sum(compiles.values())
    timers.totals = {k: v - compiles.get(k, 0.0) for k, v in timers.totals.items()}
    return {
        "generate_s": round(wall - compile_s, 2),  # steady state: what the next image costs
        "generate_with_compile_s": round(wall, 2),
        "generate_cpu_s": round(cpu, 2),
        "compile_s": round(compile_s, 2),
        "compile_s_by_module": {k: round(v, 2) for k, v in compiles.items()},
    } | timers.report()


def _time_routes(module: Any, timers: Any) -> None:
    original = module._Route.call

    def timed(self: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, target, *args, **kwargs)
        finally:
            timers.totals[self.label] = timers.totals.get(self.label, 0.0) + time.perf_counter() - start
            timers.calls[self.label] = timers.calls.get(self.label, 0) + 1

    module._Route.call = timed


def child(mode: str, checkpoint: Path, out: Path) -> None:
    import torch

    torch.set_num_threads(THREADS)
    import bench_txt2img as common

    if mode == "diffusers":
        cpu = time.process_time()
        result = common.run_diffusers(checkpoint, out)
        result["cpu_s_with_load"] = round(time.process_time() - cpu, 2)
    else:
        result = run_ours(checkpoint, out, mode)
    print(json.dumps(result | {"peak_rss_mib": common.peak_rss_mib()}))


def measure(mode: str, checkpoint: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(checkpoint), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 2)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(mode, json.dumps(result), flush=True)
    return result


def matmul_peak_gflops(dtype_name: str) -> float:
    import torch

    torch.set_num_threads(THREADS)
    dtype = getattr(torch, dtype_name)
    n = 2048
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def unet_flops_per_step(size: int) -> float:
    """FLOPs of one CFG step (batch 2: prompt and negative), counted on the meta device."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from modules.models.arch import shipped_configs
    from modules.models.families import ModelFamily

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(shipped_configs(ModelFamily.SD1).unet)
        x, t, c = torch.randn(2, 4, size // 8, size // 8), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 768)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            unet(x, t, encoder_hidden_states=c)
    return float(counter.get_total_flops())


def summarise(runs: dict[str, list[dict[str, Any]]], images: dict[str, Path], size: int, steps: int) -> dict[str, Any]:
    import bench_txt2img as common

    best = {m: min(r, key=lambda x: x["generate_s"]) for m, r in runs.items()}
    flops = unet_flops_per_step(size)
    peaks = {"float32": matmul_peak_gflops("float32"), "bfloat16": matmul_peak_gflops("bfloat16")}
    table: dict[str, Any] = {}
    for mode, run in best.items():
        row: dict[str, Any] = {"generate_s": run["generate_s"], "peak_rss_mib": run["peak_rss_mib"]}
        unet_s = run.get("unet_s")
        if unet_s:
            per_step = unet_s / steps
            peak = peaks["bfloat16" if mode.endswith("bf16") else "float32"]
            row |= {"unet_s_per_step": round(per_step, 2), "peak_fraction": round(flops / per_step / 1e9 / peak, 3)}
        for base in ("diffusers", "torch"):
            if base in best and base != mode:
                row[f"time_ratio_vs_{base}"] = round(run["generate_s"] / best[base]["generate_s"], 3)
        reference = "torch" if "torch" in best else "diffusers"  # both fp32 PyTorch
        if reference in best and mode != reference:
            row[f"vs_{reference}_fp32_image"] = common.compare(images[mode], images[reference])
        row["compile_s_first_run"] = runs[mode][0].get("compile_s", 0.0)
        table[mode] = row
    return {
        "unet_tflop_per_step": round(flops / 1e12, 3),
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "table": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CHECKPOINT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="rounds over all modes, interleaved")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (512)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (10)")
    parser.add_argument("--smoke", action="store_true", help="64x64, 2 steps: checks the script, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        os.environ.update(BENCH_SIZE="64", BENCH_STEPS="2")
    if args.size:
        os.environ["BENCH_SIZE"] = str(args.size)
    if args.steps:
        os.environ["BENCH_STEPS"] = str(args.steps)
    if args.child:
        mode, checkpoint, out = args.child
        child(mode, Path(checkpoint), Path(out))
        return
    from sdcheckpoints import CACHE, diffusers_config_folder, ensure_checkpoint

    from modules.models.families import ModelFamily

    size, steps = _settings()
    checkpoint = ensure_checkpoint(ModelFamily.SD1, 0)
    diffusers_config_folder(ModelFamily.SD1)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
    images = {m: CACHE / f"openvino-{m}-{size}.png" for m in args.modes}
    for _ in range(args.repeat):
        for mode in args.modes:
            runs[mode].append(measure(mode, checkpoint, images[mode]))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": THREADS,
            "python": platform.python_version(),
            "note": "shared 2-core VM; load average recorded per run",
        },
        "setup": {"size": size, "steps": steps, "sampler": "Euler a", "cfg": 7.0, "seed": 1234},
        "runs": runs,
    } | summarise(runs, images, size, steps)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if size == 512:
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["table"], indent=2))


if __name__ == "__main__":
    main()
