"""Benchmark: the UNet step through the ldm-shaped view (new path) vs. the diffusers UNet (old path).

Generation now calls `sd_model.model.diffusion_model` (ldm's module tree over the diffusers
modules, issue 19). This measures what that costs: an SD1.5-size UNet (diffusers' SD1.5 config,
random weights, seed 0) at 512x512 with CFG (batch 2), the two paths alternating call by call in
one process (a shared CPU's load hits both alike); the ratio is of the fastest and the median
call of each. Both paths share every parameter; the outputs are compared too.

    ./venv/bin/python bench/bench_ldm_unet.py [--rounds 4] [--size 512] [--threads 2] [--device cpu]

Output: JSON on stdout and bench/results/ldm_unet.json. Goal: ratio new/old <= 1.02.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "ldm_unet.json"
CONFIG = REPO_ROOT / "modules" / "models" / "configs" / "sd1" / "unet" / "config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import UNet2DConditionModel

    from modules.models.ldm_views import diffusion_model_of

    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.loads(CONFIG.read_text())).eval().to(device, dtype)
    view = diffusion_model_of(unet)
    g = torch.Generator().manual_seed(0)
    latent = args.size // 8
    x = torch.randn(2, 4, latent, latent, generator=g).to(device, dtype)
    context = torch.randn(2, 77, 768, generator=g).to(device, dtype)
    t = torch.tensor([500.0, 500.0], device=device)
    outputs: dict[str, torch.Tensor] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    variants: dict[str, Callable[[], torch.Tensor]] = {
        "old (diffusers UNet)": lambda: unet(x, t, encoder_hidden_states=context).sample,
        "new (ldm view)": lambda: view(x, t, context),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for run in variants.values():  # first calls pay one-off kernel set-up
            run()
        sync()
        for _ in range(args.rounds):
            for name, run in variants.items():
                start = time.perf_counter()
                outputs[name] = run()
                sync()
                times[name].append(time.perf_counter() - start)
                print(name, round(times[name][-1], 3), "load", os.getloadavg()[0], flush=True)
    old, new = times["old (diffusers UNet)"], times["new (ldm view)"]
    report = {
        "machine": {
            "device": str(device),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "load_1min_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "size": args.size,
        "rounds": args.rounds,
        "calls_s": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "ratio_new_over_old_best": round(min(new) / min(old), 3),
        "ratio_new_over_old_median": round(statistics.median(new) / statistics.median(old), 3),
        "max_abs_output_difference": float(
            (outputs["new (ldm view)"].float() - outputs["old (diffusers UNet)"].float()).abs().max()
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
