"""Benchmark: txt2img 512x512 on an SD1.5-size random-weight checkpoint, ours vs plain diffusers.

Same weights (one fp16 single file, loaded as fp32), Euler a, 4 steps, CFG 7, seed 1234, 512x512,
2 torch threads. Each run is its own subprocess, so peak RSS (VmHWM) is that run's alone.

- diffusers: StableDiffusionPipeline.from_single_file + EulerAncestralDiscreteScheduler with
  "linspace" timesteps (A1111's Euler a schedule: timesteps 999, 666, 333, 0). Initial latents
  are passed in (`latents=`) and drawn from torch.Generator(seed) exactly as our A1111-style
  noise is; the same generator then feeds the ancestral noise, which therefore matches too.
- ours: GenerationService.txt2img through the real composition root (build_services), with the
  default settings (saving off, as diffusers does not save).
- ours with token merging 0.5, and ours with NGMS (s_min_uncond 3.0: the uncond pass is skipped
  on steps 1 and 3, sigmas 2.92 and 0.03): speed-up and quality cost vs ours.

Per run: load time, generation wall time for the image, time inside UNet and VAE-decoder
forwards, peak RSS. Pairs: PSNR/SSIM/max abs pixel difference. Output: bench/results/txt2img.json.

    ./venv/bin/python bench/bench_txt2img.py [--repeat 2] [--modes diffusers ours ours-tome ours-ngms]
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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

RESULTS = REPO_ROOT / "bench" / "results" / "txt2img.json"
PROMPT = "a photograph of an astronaut riding a horse"
SEED, CFG = 1234, 7.0
STEPS = int(os.environ.get("BENCH_STEPS", "4"))  # smaller values: a quick smoke run of the script
SIZE = int(os.environ.get("BENCH_SIZE", "512"))
NGMS = 3.0
MODES = ("diffusers", "ours", "ours-tome", "ours-ngms")


class Timers:
    """Wall time spent inside forward calls of chosen modules (forward pre/post hooks)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def watch(self, name: str, module: Any) -> None:
        started: list[float] = []

        def before(*_a: Any) -> None:
            started.append(time.perf_counter())

        def after(*_a: Any) -> None:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - started.pop()
            self.calls[name] = self.calls.get(name, 0) + 1

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    def report(self) -> dict[str, Any]:
        return {f"{k}_s": round(v, 2) for k, v in self.totals.items()} | {
            f"{k}_calls": n for k, n in self.calls.items()
        }


def peak_rss_mib() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM:"))


def run_diffusers(checkpoint: Path, out: Path) -> dict[str, Any]:
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline
    from sdcheckpoints import diffusers_config_folder

    from modules.models.families import ModelFamily

    start = time.perf_counter()
    pipe = StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(diffusers_config_folder(ModelFamily.SD1)), torch_dtype=torch.float32
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - start
    timers = Timers()
    timers.watch("unet", pipe.unet)
    timers.watch("vae_decoder", pipe.vae.decoder)
    generator = torch.Generator("cpu").manual_seed(SEED)
    start = time.perf_counter()
    latents = torch.randn((1, 4, SIZE // 8, SIZE // 8), generator=generator)  # our first noise draw
    image = pipe(
        PROMPT,
        negative_prompt="",
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        width=SIZE,
        height=SIZE,
        latents=latents,
        generator=generator,  # continues the same stream for the ancestral noise
    ).images[0]
    generate_s = time.perf_counter() - start
    image.save(out)
    return {"load_s": round(load_s, 2), "generate_s": round(generate_s, 2)} | timers.report()


def run_ours(checkpoint: Path, out: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.jobs import JobControl
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.speed import speed_options

    data_dir = Path(tempfile.mkdtemp(prefix="bench-txt2img-"))
    args = parse_args(["--data-dir", str(data_dir)])
    services = build_services(args)
    services.paths.ckpt_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(checkpoint, services.paths.ckpt_dir / checkpoint.name)
    services.models.refresh()
    if "token_merging_ratio" not in services.registry:  # until the composition root registers them
        services.registry.extend(speed_options(args))
    services.options.set("samples_save", False)
    services.options.set("grid_save", False)
    start = time.perf_counter()
    model = services.models.load(checkpoint.stem)
    load_s = time.perf_counter() - start
    timers = Timers()
    timers.watch("unet", model.unet)
    timers.watch("vae_decoder", model.vae.decoder)
    request = Txt2ImgRequest(
        prompt=PROMPT,
        negative_prompt="",
        seed=SEED,
        steps=STEPS,
        sampler_name="Euler a",
        width=SIZE,
        height=SIZE,
        cfg_scale=CFG,
        override_settings=overrides,
    )
    start = time.perf_counter()
    result = services.generation.txt2img(request, JobControl())
    generate_s = time.perf_counter() - start
    result.images[0].save(out)
    return {"load_s": round(load_s, 2), "generate_s": round(generate_s, 2), "infotext": result.infotexts[0]} | (
        timers.report()
    )


def child(mode: str, checkpoint: Path, out: Path) -> None:
    import torch

    torch.set_num_threads(2)
    if mode == "diffusers":
        result = run_diffusers(checkpoint, out)
    elif mode == "ours":
        result = run_ours(checkpoint, out, {})
    elif mode == "ours-tome":
        result = run_ours(checkpoint, out, {"token_merging_ratio": 0.5})
    elif mode == "ours-ngms":
        result = run_ours(checkpoint, out, {"s_min_uncond": NGMS})
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result | {"peak_rss_mib": peak_rss_mib()}))


def measure(mode: str, checkpoint: Path, out: Path) -> dict[str, Any]:
    with checkpoint.open("rb") as f:  # same warm page cache for every run
        while f.read(1 << 24):
            pass
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(checkpoint), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - start, 2)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(mode, json.dumps(result), flush=True)
    return dict(result)


def compare(a: Path, b: Path) -> dict[str, float]:
    from metrics import max_abs_diff, psnr, ssim
    from PIL import Image

    ia, ib = Image.open(a), Image.open(b)
    return {"psnr_db": round(psnr(ia, ib), 2), "ssim": round(ssim(ia, ib), 4), "max_abs_diff": max_abs_diff(ia, ib)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CHECKPOINT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds over all modes, interleaved (fastest run of each reported)"
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--smoke", action="store_true", help="64x64, 2 steps: checks the script, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        os.environ.update(BENCH_SIZE="64", BENCH_STEPS="2")  # inherited by the children
    if args.child:
        mode, checkpoint, out = args.child
        child(mode, Path(checkpoint), Path(out))
        return
    from sdcheckpoints import CACHE, diffusers_config_folder, ensure_checkpoint

    from modules.models.families import ModelFamily

    checkpoint = ensure_checkpoint(ModelFamily.SD1, 0)
    diffusers_config_folder(ModelFamily.SD1)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
    images = {m: CACHE / f"txt2img-{m}.png" for m in args.modes}
    for _ in range(args.repeat):  # interleaved: load from other processes hits every mode alike
        for mode in args.modes:
            runs[mode].append(measure(mode, checkpoint, images[mode]))
    best = {m: min(r, key=lambda x: x["generate_s"]) for m, r in runs.items()}
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": 2,
            "python": platform.python_version(),
            "note": "shared 2-core VM; load average recorded per run",
        },
        "setup": {
            "size": int(os.environ.get("BENCH_SIZE", SIZE)),
            "steps": int(os.environ.get("BENCH_STEPS", STEPS)),
            "sampler": "Euler a",
            "cfg": CFG,
            "seed": SEED,
            "ngms": NGMS,
        },
        "runs": runs,
        "best": best,
    }
    if "diffusers" in best and "ours" in best:
        report["ours_vs_diffusers"] = {
            "generate_time_ratio": round(best["ours"]["generate_s"] / best["diffusers"]["generate_s"], 3),
            "unet_time_ratio": round(best["ours"]["unet_s"] / best["diffusers"]["unet_s"], 3),
            "peak_rss_ratio": round(best["ours"]["peak_rss_mib"] / best["diffusers"]["peak_rss_mib"], 3),
            "image": compare(images["ours"], images["diffusers"]),
        }
    for mode in ("ours-tome", "ours-ngms"):
        if mode in best and "ours" in best:
            report[f"{mode}_vs_ours"] = {
                "generate_speedup": round(best["ours"]["generate_s"] / best[mode]["generate_s"], 3),
                "unet_speedup": round(best["ours"]["unet_s"] / best[mode]["unet_s"], 3),
                "image": compare(images[mode], images["ours"]),
            }
    if not args.smoke:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
