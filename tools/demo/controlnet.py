"""Train the demo ControlNet: place the demo model's shape where a silhouette or outline is drawn.

    python -m tools.demo.controlnet --out cache/demo-control [--minutes 28] [--threads 1] [--resume]

CPU, fixed seeds. The demo checkpoint (modules/models/builtin/demo-shapes.safetensors) is loaded
as any checkpoint and frozen; a ControlNet is made from its UNet (diffusers' `from_unet`: the
encoder half copied, zero convolutions) with a small hint encoder, and trained on eps prediction:
scenes of one shape anywhere in the middle 60% of the image, the control image its silhouette
(white on black; an outline in 30% of the samples), the caption without position words (the
control says where). Every --save-every steps and at the end the weights are written in fp16 in
lllyasviel's single-file layout (`control_model.*`): `<out>/demo-shapes-control.safetensors`,
which ships as modules/controlnet/builtin/demo-shapes-control.safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from modules.models.builtin_checkpoints import DEMO_CHECKPOINT
from tools.demo.dataset import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, render

HINT_CHANNELS = (16, 32, 64, 128)
SPREAD = 0.25  # shape centres in [0.5 - SPREAD, 0.5 + SPREAD] of the side
OUTLINE_RATE = 0.3
EMPTY_CAPTION_RATE = 0.1
HIGH_NOISE_FROM, HIGH_NOISE_RATE = 400, 0.75


def control_scene(rng: random.Random) -> Scene:
    return Scene(
        shape=rng.choice(SHAPES),
        colour=rng.choice(list(COLOURS)),
        size=rng.choice(list(SIZES)),
        position="center",
        background=rng.choice(list(BACKGROUNDS)),
        jitter_x=rng.uniform(-SPREAD, SPREAD),
        jitter_y=rng.uniform(-SPREAD, SPREAD),
        scale=rng.uniform(0.85, 1.15),
    )


def silhouette(image: Image.Image) -> Image.Image:
    """White where the shape (the saturated part) is, black elsewhere."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    mask = np.where(chroma > 60, 255, 0).astype(np.uint8)
    return Image.fromarray(mask, "L").convert("RGB")


def outline(mask: Image.Image) -> Image.Image:
    """The silhouette's edge, a few pixels wide (what canny or a drawn outline gives)."""
    grey = mask.convert("L")
    edge = np.asarray(grey.filter(ImageFilter.MaxFilter(3)), dtype=np.int16) - np.asarray(
        grey.filter(ImageFilter.MinFilter(3)), dtype=np.int16
    )
    return Image.fromarray(np.where(edge > 0, 255, 0).astype(np.uint8), "L").convert("RGB")


def control_caption(scene: Scene, rng: random.Random) -> str:
    if rng.random() < EMPTY_CAPTION_RATE:
        return ""
    size = f"{scene.size} " if rng.random() < 0.5 else ""
    text = f"a {size}{scene.colour} {scene.shape}"
    if rng.random() < 0.5:
        text += f" on a {scene.background} background"
    return text


def _tensor(images: Sequence[Image.Image], signed: bool) -> torch.Tensor:
    arrays = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0 for img in images])
    tensor = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    return tensor * 2 - 1 if signed else tensor


def dataset(count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[Scene]]:
    rng = random.Random(seed)
    scenes = [control_scene(rng) for _ in range(count)]
    images = [render(s, size) for s in scenes]
    hints = []
    for image in images:
        mask = silhouette(image)
        hints.append(outline(mask) if rng.random() < OUTLINE_RATE else mask)
    return _tensor(images, True), _tensor(hints, False), scenes


def prepared_data(vae: Any, out: Path, args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    """Latents, control images and captions; kept in <out>/data-<images>-<seed>.pt for a further session."""
    cache = out / f"data-{args.images}-{args.seed}.pt"
    if cache.is_file():
        data = torch.load(cache)
        return data["latents"], data["hints"], data["captions"]
    pixels, hints, scenes = dataset(args.images, 128, args.seed)
    with torch.no_grad():
        latents = torch.cat([vae.encode(pixels[i : i + 64]).latent_dist.mean for i in range(0, len(pixels), 64)])
        latents = latents * vae.config.scaling_factor
    rng = random.Random(args.seed + 1)
    captions = [control_caption(s, rng) for s in scenes]
    torch.save({"latents": latents, "hints": hints, "captions": captions}, cache)
    return latents, hints, captions


def load_demo(cache: Path) -> Any:
    from modules.models.loader import load_single_file

    return load_single_file(DEMO_CHECKPOINT, tokenizer_cache=cache).pipe


def save(controlnet: Any, path: Path, meta: dict[str, str]) -> None:
    from modules.controlnet.weights import controlnet_to_ldm

    state = {k: v.half().contiguous() for k, v in controlnet_to_ldm(controlnet).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    safetensors.torch.save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def train(args: argparse.Namespace) -> Path:
    from diffusers import ControlNetModel, DDPMScheduler

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_demo(out / "tokenizer")
    unet, vae, text, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for module in (unet, vae, text):
        module.requires_grad_(False)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    latents, hints, captions = prepared_data(vae, out, args)
    target = out / "demo-shapes-control.safetensors"
    step = 0
    if args.resume and target.is_file():  # a further session (optimiser moments start afresh)
        from modules.controlnet.weights import load_controlnet
        from modules.models.safetensors_header import read_safetensors_header

        controlnet = load_controlnet(target).train()
        step = int(read_safetensors_header(target)["__metadata__"]["steps"])
    else:
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS).train()
    optimiser = torch.optim.AdamW(controlnet.parameters(), lr=args.lr, weight_decay=0.0)
    log = (out / "train.log").open("a", encoding="utf-8")
    started = time.monotonic()
    while step < args.steps and time.monotonic() - started < args.minutes * 60:
        generator = torch.Generator().manual_seed(args.seed * 7919 + step)
        index = torch.randint(0, len(latents), (args.batch,), generator=generator)
        x0 = latents[index]
        noise = torch.randn(x0.shape, generator=generator)
        # mostly high noise: where the layout (the shape's place) is decided
        late = torch.randint(HIGH_NOISE_FROM, 1000, (len(x0),), generator=generator)
        anywhere = torch.randint(0, 1000, (len(x0),), generator=generator)
        pick = torch.rand(len(x0), generator=generator) < HIGH_NOISE_RATE
        timesteps = torch.where(pick, late, anywhere)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        ids = tokenizer(
            [captions[i] for i in index.tolist()],
            padding="max_length",
            max_length=77,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            context = text(ids).last_hidden_state
        down, mid = controlnet(noisy, timesteps, context, hints[index], return_dict=False)
        prediction = unet(
            noisy,
            timesteps,
            encoder_hidden_states=context,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        loss = F.mse_loss(prediction, noise)
        lr = args.lr * min(1.0, (step + 1) / 50) if not args.resume else args.lr
        for group in optimiser.param_groups:
            group["lr"] = lr
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        optimiser.step()
        step += 1
        if step % 20 == 0:
            line = {"step": step, "loss": round(loss.item(), 5), "s": round(time.monotonic() - started, 1)}
            log.write(json.dumps(line) + "\n")
            log.flush()
            print(line, flush=True)
        if step % args.save_every == 0:
            save(controlnet, target, _meta(args, step))
    save(controlnet, target, _meta(args, step))
    return target


def _meta(args: argparse.Namespace, step: int) -> dict[str, str]:
    return {
        "modelspec.title": "demo-shapes-control",
        "trained_by": "tools/demo/controlnet.py",
        "seed": str(args.seed),
        "steps": str(step),
        "base": "demo-shapes",
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.demo.controlnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=28.0)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/demo-shapes-control.safetensors")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.batch < 1 or not math.isfinite(args.lr) or args.lr <= 0:
        parser.error("--minutes, --batch and --lr must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    print(train(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
