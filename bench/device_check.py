"""Device check: the GPU path end to end, in one run, with one table at the end.

    ./venv/bin/python bench/device_check.py               # on a GPU: <= 8 minutes on one H100
    ./venv/bin/python bench/device_check.py --cpu-smoke   # tiny models on the CPU, < 60 s (in the tests)

Rows (each against a baseline measured in the same run, on the same weights):
1. txt2img, ours vs plain diffusers (the pipeline's own __call__, Euler a, same first noise) in
   fp16: time ratio (warm: the second of two runs on a GPU) and PSNR between the two images; SD1.5 512²
   and SDXL 1024² random-weight checkpoints of real size (bench/sdcheckpoints.py, cached in
   bench/.cache/).
2. SDXL at 1024² with the VAE in fp16: the image has no NaN (a fallback re-decode is reported).
3. fp8 weight storage vs fp16 (SDXL): peak VRAM, UNet Linear/Conv weight bytes, PSNR.
4. --medvram vs normal (SDXL): peak VRAM.

--cpu-smoke runs the same code on the tiny test models (64², 3 steps) in fp32 on the CPU, with
the VAE in fp16 for row 2 and the offload hooks of --medvram running RAM to RAM, so the script is
known to work before a GPU is lent. Peak memory is VRAM on a GPU, RSS on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from modules.core.devices import DevicePolicy, VramMode, peak_memory, torch_gc  # noqa: E402
from modules.models.families import ModelFamily  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"
SEED, CFG = 1234, 7.0


@dataclass(frozen=True)
class Setup:
    device: torch.device
    dtype: torch.dtype
    sizes: dict[ModelFamily, int]
    steps: int
    smoke: bool

    @classmethod
    def pick(cls, smoke: bool) -> Setup:
        if smoke:
            sizes = {ModelFamily.SD1: 64, ModelFamily.SDXL: 64}
            return cls(torch.device("cpu"), torch.float32, sizes, 3, True)
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --cpu-smoke, or on a GPU machine")
        sizes = {ModelFamily.SD1: 512, ModelFamily.SDXL: 1024}
        return cls(torch.device("cuda"), torch.float16, sizes, 20, False)

    def policy(self, *, vae_dtype: torch.dtype | None = None, mode: VramMode = VramMode.NORMAL) -> DevicePolicy:
        return DevicePolicy(self.device, self.dtype, vae_dtype or self.dtype, self.dtype, vram_mode=mode)


@dataclass
class Row:
    check: str
    model: str
    value: str
    baseline: str
    ratio: str
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(i.convert("RGB"), dtype=np.float64) for i in (a, b))
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def checkpoint(setup: Setup, family: ModelFamily, folder: Path) -> Path:
    if setup.smoke:
        from tools.tiny_models import write_tiny_checkpoint

        return write_tiny_checkpoint(folder, family)
    from sdcheckpoints import ensure_checkpoint

    return ensure_checkpoint(family)


class Ours:
    """Our generation service through the real composition root, on one checkpoint."""

    def __init__(self, ckpt: Path, data_dir: Path, policy: DevicePolicy) -> None:
        from modules.app.bootstrap import build_services
        from modules.core.cmd_args import parse_args

        args = parse_args(["--data-dir", str(data_dir), "--ckpt-dir", str(ckpt.parent), "--no-hashing"])
        self.services = build_services(args, policy=policy)
        self.services.options.set("samples_save", False)
        self.services.options.set("grid_save", False)
        self.name = ckpt.stem

    def txt2img(self, size: int, steps: int, **settings: Any) -> tuple[Any, float]:
        from modules.core.jobs import JobControl
        from modules.generation.requests import Txt2ImgRequest

        request = Txt2ImgRequest(
            prompt=PROMPT,
            seed=SEED,
            steps=steps,
            sampler_name="Euler a",
            width=size,
            height=size,
            cfg_scale=CFG,
            override_settings={"sd_model_checkpoint": self.name, **settings},
        )
        start = time.perf_counter()
        result = self.services.generation.txt2img(request, JobControl())
        _sync()
        return result, time.perf_counter() - start

    def close(self) -> None:
        self.services.models.unload()
        self.services.jobs.shutdown()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def diffusers_txt2img(pipe: Any, size: int, steps: int, device: torch.device) -> tuple[Image.Image, float]:
    """Plain diffusers: the pipeline's own loop, Euler a with A1111's timesteps, our first noise."""
    from diffusers import EulerAncestralDiscreteScheduler

    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(SEED)
    latents = torch.randn((1, 4, size // 8, size // 8), generator=generator)
    start = time.perf_counter()
    image = pipe(
        PROMPT,
        num_inference_steps=steps,
        guidance_scale=CFG,
        width=size,
        height=size,
        latents=latents.to(device),
        generator=generator,
    ).images[0]
    _sync()
    return image, time.perf_counter() - start


@contextmanager
def measured(device: torch.device) -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    with peak_memory(device) as peak:
        yield out
    value = peak.vram_mib if device.type != "cpu" else peak.ram_mib
    out["peak_mib"] = float(value or 0.0)


def warm(setup: Setup, run: Callable[[], tuple[Any, float]]) -> tuple[Any, float]:
    """On a GPU the second of two runs (the first pays for kernel selection and caches); one run in the smoke."""
    if not setup.smoke:
        run()
    return run()


def row_vs_diffusers(setup: Setup, family: ModelFamily, ckpt: Path, work: Path) -> Row:
    from modules.models.loader import Dtypes, load_single_file

    size = setup.sizes[family]
    ours = Ours(ckpt, work / f"ours-{family.value}", setup.policy())
    ours.services.models.load(ours.name)  # loading is timed for neither side
    result, ours_s = warm(setup, lambda: ours.txt2img(size, setup.steps))
    ours.close()
    dtypes = Dtypes(setup.dtype, setup.dtype, setup.dtype)
    pipe = load_single_file(ckpt, tokenizer_cache=work / "tokenizers", dtypes=dtypes).pipe.to(setup.device)
    image, plain_s = warm(setup, lambda: diffusers_txt2img(pipe, size, setup.steps, setup.device))
    similarity = psnr(result.images[0], image)
    return Row(
        f"txt2img {size}² {setup.steps} steps, ours vs diffusers",
        family.value,
        f"{ours_s:.2f} s",
        f"{plain_s:.2f} s",
        f"{ours_s / plain_s:.2f}x",
        f"PSNR {similarity:.1f} dB",
        {"ours_s": ours_s, "diffusers_s": plain_s, "psnr": similarity},
    )


def row_fp16_vae(setup: Setup, ckpt: Path, work: Path) -> Row:
    size = setup.sizes[ModelFamily.SDXL]
    ours = Ours(ckpt, work / "ours-vae16", setup.policy(vae_dtype=torch.float16))
    result, seconds = ours.txt2img(size, setup.steps)
    ours.close()
    pixels = np.asarray(result.images[0].convert("RGB"))
    fallback = "vae_precision" in result.p.comments
    ok = bool(np.isfinite(pixels).all()) and float(pixels.std()) > 0
    note = "fp32 re-decode after NaN" if fallback else "no NaN in fp16"
    return Row(
        f"SDXL {size}², VAE in fp16: NaN escaped?",
        "sdxl",
        "no" if ok else "YES",
        "",
        "",
        note,
        {"nan_escaped": not ok, "fallback": fallback, "seconds": seconds},
    )


def row_fp8(setup: Setup, ckpt: Path, work: Path) -> Row:
    from modules.models.fp8 import weight_bytes

    size = setup.sizes[ModelFamily.SDXL]
    ours = Ours(ckpt, work / "ours-fp8", setup.policy())
    with measured(setup.device) as full_peak:
        full, _ = ours.txt2img(size, setup.steps)
    model = ours.services.models.active
    assert model is not None
    full_bytes = weight_bytes(model.unet) * 2 // model.unet.conv_in.weight.element_size()  # as fp16
    with measured(setup.device) as fp8_peak:
        stored, _ = ours.txt2img(size, setup.steps, fp8_storage="Enable")
    model = ours.services.models.active
    assert model is not None and model.fp8
    fp8_bytes = weight_bytes(model.unet)
    ours.close()
    similarity = psnr(stored.images[0], full.images[0])
    return Row(
        "fp8 weights vs fp16: peak memory",
        "sdxl",
        f"{fp8_peak['peak_mib']:.0f} MiB",
        f"{full_peak['peak_mib']:.0f} MiB",
        f"{fp8_peak['peak_mib'] / full_peak['peak_mib']:.2f}x",
        f"UNet weights {fp8_bytes / full_bytes:.3f}x of fp16; PSNR {similarity:.1f} dB",
        {"psnr": similarity, "weight_ratio": fp8_bytes / full_bytes, "peak_mib": fp8_peak["peak_mib"]},
    )


def row_medvram(setup: Setup, ckpt: Path, work: Path) -> Row:
    size = setup.sizes[ModelFamily.SDXL]
    peaks: dict[str, float] = {}
    images: dict[str, Image.Image] = {}
    for mode in (VramMode.NORMAL, VramMode.MEDVRAM):
        ours = Ours(ckpt, work / f"ours-{mode.value}", setup.policy(mode=mode))
        ours.services.models.load(ours.name)  # loading is not part of the job's peak
        with measured(setup.device) as peak:
            result, _ = ours.txt2img(size, setup.steps)
        ours.close()
        torch_gc()
        peaks[mode.value], images[mode.value] = peak["peak_mib"], result.images[0]
    same = psnr(images["medvram"], images["normal"])
    return Row(
        "--medvram vs normal: peak memory",
        "sdxl",
        f"{peaks['medvram']:.0f} MiB",
        f"{peaks['normal']:.0f} MiB",
        f"{peaks['medvram'] / peaks['normal']:.2f}x",
        f"same image: PSNR {same:.1f} dB",
        {"peaks": peaks, "psnr": same},
    )


def print_table(rows: list[Row], setup: Setup) -> None:
    name = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "CPU (smoke: tiny models)"
    print(f"device: {name}; torch {torch.__version__}; {str(setup.dtype).removeprefix('torch.')}")
    header = ("check", "model", "value", "baseline", "ratio", "note")
    cells = [header, *((r.check, r.model, r.value, r.baseline, r.ratio, r.note) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for i, line in enumerate(cells):
        print("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU (< 60 s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    setup = Setup.pick(args.cpu_smoke)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        work = Path(tmp)
        sd1, sdxl = (checkpoint(setup, f, work / "models") for f in (ModelFamily.SD1, ModelFamily.SDXL))
        checks: list[Callable[[], Row]] = [
            lambda: row_vs_diffusers(setup, ModelFamily.SD1, sd1, work),
            lambda: row_vs_diffusers(setup, ModelFamily.SDXL, sdxl, work),
            lambda: row_fp16_vae(setup, sdxl, work),
            lambda: row_fp8(setup, sdxl, work),
            lambda: row_medvram(setup, sdxl, work),
        ]
        rows = []
        for check in checks:
            rows.append(check())
            torch_gc()  # each check's models are gone: the next one starts with free VRAM
    print_table(rows, setup)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
