"""Benchmark: checkpoint load from disk (cold, warm) and switching between two SD1.5-size checkpoints.

Two random fp16 SD1.5-size single files (bench/sdcheckpoints.py), loaded as fp32 on the CPU by
the ModelManager, each scenario in its own subprocess:

- cold load: the file is evicted from the OS page cache first (posix_fadvise DONTNEED on that
  file alone: no root needed, other processes' caches untouched); the first load also computes
  the A1111 model hash (sha256 of the file), as a first load in A1111 does. A second, separate
  measure loads with the hash already cached.
- warm load: the same file again from the page cache (hash cached).
- switching, RAM cache (sd_checkpoint_cache = 2): both models stay in RAM; a switch makes the
  other one active. 20 switches A->B->A...; time of each and RSS after each.
- switching, no RAM cache (sd_checkpoint_cache = 0, A1111's default): every switch reads the
  other file again (from the page cache) and drops the previous model.

Output: bench/results/models.json.

    ./venv/bin/python bench/bench_models.py [--switches 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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

RESULTS = REPO_ROOT / "bench" / "results" / "models.json"


def rss_mib(field: str = "VmRSS") -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) // 1024 for line in status if line.startswith(f"{field}:"))


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def manager_for(files: list[Path], cache_size: int, hash_file: Path) -> Any:
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.core.paths import Paths
    from modules.models.hashes import HashCache
    from modules.models.manager import ModelManager

    data_dir = Path(tempfile.mkdtemp(prefix="bench-models-"))
    paths = Paths.from_args(parse_args(["--data-dir", str(data_dir)]))
    paths.ensure()
    for file in files:
        os.symlink(file, paths.ckpt_dir / file.name)
    manager = ModelManager(paths, DevicePolicy.cpu(), HashCache(hash_file), cache_size=lambda: cache_size)
    manager.refresh()
    return manager


def child_load(files: list[Path], hash_file: Path) -> dict[str, Any]:
    first = files[0]
    evict(first)
    manager = manager_for(files, 0, hash_file)
    start = time.perf_counter()
    manager.load(first.stem)
    cold_with_hash = time.perf_counter() - start
    manager.unload()
    evict(first)
    manager = manager_for(files, 0, hash_file)  # hash now cached in hash_file
    start = time.perf_counter()
    manager.load(first.stem)
    cold = time.perf_counter() - start
    manager.unload()
    warm(first)
    start = time.perf_counter()
    manager.load(first.stem)
    warm_s = time.perf_counter() - start
    return {
        "cold_first_load_with_hash_s": round(cold_with_hash, 2),
        "cold_load_s": round(cold, 2),
        "warm_load_s": round(warm_s, 2),
    }


def child_switch(files: list[Path], hash_file: Path, cache_size: int, switches: int) -> dict[str, Any]:
    manager = manager_for(files, cache_size, hash_file)
    a, b = files[0].stem, files[1].stem
    manager.load(a)
    manager.load(b)
    manager.load(a)  # both seen once (RAM cache filled when cache_size allows)
    rss_start = rss_mib()
    times, rss = [], []
    for i in range(switches):
        target = b if i % 2 == 0 else a
        start = time.perf_counter()
        active = manager.load(target) is manager.active  # keep no reference: a caller would not either
        times.append(time.perf_counter() - start)
        assert active
        rss.append(rss_mib())
    return {
        "sd_checkpoint_cache": cache_size,
        "switches": switches,
        "switch_median_s": round(statistics.median(times), 3),
        "switch_max_s": round(max(times), 3),
        "switch_times_s": [round(t, 3) for t in times],
        "rss_before_switches_mib": rss_start,
        "rss_after_switches_mib": rss[-1],
        "rss_growth_mib": rss[-1] - rss_start,
        "rss_after_each_mib": rss,
        "disk_loads": manager.disk_loads,
    }


def run_child(*argv: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = result.pop("_peak", None)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(argv[0], json.dumps(result), flush=True)
    return dict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--switches", type=int, default=20)
    args = parser.parse_args()
    from sdcheckpoints import CACHE, ensure_checkpoint

    from modules.models.families import ModelFamily

    files = [ensure_checkpoint(ModelFamily.SD1, 0), ensure_checkpoint(ModelFamily.SD1, 1)]
    if args.child:
        import torch

        torch.set_num_threads(2)
        kind, *rest = args.child
        hash_file = Path(rest[0])
        if kind == "load":
            result = child_load(files, hash_file)
        else:
            result = child_switch(files, hash_file, int(rest[1]), int(rest[2]))
        print(json.dumps(result | {"_peak": rss_mib("VmHWM")}))
        return
    hash_file = CACHE / "bench-models-hashes.json"
    hash_file.unlink(missing_ok=True)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": 2, "python": platform.python_version()},
        "checkpoint": {"family": "sd1", "file_bytes": files[0].stat().st_size, "dtype_on_disk": "fp16"},
        "load": run_child("load", str(hash_file)),
        "switch_ram_cache": run_child("switch", str(hash_file), "2", str(args.switches)),
        "switch_no_ram_cache": run_child("switch", str(hash_file), "0", str(args.switches)),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items()}, indent=2)[:3000])


if __name__ == "__main__":
    main()
