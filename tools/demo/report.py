"""Figures and sample grids for docs/demo-model.md, generated through the app's own services.

    python -m tools.demo.report [--checkpoint modules/models/builtin/demo-shapes.safetensors]
                                  [--out docs/demo-model] [--work cache/demo-report]

Writes PNG grids into --out and prints the adherence figures (the same measurements as
tests/test_demo_model.py, same seeds and sampler) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from modules.models.builtin_checkpoints import DEMO_CHECKPOINT
from tools.demo.dataset import COLOURS, SHAPES, render
from tools.demo.evaluate import (
    COLOUR_PROMPT,
    IMG2IMG_SCENES,
    DemoEnv,
    SamplingSettings,
    colour_adherence,
    colour_avoidance,
    demo_env,
    images_of,
    img2img_keeps,
    negative_prompt_effect,
    shape_adherence,
)

GAP = 2
AVOID_SEEDS = 12
SHOWN = 128  # small images are enlarged to this many pixels (nearest neighbour: no invented detail)


def grid(rows: Sequence[Sequence[Image.Image]]) -> Image.Image:
    size = rows[0][0].width * max(1, SHOWN // rows[0][0].width)
    width = max(len(r) for r in rows) * (size + GAP) - GAP
    out = Image.new("RGB", (width, len(rows) * (size + GAP) - GAP), (255, 255, 255))
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            out.paste(image.resize((size, size), Image.Resampling.NEAREST), (x * (size + GAP), y * (size + GAP)))
    return out


def write_grids(env: DemoEnv, out: Path, seed: int, seeds: int, sampling: SamplingSettings) -> list[Path]:
    def row(prompt: str, negative: str = "") -> list[Image.Image]:
        return images_of(env.txt2img(prompt, seed, seeds, sampling, negative=negative))

    written = []
    grids = {
        "colours.png": [row(COLOUR_PROMPT.format(colour=c)) for c in COLOURS],
        "shapes.png": [row(f"a {s} on a white background") for s in SHAPES],
        "captions.png": [
            row("a large yellow star on a black background, top left"),
            row("a small pink square on a gray background, bottom right"),
            row("a large cyan triangle on a white and black background, center"),
            row("a small purple circle, top right"),
        ],
        "negative.png": [row("a red circle on a white background"), row("a red circle on a white background", "red")],
    }
    for name, rows in grids.items():
        path = out / name
        grid(rows).save(path)
        written.append(path)
    sources = [render(scene, sampling.size) for scene in IMG2IMG_SCENES]
    outputs = [
        images_of(env.img2img(src, "", seed, 0.3, sampling))[0] for src in sources
    ]  # empty prompt: what the image alone keeps
    path = out / "img2img.png"
    grid([sources, outputs]).save(path)
    written.append(path)
    return written


def measure(env: DemoEnv, seed: int, seeds: int, sampling: SamplingSettings) -> dict[str, object]:
    start = time.monotonic()
    colour = colour_adherence(env, seed, seeds, sampling)
    shape = shape_adherence(env, seed, seeds, sampling)
    negatives = [asdict(negative_prompt_effect(env, c, seed, seeds, sampling)) for c in ("red", "blue")]
    avoidance = colour_avoidance(env, seed, AVOID_SEEDS, sampling)
    img2img = [img2img_keeps(env, scene, seed, 0.3, sampling) for scene in IMG2IMG_SCENES]
    return {
        "colour_rate": colour.rate,
        "colour_misses": colour.misses,
        "shape_rate": shape.rate,
        "shape_misses": shape.misses,
        "negative": negatives,
        "avoidance": {**asdict(avoidance), "rate_without": avoidance.rate_without, "rate_with": avoidance.rate_with},
        "img2img": [
            {"scene": f"{c.scene.colour} {c.scene.shape}", "kept": c.kept, "mean_abs_diff": round(c.mean_abs_diff, 2)}
            for c in img2img
        ],
        "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT)
    parser.add_argument("--out", type=Path, default=Path("docs/demo-model"))
    parser.add_argument("--work", type=Path, default=Path("cache/demo-report"), help="scratch data folder")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--no-grids", action="store_true")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    sampling = SamplingSettings(steps=args.steps)
    env = demo_env(args.work, [args.checkpoint])
    figures = measure(env, args.seed, args.seeds, sampling)
    if not args.no_grids:
        args.out.mkdir(parents=True, exist_ok=True)
        figures["grids"] = [str(p) for p in write_grids(env, args.out, args.seed, args.seeds, sampling)]
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
