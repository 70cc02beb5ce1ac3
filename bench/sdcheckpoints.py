"""Random-weight checkpoints of real size (SD1.5, SDXL) in the single-file (A1111) layout, for benchmarks.

Built from the shipped full-size configs with PyTorch's default initialisation (uniform
+-1/sqrt(fan_in) for linear/conv weights and biases, ones/zeros for norms, N(0, 0.02) for
embeddings), so activations stay in a sane range and images are not constant. Written in fp16
like published checkpoints (SD1.5 ~2.1 GB, SDXL ~6.9 GB) to bench/.cache/ (git-ignored) and
reused when present. Also writes the diffusers config folder (configs + tokenizers, no weights)
that `from_single_file(config=...)` needs offline.

    ./venv/bin/python bench/sdcheckpoints.py [--family sd1 sdxl] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modules.models.arch import CONFIGS_DIR, shipped_configs  # noqa: E402
from modules.models.families import ModelFamily  # noqa: E402
from modules.models.layout import text_slots  # noqa: E402
from modules.models.loader import make_scheduler, save_single_file, tokenizers_for  # noqa: E402

CACHE = REPO_ROOT / "bench" / ".cache"


def checkpoint_path(family: ModelFamily, seed: int) -> Path:
    return CACHE / f"random-{family.value}-{seed}.safetensors"


def _random_value(name: str, module: torch.nn.Module, shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    """PyTorch's default init for the parameter `name` of `module` (fp32; cast by the caller)."""
    if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
        return torch.ones(shape) if name == "weight" else torch.zeros(shape)
    if isinstance(module, torch.nn.Embedding) or len(shape) == 0:
        return torch.randn(shape, generator=g) * 0.02
    weight = getattr(module, "weight", None)
    fan_in = math.prod(weight.shape[1:]) if weight is not None and weight.ndim > 1 else shape[-1]
    bound = 1.0 / math.sqrt(max(1, fan_in))
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


def materialize(module: torch.nn.Module, seed: int, dtype: torch.dtype) -> torch.nn.Module:
    """Give every meta parameter a random value (in `dtype`), one tensor at a time."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for owner_name, owner in module.named_modules():
        for name, param in owner.named_parameters(recurse=False):
            key = f"{owner_name}.{name}" if owner_name else name
            state[key] = _random_value(name, owner, param.shape, g).to(dtype)
    module.load_state_dict(state, strict=False, assign=True)
    leftover = [n for n, p in module.named_parameters() if p.is_meta]
    if leftover:
        raise RuntimeError(f"parameters left without values: {leftover[:5]}")
    return module.eval()


def random_parts(family: ModelFamily, seed: int, dtype: torch.dtype = torch.float16) -> SimpleNamespace:
    """unet, vae, text_encoder(s), scheduler of `family` at full size with random weights."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    configs = shipped_configs(family)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs.unet)
        vae = AutoencoderKL.from_config(configs.vae)
        encoders = []
        for slot, cfg in zip(text_slots(family), configs.text_encoders, strict=True):
            cls = CLIPTextModelWithProjection if slot.with_projection else CLIPTextModel
            encoders.append(cls(CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})))
    unet = materialize(unet, seed, dtype)
    vae = materialize(vae, seed + 1, dtype)
    encoders = [materialize(e, seed + 2 + i, dtype) for i, e in enumerate(encoders)]
    first, second = (None, encoders[0]) if family == ModelFamily.SDXL_REFINER else (encoders[0], None)
    if len(encoders) > 1:
        second = encoders[1]
    return SimpleNamespace(
        unet=unet, vae=vae, text_encoder=first, text_encoder_2=second, scheduler=make_scheduler(configs.scheduler)
    )


def ensure_checkpoint(family: ModelFamily, seed: int = 0) -> Path:
    """The cached random checkpoint of `family`/`seed`, written first if missing (fp16)."""
    path = checkpoint_path(family, seed)
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    parts = random_parts(family, seed)
    partial = path.with_suffix(".partial")
    save_single_file(parts, family, partial, metadata={"format": "pt", "note": "random weights for benchmarks"})
    partial.rename(path)
    print(f"wrote {path.name} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - start:.0f} s")
    return path


def diffusers_config_folder(family: ModelFamily) -> Path:
    """A diffusers model folder without weights (configs + tokenizers) for from_single_file(config=...)."""
    folder = CACHE / f"diffusers-config-{family.value}"
    if (folder / "model_index.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(CONFIGS_DIR / family.value, tmp)
    names = ["tokenizer", "tokenizer_2"]
    index = json.loads((tmp / "model_index.json").read_text())
    wanted = [n for n in names if index.get(n, [None])[0] is not None]
    for name, tokenizer in zip(wanted, tokenizers_for(family, CACHE / "tokenizers"), strict=True):
        tokenizer.save_pretrained(tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", nargs="+", default=["sd1"], choices=[f.value for f in ModelFamily])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    torch.set_num_threads(2)
    for family in args.family:
        for seed in args.seeds:
            print(ensure_checkpoint(ModelFamily(family), seed))
        print(diffusers_config_folder(ModelFamily(family)))


if __name__ == "__main__":
    main()
