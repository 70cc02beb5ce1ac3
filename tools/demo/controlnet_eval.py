"""Placement by the demo ControlNet, judged through the app's own generation path.

    python -m tools.demo.controlnet_eval [--controlnet PATH]

For 3 shapes x 3 positions x `seeds` seeds: the prompt names the shape and a colour, the control
image is the shape's white silhouette on black at the position (preprocessor none). A case is a hit
when the judged shape's centre (the centroid of the winning colour's pixels, tools/demo/judge.py)
lies within a quarter of the image side of the silhouette's centre. The same prompts and seeds
without the unit give the baseline.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modules.controlnet.library import DEMO_CONTROLNET
from modules.controlnet.service import ControlNetDirs, ControlNetService
from modules.controlnet.units import ControlNetUnit
from modules.core.jobs import JobControl
from modules.generation.hooks import ScriptHooks
from modules.generation.requests import Txt2ImgRequest
from modules.models.builtin_checkpoints import builtin_checkpoints
from tools.demo.controlnet import silhouette
from tools.demo.dataset import Scene, render
from tools.demo.evaluate import DemoEnv, SamplingSettings, demo_env, images_of
from tools.demo.judge import colour_labels

SHAPES = {"circle": "red", "square": "blue", "triangle": "green"}
PLACES = ("top left", "center", "bottom right")
SEED = 2000


class UnitHooks(ScriptHooks):
    """What the always-on ControlNet script does in process(): the units' provider on p."""

    def __init__(self, service: ControlNetService, units: list[ControlNetUnit]) -> None:
        self.service, self.units = service, units

    def process(self, p: Any) -> None:
        p.unet_residuals = self.service.prepare(p, self.units)


@dataclass
class Placement:
    hits: int = 0
    total: int = 0
    distances: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0


def control_for(shape: str, place: str, size: int) -> tuple[Image.Image, tuple[float, float]]:
    """The silhouette control image and its centre (pixels)."""
    mask = silhouette(render(Scene(shape, SHAPES[shape], "large", place, "white"), size))
    ys, xs = np.nonzero(np.asarray(mask.convert("L")) > 127)
    return mask, (float(xs.mean()), float(ys.mean()))


def shape_centre(image: Image.Image) -> tuple[float, float] | None:
    labels = colour_labels(image)
    if (labels >= 0).sum() < 12:
        return None
    winner = np.bincount(labels[labels >= 0]).argmax()
    ys, xs = np.nonzero(labels == winner)
    return float(xs.mean()), float(ys.mean())


def placement(
    env: DemoEnv, service: ControlNetService, model: str | None, seeds: int, sampling: SamplingSettings
) -> Placement:
    """Hits of 3 shapes x 3 places x `seeds` seeds; `model` None: without a unit (the baseline)."""
    score = Placement()
    size = sampling.size
    for shape, colour in SHAPES.items():
        for place in PLACES:
            control, target = control_for(shape, place, size)
            units = [] if model is None else [ControlNetUnit(model=model, image=control, module="none")]
            request = Txt2ImgRequest(
                prompt=f"a {colour} {shape} on a white background",
                seed=SEED,
                batch_size=seeds,
                steps=sampling.steps,
                sampler_name=sampling.sampler_name,
                cfg_scale=sampling.cfg_scale,
                width=size,
                height=size,
            )
            result = env.service.txt2img(request, JobControl(), hooks=UnitHooks(service, units))
            for image in images_of(result):
                centre = shape_centre(image)
                distance = (
                    float("inf") if centre is None else float(np.hypot(centre[0] - target[0], centre[1] - target[1]))
                )
                score.distances.append(distance)
                score.total += 1
                score.hits += distance <= size / 4
    return score


def demo_controlnet_env(data_dir: Path, controlnet: Path = DEMO_CONTROLNET) -> tuple[DemoEnv, ControlNetService]:
    env = demo_env(data_dir, builtin_checkpoints())
    dirs = ControlNetDirs(data_dir / "models" / "ControlNet", data_dir / "models" / "ControlNet-annotators")
    return env, ControlNetService(dirs, env.options, env.models, builtin=(controlnet,))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo.controlnet_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--controlnet", type=Path, default=DEMO_CONTROLNET)
    parser.add_argument("--data-dir", type=Path, default=Path("cache/demo-control-eval"))
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(argv)
    env, service = demo_controlnet_env(args.data_dir, args.controlnet)
    sampling = SamplingSettings()
    with_unit = placement(env, service, args.controlnet.stem, args.seeds, sampling)
    without = placement(env, service, None, args.seeds, sampling)
    print(f"with the unit: {with_unit.hits}/{with_unit.total} = {with_unit.rate:.0%}")
    print(f"without:       {without.hits}/{without.total} = {without.rate:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
