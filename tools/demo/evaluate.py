"""Adherence figures for the demo model, measured through the app's own generation path.

Images come from GenerationService (the same loader, samplers and infotext as any checkpoint) and
are scored by the judge (tools/demo/judge.py). Used by tests/test_demo_model.py and by
`python -m tools.demo.report`, which writes the figures and grids of docs/demo-model.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from modules.app.bootstrap import build_generation_service, build_registry
from modules.core.cmd_args import build_parser
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl
from modules.core.options import Options
from modules.core.paths import Paths
from modules.generation.engine import GenerationService
from modules.generation.processing import GenerationResult
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.models.hashes import HashCache
from modules.models.manager import ModelManager
from tools.demo.dataset import COLOURS, Scene, caption, render
from tools.demo.judge import judge
from tools.demo.model import IMAGE_SIZE

TEST_SHAPES = ("circle", "square", "triangle")
COLOUR_PROMPT = "a {colour} circle on a white background"
SHAPE_PROMPT = "a {shape} on a white background"
AVOID_PROMPT = "a circle on a white background"  # no colour named: the model picks one


@dataclass(frozen=True)
class SamplingSettings:
    steps: int = 12
    sampler_name: str = "DPM++ 2M"
    cfg_scale: float = 7.0
    size: int = IMAGE_SIZE


@dataclass
class DemoEnv:
    paths: Paths
    options: Options
    models: ModelManager
    service: GenerationService

    def txt2img(
        self, prompt: str, seed: int, batch: int, sampling: SamplingSettings, negative: str = ""
    ) -> GenerationResult:
        request = Txt2ImgRequest(
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            batch_size=batch,
            steps=sampling.steps,
            sampler_name=sampling.sampler_name,
            cfg_scale=sampling.cfg_scale,
            width=sampling.size,
            height=sampling.size,
        )
        return self.service.txt2img(request, JobControl())

    def img2img(
        self, image: Image.Image, prompt: str, seed: int, denoising: float, sampling: SamplingSettings
    ) -> GenerationResult:
        request = Img2ImgRequest(
            prompt=prompt,
            seed=seed,
            steps=sampling.steps,
            sampler_name=sampling.sampler_name,
            cfg_scale=sampling.cfg_scale,
            width=sampling.size,
            height=sampling.size,
            denoising_strength=denoising,
        )
        return self.service.img2img(request, JobControl(), init_images=[image])


def demo_env(data_dir: Path, builtin: Sequence[Path]) -> DemoEnv:
    """A generation service over an empty models folder plus the given built-in checkpoints."""
    paths = Paths.from_args(build_parser().parse_args(["--data-dir", str(data_dir)]))
    paths.ensure()
    options = Options(build_registry(), paths.config_file)
    options.set("samples_save", False)
    options.set("grid_save", False)
    models = ModelManager(paths, DevicePolicy.cpu(), HashCache(paths.hash_cache_file), builtin_checkpoints=builtin)
    models.refresh()
    service = build_generation_service(models=models, options=options, paths=paths, device=torch.device("cpu"))
    return DemoEnv(paths, options, models, service)


def images_of(result: GenerationResult) -> list[Image.Image]:
    return list(result.images[result.index_of_first_image :])


@dataclass
class Score:
    hits: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0


def colour_adherence(env: DemoEnv, seed: int, seeds: int, sampling: SamplingSettings) -> Score:
    """Each of the 8 colours x `seeds` seeds: does the judged colour equal the prompt's?"""
    score = Score()
    for colour in COLOURS:
        for index, image in enumerate(
            images_of(env.txt2img(COLOUR_PROMPT.format(colour=colour), seed, seeds, sampling))
        ):
            verdict = judge(image)
            score.total += 1
            if verdict.colour == colour:
                score.hits += 1
            else:
                score.misses.append(f"{colour} seed {seed + index}: judged {verdict.colour}")
    return score


def shape_adherence(env: DemoEnv, seed: int, seeds: int, sampling: SamplingSettings) -> Score:
    """Circle, square, triangle x `seeds` seeds: does the judged shape equal the prompt's?"""
    score = Score()
    for shape in TEST_SHAPES:
        for index, image in enumerate(images_of(env.txt2img(SHAPE_PROMPT.format(shape=shape), seed, seeds, sampling))):
            verdict = judge(image, TEST_SHAPES)
            score.total += 1
            if verdict.shape == shape:
                score.hits += 1
            else:
                score.misses.append(f"{shape} seed {seed + index}: judged {verdict.shape} (fill {verdict.fill:.2f})")
    return score


@dataclass(frozen=True)
class NegativeEffect:
    colour: str
    share_without: float  # mean fraction of pixels of `colour`, negative prompt empty
    share_with: float  # same, with the colour named in the negative prompt


def negative_prompt_effect(
    env: DemoEnv, colour: str, seed: int, seeds: int, sampling: SamplingSettings, prompt: str | None = None
) -> NegativeEffect:
    """Mean share of `colour` over `seeds` images, without and with `colour` as the negative prompt.

    The prompt defaults to one naming the colour too (`COLOUR_PROMPT`), the hardest case: guidance
    then pulls towards and away from the same colour. `AVOID_PROMPT` leaves the colour to the model,
    the usual reason to name a colour in a negative prompt.
    """
    prompt = COLOUR_PROMPT.format(colour=colour) if prompt is None else prompt

    def mean_share(negative: str) -> float:
        images = images_of(env.txt2img(prompt, seed, seeds, sampling, negative=negative))
        return sum(judge(i).colour_shares[colour] for i in images) / len(images)

    return NegativeEffect(colour, mean_share(""), mean_share(colour))


@dataclass(frozen=True)
class Avoidance:
    judged_without: dict[str, int]  # colour -> images judged that colour, no negative prompt
    judged_with: dict[str, int]  # colour -> images judged that colour with it as the negative prompt
    images: int  # per row: seeds

    @property
    def rate_without(self) -> float:
        return sum(self.judged_without.values()) / self.images  # every image counts for one colour: ~1.0

    @property
    def rate_with(self) -> float:
        return sum(self.judged_with.values()) / self.images


def colour_avoidance(env: DemoEnv, seed: int, seeds: int, sampling: SamplingSettings) -> Avoidance:
    """`AVOID_PROMPT` leaves the colour to the model; naming a colour in the negative prompt should
    make that colour rare. Without a negative prompt every image has one colour, so the counts
    over all colours add up to `seeds`; with each colour as the negative prompt in turn, they
    add up to the images that show the colour they were told to avoid."""
    plain = [judge(i).colour for i in images_of(env.txt2img(AVOID_PROMPT, seed, seeds, sampling))]
    without = {c: plain.count(c) for c in COLOURS}
    avoided = {}
    for colour in COLOURS:
        images = images_of(env.txt2img(AVOID_PROMPT, seed, seeds, sampling, negative=colour))
        avoided[colour] = sum(judge(i).colour == colour for i in images)
    return Avoidance(without, avoided, seeds)


@dataclass(frozen=True)
class Img2ImgCheck:
    scene: Scene
    judged_colour: str | None
    judged_shape: str | None
    mean_abs_diff: float  # 0..255 per channel, output vs input

    @property
    def kept(self) -> bool:
        return self.judged_colour == self.scene.colour and self.judged_shape == self.scene.shape


IMG2IMG_SCENES = (
    Scene("triangle", "blue", "large", "center", "white"),
    Scene("square", "orange", "large", "top left", "gray"),
    Scene("circle", "green", "small", "bottom right", "black"),
)


def img2img_keeps(env: DemoEnv, scene: Scene, seed: int, denoising: float, sampling: SamplingSettings) -> Img2ImgCheck:
    import numpy as np

    source = render(scene, sampling.size)
    output = images_of(env.img2img(source, caption(scene), seed, denoising, sampling))[0]
    verdict = judge(output, TEST_SHAPES)
    diff = np.abs(np.asarray(output, dtype=np.float32) - np.asarray(source, dtype=np.float32)).mean()
    return Img2ImgCheck(scene, verdict.colour, verdict.shape, float(diff))
