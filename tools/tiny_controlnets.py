"""Tiny random ControlNets for the tiny test models (tools/tiny_models.py), in real file layouts.

    python -m tools.tiny_controlnets OUT_DIR

Each ControlNet is diffusers' `ControlNetModel.from_unet` of the tiny UNet of its family (so it
fits that model), with a small hint encoder; its zero convolutions get random values (a trained
ControlNet's are not zero either) so that it changes the image. Written as:
- tiny-control-sd1.safetensors: lllyasviel's layout (`control_model.*`), fp32;
- tiny-control-sd1-fp16.pth: the same weights in fp16, a pickle (like the pruned .pth files);
- tiny-control-sdxl.safetensors: the SDXL single-file layout (`control_model.*` with label_emb);
- tiny-control-sd1-diffusers/: a diffusers folder (config.json + diffusion_pytorch_model.safetensors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from modules.controlnet.weights import controlnet_to_ldm
from modules.models.families import ModelFamily
from tools.tiny_models import tiny_parts

HINT_CHANNELS = (8, 16, 32, 32)
ZERO_CONV_STD = 0.2


def tiny_controlnet(family: ModelFamily, seed: int = 0) -> Any:
    from diffusers import ControlNetModel

    unet = tiny_parts(family, seed).unet
    torch.manual_seed(seed + 100)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)
    with torch.no_grad():
        for conv in [
            *model.controlnet_down_blocks,
            model.controlnet_mid_block,
            model.controlnet_cond_embedding.conv_out,
        ]:
            conv.weight.normal_(0.0, ZERO_CONV_STD)
            conv.bias.normal_(0.0, ZERO_CONV_STD)
    return model.eval()


def write_tiny_controlnets(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sd1 = tiny_controlnet(ModelFamily.SD1, seed)
    state = {k: v.contiguous() for k, v in controlnet_to_ldm(sd1).items()}
    written["sd1"] = out_dir / "tiny-control-sd1.safetensors"
    safetensors.torch.save_file(state, str(written["sd1"]))
    written["sd1-fp16"] = out_dir / "tiny-control-sd1-fp16.pth"
    torch.save({k: v.half() for k, v in state.items()}, written["sd1-fp16"])
    folder = out_dir / "tiny-control-sd1-diffusers"
    folder.mkdir(exist_ok=True)
    sd1.save_config(str(folder))  # config.json with _class_name, as diffusers writes it
    weights = {k: v.contiguous() for k, v in sd1.state_dict().items()}
    safetensors.torch.save_file(weights, str(folder / "diffusion_pytorch_model.safetensors"))
    written["sd1-diffusers"] = folder
    sdxl = tiny_controlnet(ModelFamily.SDXL, seed)
    written["sdxl"] = out_dir / "tiny-control-sdxl.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in controlnet_to_ldm(sdxl).items()}, str(written["sdxl"]))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tiny_controlnets", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key, path in write_tiny_controlnets(args.out_dir, args.seed).items():
        print(f"{key:14s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
