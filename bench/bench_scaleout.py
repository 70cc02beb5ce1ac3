"""Benchmark: scale-out throughput with 1 and 2 workers, and the queueing overhead per job.

A real redis-server (free port), the front end in this process (`--queue`, jobs submitted through
its job queue, the seam the UI and the API use) and worker processes (`webui.py --worker`, CPU,
one torch thread each) over the tiny SD1 test model.

1. throughput: the same job mix (N jobs, 64x64, a few steps, varied seeds) with 1 worker, then
   with 2; ratio = jobs/s with 2 / jobs/s with 1 (goal >= 1.7 on 2 free cores).
2. overhead: one job at a time on an idle worker, front end submit -> result, minus the same job
   run directly in this process on one torch thread (same model, same request): what the queue,
   the broker, JSON/PNG transfer and the progress relay add per job (goal < 50 ms).

    ./venv/bin/python bench/bench_scaleout.py [--jobs 12] [--steps 4]

Writes bench/results/scaleout.json. On a machine shared with other work the figures vary.
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
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
RESULTS = REPO_ROOT / "bench" / "results" / "scaleout.json"


def request(seed: int, steps: int) -> Any:
    from modules.generation.requests import Txt2ImgRequest

    return Txt2ImgRequest(prompt=f"bench {seed}", seed=seed, width=64, height=64, steps=steps, sampler_name="Euler")


def run_batch(services: Any, seeds: list[int], steps: int) -> float:
    """Submit every job at once; seconds until the last is done."""
    gen = services.generation
    started = time.perf_counter()
    jobs = [services.jobs.submit("txt2img", lambda c, s=s: gen.txt2img(request(s, steps), c)) for s in seeds]
    for job in jobs:
        job.wait(900)
    return time.perf_counter() - started


def wait_workers(services: Any, count: int) -> None:
    from modules.scaleout import registry

    deadline = time.monotonic() + 600
    while len(registry.live_workers(services.generation.client)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not join")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--overhead-jobs", type=int, default=6)
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.core.jobs import JobControl
    from modules.models.families import ModelFamily
    from tests.fixtures_models import link_into, models_home
    from tests.scaleout_harness import redis_server, start_worker, stop_all
    from tools.tiny_models import write_all

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    model = write_all(tmp / "models", (ModelFamily.SD1,))["sd1"]
    for name in ("front", "w1", "w2"):
        link_into(models_home(tmp / name).ckpt_dir, model)
    settings = {"sd_model_checkpoint": "tiny-sd1", "samples_save": False, "grid_save": False}
    settings["live_previews_enable"] = False
    seeds = list(range(1000, 1000 + opts.jobs))
    with redis_server() as url:
        args = parse_args(["--data-dir", str(tmp / "front"), "--nowebui", "--queue", url])
        services = build_services(args, policy=DevicePolicy.cpu())
        for key, value in settings.items():
            services.options.set(key, value)
        workers = [start_worker(url, tmp / "w1", "w1")]
        try:
            wait_workers(services, 1)
            run_batch(services, [1, 2], opts.steps)  # warm-up: the worker loads the model
            overhead_runs = []
            local = services.generation  # the same service runs the job here directly
            super(type(local), local).txt2img(request(1, opts.steps), JobControl())  # warm-up here too
            for seed in seeds[: opts.overhead_jobs]:
                t0 = time.perf_counter()
                run_batch(services, [seed], opts.steps)
                remote = time.perf_counter() - t0
                t0 = time.perf_counter()
                super(type(local), local).txt2img(request(seed, opts.steps), JobControl())
                direct = time.perf_counter() - t0
                overhead_runs.append(remote - direct)
            one = run_batch(services, seeds, opts.steps)
            workers.append(start_worker(url, tmp / "w2", "w2"))
            wait_workers(services, 2)
            run_batch(services, [3, 4], opts.steps)  # warm-up of the second worker
            two = run_batch(services, seeds, opts.steps)
        finally:
            stop_all(workers)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "jobs": opts.jobs,
        "steps": opts.steps,
        "size": "64x64",
        "one_worker_s": round(one, 3),
        "two_workers_s": round(two, 3),
        "throughput_ratio": round(one / two, 3),
        "overhead_ms_median": round(1000 * statistics.median(overhead_runs), 1),
        "overhead_ms_runs": [round(1000 * x, 1) for x in overhead_runs],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
