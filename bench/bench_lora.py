"""Benchmark: apply + remove 3 LoRAs (rank 16) on an SD1.5-size UNet: ours vs. plain diffusers.

The UNet is built from diffusers' SD1.5 config (modules/models/configs/sd1/unet/config.json,
runwayml v1-5) with random weights (seed 0). Three kohya-format LoRAs (fp16 safetensors, every
Linear / 1x1 conv of the 16 transformer blocks: 192 layers each, alpha = rank / 2) are written
to bench/.cache/loras/ (reused when present). In the same process:

- ours: NetworkActivator.activate(<lora:bench_0:1><lora:bench_1:0.8><lora:bench_2:0.6>) enter
  ("apply") and exit ("remove"); "cold" = a new activator (files read and parsed, patch computed),
  "parsed" = files already parsed, patch computed, "kept" = the same networks again (the next
  batch or job): the kept patched weights are swapped in.
- diffusers: pipe.load_lora_weights x3 + set_adapters + fuse_lora ("apply"), then unfuse_lora +
  unload_lora_weights ("remove").
Both results are checked: ours restores every weight bit for bit; the patched weights are
compared with diffusers' fused weights. Output: JSON on stdout and bench/results/lora.json.

    ./venv/bin/python bench/bench_lora.py [--repeat N] [--rank R]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from modules.core.cmd_args import build_parser  # noqa: E402
from modules.core.paths import Paths  # noqa: E402
from modules.generation.prompt_parser import parse_extra_network_tags  # noqa: E402
from modules.models.families import ModelFamily  # noqa: E402
from modules.networks.activation import NetworkActivator  # noqa: E402
from modules.networks.catalogue import NetworkCatalogue  # noqa: E402
from modules.networks.keymap import module_weight  # noqa: E402
from modules.networks.options import NetworkOptions  # noqa: E402
from modules.networks.testing import save_safetensors  # noqa: E402

CACHE = REPO_ROOT / "bench" / ".cache"
LORA_DIR = CACHE / "loras"
RESULTS = REPO_ROOT / "bench" / "results" / "lora.json"
CONFIG = REPO_ROOT / "modules" / "models" / "configs" / "sd1" / "unet" / "config.json"
WEIGHTS = (1.0, 0.8, 0.6)
TARGET_SUFFIXES = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")


@dataclass
class BenchModel:
    family: ModelFamily
    unet: Any
    text_encoders: list[Any]
    tokenizers: list[Any]


def build_unet() -> Any:
    """SD1.5 UNet with random weights: allocated empty, filled with N(0, 0.02) (faster than init)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in unet.parameters():
            param.normal_(0.0, 0.02, generator=generator)
    return unet


def tiny_text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1)
    return CLIPTextModel(config).eval()


def target_layers(unet: Any) -> dict[str, torch.nn.Module]:
    return {
        name: module
        for name, module in unet.named_modules()
        if ".attentions." in name
        and name.endswith(TARGET_SUFFIXES)
        and isinstance(module, torch.nn.Linear | torch.nn.Conv2d)
    }


def write_loras(layers: dict[str, torch.nn.Module], rank: int) -> list[Path]:
    paths = []
    for index in range(3):
        path = LORA_DIR / f"bench_{index}.safetensors"
        paths.append(path)
        if path.is_file():
            continue
        generator = torch.Generator().manual_seed(100 + index)
        state: dict[str, torch.Tensor] = {}
        for name, module in layers.items():
            weight = module_weight(module)
            kohya = "lora_unet_" + name.replace(".", "_")
            tail = (1, 1) if weight.ndim == 4 else ()
            state[f"{kohya}.lora_down.weight"] = (
                torch.randn(rank, weight.shape[1], *tail, generator=generator) * 0.02
            ).half()
            state[f"{kohya}.lora_up.weight"] = (
                torch.randn(weight.shape[0], rank, *tail, generator=generator) * 0.02
            ).half()
            state[f"{kohya}.alpha"] = torch.tensor(rank / 2).half()
        save_safetensors(path, state, {"ss_network_dim": str(rank), "ss_network_alpha": str(rank / 2)})
    return paths


def fingerprint(layers: dict[str, torch.nn.Module]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for module in layers.values():
        digest.update(module_weight(module).detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_ours(model: BenchModel, layers: dict[str, torch.nn.Module], repeat: int, sample: list[str]) -> dict[str, Any]:
    """apply_cold: new activator (files read, parsed, patch computed); apply_parsed: parsed files
    cached, patch computed; apply_kept: the same networks again, kept patch swapped in."""
    paths = Paths.from_args(build_parser().parse_args(["--data-dir", str(CACHE / "home"), "--lora-dir", str(LORA_DIR)]))
    prompt = "".join(f"<lora:bench_{i}:{w}>" for i, w in enumerate(WEIGHTS))
    networks = parse_extra_network_tags(prompt).networks
    before = fingerprint(layers)
    results: dict[str, list[float]] = {"apply_cold": [], "apply_parsed": [], "apply_kept": [], "remove": []}
    patched: dict[str, torch.Tensor] = {}
    layers_patched = 0

    def cycle(activator: NetworkActivator, key: str | None) -> None:
        nonlocal layers_patched, patched
        context = activator.activate(model, networks, opts=NetworkOptions(in_memory_limit=3))
        seconds, active = timed(context.__enter__)
        layers_patched = active.layers_patched
        if not patched:
            patched = {name: module_weight(layers[name]).detach().clone() for name in sample}
        if key is not None:
            results[key].append(seconds)
        seconds, _ = timed(lambda: context.__exit__(None, None, None))
        results["remove"].append(seconds)

    for _ in range(repeat):
        fresh = NetworkActivator(NetworkCatalogue(paths, None), keep_last_patch=False)
        cycle(fresh, "apply_cold")
        cycle(fresh, "apply_parsed")
        keeping = NetworkActivator(NetworkCatalogue(paths, None), keep_last_patch=True)
        cycle(keeping, None)
        cycle(keeping, "apply_kept")
        keeping.drop_cached_patches()
    return {
        **summarise(results),
        "layers_patched": layers_patched,
        "restored_bit_exact": fingerprint(layers) == before,
        "_patched_sample": patched,
    }


def run_diffusers(
    unet: Any, layers: dict[str, torch.nn.Module], repeat: int, sample: list[str], files: list[Path]
) -> dict[str, Any]:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline(
        vae=None,
        text_encoder=tiny_text_encoder(),
        tokenizer=None,
        unet=unet,
        scheduler=DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    original = {name: module_weight(layers[name]).detach().clone() for name in sample}
    results: dict[str, list[float]] = {"apply": [], "remove": []}
    fused: dict[str, torch.Tensor] = {}
    for attempt in range(repeat):
        names = [f"b{attempt}_{i}" for i in range(3)]

        def apply(names: list[str] = names) -> None:
            for name, path in zip(names, files, strict=True):
                pipe.load_lora_weights(str(path), adapter_name=name)
            pipe.set_adapters(names, list(WEIGHTS))
            pipe.fuse_lora(adapter_names=names, lora_scale=1.0)

        def remove() -> None:
            pipe.unfuse_lora()
            pipe.unload_lora_weights()

        seconds, _ = timed(apply)
        results["apply"].append(seconds)
        if attempt == 0:
            modules = dict(unet.named_modules())
            fused = {name: _base_weight(modules[name]).detach().clone() for name in sample}
        seconds, _ = timed(remove)
        results["remove"].append(seconds)
    modules = dict(unet.named_modules())
    drift = max(float((_base_weight(modules[n]) - original[n]).abs().max()) for n in sample)
    return {**summarise(results), "max_abs_drift_after_remove_sample": drift, "_fused_sample": fused}


def _base_weight(module: torch.nn.Module) -> torch.Tensor:
    return module_weight(getattr(module, "base_layer", module))  # PEFT wraps layers while adapters are loaded


def summarise(results: dict[str, list[float]]) -> dict[str, Any]:
    return {
        f"{key}_s": {"median": round(statistics.median(v), 4), "all": [round(x, 4) for x in v]}
        for key, v in results.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    build_seconds, unet = timed(build_unet)
    layers = target_layers(unet)
    files = write_loras(layers, args.rank)
    sample = sorted(layers)[:: max(1, len(layers) // 12)]
    model = BenchModel(ModelFamily.SD1, unet, [tiny_text_encoder()], [])
    ours = run_ours(model, layers, args.repeat, sample)
    theirs = run_diffusers(unet, layers, args.repeat, sample, files)
    agreement = max(float((ours["_patched_sample"][n] - theirs["_fused_sample"][n]).abs().max()) for n in sample)
    ours.pop("_patched_sample")
    theirs.pop("_fused_sample")
    report = {
        "benchmark": "apply + remove of 3 LoRAs on an SD1.5-size UNet (random weights, fp32, CPU)",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "unet_build_s": round(build_seconds, 2),
        "loras": {
            "count": 3,
            "rank": args.rank,
            "layers_each": len(layers),
            "weights": list(WEIGHTS),
            "file_mb_each": round(files[0].stat().st_size / 1e6, 2),
        },
        "repeat": args.repeat,
        "ours": ours,
        "diffusers": theirs,
        "max_abs_diff_ours_vs_diffusers_fused_sample": agreement,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
