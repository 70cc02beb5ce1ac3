"""Benchmark: UNet step cost at 512x512 (SD1.5 size), variants interleaved in one process.

On a shared CPU the load changes from minute to minute, so end-to-end runs minutes apart cannot
show a 5-30% difference. Here every variant runs once per round, rounds repeated, and the
fastest call of each is compared: load changes hit all variants alike.

Variants (one UNet call = one sampling step of a 512x512 image with CFG):
- diffusers: the UNet of StableDiffusionPipeline.from_single_file (plain diffusers), batch 2
- ours: the UNet our ModelManager loaded from the same file, batch 2 (cond + uncond)
- ours+tome0.5: the same with token merging 0.5 (A1111 settings)
- ours batch 1: the call NGMS makes on the steps where it skips the negative prompt

    ./venv/bin/python bench/bench_unet.py [--rounds 3]

Output: bench/results/unet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import torch  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "unet.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    from bench_models import manager_for
    from diffusers import StableDiffusionPipeline
    from sdcheckpoints import CACHE, diffusers_config_folder, ensure_checkpoint

    from modules.generation.speed.tome import token_merging
    from modules.models.families import ModelFamily

    checkpoint = ensure_checkpoint(ModelFamily.SD1, 0)
    ours = manager_for([checkpoint], 1, Path(tempfile.mktemp(dir=CACHE, suffix=".json"))).load(checkpoint.stem).unet
    theirs = StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(diffusers_config_folder(ModelFamily.SD1)), torch_dtype=torch.float32
    ).unet
    g = torch.Generator().manual_seed(0)
    latent = args.size // 8
    x = torch.randn(2, 4, latent, latent, generator=g)
    context = torch.randn(2, 77, 768, generator=g)
    t = torch.tensor([500.0, 500.0])

    outputs: dict[str, torch.Tensor] = {}

    def call(unet: Any, batch: int = 2, name: str = "") -> Callable[[], None]:
        def run() -> None:
            outputs[name] = unet(x[:batch], t[:batch], encoder_hidden_states=context[:batch]).sample

        return run

    def with_tome() -> None:
        with token_merging(ours, 0.5):
            call(ours, name="ours+tome0.5")()

    variants: dict[str, Callable[[], None]] = {
        "diffusers": call(theirs, name="diffusers"),
        "ours": call(ours, name="ours"),
        "ours+tome0.5": with_tome,
        "ours batch 1": call(ours, 1, name="ours batch 1"),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        call(ours)()  # first calls pay one-off kernel set-up
        call(theirs)()
        for _ in range(args.rounds):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
                print(name, round(times[name][-1], 2), "load", os.getloadavg()[0], flush=True)
    best = {name: min(v) for name, v in times.items()}

    def relative_difference(name: str) -> float:
        """|out - ours| / |ours| over the noise prediction (random weights: a rough size, not quality)."""
        a, b = outputs[name], outputs["ours"][: outputs[name].shape[0]]
        return float((a - b).norm() / b.norm())

    report = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": 2, "python": platform.python_version()},
        "size": args.size,
        "rounds": args.rounds,
        "calls_s": {name: [round(v, 2) for v in values] for name, values in times.items()},
        "best_s": {name: round(v, 2) for name, v in best.items()},
        "median_s": {name: round(statistics.median(v), 2) for name, v in times.items()},
        "ours_vs_diffusers": round(best["ours"] / best["diffusers"], 3),
        "tome_speedup": round(best["ours"] / best["ours+tome0.5"], 3),
        "batch1_vs_batch2": round(best["ours batch 1"] / best["ours"], 3),
        "output_relative_difference_vs_ours": {
            name: round(relative_difference(name), 6) for name in ("diffusers", "ours+tome0.5", "ours batch 1")
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
