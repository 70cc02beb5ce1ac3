"""Benchmark: peak memory of one large VAE decode with the real Tiled VAE extension on vs off.

Tiled VAE (pkuliyi2015/multidiffusion-upscaler-for-automatic1111, scripts/tilevae.py) replaces
`p.sd_model.first_stage_model.decoder.forward` in its `process` hook. Our decode
(modules/generation/latents.py `decode`) runs through that ldm-shaped view, so the replacement
takes effect. Each mode runs in a fresh child process: an SD1-size VAE (the shipped SD1 VAE
config, random weights, seed 0), the extension installed from the folder given into a scratch
data dir and our extension host bound over services there; the Tiled VAE script's `process` runs
with its UI args (enabled or not), then the decode, then its `postprocess`.

Memory is the process's peak RSS (getrusage ru_maxrss) and its growth over the RSS just before
the decode (weights and imports are the same in both modes). CPU, fp32.

    ./venv/bin/python bench/bench_tiled_vae.py /path/to/multidiffusion-upscaler [--size 1024]

Output: JSON on stdout and bench/results/tiled_vae.json. Goal (issue 19): tiled peak below plain.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

RESULTS = REPO_ROOT / "bench" / "results" / "tiled_vae.json"
CONFIG = REPO_ROOT / "modules" / "models" / "configs" / "sd1" / "vae" / "config.json"
EXTENSION = "multidiffusion-upscaler-for-automatic1111"


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _bind_host(extension: Path, root: Path) -> Any:
    import torch

    from modules.app.bootstrap import assemble_services, build_generation_service, build_model_manager, build_registry
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.core.options import Options
    from modules.extension_host import facade
    from tests.fixtures_models import models_home

    shutil.copytree(extension, root / "extensions" / EXTENSION, ignore=shutil.ignore_patterns(".git"))
    paths = models_home(root)
    options = Options(build_registry(), paths.config_file)
    models = build_model_manager(paths, DevicePolicy.cpu(), options, builtin=False)
    generation = build_generation_service(models=models, options=options, paths=paths, device=torch.device("cpu"))
    args = parse_args(["--data-dir", str(root)])
    services = assemble_services(args, options=options, policy=DevicePolicy.cpu(), generation=generation)
    host = facade.bind(services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None)
    if host.problems.items():
        print("extension problems:", list(host.problems.items()), file=sys.stderr)
    return host


def child(extension: Path, mode: str, size: int, tile: int, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    from diffusers import AutoencoderKL

    from modules.generation.latents import decode
    from modules.models.ldm_views import first_stage_of

    with tempfile.TemporaryDirectory() as tmp:
        host = _bind_host(extension, Path(tmp))
        script = next(s for s in host.runner.tab("txt2img").alwayson_scripts if s.title() == "Tiled VAE")
        torch.manual_seed(0)
        vae = AutoencoderKL.from_config(json.loads(CONFIG.read_text())).eval()
        latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
        p = SimpleNamespace(sd_model=SimpleNamespace(first_stage_model=first_stage_of(vae)))
        # UI order: enabled, encoder tile, decoder tile, vae_to_gpu, fast_decoder, fast_encoder, color_fix
        ui_args = [mode == "tiled", 512, tile, False, True, True, False]
        script.process(p, *ui_args)
        hooked = type(first_stage_of(vae).decoder.forward).__name__
        before = _rss_kib()
        start = time.perf_counter()
        pixels = decode(vae, latents)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        script.postprocess(p, None, *ui_args)
        torch.save(pixels, out)
        print(json.dumps({"peak_rss_kib": peak, "rss_before_kib": before, "seconds": seconds, "decoder": hooked}))


def _run_child(extension: Path, mode: str, size: int, tile: int, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, str(extension), "--child", mode, "--size", str(size), "--tile", str(tile)]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extension", type=Path, help="a checkout of multidiffusion-upscaler-for-automatic1111")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--tile", type=int, default=64, help="Tiled VAE decoder tile size (its CPU default)")
    parser.add_argument("--child", choices=["plain", "tiled"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.extension, args.child, args.size, args.tile, args.out)
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            mode: _run_child(args.extension, mode, args.size, args.tile, Path(tmp) / mode)
            for mode in ("plain", "tiled")
        }
        images = {mode: torch.load(Path(tmp) / mode) for mode in runs}
    to_255 = {mode: ((img.clamp(-1, 1) + 1) * 127.5).round() for mode, img in images.items()}
    growth = {mode: r["peak_rss_kib"] - r["rss_before_kib"] for mode, r in runs.items()}
    report = {
        "size": args.size,
        "decoder_tile": args.tile,
        "measure": "peak RSS (ru_maxrss) per fresh child; growth = peak - RSS before decode",
        "runs": runs,
        "peak_ratio_tiled_over_plain": round(runs["tiled"]["peak_rss_kib"] / runs["plain"]["peak_rss_kib"], 3),
        "growth_ratio_tiled_over_plain": round(growth["tiled"] / growth["plain"], 3),
        "max_abs_pixel_diff_0_255": float((to_255["tiled"] - to_255["plain"]).abs().max()),
        "mean_abs_pixel_diff_0_255": round(float((to_255["tiled"] - to_255["plain"]).abs().mean()), 3),
        "torch": torch.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
